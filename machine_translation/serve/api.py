"""What every request goes through before it reaches a model: reading its parameters in any
encoding real clients send, the errors clients expect (LibreTranslate's status codes and
messages, as `{"error": ...}`), API keys and the per-client rate limit.

Parameters come from the query string, overridden by the body: JSON (an object),
`application/x-www-form-urlencoded` (libretranslatepy) or `multipart/form-data`
(LibreTranslate's web page). A GET with a body is read like a POST. The body is read up to
`max_body_bytes` (413 beyond) and within `body_timeout` seconds (408 beyond: a client that
stalls mid-upload holds nothing for long); a query string or body that is not UTF-8, not
JSON, nested too deeply or of the wrong shape is a 400 naming the problem. A lone UTF-16
surrogate in a JSON string (JavaScript clients make one when they cut text through an
emoji) becomes U+FFFD, as a browser's own UTF-8 encoder would have made it.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from python_multipart.multipart import create_form_parser
from starlette.requests import ClientDisconnect, Request

from machine_translation.base.errors import ConfigError


class ApiError(Exception):
    """An answer with a status code, `{"error": message}` and optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class ClientGone(Exception):
    """The client closed its connection before its answer: nobody is left to answer."""


def missing(name: str) -> ApiError:
    return ApiError(400, f"Invalid request: missing {name} parameter")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body too large: {declared} bytes, the limit is {limit}")
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise ApiError(413, f"Request body too large: over {limit} bytes")

    try:
        await asyncio.wait_for(read(), timeout)
    except ClientDisconnect:
        raise ClientGone() from None
    except asyncio.TimeoutError:
        raise ApiError(408, f"Request timeout: the body did not arrive within {timeout:g} s",
                       {"Connection": "close"}) from None
    return bytes(body)


@dataclass(frozen=True)
class Upload:
    """A file field of a multipart body (`read_params(files=True)`)."""

    filename: str
    data: bytes


async def read_params(request: Request, limit: int, timeout: float, files: bool = False) -> dict:
    """The request's parameters: query string, then the body's (which win); with `files`, a
    multipart body's file fields are `Upload`s."""
    params: dict = _pairs(request.scope.get("query_string", b""), "query string")
    body = await read_body(request, limit, timeout)
    if not body.strip():
        return params
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        params.update(_pairs(body, "form body"))
    elif kind == "multipart/form-data":
        params.update(_multipart(request.headers.get("content-type", ""), body, files))
    elif kind == "application/json" or kind.endswith("+json") or body.lstrip()[:1] in (b"{", b"["):
        data = _usv(parse_json(body))
        if not isinstance(data, dict):
            raise ApiError(400, "Invalid request: the JSON body must be an object of parameters")
        params.update(data)
    else:
        raise ApiError(400, f"Invalid request: unsupported content type {kind or 'none'!r}: send JSON, a form "
                            "or query parameters")
    return params


def parse_json(body: bytes):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "Invalid request: the body is not valid UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ApiError(400, "Invalid request: the JSON body is nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"Invalid request: the body is not valid JSON ({e.msg} at line {e.lineno} "
                            f"column {e.colno})") from None


_SURROGATE = re.compile("[\ud800-\udfff]")  # after json.loads, only lone ones are left


def _usv(value):
    """JSON values with every lone surrogate replaced by U+FFFD (keys, strings, nested)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_usv(v) for v in value]
    if isinstance(value, dict):
        return {_usv(k): _usv(v) for k, v in value.items()}
    return value


def _not_utf8(where: str) -> ApiError:
    return ApiError(400, f"Invalid request: the {where} is not valid UTF-8")


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(where) from None


def _grouped(pairs: list[tuple[str, str]]) -> dict:
    """A name given once is a string, a name repeated a list (q=a&q=b)."""
    params: dict = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in params.items()}


def _pairs(raw: bytes, where: str) -> dict:
    """A query string or urlencoded body, strictly UTF-8 once percent-decoded."""
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _not_utf8(where) from None
    return _grouped(pairs)


def _multipart(content_type: str, body: bytes, allow_files: bool = False) -> dict:
    """A multipart/form-data body's fields, read by python-multipart's parser as bytes and
    decoded strictly (Starlette's own form reader falls back to Latin-1); files are refused
    unless allowed (then each is an `Upload`)."""
    fields, files = [], []
    try:
        parser = create_form_parser({"Content-Type": content_type.encode("latin-1")},
                                    lambda f: fields.append((f.field_name or b"", f.value or b"")), files.append,
                                    config={"MAX_MEMORY_FILE_SIZE": len(body) + 1})  # the body is in memory already
        parser.write(body)
        parser.finalize()
    except Exception as e:  # noqa: BLE001  (python-multipart's errors on a malformed body)
        raise ApiError(400, f"Invalid request: the form body cannot be read ({type(e).__name__})") from None
    uploads = []
    for f in files:
        f.file_object.seek(0)
        uploads.append((_text(f.field_name or b"", "form body"),
                        Upload(_text(f.file_name or b"", "file name"), f.file_object.read())))
        f.close()
    if uploads and not allow_files:
        raise ApiError(400, f"Invalid request: {uploads[0][0]} must be text, not a file")
    return _grouped([(_text(k, "form body"), _text(v, "form body")) for k, v in fields] + uploads)


def int_param(params: dict, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter within [low, high] (JSON numbers, or digits in a form)."""
    value = params.get(name, default)
    if value in (None, ""):
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"Invalid request: {name} must be an integer from {low} to {high}")
    return value


def text_items(value, name: str = "q") -> tuple[list[str], bool]:
    """q as a list of texts, and whether it came as a list."""
    if isinstance(value, str):
        return [value], False
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value, True
    raise ApiError(400, f"Invalid request: {name} must be a string or a list of strings")


# -- access ---------------------------------------------------------------------------------
def load_api_keys(path: Path) -> dict[str, int | None]:
    """`--api-keys FILE`: one key a line, optionally followed by its own requests per minute;
    blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--api-keys {path}: cannot be read ({e.__class__.__name__})") from None
    keys: dict[str, int | None] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
            raise ConfigError(f"--api-keys {path} line {number}: write KEY or KEY REQUESTS_PER_MINUTE")
        keys[fields[0]] = int(fields[1]) if len(fields) == 2 else None
    if not keys:
        raise ConfigError(f"--api-keys {path} holds no key")
    return keys


class Access:
    """API keys (when a key file is given, every translation needs a valid key: 403) and a
    requests-per-minute limit per key, or per client address without one (429)."""

    WINDOW = 60.0

    def __init__(self, keys: dict[str, int | None] | None, rate_limit: int, clock=time.monotonic):
        self.keys, self.rate_limit, self.clock = keys, rate_limit, clock
        self._seen: dict[str, deque[float]] = {}

    @property
    def keys_required(self) -> bool:
        return self.keys is not None

    def check(self, api_key, client: str) -> None:
        if self.keys is not None and (not isinstance(api_key, str) or api_key not in self.keys):
            raise ApiError(403, "Invalid API key")
        limit = self.keys.get(api_key) if self.keys is not None else None
        limit = limit if limit is not None else self.rate_limit
        if not limit:
            return
        now, who = self.clock(), f"key:{api_key}" if self.keys is not None else f"ip:{client}"
        recent = self._seen.setdefault(who, deque())
        while recent and recent[0] <= now - self.WINDOW:
            recent.popleft()
        if len(recent) >= limit:
            raise ApiError(429, f"Slowdown: {limit} per 1 minute", {"Retry-After": str(int(recent[0] + self.WINDOW - now) + 1)})
        recent.append(now)
        if len(self._seen) > 10_000:  # forget clients that went quiet, so memory stays bounded
            self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - self.WINDOW}
