"""Typed errors a user can cause. Each message is one line naming the thing and the fix;
the CLI prints it without a traceback and exits non-zero."""


class MTError(Exception):
    """Base class: an error caused by the user's input, files or flags."""


class ConfigError(MTError):
    """A config file or a combination of flags is invalid."""


class ModelDirError(MTError):
    """A model directory is missing, incomplete, corrupt, or for another task or pair."""


class DataError(MTError):
    """A corpus is missing, misaligned, not UTF-8, or otherwise unusable."""


class Interrupted(Exception):
    """The user asked to stop (SIGINT/SIGTERM); raised after what could be saved was saved."""
