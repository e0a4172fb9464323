"""Model directories made from others: the average of a run's last checkpoints (`mt
average-checkpoints`) and an int8 copy of a translation model (`mt quantize`).

Both follow the one rule for directory-writing commands (`outputs`): the new directory is
built whole beside `--out` and renamed into place, and `--overwrite` replaces only a
directory mt wrote, never the input.
"""
from __future__ import annotations

from pathlib import Path

from machine_translation.checkpoint import (
    CHECKPOINT_DIR, LoadedModel, checkpoint_dirs, load_average, load_pretrained, save_pretrained,
)
from machine_translation.errors import ConfigError, ModelDirError
from machine_translation.files import atomic_directory
from machine_translation.outputs import check_out_dir, refuse_if_running


def average_checkpoints(run_dir: Path, last: int, out: Path, overwrite: bool = False) -> list[Path]:
    """Average the weights of the run's last `last` checkpoints into a new model directory
    `out` (config and tokenizer copied from the run). Returns the checkpoints averaged."""
    run_dir, out = Path(run_dir), Path(out)
    replace = check_out_dir(out, overwrite, [run_dir])
    refuse_if_running(run_dir)  # its checkpoints are still being written
    loaded = load_pretrained(run_dir, weights=False)  # the config, tokenizer and a model to hold the average
    if loaded.precision == "int8":
        raise ModelDirError(f"{run_dir} is an int8 model (made by `mt quantize`), not a run: average the checkpoints "
                            "of the run it was made from, then quantize the average")
    chosen = checkpoint_dirs(run_dir, periodic_only=True)[-last:]
    if len(chosen) < last:
        raise ModelDirError(f"{run_dir / CHECKPOINT_DIR} has {len(chosen)} checkpoints, fewer than --last {last}")
    load_average(loaded.model, chosen)
    with atomic_directory(out, replace) as tmp:
        save_pretrained(tmp, loaded.model, loaded.config, loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.pair,
                        loaded.generation)
    return chosen


def quantize_directory(model_dir: Path, out: Path, precision: str = "int8", overwrite: bool = False) -> LoadedModel:
    """Write the translation model of `model_dir` as a new int8 model directory `out`
    (tokenizers, config and search settings copied). Returns the loaded source model."""
    model_dir, out = Path(model_dir), Path(out)
    if precision != "int8":
        raise ConfigError(f"--precision {precision!r}: mt quantize writes int8 (bf16 needs no new directory: "
                          "translate with --precision bf16)")
    replace = check_out_dir(out, overwrite, [model_dir])
    loaded = load_pretrained(model_dir)
    if loaded.config.task != "mt":
        raise ModelDirError(f"{model_dir} holds a language model: int8 is for translation models "
                            "(`mt generate` runs language models in float32)")
    if loaded.precision == "int8":
        raise ModelDirError(f"{model_dir} is already int8: quantize the float32 model it was made from")
    with atomic_directory(out, replace) as tmp:
        save_pretrained(tmp, loaded.model, loaded.config, loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.pair,
                        loaded.generation, precision="int8")
    return loaded
