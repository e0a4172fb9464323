"""`mt serve` for the open internet: no input gives a 5xx (a fuzz test driven by /spec, and
Hypothesis over the four body encodings), lone surrogates and invalid UTF-8, the OpenAPI
document, /metrics, /suggest, stalled clients closed while others are served, and logs an
operator can read (one access line per request, one traceback per 500, JSON lines)."""
import json
import logging
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.testclient import TestClient

from machine_translation.serve.observe import JsonLines
from tests.conftest import SENTENCES, start_server
from tests.test_serve import error, make_client

TIMEOUT = 2  # seconds: the live server's header and body timeouts
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,  # the same examples each run
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def client(learned, tmp_path_factory):
    path = tmp_path_factory.mktemp("suggest") / "suggestions.jsonl"
    path.write_text('{"q": "kept", "s": "gardé"}\n', encoding="utf-8")  # a file the operator already has
    with make_client(learned[0], metrics=True, suggestions=path) as c:
        yield c


@pytest.fixture(scope="module")
def live(learned):
    proc, url = start_server("--model", learned[0], "--header-timeout", str(TIMEOUT), "--body-timeout",
                             str(TIMEOUT), "--log-format", "json")
    yield proc, url
    if proc.poll() is None:
        proc.kill()


def answered(response) -> None:
    """A 2xx, or a 4xx with a JSON {"error": ...} body: never a 5xx."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}, response.text[:300]


# -- no 5xx -------------------------------------------------------------------------------
def test_the_spec_is_valid_openapi_and_lists_exactly_the_apps_routes(client):
    from openapi_spec_validator import validate
    spec = client.get("/spec").json()
    validate(spec)
    routes = {(r.path, m.lower()) for r in client.app.routes for m in r.methods if m != "HEAD"}
    documented = {(path, method) for path, methods in spec["paths"].items() for method in methods}
    assert documented == routes
    page = client.get("/docs").text
    assert all(path in page for path in spec["paths"]) and "http://" not in page and "https://" not in page


def test_a_fuzz_test_from_the_spec_finds_no_5xx(live):
    import schemathesis
    schema = schemathesis.openapi.from_dict(json.loads(__import__("httpx").get(f"{live[1]}/spec").text))
    seen = []

    @FUZZ
    @given(case=schema.as_strategy())
    def check(case):
        response = case.call(base_url=live[1], timeout=30)
        seen.append(response.status_code)
        answered(response)

    check()
    assert 200 in seen and len(set(seen)) > 2, "the fuzzer reached real answers and real errors"


def _send(client, encoding: str, raw: bytes):
    """q given as raw bytes in one of the four body encodings (bytes percent-encoded or as they are)."""
    quoted = "".join(f"%{b:02X}" for b in raw)
    if encoding == "query":
        return client.post(f"/translate?q={quoted}&source=en&target=fr")
    if encoding == "form":
        return client.post("/translate", content=f"q={quoted}&source=en&target=fr",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    if encoding == "multipart":
        body = b"".join(b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (k, v)
                        for k, v in [(b"q", raw), (b"source", b"en"), (b"target", b"fr")]) + b"--B--\r\n"
        return client.post("/translate", content=body, headers={"content-type": "multipart/form-data; boundary=B"})
    return client.post("/translate", content=b'{"q": "' + raw + b'", "source": "en", "target": "fr"}',
                       headers={"content-type": "application/json"})


@pytest.mark.parametrize("encoding", ["json", "form", "multipart", "query"])
def test_any_bytes_in_any_body_encoding_are_answered_without_a_5xx(client, encoding):
    @FUZZ
    @given(raw=st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")))
    def check(raw):
        answered(_send(client, encoding, raw))

    check()


@pytest.mark.parametrize("encoding", ["form", "multipart", "query"])
def test_invalid_utf8_is_a_400_in_every_form_encoding(client, encoding):
    error(_send(client, encoding, b"a \xff dog"), 400, "not valid UTF-8")
    assert _send(client, encoding, "a dog é".encode()).status_code == 200


def test_a_lone_surrogate_is_translated_as_u_fffd_everywhere(client, alone):
    """JavaScript cuts text through an emoji: "\\ud83d" alone. It is read as U+FFFD (what a
    browser's UTF-8 encoder makes of it), so the answer is the translation of that text."""
    text = SENTENCES[1] + " \ud83d"
    expected = alone[1].translate([SENTENCES[1] + " \ufffd"])[0]
    for path, body in [("/translate", {"q": text, "source": "en", "target": "fr"}),
                       ("/translate", {"q": f"<p>{text}</p>", "source": "en", "target": "fr", "format": "html"}),
                       ("/translate", {"q": [text, "\udc00"], "source": "auto", "target": "fr"}),
                       ("/v1/translate", {"src": [text], "source": "en", "target": "fr"}),
                       ("/detect", {"q": text})]:
        r = client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        assert r.status_code == 200, (path, r.text)
        if path == "/translate" and body.get("format") != "html" and body["source"] == "en":
            assert r.json()["translatedText"] == expected


def test_a_double_slash_path_is_redirected_to_its_route(client):
    r = client.get("http://testserver//languages?x=1", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"].endswith("/languages?x=1")
    r = client.post("http://testserver//translate", json={"q": SENTENCES[0], "source": "en", "target": "fr"})
    assert r.status_code == 200 and r.json()["translatedText"]


# -- /metrics, /suggest ----------------------------------------------------------------------
def _value(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(part.split("=", 1) for part in line[line.find("{") + 1:line.find("}")].split(",") if part)
            if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_a_known_sequence_of_requests(client):
    before = client.get("/metrics").text
    for s in SENTENCES[:3]:
        assert client.post("/translate", json={"q": s, "source": "en", "target": "fr"}).status_code == 200
    client.post("/translate", json={"q": "a", "source": "en", "target": "xx"})
    client.get("/nowhere")
    after = client.get("/metrics").text
    delta = lambda name, **labels: _value(after, name, **labels) - _value(before, name, **labels)  # noqa: E731
    assert delta("mt_requests_total", route="/translate", method="POST", status="200") == 3
    assert delta("mt_requests_total", route="/translate", method="POST", status="400") == 1
    assert delta("mt_requests_total", route="other", method="GET", status="404") == 1
    assert delta("mt_request_duration_seconds_count", route="/translate") == 4
    assert delta("mt_sentences_total") == 3 and _value(after, "mt_queue_depth") == 0
    assert delta("mt_batch_size_count") == 3
    assert "text/plain" in client.get("/metrics").headers["content-type"]


def test_metrics_are_off_by_default_and_a_token_guards_them(learned):
    with make_client(learned[0]) as c:
        error(c.get("/metrics"), 404, "--metrics")
    with make_client(learned[0], metrics=True, metrics_token="s3cret") as c:
        error(c.get("/metrics"), 401, "Bearer")
        error(c.get("/metrics", headers={"authorization": "Bearer wrong"}), 401)
        assert "mt_requests_total" in c.get("/metrics", headers={"authorization": "Bearer s3cret"}).text


def test_suggest_appends_each_suggestion_and_is_403_when_off(client, learned):
    path = client.app.state.service.suggestions.path
    first = path.read_text(encoding="utf-8")
    assert first.startswith('{"q": "kept"'), "the file was appended to, not replaced, when the server started"
    assert client.get("/frontend/settings").json()["suggestions"] is True
    assert client.post("/suggest", data={"q": "a dog", "s": "un chien", "source": "en", "target": "fr"}).json() \
        == {"success": True}
    assert client.post("/suggest", json={"q": "a cat\n", "s": "un chat ✓", "source": "en", "target": "fr"}
                       ).status_code == 200
    error(client.post("/suggest", json={"q": "a", "s": "b", "source": "en", "target": "xx"}), 400, "xx")
    error(client.post("/suggest", json={"q": "a", "source": "en", "target": "fr"}), 400, "missing s")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(first), "what was there is kept"
    added = [json.loads(line) for line in text[len(first):].splitlines()]
    assert [(e["q"], e["s"], e["source"], e["target"]) for e in added] == [
        ("a dog", "un chien", "en", "fr"), ("a cat\n", "un chat ✓", "en", "fr")]
    with make_client(learned[0]) as off:
        error(off.post("/suggest", json={"q": "a", "s": "b", "source": "en", "target": "fr"}), 403, "disabled")
        assert off.get("/frontend/settings").json()["suggestions"] is False


# -- logs ------------------------------------------------------------------------------------
def test_one_access_line_per_request_and_one_traceback_per_500(client, caplog):
    model = client.app.state.service.models[0]
    real = model.batcher._translate
    with caplog.at_level(logging.INFO):
        client.post("/translate", json={"q": SENTENCES[0], "source": "en", "target": "fr"})
        client.get("/languages")
        client.post("/translate", json={"q": "a", "source": "en"})
        model.batcher._translate = lambda texts, options, told: 1 / 0
        strict = TestClient(client.app)  # raises what escapes the app: what uvicorn would log a second time
        try:
            error(strict.post("/translate", json={"q": ["a dog", "a cat"], "source": "en", "target": "fr"}), 500)
        finally:
            model.batcher._translate = real
    access = [r for r in caplog.records if r.name == "machine_translation.serve.access"]
    assert [(r.fields["method"], r.fields["path"], r.fields["status"], r.fields["sentences"]) for r in access] == [
        ("POST", "/translate", 200, 1), ("GET", "/languages", 200, 0), ("POST", "/translate", 400, 0),
        ("POST", "/translate", 500, 2)]
    assert '"POST /translate HTTP/1.1" 200' in access[0].getMessage() and "ms 1" in access[0].getMessage()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and tracebacks[0].levelno == logging.ERROR
    assert all(r.levelno < logging.ERROR for r in caplog.records if r is not tracebacks[0])
    entry = json.loads(JsonLines().format(access[0]))
    assert entry["status"] == 200 and entry["level"] == "info" and entry["path"] == "/translate"


# -- a live server: stalled clients, JSON logs -------------------------------------------------
def test_stalled_clients_are_closed_within_the_timeout_while_others_are_served(live, alone):
    import httpx
    host, port = live[1].rsplit("/", 1)[1].split(":")
    start = time.monotonic()
    silent = [socket.create_connection((host, int(port))) for _ in range(20)]  # open, then nothing
    trickle = socket.create_connection((host, int(port)))
    trickle.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
    stalled = socket.create_connection((host, int(port)))
    stalled.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"q\": ")  # a body that never ends
    answer = httpx.post(f"{live[1]}/translate", json={"q": SENTENCES[2], "source": "en", "target": "fr"}, timeout=30)
    assert answer.json()["translatedText"] == alone[0][SENTENCES[2]]
    assert time.monotonic() - start < TIMEOUT, "answered while the stalled clients were still open"
    closed = {}

    def wait_closed(name, sock):
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        closed[name] = (time.monotonic() - start, data)

    threads = [threading.Thread(target=wait_closed, args=(n, s)) for n, s in
               [("silent", silent[0]), ("trickle", trickle), ("stalled", stalled)]]
    [t.start() for t in threads]
    [t.join(15) for t in threads]
    assert all(TIMEOUT - 0.1 < closed[n][0] < TIMEOUT + 3 for n in ("silent", "trickle", "stalled")), closed
    assert closed["stalled"][1].startswith(b"HTTP/1.1 408"), closed["stalled"][1][:100]
    for sock in silent + [trickle, stalled]:
        sock.close()


def test_json_logs_are_one_object_a_line_and_a_client_gone_mid_upload_is_one_info_line(live):
    import httpx
    httpx.post(f"{live[1]}/translate", json={"q": SENTENCES[3], "source": "en", "target": "fr"}, timeout=30)
    host, port = live[1].rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as leaving:  # half a body, then gone
        leaving.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"q\": \"a dog")
        time.sleep(0.3)
    time.sleep(0.5)
    live[0].terminate()
    live[0].wait(30)
    live[0].log_reader.join(10)
    lines = [json.loads(line) for line in live[0].log if line.strip()]  # every line parses
    access = [e for e in lines if e.get("path") == "/translate" and e.get("sentences") == 1]
    assert access and access[-1]["status"] == 200 and access[-1]["ms"] > 0
    gone = [e for e in lines if "went away" in e["message"]]
    assert len(gone) == 1 and gone[0]["level"] == "info", gone
    assert not [e for e in lines if "traceback" in e or e["level"] == "error"], "no traceback, no error"


def test_all_model_work_runs_on_one_thread(learned):
    """Batches and alignments, from /translate and /v1/translate, run on the model thread
    (`batcher.ModelThread`): a second thread calling torch gets an OpenMP team of its own
    and makes both slow (2x beam search on 2 cores)."""
    with make_client(learned[0]) as c:
        translator, seen = c.app.state.service.models[0].translator, set()
        for name in ("translations", "alignment"):
            real = getattr(translator, name)
            setattr(translator, name, lambda *a, real=real: (seen.add(threading.get_ident()), real(*a))[1])
        assert c.post("/translate", json={"q": SENTENCES[:4], "source": "en", "target": "fr"}).status_code == 200
        r = c.post("/translate", json={"q": "A dog runs to https://example.com now.", "source": "en", "target": "fr"})
        assert "https://example.com" in r.json()["translatedText"]  # a protected span: placed by the alignment
        assert c.post("/v1/translate", json={"src": [SENTENCES[0]], "attention": True}).json()["translations"][0][
            "attention"]
        assert len(seen) == 1 and threading.get_ident() not in seen


def test_the_access_log_can_be_turned_off(learned, caplog):
    with make_client(learned[0], access_log=False) as c, caplog.at_level(logging.INFO):
        assert c.post("/translate", json={"q": SENTENCES[0], "source": "en", "target": "fr"}).status_code == 200
    assert not [r for r in caplog.records if r.name == "machine_translation.serve.access"]


def test_a_client_cannot_forge_access_log_lines(client, caplog):
    with caplog.at_level(logging.INFO):
        client.get('/x%0A127.0.0.1 - - [01/Jan/2026] "GET /admin HTTP/1.1" 200', headers={"user-agent": 'a"b'})
    access = [r.getMessage() for r in caplog.records if r.name == "machine_translation.serve.access"]
    assert len(access) == 1 and "\n" not in access[0] and '\\x0A127.0.0.1' in access[0], access
    assert '"a\\x22b"' in access[0]


def test_answers_on_a_kept_alive_connection_are_sent_at_once():
    """The listening socket is made so that asyncio turns Nagle's algorithm off on each
    connection (TCP_NODELAY): with it on, every answer after a connection's first waited for
    the client's delayed ACK, about 40 ms (a keep-alive client at C = 1: 72 -> 29 ms)."""
    import asyncio

    from machine_translation.serve.server import bind
    sock = bind("127.0.0.1", 0)
    seen = []

    async def main():
        async def handle(reader, writer):
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        while not seen:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert seen == [1]
