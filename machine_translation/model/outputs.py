"""Where mt may write a directory: the one rule for every command that writes one (`mt train
--out`, `mt quantize`, `mt average-checkpoints`, ...), and the lock that gives a run one writer.

`--out` must be absent or empty unless `--overwrite` is given; `--overwrite` replaces only a
directory mt wrote (a run, marked `RUN_MARKER`, or a model directory whose `config.json`
carries mt's format version), never the working directory or one of its parents, the home
folder, a directory holding an input of the command, or a run another process is writing.
Anything else is one line naming the directory and the way out; nothing is touched. The
writing itself (whole or nothing) is `files.atomic_directory`'s.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from machine_translation.model.directory import CONFIG_FILE, FORMAT_VERSION, RUN_MARKER
from machine_translation.base.errors import ConfigError
from machine_translation.base.files import DirLock, Locked


EXPORT_MARKER = "mt_export.json"  # what `mt export` wrote into a directory of another engine's format


def written_by_mt(directory: Path) -> bool:
    """A run (its marker), an export (`mt export`'s record) or a model directory whose
    config.json has mt's format version."""
    if (directory / RUN_MARKER).is_file() or (directory / EXPORT_MARKER).is_file():
        return True
    try:
        data = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    version = data.get("format_version") if isinstance(data, dict) else None
    return isinstance(version, int) and 1 <= version <= FORMAT_VERSION and isinstance(data.get("model"), dict)


def is_empty_or_absent(directory: Path) -> bool:
    return not directory.exists() or (directory.is_dir() and not any(directory.iterdir()))


def check_place(out: Path, inputs: Iterable[Path | None] = (), flag: str = "--out") -> None:
    """What no command may write into, --overwrite or not: the working directory, its parents,
    the home folder, a file, or a directory that holds one of the command's inputs."""
    where = Path(out).resolve()
    here = Path.cwd().resolve()
    if where == here or where in here.parents or where == Path.home().resolve():
        raise ConfigError(f"{flag} {str(out)!r} is the working directory, one of its parents or the home folder: "
                          "name a new directory for the output")
    if where.exists() and not where.is_dir():
        raise ConfigError(f"{flag} {out} is a file: choose a directory")
    for given in inputs:
        if given is not None and (where == Path(given).resolve() or where in Path(given).resolve().parents):
            raise ConfigError(f"{flag} {out} holds {given}, an input of this command: choose another directory")


def check_out_dir(out: Path, overwrite: bool, inputs: Iterable[Path | None] = (), flag: str = "--out") -> bool:
    """Check that `out` may be written (the module's rule); True if it holds a directory that
    `--overwrite` will replace once the new one is complete."""
    out = Path(out)
    check_place(out, inputs, flag)
    if is_empty_or_absent(out):
        return False
    refuse_if_running(out)
    if not overwrite:
        raise ConfigError(f"{flag} {out} is not empty: choose a new directory (or --overwrite to replace a "
                          "directory mt wrote)")
    if not written_by_mt(out):
        raise ConfigError(f"{flag} {out} holds files mt did not write: --overwrite replaces only a run or model "
                          "directory of mt's; choose a new directory")
    return True


def refuse_if_running(directory: Path) -> None:
    """A run that a live `mt train` is writing is refused, naming its PID."""
    pid = DirLock(directory, RUN_MARKER).held_by_another()
    if pid is not None:
        raise ConfigError(_running(directory, pid))


def lock_run(directory: Path) -> DirLock:
    """Take the run's lock (held until the process ends); refused if another process holds it."""
    try:
        return DirLock(directory, RUN_MARKER).acquire()
    except Locked as e:
        raise ConfigError(_running(directory, e.pid)) from None


def _running(directory: Path, pid: int | None) -> str:
    who = f"PID {pid}" if pid and pid > 0 else "another process"
    return (f"{directory} is being written by a running mt train ({who}): wait for it to finish or stop it, "
            "or choose another directory")
