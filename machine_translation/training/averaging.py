"""`mt average-checkpoints`: the mean of a run's last checkpoints as a new model directory.

It follows the one rule for directory-writing commands (`outputs`): the new directory is
built whole beside `--out` and renamed into place, and `--overwrite` replaces only a
directory mt wrote, never the input. (The other derived directory, an int8 copy made by `mt
quantize`, is precision's: `inference.precision.quantize_directory`.)
"""
from __future__ import annotations

from pathlib import Path

from machine_translation.base.errors import ModelDirError
from machine_translation.base.files import atomic_directory
from machine_translation.model.directory import load_pretrained, save_pretrained
from machine_translation.model.outputs import check_out_dir, refuse_if_running
from machine_translation.training.checkpoints import CHECKPOINT_DIR, checkpoint_dirs, load_average


def average_checkpoints(run_dir: Path, last: int, out: Path, overwrite: bool = False) -> list[Path]:
    """Average the weights of the run's last `last` checkpoints into a new model directory
    `out` (config and tokenizer copied from the run). Returns the checkpoints averaged."""
    run_dir, out = Path(run_dir), Path(out)
    replace = check_out_dir(out, overwrite, [run_dir])
    refuse_if_running(run_dir)  # its checkpoints are still being written
    loaded = load_pretrained(run_dir, weights=False)  # the config, tokenizer and a model to hold the average
    chosen = checkpoint_dirs(run_dir, periodic_only=True)[-last:]
    if len(chosen) < last:
        raise ModelDirError(f"{run_dir / CHECKPOINT_DIR} has {len(chosen)} checkpoints, fewer than --last {last}")
    load_average(loaded.model, chosen)
    with atomic_directory(out, replace) as tmp:
        save_pretrained(tmp, loaded.model, loaded.config, loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.pair,
                        loaded.generation)
    return chosen
