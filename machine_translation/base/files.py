"""The application's file helpers: atomic files and directories, the directory lock, the
disk-full error, and JSON reads with one-line errors.

Defined once in `mt_tokenizers.files` (the lowest package that needs them, and one that may
import nothing of ours); every application module reaches them through this module, so
there is one copy and one import path.
"""
from mt_tokenizers.files import (
    DirLock, DiskFull, Locked, atomic_directory, atomic_path, is_disk_full, read_json, write_atomic, write_json,
)

__all__ = ["DirLock", "DiskFull", "Locked", "atomic_directory", "atomic_path", "is_disk_full", "read_json",
           "write_atomic", "write_json"]
