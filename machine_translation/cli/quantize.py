"""`mt quantize`: a translation model directory as a new, int8 one (smaller, faster on CPU)."""
from __future__ import annotations

from pathlib import Path

import typer

from machine_translation.cli.app import app, cli_errors


@app.command()
@cli_errors
def quantize(
    model: Path = typer.Option(..., "--model", "-m", help="Translation model directory (float32)."),
    out: Path = typer.Option(..., help="New model directory for the quantized model."),
    precision: str = typer.Option("int8", help="int8: the linear layers in int8 with per-channel scales."),
    overwrite: bool = typer.Option(False, help="Replace --out if it holds a model directory mt wrote (only once the "
                                   "new one is complete)."),
) -> None:
    """Save a translation model with int8 linear layers; `mt translate --model OUT` runs it on CPU."""
    from machine_translation.model.directory import WEIGHTS_FILE
    from machine_translation.inference.precision import quantize_directory
    quantize_directory(model, out, precision, overwrite)
    sizes = [(d / WEIGHTS_FILE).stat().st_size / 2**20 for d in (model, out)]
    typer.echo(f"wrote the int8 model {out} ({sizes[1]:.1f} MiB of weights, from {sizes[0]:.1f} MiB)")
