"""`mt export`: a translation model out of mt, into another engine's format
(`machine_translation.interchange.export`)."""
from __future__ import annotations

from pathlib import Path

import typer

from machine_translation.cli.app import app, cli_errors


@app.command("export")
@cli_errors
def export_model(
    model: Path = typer.Argument(..., help="The mt model directory to export."),
    to: str = typer.Option(..., "--to", help="ctranslate2: a CTranslate2 model directory (pip install "
                           "'mt[ctranslate2]'); argos: an Argos Translate / LibreTranslate package, a .argosmodel "
                           "file (pip install 'mt[argos]'); hf: a Hugging Face MarianMTModel directory "
                           "(transformers, ONNX, Optimum)."),
    out: Path = typer.Option(..., help="New directory (a new .argosmodel file for --to argos)."),
    precision: str = typer.Option("fp32", help="fp32, bf16, fp16 (or int8, ctranslate2 and argos only): the stored "
                                  "weights."),
    overwrite: bool = typer.Option(False, help="Replace --out if it holds what mt wrote (only once the new one is "
                                   "complete)."),
) -> None:
    """Export a translation model for another engine, saying what it keeps and what it cannot."""
    from machine_translation.interchange.export import export
    exported = export(model, to, out, precision, overwrite)
    for line in exported.not_kept:
        typer.echo(f"note: not kept: {line}", err=True)
    typer.echo(f"exported {model} to {to} in {exported.out}")
