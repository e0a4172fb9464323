"""The application's file helpers: atomic writes and JSON reads with one-line errors.

Defined once in `mt_tokenizers.files` (the lowest package that needs them, and one that may
import nothing of ours); every application module reaches them through this module, so
there is one copy and one import path.
"""
from mt_tokenizers.files import read_json, write_atomic, write_json

__all__ = ["read_json", "write_atomic", "write_json"]
