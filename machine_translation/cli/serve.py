"""`mt serve`: translation models behind LibreTranslate's HTTP API, a native endpoint and a
web page (`machine_translation.serve`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from machine_translation.cli.app import app, cli_errors
from machine_translation.cli.translate import PRECISION_HELP, WORKERS_HELP
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
    queue_size: int = typer.Option(D.queue_size, min=1, help="Sentences waiting per model; beyond: 503."),
    request_timeout: float = typer.Option(D.request_timeout, min=0.001, help="Seconds; beyond: 503."),
    char_limit: int = typer.Option(D.char_limit, min=1, help="Characters per request."),
    batch_limit: int = typer.Option(D.batch_limit, min=1, help="Texts per request (q as a list)."),
    max_body_bytes: int = typer.Option(D.max_body_bytes, min=1, help="Request body size; beyond: 413."),
    max_beam: int = typer.Option(D.max_beam, min=1, help="Largest beam a request may ask for (alternatives, beam)."),
    rate_limit: int = typer.Option(D.rate_limit, min=0, help="Requests per minute per API key or client; 0 = off."),
    api_keys: Optional[Path] = typer.Option(None, help="File of API keys, one a line (optionally KEY "
                                            "REQUESTS_PER_MINUTE); with it, requests need a valid api_key."),
) -> None:
    """Serve translation models over HTTP (LibreTranslate's API, /v1/translate, a web page at /)."""
    from machine_translation.base.runtime import prepare
    from machine_translation.serve.server import load_models, run

    options = ServeOptions(host=host, port=port, max_batch_tokens=max_batch_tokens,
                           max_batch_sentences=max_batch_sentences, batch_delay_ms=batch_delay_ms,
                           queue_size=queue_size, request_timeout=request_timeout, char_limit=char_limit,
                           batch_limit=batch_limit, max_body_bytes=max_body_bytes, max_beam=max_beam,
                           rate_limit=rate_limit, api_keys=api_keys)
    if api_keys is not None:
        from machine_translation.serve.api import load_api_keys
        load_api_keys(api_keys)  # a bad key file is refused before the models load
    prepare(device, threads)
    run(load_models(model, device, precision, workers, options), options)
