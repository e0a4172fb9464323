"""`mt serve`: translation models behind LibreTranslate's HTTP API, a native endpoint and a
web page (`machine_translation.serve`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from machine_translation.cli.app import app, cli_errors
from machine_translation.cli.translate import ENGINE_HELP, PRECISION_HELP, WORKERS_HELP
from machine_translation.base.errors import ConfigError
from machine_translation.base.options import ServeOptions

D = ServeOptions()  # the defaults, written once in options.py


@app.command()
@cli_errors
def serve(
    model: List[Path] = typer.Option(..., "--model", "-m", help="Translation model directory; repeat for more "
                                     "language pairs (one model per pair)."),
    host: str = typer.Option(D.host, help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(D.port, min=0, max=65535, help="Port (0 picks a free one, printed on stderr)."),
    precision: Optional[str] = typer.Option(None, help=PRECISION_HELP),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, mps (default: auto-detected)."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads (default: one per core)."),
    workers: int = typer.Option(1, min=1, help=WORKERS_HELP),
    max_batch_tokens: int = typer.Option(D.max_batch_tokens, min=1, help="Source tokens per batch, padding included."),
    max_batch_sentences: int = typer.Option(D.max_batch_sentences, min=1, help="Sentences per batch."),
    batch_delay_ms: float = typer.Option(D.batch_delay_ms, min=0, help="How long a batch waits for company."),
    queue_size: int = typer.Option(D.queue_size, min=1, help="Sentences waiting per model; beyond: 503 (a "
                                   "request of more sentences than this: 413)."),
    request_timeout: float = typer.Option(D.request_timeout, min=0.001, help="Seconds; beyond: 503."),
    char_limit: int = typer.Option(D.char_limit, min=1, help="Characters per request."),
    batch_limit: int = typer.Option(D.batch_limit, min=1, help="Texts per request (q as a list)."),
    max_body_bytes: int = typer.Option(D.max_body_bytes, min=1, help="Request body size; beyond: 413."),
    max_beam: int = typer.Option(D.max_beam, min=1, help="Largest beam a request may ask for (alternatives, beam)."),
    rate_limit: int = typer.Option(D.rate_limit, min=0, help="Requests per minute per API key or client; 0 = off."),
    api_keys: Optional[Path] = typer.Option(None, help="File of API keys, one a line (optionally KEY "
                                            "REQUESTS_PER_MINUTE); with it, requests need a valid api_key."),
    header_timeout: float = typer.Option(D.header_timeout, min=0.001, help="Seconds a connection has to send a "
                                         "whole request head (slowloris); then it is closed."),
    body_timeout: float = typer.Option(D.body_timeout, min=0.001, help="Seconds to read a request body; "
                                       "beyond: 408."),
    keep_alive_timeout: float = typer.Option(D.keep_alive_timeout, min=0.001, help="Seconds an idle "
                                             "keep-alive connection stays open."),
    max_connections: int = typer.Option(D.max_connections, min=1, help="Open connections and requests at once; "
                                        "beyond: 503."),
    forwarded_allow_ips: str = typer.Option(D.forwarded_allow_ips, help="Comma-separated addresses of reverse "
                                            "proxies whose X-Forwarded-For names the client ('*': any)."),
    log_format: str = typer.Option(D.log_format, help="text, or json (one object a line, for log shippers)."),
    access_log: bool = typer.Option(D.access_log, "--access-log/--no-access-log", help="A log line per request."),
    suggestions: Optional[Path] = typer.Option(None, help="Keep /suggest's corrections in this file (JSON "
                                               "lines, appended); without it /suggest is off (403)."),
    metrics: bool = typer.Option(D.metrics, "--metrics", help="Serve Prometheus metrics at /metrics."),
    metrics_token: Optional[str] = typer.Option(None, envvar="MT_METRICS_TOKEN", help="With --metrics: "
                                                "/metrics needs 'Authorization: Bearer TOKEN'."),
    files_translation: bool = typer.Option(D.files_translation, "--files-translation/--no-files-translation",
                                           help="/translate_file: documents (.txt .srt .vtt .html .docx) uploaded "
                                           "and translated; off: 403."),
    max_file_bytes: int = typer.Option(D.max_file_bytes, min=1, help="Upload size for /translate_file (other "
                                       "requests: --max-body-bytes); beyond: 413."),
    file_ttl: float = typer.Option(D.file_ttl, min=0.001, help="Seconds a translated file can be downloaded."),
    file_store_bytes: int = typer.Option(D.file_store_bytes, min=1, help="Memory for translated files, all "
                                         "together; beyond it the oldest go first."),
    engine: str = typer.Option("torch", help=ENGINE_HELP),
) -> None:
    """Serve translation models over HTTP (LibreTranslate's API, /v1/translate, a web page at /)."""
    from machine_translation.base.runtime import prepare
    from machine_translation.serve.server import load_models, run

    options = ServeOptions(host=host, port=port, max_batch_tokens=max_batch_tokens,
                           max_batch_sentences=max_batch_sentences, batch_delay_ms=batch_delay_ms,
                           queue_size=queue_size, request_timeout=request_timeout, char_limit=char_limit,
                           batch_limit=batch_limit, max_body_bytes=max_body_bytes, max_beam=max_beam,
                           rate_limit=rate_limit, api_keys=api_keys, header_timeout=header_timeout,
                           body_timeout=body_timeout, keep_alive_timeout=keep_alive_timeout,
                           max_connections=max_connections, forwarded_allow_ips=forwarded_allow_ips,
                           log_format=log_format, access_log=access_log, suggestions=suggestions, metrics=metrics,
                           metrics_token=metrics_token, files_translation=files_translation,
                           max_file_bytes=max_file_bytes, file_ttl=file_ttl, file_store_bytes=file_store_bytes)
    if log_format == "json":
        import logging
        from machine_translation.serve.observe import JsonLines
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines())
    if api_keys is not None:
        from machine_translation.serve.api import load_api_keys
        load_api_keys(api_keys)  # a bad key file is refused before the models load
    if suggestions is not None:
        from machine_translation.serve.suggest import Suggestions
        Suggestions(suggestions).close()  # and so is a suggestions file that cannot be appended to
    copies = None
    if engine != "torch":
        from machine_translation.inference.engine import ENGINES
        if engine not in ENGINES:
            raise ConfigError(f"--engine {engine}: use {' or '.join(ENGINES)}")
        from machine_translation.interchange.export import ctranslate2_copy
        copies = {directory: ctranslate2_copy(directory, precision) for directory in model}
    prepare(device, threads)
    run(load_models(model, device, precision, workers, options, copies), options)
