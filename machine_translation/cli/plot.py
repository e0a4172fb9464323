"""`mt plot`: the training curve of a run directory as a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from machine_translation.cli.app import app, cli_errors


@app.command()
@cli_errors
def plot(
    run: Path = typer.Argument(..., help="Run directory (`mt train --out`)."),
    out: Optional[Path] = typer.Option(None, help="PNG to write (default: RUN/training_curve.png)."),
) -> None:
    """Draw a run's training and validation loss, and validation BLEU, against the step."""
    from machine_translation.training.plot import plot_run
    typer.echo(str(plot_run(run, out)))
