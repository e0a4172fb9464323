"""The typer app of `mt` and its error handling: flags are parsed at the edge, results go to
stdout, progress, logs and one-line errors to stderr. Exit codes: 0 success, 2 a user error
(bad flag, file or input), 130 an interruption (Ctrl+C, SIGTERM)."""
from __future__ import annotations

import functools
import logging
import sys

import typer

from machine_translation import __version__
from machine_translation.errors import Interrupted, MTError
from mt_tokenizers import TokenizerError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="mt: train, run and score Transformer translation and language models.")

EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130


def cli_errors(fn):
    """User errors become one line on stderr and a non-zero exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
        try:
            return fn(*args, **kwargs)
        except (MTError, TokenizerError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except Interrupted as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mt {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """mt: an encoder-decoder Transformer toolkit."""


def main() -> None:
    app()
