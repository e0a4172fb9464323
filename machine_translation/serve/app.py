"""The HTTP application of `mt serve` (Starlette): LibreTranslate's API, a native endpoint
with scores, n-best lists and the cross-attention, health, and the web page.

    POST /translate          LibreTranslate: q, source (or auto), target, format, alternatives, api_key
    POST /detect             the likeliest languages of q, with confidences
    GET  /languages          [{"code", "name", "targets"}]
    GET  /frontend/settings  what LibreTranslate's web page asks first
    POST /suggest            a user's better translation, kept with --suggestions FILE (`suggest`)
    POST /translate_file     LibreTranslate: a document (multipart file) -> {"translatedFileUrl"} (`files`)
    GET  /download_file/NAME the translated document, while it is kept
    POST /v1/translate       {"src": [...], "source", "target", "beam", "n_best", "attention"}
    GET  /health             queue depth and batch sizes per model
    GET  /metrics            Prometheus metrics, with --metrics (`metrics`)
    GET  /spec, /docs        the OpenAPI document of these routes, and a page of it (`spec`)
    GET  /                   the web page (static/index.html, no outside resource)

Every error is `{"error": message}` with LibreTranslate's status codes; a failure inside
is a 500 with no traceback (one is logged on the server's stderr), and the server goes on
(`observe`: the access log, the metrics, and that last line of defence).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from machine_translation.base.languages import language_name
from machine_translation.base.options import ServeOptions
from machine_translation.serve import spec
from machine_translation.serve.api import (Access, ApiError, ClientGone, int_param, missing, read_params,
                                           text_items)
from machine_translation.serve.batcher import Batcher, ModelThread, QueueFull
from machine_translation.serve.files import FileStore, download_file, translate_file
from machine_translation.serve.metrics import Metrics
from machine_translation.serve.observe import SENTENCES, Guarded, Observed
from machine_translation.serve.suggest import Suggestions
from machine_translation.serve.texts import detect_source, translate_texts
from machine_translation.text import documents, markup
from machine_translation.text.detect import Guess, detect as detect_language


@dataclass
class ServedModel:
    name: str
    source: str
    target: str
    translator: object  # a `Translator`
    batcher: Batcher
    max_tokens: int  # source tokens per line, EOS included
    runner: ModelThread  # where the model runs (batches, alignments): one thread for all models
    prefix: str = ""  # what a multilingual model reads before each sentence to know its target (">>deu<< ")

    def count_tokens(self, text: str) -> int:
        return len(self.translator.loaded.src_tokenizer.encode(text)) + 1


class Service:
    """The served models and the rules of the API; the route handlers below are thin."""

    def __init__(self, models: list[ServedModel], options: ServeOptions, access: Access):
        self.models, self.options, self.access = models, options, access
        self.sources = sorted({m.source for m in models})
        self.languages = sorted({m.source for m in models} | {m.target for m in models})
        self.suggestions = Suggestions(options.suggestions) if options.suggestions is not None else None
        self.metrics: Metrics | None = None  # set by build_app with --metrics
        self.files = FileStore(options.file_ttl, options.file_store_bytes)  # /translate_file's translations

    def model_for(self, source: str, target: str, texts: list[str] = ()) -> tuple[ServedModel, Guess | None]:
        """The model of the pair, and the detected source when `source` was auto (`texts.detect_source`)."""
        detected = None
        if source == "auto":
            detected = detect_source(list(texts), self.sources)
            source = detected.language
        if source == target:
            raise ApiError(400, f"Invalid request: source and target are both {source}: choose another target")
        if not any(m.source == source for m in self.models):
            raise ApiError(400, f"{source} is not supported")
        for m in self.models:
            if m.source == source and m.target == target:
                return m, detected
        raise ApiError(400, f"{target} is not supported")

    async def run(self, model: ServedModel, sentences: list[str], options, request: Request) -> list:
        """Translations (n-best lists) of non-empty sentences through the model's batcher: a
        400 for a line longer than the model's positions (never truncated), 413 for more
        sentences than the queue holds, 503 when the queue is full or the request times out;
        a client that goes away has its queued sentences dropped (`ClientGone`)."""
        if not sentences:
            return []
        if len(sentences) > self.options.queue_size:  # waiting cannot help: the request can never fit
            raise ApiError(413, f"Invalid request: {len(sentences)} sentences, more than the translation queue "
                                f"holds ({self.options.queue_size}, mt serve --queue-size): send fewer at a time")
        request.scope[SENTENCES] = request.scope.get(SENTENCES, 0) + len(sentences)
        sentences = [model.prefix + s for s in sentences]
        lengths = [model.count_tokens(s) for s in sentences]  # for this check and the batcher's token budget
        for line, n in zip(sentences, lengths):
            if n > model.max_tokens:
                raise ApiError(400, f"Invalid request: a line of {len(line)} characters is {n} tokens long, over this "
                                    f"model's limit of {model.max_tokens}: split it into sentences")
        try:
            items = model.batcher.submit(sentences, lengths, options)
        except QueueFull:
            raise ApiError(503, "The server is busy: the translation queue is full, retry later",
                           {"Retry-After": "1"}) from None
        results = asyncio.ensure_future(asyncio.gather(*(i.future for i in items)))
        gone = asyncio.ensure_future(_disconnected(request))
        done, _ = await asyncio.wait({results, gone}, timeout=self.options.request_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if results in done:
            return results.result()
        model.batcher.drop(items)
        results.cancel()
        results.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no "never retrieved" log
        if gone in done:
            raise ClientGone(f"{len(items)} sentences")
        raise ApiError(503, f"The request timed out after {self.options.request_timeout:g} s: the server is busy, "
                            "retry later", {"Retry-After": "5"})


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only that message is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# -- routes ------------------------------------------------------------------------------------
async def admitted(request: Request, text: str) -> tuple[Service, dict]:
    """The service and the request's parameters, once its API key and rate are checked and
    its text parameter (`q` or `src`) is there."""
    service: Service = request.app.state.service
    params = await read_params(request, service.options.max_body_bytes, service.options.body_timeout)
    service.access.check(params.get("api_key"), request.client.host if request.client else "unknown")
    if params.get(text) in (None, "", []):
        raise missing(text)
    return service, params


async def translate(request: Request) -> JSONResponse:
    service, params = await admitted(request, "q")
    for name in ("source", "target"):
        if not params.get(name) or not isinstance(params[name], str):
            raise missing(name)
    texts, as_list = text_items(params["q"])
    fmt = params.get("format") or "text"
    if fmt not in ("text", "html"):
        raise ApiError(400, f"{fmt} format is not supported")
    alternatives = int_param(params, "alternatives", 0, 0, service.options.max_beam - 1)
    if as_list and len(texts) > service.options.batch_limit:
        raise ApiError(400, f"Invalid request: Request ({len(texts)}) exceeds text limit ({service.options.batch_limit})")
    chars = sum(len(t) for t in texts)
    if chars > service.options.char_limit:
        raise ApiError(400, f"Invalid request: Request ({chars}) exceeds text limit ({service.options.char_limit})")
    readable = [markup.plain_text(t) for t in texts] if fmt == "html" else texts  # what detection reads
    model, detected = service.model_for(params["source"], params["target"], readable)
    renderings = await translate_texts(service, model, texts, fmt, 1 + alternatives, request)
    answers = [r[0] for r in renderings]
    body: dict = {"translatedText": answers if as_list else answers[0]}
    if alternatives:
        alts = [r[1:] for r in renderings]
        body["alternatives"] = alts if as_list else alts[0]
    if detected is not None:
        found = [{"confidence": round(100 * g.confidence, 2), "language": g.language}
                 for g in ([detect_source([t], service.sources) for t in readable] if as_list else [detected])]
        body["detectedLanguage"] = found if as_list else found[0]
    return JSONResponse(body)


async def detect(request: Request) -> JSONResponse:
    """The likeliest of the served languages for `q`, best first, confidence 0-100: as
    LibreTranslate, which detects among the languages it has loaded."""
    service, params = await admitted(request, "q")
    texts, _ = text_items(params["q"])
    served = tuple(service.languages)
    guesses = await asyncio.to_thread(detect_language, " ".join(texts)[:2000], served, 3)
    return JSONResponse([{"confidence": round(100 * g.confidence, 2), "language": g.language} for g in guesses])


async def languages(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    return JSONResponse([{"code": c, "name": language_name(c),
                          "targets": sorted(m.target for m in service.models if m.source == c)}
                         for c in service.languages])


async def frontend_settings(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    first = service.models[0]
    return JSONResponse({
        "charLimit": service.options.char_limit, "frontendTimeout": 500,
        "apiKeys": service.access.keys_required, "keyRequired": service.access.keys_required,
        "suggestions": service.suggestions is not None, "filesTranslation": service.options.files_translation,
        "supportedFilesFormat": list(documents.supported()) if service.options.files_translation else [],
        "language": {"source": {"code": first.source, "name": language_name(first.source)},
                     "target": {"code": first.target, "name": language_name(first.target)}},
    })


async def native_translate(request: Request) -> JSONResponse:
    """mt's own endpoint: scores, n-best lists and, when asked, the cross-attention."""
    start = time.perf_counter()
    service, params = await admitted(request, "src")
    texts, _ = text_items(params["src"], "src")
    if len(texts) > service.options.batch_limit or sum(map(len, texts)) > service.options.char_limit:
        raise ApiError(400, f"Invalid request: over {service.options.batch_limit} sentences or "
                            f"{service.options.char_limit} characters")
    one = service.models[0] if len(service.models) == 1 else None
    source = params.get("source") or (one.source if one else None)
    target = params.get("target") or (one.target if one else None)
    if not isinstance(source, str) or not isinstance(target, str):
        raise ApiError(400, "Invalid request: pass source and target (several models are served)")
    model, _ = service.model_for(source, target)
    beam = int_param(params, "beam", model.translator.defaults.beam, 1, service.options.max_beam)
    n_best = int_param(params, "n_best", 1, 1, beam)
    attention = params.get("attention", False)
    if not isinstance(attention, bool):
        raise ApiError(400, "Invalid request: attention must be true or false")
    todo = [t for t in texts if t.strip()]
    options = model.translator.defaults.updated(beam=beam, n_best=n_best)
    done = iter(await service.run(model, todo, options, request))
    out = []
    for text in texts:
        n_best_list = next(done) if text.strip() else []
        best = n_best_list[0] if n_best_list else None
        entry = {"text": best.text if best else "", "score": best.score if best else 0.0}
        if n_best > 1:
            entry["n_best"] = [{"text": t.text, "score": t.score} for t in n_best_list]
        if attention:
            entry["attention"] = (await model.runner.run(model.translator.alignment, best)).to_dict() if best else None
        out.append(entry)
    return JSONResponse({"model": model.name, "source": model.source, "target": model.target, "translations": out,
                         "time_ms": round(1000 * (time.perf_counter() - start), 1)})


async def health(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    return JSONResponse({"status": "ok", "models": [
        {"name": m.name, "source": m.source, "target": m.target, "precision": m.translator.precision,
         "queue_depth": m.batcher.depth, "sentences": m.batcher.sentences_done,
         "batch_sizes": m.batcher.histogram()} for m in service.models]})


async def suggest(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    if service.suggestions is None:
        raise ApiError(403, "Suggestions are disabled on this server.")
    service, params = await admitted(request, "q")
    for name in ("s", "source", "target"):
        if not params.get(name) or not isinstance(params[name], str):
            raise missing(name)
    if not isinstance(params["q"], str):
        raise ApiError(400, "Invalid request: q must be a string")
    for name in ("source", "target"):
        if params[name] not in service.languages:
            raise ApiError(400, f"{params[name]} is not supported")
    if len(params["q"]) + len(params["s"]) > service.options.char_limit:
        raise ApiError(400, f"Invalid request: over {service.options.char_limit} characters")
    await asyncio.to_thread(service.suggestions.add, params["q"], params["s"], params["source"], params["target"])
    return JSONResponse({"success": True})


async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    if service.metrics is None:
        raise ApiError(404, "Not found: metrics are off (mt serve --metrics)")
    return service.metrics.answer(request)


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.spec)


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(spec.page(request.app.state.spec))


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(resources.files("machine_translation.serve").joinpath("static/index.html").read_text("utf-8"))


# -- errors ------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    messages = {404: "Not found", 405: "Method not allowed"}
    return JSONResponse({"error": messages.get(exc.status_code, str(exc.detail))}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def build_app(models: list[ServedModel], options: ServeOptions, access: Access) -> Starlette:
    """The application; the models' batchers start and stop with it (its lifespan)."""

    batchers = list({id(m.batcher): m.batcher for m in models}.values())  # (a multilingual model's targets share one)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.to_thread(detect_language, "mt")  # the language model loads before the first request
        for batcher in batchers:
            batcher.start()
        try:
            yield
        finally:
            for batcher in batchers:  # requests already accepted have been answered; the queues are empty
                await asyncio.to_thread(batcher.stop)
            if service.suggestions is not None:
                service.suggestions.close()

    routes = [
        Route("/translate", translate, methods=["POST"]),
        Route("/detect", detect, methods=["POST"]),
        Route("/languages", languages, methods=["GET", "POST"]),
        Route("/frontend/settings", frontend_settings, methods=["GET"]),
        Route("/v1/translate", native_translate, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/suggest", suggest, methods=["POST"]),
        Route("/translate_file", translate_file, methods=["POST"]),
        Route("/download_file/{name}", download_file, methods=["GET"], name="download_file"),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/spec", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/", index, methods=["GET"]),
    ]
    service = Service(models, options, access)
    if options.metrics:
        service.metrics = Metrics({m.batcher.name: m.batcher for m in models}, {r.path for r in routes},
                                  options.metrics_token)
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(Observed, metrics=service.metrics, access_log=options.access_log),
                                Middleware(CORSMiddleware, allow_origins=list(options.cors_origins),
                                           allow_methods=["GET", "POST"], allow_headers=["*"]),
                                Middleware(Guarded)],
                    exception_handlers={ApiError: _api_error, HTTPException: _http_error})
    app.state.service = service
    app.state.spec = spec.document(version("mt"))
    return app
