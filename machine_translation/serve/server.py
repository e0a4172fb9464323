"""Running `mt serve`: load each model once, bind the port (so a taken port is one clear
error before any work), and run uvicorn on the app until Ctrl+C or SIGTERM, which stop it
cleanly: no new connections, the requests already accepted are answered, then the batchers
stop. The bound URL is printed on stderr once the server accepts requests.

Bounds for the open internet, by uvicorn's own settings: idle keep-alive connections close
after `keep_alive_timeout`, and beyond `max_connections` open connections or requests new
ones get a 503 (`limit_concurrency`). uvicorn has no limit on the time a request's head may
take, so `HeadTimed` adds one to its HTTP/1.1 protocol: a connection must send a whole
request head within `header_timeout` of opening (or of its last answer), or it is closed
with uvicorn's own keep-alive close; the body's time is the app's (`api.read_body`).
"""
from __future__ import annotations

import errno
import logging
import socket
from functools import partial
from pathlib import Path

from machine_translation.base.errors import ConfigError
from machine_translation.base.options import ServeOptions
from machine_translation.serve.api import Access, load_api_keys
from machine_translation.serve.app import ServedModel, build_app
from machine_translation.serve.batcher import Batcher, ModelThread

logger = logging.getLogger(__name__)


def load_models(directories: list[Path], device: str | None, precision: str | None, workers: int,
                options: ServeOptions, ctranslate2: dict | None = None) -> list[ServedModel]:
    """A translator and a batcher per model directory; one model per language pair. All are
    loaded and run on one `ModelThread`. `ctranslate2`: each directory's CTranslate2 copy, to
    search with (`--engine ctranslate2`)."""
    from machine_translation.inference.translate import Translator

    models, pairs, runner = [], {}, ModelThread()
    for directory in directories:
        translator = runner.call(partial(Translator.from_pretrained, directory, device, workers, precision=precision,
                                         ctranslate2=(ctranslate2 or {}).get(directory)))
        pair = translator.pair
        if not pair or "-" not in pair:
            raise ConfigError(f"--model {directory} names no language pair in its config.json: retrain it with "
                              "`mt train --pair SRC-TGT`")
        if pair in pairs:
            raise ConfigError(f"--model {directory} and {pairs[pair]} both translate {pair}: serve one model per pair")
        pairs[pair] = directory
        source, target = pair.split("-", 1)
        name = Path(directory).resolve().name
        batcher = Batcher(name, lambda texts, opts, told, tr=translator: runner.call(tr.translations, texts, opts,
                                                                                    None, told),
                          options, translator.workers)
        # a multilingual model serves every target it has a token for, all through one batcher
        targets = target_tokens(translator.loaded.src_tokenizer) or {target: ""}
        for code, token in sorted(targets.items()):
            if f"{source}-{code}" in pairs and pairs[f"{source}-{code}"] != directory:
                raise ConfigError(f"--model {directory} and {pairs[f'{source}-{code}']} both translate "
                                  f"{source}-{code}: serve one model per pair")
            pairs[f"{source}-{code}"] = directory
            models.append(ServedModel(f"{name}:{code}" if token else name, source, code, translator, batcher,
                                      translator.loaded.config.max_positions - 1, runner,
                                      f"{token} " if token else ""))
    return models


def target_tokens(tokenizer) -> dict[str, str]:
    """{two-letter code: ">>xxx<<"} of a multilingual Marian model's target tokens ({} for others)."""
    import langcodes

    found: dict[str, str] = {}
    for token in getattr(tokenizer, "language_tokens", lambda: [])():
        try:
            code = langcodes.standardize_tag(token[2:-2].split("_")[0])
        except (ValueError, LookupError):
            continue
        found.setdefault(code, token)
    return found


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port), or one clear error. Made as a TCP
    socket by name (IPPROTO_TCP, not 0): asyncio turns Nagle's algorithm off only on sockets
    that say so, and with it on, every answer on a kept-alive connection waited for the
    client's delayed ACK (about 40 ms)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
    except socket.gaierror:
        raise ConfigError(f"--host {host}: not an address of this machine") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: already in use on {host}; choose another port (--port 0 picks a "
                              "free one)") from None
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    sock.listen(2048)
    return sock


def head_timed(header_timeout: float) -> type:
    """uvicorn's h11 protocol, with a deadline for each request head (slowloris: a client that
    opens connections and trickles their headers in, or sends nothing at all)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimed(H11Protocol):
        _head_deadline = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is in: the body's time is the app's
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's head, on a kept-alive connection

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_deadline = self.loop.call_later(header_timeout, self._head_late)

        def _disarm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_late(self) -> None:
            self._head_deadline = None
            if self.conn.their_state is h11.IDLE:
                self.timeout_keep_alive_handler()  # uvicorn's close of an idle connection

    return HeadTimed


def run(models: list[ServedModel], options: ServeOptions) -> None:
    import uvicorn

    access = Access(load_api_keys(options.api_keys) if options.api_keys else None, options.rate_limit)
    app = build_app(models, options, access)
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    pairs = ", ".join(f"{m.source}-{m.target} ({m.name}, {m.translator.precision})" for m in models)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if not self.should_exit:
                logger.info("mt serve: listening on %s (%s); Ctrl+C stops", url, pairs)

        async def shutdown(self, sockets=None):
            await super().shutdown(sockets)  # open requests answered, batchers stopped
            logger.info("mt serve: stopped")

    # uvicorn logs through mt's handler (log_config=None), its access log replaced by `observe`'s
    config = uvicorn.Config(app, log_level="warning", log_config=None, access_log=False,
                            timeout_graceful_shutdown=30, lifespan="on", http=head_timed(options.header_timeout),
                            timeout_keep_alive=options.keep_alive_timeout, limit_concurrency=options.max_connections,
                            proxy_headers=True, forwarded_allow_ips=options.forwarded_allow_ips)
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again, so the exit status says which
    Server(config).run(sockets=[sock])
