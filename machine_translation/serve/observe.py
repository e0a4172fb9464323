"""What the server tells its operator, and its last line of defence: two ASGI middlewares.

`Observed` (outermost) sees every request: it merges repeated slashes (`//languages` is a
308 to `/languages`, as LibreTranslate's framework does, so a client given a base URL ending
in `/` works), writes one access-log line per request (Combined Log Format plus milliseconds
and sentences translated; as fields with `--log-format json`) and feeds the metrics.

`Guarded` (innermost, around the routes) turns what the routes did not answer into an
answer: a client that went away is one INFO line (and status 499, nginx's "client closed
request", in the access log); any other exception is one traceback at ERROR and a JSON 500,
and the server goes on.
"""
from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone

from starlette.responses import JSONResponse, RedirectResponse

from machine_translation.serve.api import ClientGone

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("machine_translation.serve.access")

SENTENCES = "mt.sentences"  # the scope key where the routes count the sentences they translated
CLIENT_CLOSED = 499


class Observed:
    def __init__(self, app, metrics=None, access_log: bool = True):
        self.app, self.metrics, self.access_log = app, metrics, access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        app = self.app
        if "//" in scope["path"]:
            target = re.sub("/{2,}", "/", scope["path"])
            query = scope.get("query_string", b"").decode("latin-1")
            app = RedirectResponse(target + (f"?{query}" if query else ""), 308)
        start, answer = time.perf_counter(), {"status": CLIENT_CLOSED, "bytes": 0}

        async def observed_send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - start
            if self.access_log:
                self._log(scope, answer["status"], answer["bytes"], seconds)
            if self.metrics is not None:
                self.metrics.observe(scope, answer["status"], seconds)

    @staticmethod
    def _log(scope, status: int, size: int, seconds: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        headers = dict(scope.get("headers") or [])
        fields = {"client": _client(scope), "method": scope["method"], "path": scope["path"],
                  "query": scope.get("query_string", b"").decode("latin-1"),
                  "protocol": f"HTTP/{scope.get('http_version', '1.1')}", "status": status, "bytes": size,
                  "referer": headers.get(b"referer", b"-").decode("latin-1"),
                  "user_agent": headers.get(b"user-agent", b"-").decode("latin-1"),
                  "ms": round(1000 * seconds, 1), "sentences": scope.get(SENTENCES, 0)}
        target = fields["path"] + (f"?{fields['query']}" if fields["query"] else "")
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        access_logger.info('%s - - [%s] "%s %s %s" %d %d "%s" "%s" %.1fms %d', fields["client"], when,
                           fields["method"], _printable(target), fields["protocol"], status, size,
                           _printable(fields["referer"]), _printable(fields["user_agent"]), fields["ms"],
                           fields["sentences"], extra={"fields": fields})


class Guarded:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except ClientGone as gone:
            logger.info("client %s went away before its answer to %s %s%s", _client(scope), scope["method"],
                        scope["path"], f": {gone} dropped" if str(gone) else "")
            if not started:  # nobody reads it; it ends the exchange for the server
                await JSONResponse({"error": "Client closed request"}, CLIENT_CLOSED)(scope, receive, send)
        except Exception:  # noqa: BLE001  (a bug in mt: one traceback, a 500, and the server goes on)
            logger.exception("error while answering %s %s", scope["method"], scope["path"])
            if not started:
                await JSONResponse({"error": "Internal server error"}, 500)(scope, receive, send)


_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f"\\]')


def _printable(text: str) -> str:
    """A client's string as one line of the access log: control characters (a path's decoded
    %0A would forge a line), quotes and backslashes written as \\xNN, as nginx does."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02X}", text)


def _client(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "-"


class JsonLines(logging.Formatter):
    """`--log-format json`: each record one JSON object a line (time, level, logger, message,
    an access line's fields, a traceback), for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
