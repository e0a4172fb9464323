"""Typed errors a user can cause. Each message is one line naming the thing and the fix;
the CLI prints it without a traceback and exits non-zero."""
import signal



class MTError(Exception):
    """Base class: an error caused by the user's input, files or flags."""


class ConfigError(MTError):
    """A config file or a combination of flags is invalid."""


class ModelDirError(MTError):
    """A model directory is missing, incomplete, corrupt, or for another task or pair."""


class DataError(MTError):
    """A corpus is missing, misaligned, not UTF-8, or otherwise unusable."""


class Interrupted(Exception):
    """The user asked to stop (SIGINT/SIGTERM); raised after what could be saved was saved.
    `signum` is the signal that asked, so the CLI can end the way that signal ends a process."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl+C raises KeyboardInterrupt, so both unwind the same way
    (atomic writes are abandoned, worker processes stopped) and the CLI can tell them apart."""
