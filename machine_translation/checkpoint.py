"""Self-contained model directories: `save_pretrained` / `load_pretrained`.

A model directory holds everything needed to translate or generate, with relative paths:
`config.json` (format version, model config, language pair), `model.safetensors` (loaded
without executing code), `generation_config.json`, and the tokenizer files. Every file is
replaced atomically, so a crash leaves the previous version, never half a file.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_file
from torch import nn

from machine_translation.errors import ConfigError, ModelDirError
from machine_translation.files import atomic_directory, atomic_path, read_json, write_atomic, write_json
from machine_translation.model import ModelConfig, build_model
from mt_tokenizers import Tokenizer, TokenizerError, load_tokenizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RUN_MARKER = ".mt-run"  # in a run directory from its start; `mt train` holds its lock while it writes
GENERATION_FILE = "generation_config.json"
TOP_KEYS = {"format_version", "model", "pair", "tokenizers", "mt_version", "precision"}
SAVED_PRECISIONS = ("fp32", "int8")  # config.json's "precision" (absent: fp32); int8 is written by `mt quantize`
JOINT_TOKENIZER = {"source": ".", "target": "."}  # config.json's "tokenizers" when one vocabulary serves both
TASK_NAMES = {"mt": "translation model", "lm": "language model"}
USE_COMMAND = {"mt": "mt translate", "lm": "mt generate"}


@dataclass
class LoadedModel:
    model: nn.Module
    config: ModelConfig
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    pair: str | None = None  # e.g. "en-fr"; None for a language model
    generation: dict = field(default_factory=dict)  # generation_config.json: the model's own search settings
    directory: Path | None = None
    precision: str = "fp32"  # of the weights as stored: "int8" for a directory written by `mt quantize`

    def search_defaults(self, options_class):
        """The library's defaults of `options_class` (`SearchOptions` or `SamplingOptions`),
        overridden by this model's generation_config.json."""
        where = (self.directory / GENERATION_FILE) if self.directory else Path(GENERATION_FILE)
        unknown = sorted(set(self.generation) - set(options_class.MODEL_KEYS))
        if unknown:
            raise ModelDirError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(options_class.MODEL_KEYS)})")
        try:
            return options_class(**self.generation)
        except ValueError as e:
            raise ModelDirError(f"{where}: {e}; correct or delete the file") from None


def is_model_dir(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).is_file()


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """{dropped name: kept name} for the tied weights (one tensor under several names), keeping
    the first name in sorted order, as safetensors' `load_model` expects."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict().items():
        groups.setdefault((tensor.data_ptr(), tuple(tensor.shape), tensor.stride()), []).append(name)
    aliases = {}
    for names in groups.values():
        kept, *dropped = sorted(names)
        aliases.update({name: kept for name in dropped})
    return dict(sorted(aliases.items()))


def save_weights(model: nn.Module, path: Path) -> None:
    """model.safetensors, tied weights stored once. The aliases go into one metadata entry: the
    safetensors writer orders metadata keys at random (safetensors issue #584), and a single key
    keeps the bytes of identical weights identical in every process, so files compare by hash."""
    aliases = tied_aliases(model)
    tensors = {name: t.contiguous() for name, t in model.state_dict().items() if name not in aliases}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"tied_weights": json.dumps(aliases)} if aliases else None)


def save_pretrained(
    directory: str | Path,
    model: nn.Module,
    config: ModelConfig,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    pair: str | None = None,
    generation: dict | None = None,
    precision: str = "fp32",
    weights: bool = True,
) -> Path:
    """Write a loadable model directory of a float32 `model`, stored in `precision` ("fp32",
    or "int8" for `mt quantize`: its linear layers as `precision.Int8Linear`). Weights go last,
    so config and tokenizer are in place by the time a directory has weights."""
    from machine_translation import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    joint = src_tokenizer is tgt_tokenizer
    tokenizers = JOINT_TOKENIZER if joint else {"source": "source_tokenizer", "target": "."}
    tgt_tokenizer.save(directory)
    if not joint:
        src_tokenizer.save(directory / tokenizers["source"])
    write_json(directory / CONFIG_FILE, {
        "format_version": FORMAT_VERSION, "mt_version": __version__, "pair": pair,
        "tokenizers": tokenizers, "model": config.to_dict(), **({"precision": precision} if precision != "fp32" else {}),
    })
    write_json(directory / GENERATION_FILE, generation or {})
    if not weights:  # a new run: its weights come with its first validation
        return directory
    if precision == "int8":
        import copy

        from machine_translation.precision import quantize_int8
        model = quantize_int8(copy.deepcopy(model))
    save_weights(model, directory / WEIGHTS_FILE)
    return directory


def read_config(directory: str | Path) -> tuple[ModelConfig, dict]:
    """Parse and check `config.json`: the model config and the top-level entries."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise ModelDirError(f"no model directory at {directory}: train one with `mt train` or pass --model DIR")
    if not path.is_file():
        raise ModelDirError(f"{directory} is not a model directory: {CONFIG_FILE} is missing")
    data = read_json(path, ModelDirError, "model config")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelDirError(f"{path} is corrupt: it has no 'model' section")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ModelDirError(f"{path}: unknown config keys: {', '.join(unknown)}")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{path}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(data["model"])
    except ConfigError as e:
        raise ModelDirError(f"{path}: {e}") from None
    tokenizers = data.setdefault("tokenizers", JOINT_TOKENIZER)
    if not (isinstance(tokenizers, dict) and all(isinstance(tokenizers.get(k), str) for k in ("source", "target"))):
        raise ModelDirError(f"{path}: 'tokenizers' must be an object with 'source' and 'target' folders")
    if not isinstance(data.get("pair"), (str, type(None))):
        raise ModelDirError(f"{path}: 'pair' must be a string such as \"en-fr\"")
    if data.setdefault("precision", "fp32") not in SAVED_PRECISIONS:
        raise ModelDirError(f"{path}: 'precision' must be one of {', '.join(SAVED_PRECISIONS)}")
    return config, data


def _load_weights(model: nn.Module, directory: Path, device) -> None:
    """`model.safetensors` into `model`, with one line for each way it can be missing or wrong."""
    weights = directory / WEIGHTS_FILE
    if not weights.is_file() and (directory / RUN_MARKER).is_file():
        raise ModelDirError(f"{directory} is a run that has not validated yet, so it has no model: continue it with "
                            f"`mt train --out {directory} --resume` (or start it again)")
    if not weights.is_file():
        raise ModelDirError(f"{weights} is missing; the model directory is incomplete")
    if not os.access(weights, os.R_OK):
        raise ModelDirError(f"{weights}: permission denied: ask its owner to make it readable (chmod a+r)")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "size mismatch" in str(e) or "shape" in reason.lower():
            raise ModelDirError(f"{weights} does not match {CONFIG_FILE} (tensor shapes differ: {reason[:150]})") from None
        raise ModelDirError(f"{weights} is corrupt ({reason[:200]}); re-save or retrain the model") from None
    if missing or unexpected:
        raise ModelDirError(
            f"{weights} does not match {CONFIG_FILE}: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
        )


def _load_tokenizer(directory: Path, relative: str) -> Tokenizer:
    try:
        return load_tokenizer(directory / relative)
    except TokenizerError as e:
        raise ModelDirError(f"{e}; the model directory {directory} is incomplete") from None


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu", task: str | None = None,
                    pair: str | None = None, weights: bool = True) -> LoadedModel:
    """Load a model directory written by `save_pretrained`, checking it is whole and consistent,
    and, when given, that it is a model of this `task` ("mt" or "lm") and language `pair`.
    `weights=False`: config and tokenizers, with a freshly initialised model (to resume or average)."""
    directory = Path(directory)
    config, data = read_config(directory)
    if task is not None and config.task != task:
        raise ModelDirError(f"{directory} holds a {TASK_NAMES[config.task]}, not a {TASK_NAMES[task]}: "
                            f"use `{USE_COMMAND[config.task]} --model {directory}`")
    if pair and data.get("pair") and data["pair"] != pair:
        raise ModelDirError(f"{directory} translates {data['pair']}, not {pair}: "
                            f"train one with `mt train --pair {pair}` or pass --model DIR")
    paths = data["tokenizers"]  # checked by read_config
    tgt_tokenizer = _load_tokenizer(directory, paths["target"])
    joint = paths["source"] == paths["target"]
    src_tokenizer = tgt_tokenizer if joint else _load_tokenizer(directory, paths["source"])
    for name, tok, size in (("target", tgt_tokenizer, config.vocab_size),
                            ("source", src_tokenizer, config.src_vocab_size or config.vocab_size)):
        if tok.vocab_size != size:
            raise ModelDirError(
                f"{directory}: the {name} tokenizer has {tok.vocab_size} entries but the model expects {size}"
            )

    int8 = data["precision"] == "int8"
    if int8 and torch.device(device).type != "cpu":
        raise ConfigError(f"{directory} is an int8 model (made by `mt quantize`), which runs on CPU only: "
                          "use --device cpu, or the float32 model it was made from")
    try:
        model = build_model(config)  # (refused before allocating if it cannot fit)
    except ConfigError as e:
        raise ModelDirError(f"{directory / CONFIG_FILE}: {e}") from None
    if int8:
        from machine_translation.precision import quantize_int8
        quantize_int8(model)  # the int8 layers the file holds
    if weights:
        _load_weights(model, directory, device)
    model.to(device).eval()

    generation = {}
    if (directory / GENERATION_FILE).is_file():
        generation = read_json(directory / GENERATION_FILE, ModelDirError, "generation config")
        if not isinstance(generation, dict):
            raise ModelDirError(f"{directory / GENERATION_FILE} must hold a JSON object of search settings; "
                                "correct or delete the file")
    return LoadedModel(model, config, src_tokenizer, tgt_tokenizer, data.get("pair"), generation, directory,
                       data["precision"])


# -- training checkpoints ----------------------------------------------------------------
# Under the run directory: checkpoints/step-00000500/{model.safetensors, training_state.pt}
# and checkpoints/latest naming the newest. A checkpoint directory is written under a
# temporary name, flushed and renamed into place before `latest` moves (atomically), so a
# crash at any instant leaves the previous checkpoint whole.

CHECKPOINT_DIR = "checkpoints"
TRAINING_STATE_FILE = "training_state.pt"
LATEST_FILE = "latest"
INTERRUPTED_FILE = "interrupted"  # in a checkpoint saved when a signal stopped the run between periodic saves


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
    import shutil

    root = Path(run_dir) / CHECKPOINT_DIR
    final = root / f"step-{step:08d}"
    with atomic_directory(final, replace=True) as tmp:  # the same step saved again (a resumed run) is swapped
        save_weights(model, tmp / WEIGHTS_FILE)
        with atomic_path(tmp / TRAINING_STATE_FILE) as path, open(path, "wb") as f:
            torch.save(training, f)
        if interrupted:
            (tmp / INTERRUPTED_FILE).touch()
    write_atomic(root / LATEST_FILE, final.name.encode())
    periodic = checkpoint_dirs(run_dir, periodic_only=True)
    stale = periodic[:-keep_last] + [p for p in checkpoint_dirs(run_dir) if p not in periodic and p.name < final.name]
    for path in stale:
        if path != final:
            shutil.rmtree(path, ignore_errors=True)  # (a step-* directory of mt's own checkpoints)
    return final


TRAINING_KEYS = ("state", "optimizer", "rng", "train_config", "model_config")


def _load_checkpoint(path: Path, model: nn.Module, device) -> dict:
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
    missing, unexpected = load_model(model, str(path / WEIGHTS_FILE), strict=False, device=str(device))
    if missing or unexpected:
        raise ValueError(f"weights do not match the model (missing {sorted(missing)[:2]})")
    return training


def unfused_attention(checkpoint: Path) -> bool:
    """Whether a checkpoint's weights predate the fused self-attention projection (`qkv_proj`).
    Its weights still load (mapped by the attention module); its optimizer state does not fit."""
    from safetensors import safe_open

    with safe_open(str(checkpoint / WEIGHTS_FILE), framework="pt") as f:
        return any(k.endswith("self_attn.q_proj.weight") for k in f.keys())


def load_training_checkpoint(run_dir: Path, model: nn.Module, device="cpu") -> tuple[Path, dict]:
    """Load the latest valid checkpoint into `model`; a corrupt one is reported and the
    newest valid older one is used instead. Returns its path and the training state."""
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
            training = _load_checkpoint(path, model, device)
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
    """Load the mean of the weights of `checkpoints` (directories) into `model`."""
    from safetensors.torch import load_file

    total: dict[str, torch.Tensor] = {}
    for path in checkpoints:
        try:
            weights = load_file(str(path / WEIGHTS_FILE))
        except (SafetensorError, OSError) as e:
            raise ModelDirError(f"{path / WEIGHTS_FILE} is corrupt ({e}); average fewer checkpoints") from None
        for name, tensor in weights.items():
            total[name] = total.get(name, 0) + tensor.double()
    device = next(model.parameters()).device
    averaged = {name: (t / len(checkpoints)).float().to(device) for name, t in total.items()}
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    if set(missing) - set(tied_aliases(model)) or unexpected:
        raise ModelDirError(f"the checkpoints in {checkpoints[0].parent} do not match the model's config.json")
