"""LibreTranslate's `/translate_file` and `/download_file` (documents: `text.documents`), and
the translated files they keep: kept in memory under a name nobody can guess until
downloaded from `/download_file/<name>`, each for `--file-ttl` seconds, all of them within
`--file-store-bytes` (the oldest go first). Nothing is written to disk, so nothing is left
behind when the server stops, however it stops.
"""
from __future__ import annotations

import asyncio
import mimetypes
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from machine_translation.base.errors import ConfigError
from machine_translation.serve.api import ApiError, Upload, missing, read_params
from machine_translation.serve.texts import translate_texts
from machine_translation.text import documents


@dataclass(frozen=True)
class Stored:
    filename: str  # what the download is called (Content-Disposition)
    data: bytes
    expires: float  # on the store's clock


class FileStore:
    def __init__(self, ttl: float, max_bytes: int, clock=time.monotonic):
        self.ttl, self.max_bytes, self.clock = ttl, max_bytes, clock
        self._files: OrderedDict[str, Stored] = OrderedDict()  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, filename: str, data: bytes) -> str | None:
        """Keep `data` and return its download name (None: larger than the whole store)."""
        if len(data) > self.max_bytes:
            return None
        name = f"{uuid.uuid4().hex}.{_safe(filename)}"
        with self._lock:
            self._expire()
            while self._bytes + len(data) > self.max_bytes:
                self._drop(next(iter(self._files)))
            self._files[name] = Stored(filename, data, self.clock() + self.ttl)
            self._bytes += len(data)
        return name

    def get(self, name: str) -> Stored | None:
        """The file of a download name, unless unknown or expired."""
        with self._lock:
            self._expire()
            return self._files.get(name)

    @property
    def size(self) -> tuple[int, int]:
        """(files, bytes) held."""
        with self._lock:
            self._expire()
            return len(self._files), self._bytes

    def _expire(self) -> None:
        now = self.clock()
        while self._files and next(iter(self._files.values())).expires <= now:  # added in order, one ttl
            self._drop(next(iter(self._files)))

    def _drop(self, name: str) -> None:
        self._bytes -= len(self._files.pop(name).data)


def _safe(filename: str) -> str:
    """A file name fit for a URL path: its last part, letters, digits, '.', '-' and '_' kept."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(filename.replace("\\", "/")).name).strip("._")
    return name[-100:] or "file"


def translated_name(filename: str, target: str) -> str:
    """`talk.srt` translated into fr: `talk_fr.srt` (as LibreTranslate names it)."""
    path = PurePosixPath(filename.replace("\\", "/").split("/")[-1] or "file")
    return f"{path.stem}_{target}{path.suffix}"


# -- routes ------------------------------------------------------------------------------------
async def translate_file(request: Request) -> JSONResponse:
    """LibreTranslate's POST /translate_file: multipart `file`, `source` (or auto), `target`,
    `api_key`; answers {"translatedFileUrl"} where /download_file serves the translation."""
    service = request.app.state.service
    options = service.options
    if not options.files_translation:
        raise ApiError(403, "Files translation are disabled on this server.")
    params = await read_params(request, options.max_file_bytes, options.body_timeout, files=True)
    service.access.check(params.get("api_key"), request.client.host if request.client else "unknown")
    upload = params.get("file")
    if not isinstance(upload, Upload):
        raise missing("file")
    for name in ("source", "target"):
        if not params.get(name) or not isinstance(params[name], str):
            raise missing(name)
    if PurePosixPath(upload.filename).suffix.lower() not in documents.supported():
        raise ApiError(400, f"Invalid request: file format not supported (use one of "
                            f"{', '.join(documents.supported())})")
    if not upload.data.strip():
        raise ApiError(400, "Invalid request: empty file")
    try:
        document = await asyncio.to_thread(documents.load, upload.filename, upload.data)
    except ConfigError as e:
        raise ApiError(400, f"Invalid request: {e}") from None
    if document.characters > options.char_limit:
        raise ApiError(400, f"Invalid request: Request ({document.characters}) exceeds text limit "
                            f"({options.char_limit})")
    model, _ = service.model_for(params["source"], params["target"], document.plain[:20])
    translated = await translate_texts(service, model, document.texts, document.format, 1, request)
    data = await asyncio.to_thread(document.build, [t[0] for t in translated])
    name = service.files.add(translated_name(upload.filename, model.target), data)
    if name is None:
        raise ApiError(413, "The translated file is larger than this server keeps (mt serve --file-store-bytes)")
    return JSONResponse({"translatedFileUrl": str(request.url_for("download_file", name=name))})


async def download_file(request: Request) -> Response:
    """GET /download_file/<name>: a translated file while it is kept; unknown or expired: 404."""
    service = request.app.state.service
    if not service.options.files_translation:
        raise ApiError(400, "Files translation are disabled on this server.")
    stored = service.files.get(request.path_params["name"])
    if stored is None:
        raise ApiError(404, "Not found: no such translated file, or it has expired: translate the file again")
    kind = mimetypes.guess_type(stored.filename)[0] or "application/octet-stream"
    return Response(stored.data, media_type=kind,
                    headers={"Content-Disposition": f"attachment; filename=\"{_safe(stored.filename)}\"; "
                                                    f"filename*=UTF-8''{quote(stored.filename)}"})
