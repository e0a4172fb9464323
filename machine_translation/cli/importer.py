"""`mt import`: an OPUS-MT / Marian model (a local Hugging Face directory or hf:ORG/NAME) as
an mt model directory (`machine_translation.interchange.marian`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from machine_translation.cli.app import app, cli_errors


@app.command("import")
@cli_errors
def import_model(
    source: str = typer.Argument(..., help="A Marian model directory (MarianMTModel format) or hf:ORG/NAME[@REVISION]."),
    out: Path = typer.Option(..., help="New model directory."),
    pair: Optional[str] = typer.Option(None, help="Language pair SRC-TGT (default: from the model's name, such as "
                                       "opus-mt-en-fr); picks a multilingual model's target token."),
    overwrite: bool = typer.Option(False, help="Replace --out if it holds a model directory mt wrote (only once the "
                                   "new one is complete)."),
) -> None:
    """Import a pretrained OPUS-MT / Marian translation model."""
    from machine_translation.interchange.marian import import_marian
    imported = import_marian(source, out, pair, overwrite)
    for note in imported.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"imported {source} ({imported.parameters / 1e6:.1f}M parameters, {imported.pair}) into {out}")
