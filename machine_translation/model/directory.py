"""Self-contained model directories: `save_pretrained` / `load_pretrained`.

A model directory holds everything needed to translate or generate, with relative paths:
`config.json` (format version, model config, language pair, the precision the weights are
stored in), `model.safetensors` (loaded without executing code), `generation_config.json`,
and the tokenizer files. Every file is replaced atomically, so a crash leaves the previous
version, never half a file. Directories of earlier formats are upgraded on load by `compat`;
what a stored precision means for the layers is `inference.precision`'s (`layers`).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from machine_translation.base.errors import ConfigError, ModelDirError
from machine_translation.base.files import atomic_path, read_json, write_json
from machine_translation.model import compat
from machine_translation.model.transformer import ModelConfig, build_model
from mt_tokenizers import Tokenizer, TokenizerError, load_tokenizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = compat.FORMAT_VERSION
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RUN_MARKER = ".mt-run"  # in a run directory from its start; `mt train` holds its lock while it writes
GENERATION_FILE = "generation_config.json"
TOP_KEYS = {"format_version", "model", "pair", "tokenizers", "mt_version", "precision"}
SAVED_PRECISIONS = ("fp32", "int8")  # config.json's "precision"; int8 is written by `mt quantize`
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
    """Write a loadable model directory of `model`, whose weights are stored in `precision`
    ("fp32", or "int8": a model whose linear layers `mt quantize` made int8). Weights go last,
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
        "tokenizers": tokenizers, "model": config.to_dict(), "precision": precision,
    })
    write_json(directory / GENERATION_FILE, generation or {})
    if weights:  # (a new run has none until its first validation)
        save_weights(model, directory / WEIGHTS_FILE)
    return directory


def read_config(directory: str | Path) -> tuple[ModelConfig, dict]:
    """Parse and check `config.json` (upgraded to the current format): the model config and
    the top-level entries."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise ModelDirError(f"no model directory at {directory}: train one with `mt train` or pass --model DIR")
    if not path.is_file():
        raise ModelDirError(f"{directory} is not a model directory: {CONFIG_FILE} is missing")
    data = read_json(path, ModelDirError, "model config")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelDirError(f"{path} is corrupt: it has no 'model' section")
    data = compat.migrate_config(data)
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ModelDirError(f"{path}: unknown config keys: {', '.join(unknown)}")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{path}: format_version {data.get('format_version')!r} is not one this mt reads "
                            f"({', '.join(map(str, compat.FORMATS_READ))}): use a newer mt")
    missing = sorted({f.name for f in fields(ModelConfig)} - set(data["model"]))
    if missing:
        raise ModelDirError(f"{path}: model config key {missing[0]!r} is missing")
    try:
        config = ModelConfig.from_dict(data["model"])
    except ConfigError as e:
        raise ModelDirError(f"{path}: {e}") from None
    tokenizers = data.get("tokenizers")
    if not (isinstance(tokenizers, dict) and all(isinstance(tokenizers.get(k), str) for k in ("source", "target"))):
        raise ModelDirError(f"{path}: 'tokenizers' must be an object with 'source' and 'target' folders")
    if not isinstance(data.get("pair"), (str, type(None))):
        raise ModelDirError(f"{path}: 'pair' must be a string such as \"en-fr\"")
    if data.get("precision") not in SAVED_PRECISIONS:
        raise ModelDirError(f"{path}: 'precision' must be one of {', '.join(SAVED_PRECISIONS)}")
    return config, data


def stored_precision(directory: str | Path) -> str:
    """The precision `directory`'s weights are stored in ("fp32", or "int8" from `mt quantize`)."""
    return read_config(directory)[1]["precision"]


def load_weights(model: nn.Module, path: Path, device="cpu") -> None:
    """A weights file of any format into `model` (names upgraded by `compat`); raises
    ValueError saying what does not match, SafetensorError/OSError for a damaged file."""
    tensors = compat.migrate_state_dict(load_file(str(path), device=str(device)))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = sorted(set(missing) - set(tied_aliases(model)))
    if missing or unexpected:
        raise ValueError(f"missing {missing[:3]}, unexpected {sorted(unexpected)[:3]}")


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
        load_weights(model, weights, device)
    except (SafetensorError, OSError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "size mismatch" in str(e) or "shape" in reason.lower():
            raise ModelDirError(f"{weights} does not match {CONFIG_FILE} (tensor shapes differ: {reason[:150]})") from None
        raise ModelDirError(f"{weights} is corrupt ({reason[:200]}); re-save or retrain the model") from None
    except ValueError as e:
        raise ModelDirError(f"{weights} does not match {CONFIG_FILE}: {e}") from None


def _load_tokenizer(directory: Path, relative: str) -> Tokenizer:
    try:
        return load_tokenizer(directory / relative)
    except TokenizerError as e:
        raise ModelDirError(f"{e}; the model directory {directory} is incomplete") from None


Layers = Callable[[nn.Module, str], None]  # (a freshly built model, the stored precision): its layers made to match


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu", task: str | None = None,
                    pair: str | None = None, weights: bool = True, layers: Layers | None = None) -> LoadedModel:
    """Load a model directory written by `save_pretrained` (of any format this mt reads),
    checking it is whole and consistent, and, when given, that it is a model of this `task`
    ("mt" or "lm") and language `pair`. `weights=False`: config and tokenizers, with a freshly
    initialised model (to resume or average). A directory stored in int8 needs `layers`
    (`inference.precision.stored_layers`): only translation can use it."""
    directory = Path(directory)
    config, data = read_config(directory)
    if task is not None and config.task != task:
        raise ModelDirError(f"{directory} holds a {TASK_NAMES[config.task]}, not a {TASK_NAMES[task]}: "
                            f"use `{USE_COMMAND[config.task]} --model {directory}`")
    if pair and data.get("pair") and data["pair"] != pair:
        raise ModelDirError(f"{directory} translates {data['pair']}, not {pair}: "
                            f"train one with `mt train --pair {pair}` or pass --model DIR")
    if data["precision"] != "fp32" and layers is None:
        raise ConfigError(f"{directory} is an {data['precision']} model (made by `mt quantize`), which only "
                          "translates: use the float32 model or run it was made from")
    src_tokenizer, tgt_tokenizer = _load_tokenizers(directory, data["tokenizers"], config)
    try:
        model = build_model(config)  # (refused before allocating if it cannot fit)
    except ConfigError as e:
        raise ModelDirError(f"{directory / CONFIG_FILE}: {e}") from None
    if layers is not None:
        layers(model, data["precision"])
    if weights:
        _load_weights(model, directory, device)
    model.to(device).eval()
    return LoadedModel(model, config, src_tokenizer, tgt_tokenizer, data.get("pair"), _read_generation(directory),
                       directory, data["precision"])


def _load_tokenizers(directory: Path, paths: dict, config: ModelConfig) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers, one object twice for a joint vocabulary, checked against the model's sizes."""
    tgt_tokenizer = _load_tokenizer(directory, paths["target"])
    joint = paths["source"] == paths["target"]
    src_tokenizer = tgt_tokenizer if joint else _load_tokenizer(directory, paths["source"])
    for name, tok, size in (("target", tgt_tokenizer, config.vocab_size),
                            ("source", src_tokenizer, config.src_vocab_size or config.vocab_size)):
        if tok.vocab_size != size:
            raise ModelDirError(
                f"{directory}: the {name} tokenizer has {tok.vocab_size} entries but the model expects {size}"
            )
    return src_tokenizer, tgt_tokenizer


def _read_generation(directory: Path) -> dict:
    """generation_config.json's search settings ({} when absent)."""
    if not (directory / GENERATION_FILE).is_file():
        return {}
    generation = read_json(directory / GENERATION_FILE, ModelDirError, "generation config")
    if not isinstance(generation, dict):
        raise ModelDirError(f"{directory / GENERATION_FILE} must hold a JSON object of search settings; "
                            "correct or delete the file")
    return generation
