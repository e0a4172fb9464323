"""`mt detect`: the language of each line (or argument), with its confidence."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from machine_translation.cli.app import app, cli_errors
from machine_translation.cli.translate import read_input_lines


@app.command()
@cli_errors
def detect(
    text: list[str] = typer.Argument(None, help="Texts to identify; `-` reads stdin (one per line)."),
    input_file: Optional[Path] = typer.Option(None, "--input", "-i", help="Read lines from FILE (`-`: stdin)."),
    top: int = typer.Option(1, min=1, help="Print the N likeliest languages of each line."),
    among: Optional[str] = typer.Option(None, help="Only these languages, comma-separated ISO 639-1 codes "
                                        "(e.g. en,fr,de)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON list per line: [{language, confidence}, ...]."),
) -> None:
    """Detect the language of each line: `CODE<TAB>CONFIDENCE` (0-1) per line, in order."""
    from machine_translation.text.detect import detect as detect_language

    languages = tuple(code.strip() for code in among.split(",") if code.strip()) if among else None
    for line in read_input_lines(text or [], input_file):
        guesses = detect_language(line, languages, top) if line.strip() else []
        if json_out:
            typer.echo(json.dumps([{"language": g.language, "confidence": g.confidence} for g in guesses]))
        else:
            typer.echo("\t".join(f"{g.language}\t{g.confidence:.4f}" for g in guesses))
