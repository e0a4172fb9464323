"""The `mt` command line (typer). Parses flags, calls the library, prints results to stdout
and one-line errors to stderr. The only module that prints or chooses exit codes."""
from __future__ import annotations

import logging
import sys

import typer

from machine_translation import __version__
from machine_translation.errors import MTError
from mt_tokenizers import TokenizerError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mt: train, run and score Transformer translation and language models.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mt {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """mt: an encoder-decoder Transformer toolkit."""


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        app(standalone_mode=True)
    except (MTError, TokenizerError) as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
