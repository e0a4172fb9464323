"""The typer app of `mt` and its error handling: flags are parsed at the edge, results go to
stdout, progress, logs and one-line errors to stderr. Exit codes: 0 success, 1 a bug in mt
(one line naming the file that holds the traceback), 2 a user error (bad flag, file, input,
or a file that cannot be written), 130 Ctrl+C (SIGINT) and 143 SIGTERM: after one line on
stderr, `main` ends the process by the signal itself (default handler), so shells see 130/143
and service managers a clean stop."""
from __future__ import annotations

import datetime
import errno
import functools
import logging
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

import typer
from typer.core import TyperGroup

from machine_translation import __version__
from machine_translation.base.errors import ConfigError, Interrupted, MTError, Terminated, out_of_memory
from mt_tokenizers import TokenizerError

EXIT_BUG, EXIT_USER_ERROR, EXIT_INTERRUPTED = 1, 2, 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
# click's exception classes, as the installed typer uses them (recent typer versions vendor
# their own copy of click, so `import click` would name other classes).
UsageError = typer.BadParameter.__mro__[1]
ClickException = UsageError.__mro__[1]
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class OneLineErrors(TyperGroup):
    """A flag error (`--beam 0`, an unknown option) is one line plus the --help hint, exit 2,
    like every other user error, instead of click's framed usage box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as e:
            command = e.ctx.command_path if getattr(e, "ctx", None) else "mt"
            if e.format_message():  # (no message: `mt` alone, which has printed its help)
                typer.echo(f"error: {e.format_message()} (see `{command} --help`)", err=True)
            rv = EXIT_USER_ERROR if isinstance(e, UsageError) else e.exit_code
        except typer.Abort:
            typer.echo("interrupted", err=True)
            rv = EXIT_INTERRUPTED
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="mt: train, run and score Transformer translation and language models.")


def os_error_message(e: OSError) -> str:
    """One line for a file the user named that cannot be read or written."""
    where = f" {e.filename}" if e.filename else ""
    if e.errno in DISK_FULL:
        return f"disk full while writing{where} ({e.strerror}): free some space and run again"
    return f"cannot use{where}: {e.strerror or e}"


def report_bug(e: BaseException) -> str:
    """Write the traceback of an unexpected error to a log file; the one line naming it."""
    log_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mt" / "crashes"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        log_dir = Path(tempfile.gettempdir())
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = log_dir / f"mt-crash-{stamp}-{os.getpid()}.log"
    path.write_text(f"mt {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(e)), encoding="utf-8")
    return f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} -- this is a bug " \
           f"in mt; please report it with the traceback in {path}"


class ProgressAwareHandler(logging.StreamHandler):
    """Log records as lines on stderr, written around a tqdm progress bar (`tqdm.write`)
    rather than through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001  (logging's own rule: a handler never raises)
            self.handleError(record)


def is_user_error(e: BaseException) -> bool:
    """Exit 2: mt's typed errors (`MTError`: bad flags, files, inputs, out of memory, a full
    disk), the tokenizer package's, and an OSError on a path (a file the user named that cannot
    be read or written). Anything else is a bug in mt, reported with its traceback."""
    if isinstance(e, (MTError, TokenizerError)):
        return True
    return isinstance(e, OSError) and (e.filename is not None or e.errno in DISK_FULL)


def cli_errors(fn):
    """User errors become one line on stderr and a non-zero exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[ProgressAwareHandler()], force=True)
        for chatty in ("httpx", "httpx2", "httpcore", "huggingface_hub"):  # a line per HTTP request is not progress
            logging.getLogger(chatty).setLevel(logging.WARNING)
        previous = _raise_on_sigterm()
        try:
            if sys.stdout is None and kwargs.get("output") is None:  # `mt translate 'a dog' >&-`
                raise ConfigError("standard output is closed: redirect it (> FILE) or give --output FILE")
            return fn(*args, **kwargs)
        except (MTError, TokenizerError) as e:
            _last_line(f"error: {e}")
            raise typer.Exit(EXIT_USER_ERROR) from None
        except Interrupted as e:
            _last_line(str(e), logging.INFO)
            raise typer.Exit(128 + e.signum) from None
        except KeyboardInterrupt as e:
            terminated = isinstance(e, Terminated)
            _last_line("terminated (SIGTERM)" if terminated else "interrupted", logging.INFO)
            raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None
        except OSError as e:  # a path the user gave: missing folder, a file in the way, read-only, disk full
            if not is_user_error(e):
                _last_line(report_bug(e))
                raise typer.Exit(EXIT_BUG) from None
            _last_line(f"error: {os_error_message(e)}")
            raise typer.Exit(EXIT_USER_ERROR) from None
        except (typer.Exit, ClickException, typer.Abort):
            raise
        except Exception as e:  # a bug: one line, the traceback in a file (out of memory is not one)
            oom = out_of_memory(e)
            _last_line(f"error: {oom}" if oom else report_bug(e))
            raise typer.Exit(EXIT_USER_ERROR if oom else EXIT_BUG) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _last_line(message: str, level: int = logging.ERROR) -> None:
    """A command's closing line on stderr (an error; "interrupted" at INFO: a stop asked for),
    written by the log handler like every other line, so `mt serve --log-format json` keeps
    every line JSON."""
    logging.getLogger("machine_translation.cli").log(level, message)


def _terminate(signum, frame):
    raise Terminated


def _raise_on_sigterm():
    """SIGTERM unwinds like Ctrl+C (`Terminated`); returns the handler to restore (None off the
    main thread, where handlers cannot be set)."""
    try:
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:
        return None


def end_by_signal(code: int) -> None:
    """For exit codes 130/143: flush, restore the signal's default handler and send it to this
    process, so its parent sees it ended by the signal (a shell prints 130/143)."""
    signum = code - 128
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mt {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """mt: an encoder-decoder Transformer toolkit."""


def main() -> None:
    try:
        app()
    except SystemExit as e:
        if e.code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            end_by_signal(e.code)
        raise
