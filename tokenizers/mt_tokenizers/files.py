"""Small file helpers for everything `mt` writes and reads: atomic writes and JSON reads
with one-line errors.

They live here, in the lowest package that needs them (the tokenizer package imports
nothing of ours), so the tokenizers and the application share one copy; the application
reaches them through `machine_translation.files`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old file or the new one, never half of one.
    On failure (e.g. a full disk) the temporary file is removed and the error re-raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: Path, error: type[Exception], what: str = "file"):
    """Parse a JSON file; a missing, unreadable or corrupt one raises `error` with one line
    naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} is corrupt: {path} ({e})") from None
    except OSError as e:
        raise error(f"{what} is unreadable: {path} ({e.strerror})") from None
