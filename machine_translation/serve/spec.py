"""`/spec`: the OpenAPI 3 document of every route of `mt serve`, and `/docs`, a page that
shows it with no outside resource (no Swagger UI from a CDN: the server may run offline).

The document is written out here, once; tests/test_serve_open.py validates it with
openapi-spec-validator, checks that it lists exactly the app's routes, and fuzzes the server
from it with Schemathesis.
"""
from __future__ import annotations

import html

ERROR = {"$ref": "#/components/schemas/Error"}
TEXT = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
LANGUAGE = {"type": "string", "description": "A language code (en); `auto` to detect the source (/translate)"}
BODY_KINDS = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


def _params(properties: dict, required: list[str]) -> dict:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {kind: {"schema": schema} for kind in BODY_KINDS}}


def _answers(ok: dict, description: str, *errors: int) -> dict:
    out = {"200": {"description": description, "content": {"application/json": {"schema": ok}}}}
    reasons = {400: "Invalid request", 401: "Missing or wrong token", 403: "Invalid API key or feature off",
               404: "Not found", 408: "The body did not arrive in time", 413: "Request too large",
               429: "Rate limit reached", 503: "Busy or timed out: retry later"}
    for status in errors:
        out[str(status)] = {"description": reasons[status], "content": {"application/json": {"schema": ERROR}}}
    return out


TRANSLATE = {
    "summary": "Translate text or HTML (LibreTranslate's API)",
    "requestBody": _params({"q": TEXT, "source": LANGUAGE, "target": LANGUAGE,
                            "format": {"type": "string", "enum": ["text", "html"]},
                            "alternatives": {"type": "integer", "minimum": 0}, "api_key": {"type": "string"}},
                           ["q", "source", "target"]),
    "responses": _answers({"type": "object", "properties": {"translatedText": TEXT, "alternatives": {},
                                                            "detectedLanguage": {}}}, "The translations",
                          400, 403, 408, 413, 429, 503)}
DETECT = {
    "summary": "The likeliest languages of q, with confidences 0-100",
    "requestBody": _params({"q": TEXT, "api_key": {"type": "string"}}, ["q"]),
    "responses": _answers({"type": "array", "items": {"type": "object"}}, "Languages, best first", 400, 403, 429)}
LANGUAGES = {"summary": "The served languages and their targets",
             "responses": _answers({"type": "array", "items": {"type": "object"}}, "Languages")}
SUGGEST = {
    "summary": "Suggest a better translation (kept when the server runs with --suggestions)",
    "requestBody": _params({"q": {"type": "string"}, "s": {"type": "string"}, "source": LANGUAGE,
                            "target": LANGUAGE, "api_key": {"type": "string"}}, ["q", "s", "source", "target"]),
    "responses": _answers({"type": "object", "properties": {"success": {"type": "boolean"}}}, "Stored",
                          400, 403, 429)}
TRANSLATE_FILE = {
    "summary": "Translate a document (.txt .srt .vtt .html .htm .docx): LibreTranslate's API",
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "source", "target"],
        "properties": {"file": {"type": "string", "format": "binary"}, "source": LANGUAGE, "target": LANGUAGE,
                       "api_key": {"type": "string"}}}}}},
    "responses": _answers({"type": "object", "properties": {"translatedFileUrl": {"type": "string"}}},
                          "Where to download the translation", 400, 403, 408, 413, 429, 503)}
DOWNLOAD_FILE = {
    "summary": "A translated document, while the server keeps it (mt serve --file-ttl)",
    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
    "responses": {"200": {"description": "The document", "content": {"application/octet-stream": {"schema": {
        "type": "string", "format": "binary"}}}}, **{k: v for k, v in _answers({}, "", 400, 404).items() if k != "200"}}}
NATIVE = {
    "summary": "mt's own endpoint: scores, n-best lists, the cross-attention",
    "requestBody": _params({"src": TEXT, "source": LANGUAGE, "target": LANGUAGE,
                            "beam": {"type": "integer", "minimum": 1}, "n_best": {"type": "integer", "minimum": 1},
                            "attention": {"type": "boolean"}, "api_key": {"type": "string"}}, ["src"]),
    "responses": _answers({"type": "object"}, "Translations with scores", 400, 403, 413, 429, 503)}


def document(version: str) -> dict:
    """The OpenAPI 3.0 document of the app's routes."""
    get = lambda summary, kind="application/json": {"get": {  # noqa: E731
        "summary": summary, "responses": {"200": {"description": summary, "content": {kind: {"schema": {}}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "mt serve", "version": version,
                 "description": "Machine translation with LibreTranslate's API. Errors are {\"error\": message}."},
        "paths": {
            "/translate": {"post": TRANSLATE}, "/detect": {"post": DETECT},
            "/languages": {"get": LANGUAGES, "post": LANGUAGES}, "/suggest": {"post": SUGGEST},
            "/v1/translate": {"post": NATIVE}, "/translate_file": {"post": TRANSLATE_FILE},
            "/download_file/{name}": {"get": DOWNLOAD_FILE},
            "/frontend/settings": get("What the web page asks first (limits, keys, features)"),
            "/health": get("Queue depth and batch sizes per model"),
            "/metrics": {"get": {"summary": "Prometheus metrics (with --metrics)", "responses": {
                "200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                **{k: v for k, v in _answers({}, "", 401, 404).items() if k != "200"}}}},
            "/spec": get("This document"), "/docs": get("This document as a page", "text/html"),
            "/": get("The translator's web page", "text/html")},
        "components": {"schemas": {"Error": {"type": "object", "required": ["error"],
                                             "properties": {"error": {"type": "string"}}}}},
    }


def page(spec: dict) -> str:
    """`/docs`: every route, its parameters and answers, as one self-contained HTML page."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            content = op.get("requestBody", {}).get("content", {})
            body = (content.get("application/json") or content.get("multipart/form-data") or {}).get("schema", {})
            required = set(body.get("required", []))
            params = ", ".join(f"<code>{html.escape(n)}</code>{'*' if n in required else ''}"
                               for n in body.get("properties", {}))
            answers = ", ".join(f"{code} {html.escape(r['description'])}" for code, r in op["responses"].items())
            rows.append(f"<tr><td><b>{method.upper()}</b> <code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}</td><td>{params or '-'}</td><td>{answers}</td></tr>")
    return ("<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{html.escape(spec['info']['title'])} API</title><style>body{{font:15px system-ui;margin:2em}}"
            "table{border-collapse:collapse}td,th{border:1px solid #8886;padding:.4em;vertical-align:top}</style>"
            f"<h1>{html.escape(spec['info']['title'])} API {html.escape(spec['info']['version'])}</h1>"
            f"<p>{html.escape(spec['info']['description'])} Parameters (* required) go as JSON, a form or "
            "multipart form, or in the query string. The machine-readable document is <a href=spec>/spec</a>.</p>"
            "<table><tr><th>Route</th><th>What</th><th>Parameters</th><th>Answers</th></tr>"
            + "".join(rows) + "</table></html>")
