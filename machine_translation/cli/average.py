"""`mt average-checkpoints`: the mean of a run's last K checkpoints as a new model directory."""
from __future__ import annotations

from pathlib import Path

import typer

from machine_translation.cli.app import app, cli_errors


@app.command("average-checkpoints")
@cli_errors
def average_checkpoints(
    model: Path = typer.Option(..., "--model", "-m", help="Run directory whose checkpoints to average."),
    last: int = typer.Option(5, min=1, help="Average the last K checkpoints."),
    out: Path = typer.Option(..., help="New model directory for the averaged weights."),
    overwrite: bool = typer.Option(False, help="Replace --out if it holds a model directory mt wrote (only once the "
                                   "new one is complete)."),
) -> None:
    """Average the weights of the last K training checkpoints into a new model directory."""
    from machine_translation.training.averaging import average_checkpoints as average
    chosen = average(model, last, out, overwrite)
    typer.echo(f"averaged {len(chosen)} checkpoints ({chosen[0].name} .. {chosen[-1].name}) into {out}")
