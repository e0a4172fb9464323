"""`/suggest` (`mt serve --suggestions FILE`): users' corrections of a translation, kept for
whoever collects data to fine-tune on, as LibreTranslate has it (q, s, source, target,
api_key; `{"success": true}`; 403 when the server has suggestions off, which is the default).

The file is append-only JSON lines, one suggestion a line ({"time", "source", "target", "q",
"s"}; no client address is stored): each line is written with one `write` on a file opened
for appending, under a lock, and flushed, so lines never interleave or tear and nothing
already there is ever rewritten. The file is opened when the server starts, so an
unwritable path is an error before the models load.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from machine_translation.base.errors import ConfigError


class Suggestions:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"--suggestions {path}: cannot be opened for appending ({e.strerror})") from None
        self._lock = threading.Lock()

    def add(self, q: str, s: str, source: str, target: str) -> None:
        """Append one suggestion (called off the event loop)."""
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": source,
                 "target": target, "q": q, "s": s}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, line)
            while written < len(line):  # a regular file takes it whole; a full disk raises
                written += os.write(self._fd, line[written:])
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
