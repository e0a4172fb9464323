"""Typed errors a user can cause. Each message is one line naming the thing and the fix;
the CLI prints it without a traceback and exits non-zero."""
import math
import re
import signal


class MTError(Exception):
    """Base class: an error caused by the user's input, files or flags."""


class ConfigError(MTError, ValueError):
    """A config file, an option or a combination of flags is invalid (raised by the option
    objects themselves; a ValueError too, as Python callers of a bad argument expect)."""


class ModelDirError(MTError):
    """A model directory is missing, incomplete, corrupt, or for another task or pair."""


class DataError(MTError):
    """A corpus is missing, misaligned, not UTF-8, or otherwise unusable."""


class TrainingError(MTError):
    """Training cannot go on (the loss keeps being non-finite, a run resumed with other settings)."""


class OutOfMemory(MTError):
    """Something did not fit in memory; the message names its size and what to lower."""


ALLOCATOR_WORDS = re.compile(r"not enough memory|out of memory|DefaultCPUAllocator|can't allocate memory", re.I)


def out_of_memory(e: BaseException) -> OutOfMemory | None:
    """The typed error for a MemoryError or an allocator's RuntimeError (CPU, CUDA, mps), else None."""
    if not (isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and ALLOCATOR_WORDS.search(str(e)))):
        return None
    tried = re.search(r"allocate (\d+) bytes", str(e)) or re.search(r"allocate ([\d.]+ [KMGT]i?B)", str(e))
    size = ""
    if tried:
        size = tried.group(1)
        size = f" (an allocation of {int(size) / 2**30:.1f} GiB)" if size.isdigit() else f" (an allocation of {size})"
    return OutOfMemory(f"out of memory{size}: lower --batch-size or --batch-tokens, use a smaller model, or free "
                       "memory")


def check_finite(name: str, value: float, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """Raise ConfigError naming the option (as its flag, `--length-penalty`) unless `value` is a
    finite number within the bounds."""
    flag = "--" + name.replace("_", "-")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        parts = [f"above {low:g}" if low_open else f"at least {low:g}"] if low is not None else []
        parts += [f"below {high:g}" if high_open else f"at most {high:g}"] if high is not None else []
        raise ConfigError(f"{flag} {value}: must be a finite number" + (f" {' and '.join(parts)}" if parts else ""))


class Interrupted(Exception):
    """The user asked to stop (SIGINT/SIGTERM); raised after what could be saved was saved.
    `signum` is the signal that asked, so the CLI can end the way that signal ends a process."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl+C raises KeyboardInterrupt, so both unwind the same way
    (atomic writes are abandoned, worker processes stopped) and the CLI can tell them apart."""
