"""Run checkpoints: the training state of a run, written whole so a crash at any instant
leaves the previous checkpoint, and read back (of any format, upgraded by `compat`) to resume
or to average.

Under the run directory: checkpoints/step-00000500/{model.safetensors, training_state.pt}
and checkpoints/latest naming the newest. A checkpoint directory is written under a
temporary name, flushed and renamed into place before `latest` moves (atomically).
"""
from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from machine_translation.base.errors import ModelDirError, TrainingError
from machine_translation.base.files import atomic_directory, atomic_path, write_atomic
from machine_translation.model import compat
from machine_translation.model.directory import WEIGHTS_FILE, load_weights, save_weights, tied_aliases

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
TRAINING_STATE_FILE = "training_state.pt"
LATEST_FILE = "latest"
INTERRUPTED_FILE = "interrupted"  # in a checkpoint saved when a signal stopped the run between periodic saves
TRAINING_KEYS = ("state", "optimizer", "rng", "train_config", "model_config")


def checkpoint_dirs(run_dir: Path, periodic_only: bool = False) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first; `periodic_only` leaves out those
    saved on an interruption (they hold where a run stopped, not one of its periodic states)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    return [p for p in found if not (p / INTERRUPTED_FILE).exists()] if periodic_only else found


def save_training_checkpoint(run_dir: Path, model: nn.Module, training: dict, step: int, keep_last: int,
                             interrupted: bool = False) -> Path:
    """Write checkpoint `step` whole, then point `latest` at it and prune: the last `keep_last`
    periodic checkpoints stay, and an interruption's checkpoint only while it is the newest,
    so an interrupted and resumed run keeps (and averages) what an uninterrupted one does."""
    root = Path(run_dir) / CHECKPOINT_DIR
    final = root / f"step-{step:08d}"
    with atomic_directory(final, replace=True) as tmp:  # the same step saved again (a resumed run) is swapped
        save_weights(model, tmp / WEIGHTS_FILE)
        with atomic_path(tmp / TRAINING_STATE_FILE) as path, open(path, "wb") as f:
            torch.save({**training, "format_version": compat.FORMAT_VERSION}, f)
        if interrupted:
            (tmp / INTERRUPTED_FILE).touch()
    write_atomic(root / LATEST_FILE, final.name.encode())
    periodic = checkpoint_dirs(run_dir, periodic_only=True)
    stale = periodic[:-keep_last] + [p for p in checkpoint_dirs(run_dir) if p not in periodic and p.name < final.name]
    for path in stale:
        if path != final:
            shutil.rmtree(path, ignore_errors=True)  # (a step-* directory of mt's own checkpoints)
    return final


def _load_checkpoint(path: Path, model: nn.Module, device, groups: list[list[str]]) -> dict:
    """One checkpoint into `model`; its training state upgraded to today's format."""
    try:
        training = torch.load(path / TRAINING_STATE_FILE, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise ValueError(f"{TRAINING_STATE_FILE} was refused: it contains code that would run on load "
                             "(not a file mt wrote)") from None
        raise
    missing = [k for k in TRAINING_KEYS if not isinstance(training, dict) or k not in training]
    if missing:
        raise ValueError(f"{TRAINING_STATE_FILE} has no {missing[0]!r} entry")
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as f:
        unfused = compat.is_unfused(f.keys())
    load_weights(model, path / WEIGHTS_FILE, device)
    return compat.migrate_training_state(training, groups, unfused)


def load_training_checkpoint(run_dir: Path, model: nn.Module, groups: list[list[str]] | None = None,
                             device="cpu") -> tuple[Path, dict]:
    """Load the latest valid checkpoint into `model` (`groups`: the parameter names of each
    optimizer group; default one group of all); a corrupt one is reported and the newest valid
    older one is used instead. Returns its path and the training state."""
    groups = groups if groups is not None else [[name for name, _ in model.named_parameters()]]
    root = Path(run_dir) / CHECKPOINT_DIR
    candidates = list(reversed(checkpoint_dirs(run_dir)))
    try:
        latest = root / (root / LATEST_FILE).read_text().strip()
        if latest in candidates:
            candidates.remove(latest)
            candidates.insert(0, latest)
    except (OSError, UnicodeDecodeError):
        pass
    if not candidates:
        raise ModelDirError(f"no checkpoint to resume in {root}: start the run without --resume")
    for i, path in enumerate(candidates):
        try:
            training = _load_checkpoint(path, model, device, groups)
        except Exception as e:  # torch.load and safetensors raise many types on damaged files
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            logger.warning("checkpoint %s is corrupt or unreadable (%s)%s", path, reason[:200],
                           "; trying an older one" if i + 1 < len(candidates) else "")
            continue
        if i > 0:
            logger.warning("resuming from the older checkpoint %s", path)
        return path, training
    raise ModelDirError(f"every checkpoint in {root} is corrupt: start the run again without --resume")


def load_average(model: nn.Module, checkpoints: list[Path]) -> None:
    """Load the mean of the weights of `checkpoints` (directories, of any format) into `model`."""
    total: dict[str, torch.Tensor] = {}
    for path in checkpoints:
        try:
            weights = compat.migrate_state_dict(load_file(str(path / WEIGHTS_FILE)))
        except (SafetensorError, OSError) as e:
            raise ModelDirError(f"{path / WEIGHTS_FILE} is corrupt ({e}); average fewer checkpoints") from None
        for name, tensor in weights.items():
            total[name] = total.get(name, 0) + tensor.double()
    device = next(model.parameters()).device
    averaged = {name: (t / len(checkpoints)).float().to(device) for name, t in total.items()}
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    if set(missing) - set(tied_aliases(model)) or unexpected:
        raise ModelDirError(f"the checkpoints in {checkpoints[0].parent} do not match the model's config.json")


def check_continues(training: dict, path: Path, run_dir: Path, model_config: dict, batching: dict, precision: str,
                    cfg) -> None:
    """Refuse to resume a run this session would not continue as it was (another model, other
    batches, another optimizer layout), naming the flag to pass; warn where it continues
    differently but soundly (another precision, batches drawn another way)."""
    if {**model_config, **training["model_config"]} != model_config:
        raise TrainingError(f"{path} was trained with another model config than {run_dir}/config.json")
    saved = training["batching"]
    if set(saved) != set(batching) or saved.get("bucket_width") != batching.get("bucket_width"):
        logger.warning("%s was written by an mt that formed its batches differently: the run continues, on batches "
                       "of the same sentences drawn the new way", path)
    for key in sorted(set(saved) & set(batching) - {"bucket_width"}):
        if saved[key] != batching[key]:
            flag = "--" + key.replace("_", "-")
            raise TrainingError(f"{flag} {batching[key]} differs from the run's {saved[key]}: a resumed run must see "
                                f"the same batches; pass {flag} {saved[key]} (or start a new run)")
    if training["precision"] != precision:
        logger.warning("the run was trained with --precision %s and continues in %s: the weights and the optimizer "
                       "state are float32, so this works, but the steps are not bit-identical to an uninterrupted run",
                       training["precision"], precision)
    saved_decay = training["train_config"]["decay_embeddings"]
    if saved_decay != cfg.decay_embeddings:  # the optimizer's parameter groups would not match
        flag = "--decay-embeddings" if saved_decay else "--no-decay-embeddings"
        raise TrainingError(f"the run was started with {flag}: pass it to resume it (or start a new run)")
