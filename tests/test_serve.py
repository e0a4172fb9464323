"""`mt serve`: LibreTranslate's API in every body encoding, its errors, the native endpoint,
dynamic batching (each client gets its own results, batched equals alone), limits, keys and
rate limits, a real client (libretranslatepy) against a live server on a loopback port, and
a clean stop. The model is the session's `learned` fixture."""
import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from starlette.testclient import TestClient

from machine_translation.base.options import SearchOptions, ServeOptions
from machine_translation.serve.api import Access
from machine_translation.serve.app import build_app
from machine_translation.serve.server import load_models
from tests.conftest import SENTENCES, start_server



def make_client(model_dir, access=None, **options) -> TestClient:
    opts = ServeOptions(**options)
    models = load_models([model_dir], "cpu", None, 1, opts)
    return TestClient(build_app(models, opts, access or Access(None, 0)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(learned):
    with make_client(learned[0], batch_delay_ms=20) as c:
        yield c


def error(response, status, text=None):
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"], body
    if text is not None:
        assert text in body["error"], body
    return body["error"]


# -- the LibreTranslate API -----------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["json", "form", "multipart", "query"])
def test_translate_in_every_body_encoding(client, alone, encoding):
    params = {"q": SENTENCES[0], "source": "en", "target": "fr"}
    send = {"json": dict(json=params), "form": dict(data=params), "query": dict(params=params),
            "multipart": dict(files={k: (None, v) for k, v in params.items()})}[encoding]
    r = client.post("/translate", **send)
    assert r.status_code == 200, r.text
    assert r.json() == {"translatedText": alone[0][SENTENCES[0]]}


def test_a_list_auto_detection_alternatives_and_lines(client, alone):
    one, two = SENTENCES[1], SENTENCES[2]
    r = client.post("/translate", json={"q": [one, f"{one}\n\n{two}"], "source": "auto", "target": "fr",
                                        "alternatives": 2}).json()
    assert r["translatedText"] == [alone[0][one], f"{alone[0][one]}\n\n{alone[0][two]}"]
    assert [d["language"] for d in r["detectedLanguage"]] == ["en", "en"]
    assert all(50 < d["confidence"] <= 100 for d in r["detectedLanguage"])  # a real confidence, in percent
    assert len(r["alternatives"]) == 2 and all(len(a) == 2 for a in r["alternatives"])
    n_best = [t.text for t in alone[1].translations([one], SearchOptions(beam=4, n_best=3, repeat_guard=True,
                                                                             normalize_case=True))[0]]
    assert r["alternatives"][0] == n_best[1:], "alternatives are the n-best after the first"


def test_html_keeps_the_tags(client, alone):
    page = f'<p class="c">{SENTENCES[3]} <b>{SENTENCES[4]}</b></p><script>var x = "<i>";</script>'
    r = client.post("/translate", json={"q": page, "source": "en", "target": "fr", "format": "html"}).json()
    assert r["translatedText"] == (f'<p class="c">{alone[0][SENTENCES[3]]} <b>{alone[0][SENTENCES[4]]}</b></p>'
                                   '<script>var x = "<i>";</script>')


def test_a_paragraph_with_protected_spans_is_translated_as_the_api_translates_it(client, alone):
    """/translate runs the text pipeline of `Translator.translate`: sentence by sentence, the
    paragraph's spacing kept, placeholders, URLs and e-mail addresses byte for byte."""
    paragraph = (f"  {SENTENCES[1]}  {SENTENCES[2]} See https://example.com/a.b?x=1 or write to "
                 "jane.doe@example.com, {{name}}.")
    r = client.post("/translate", json={"q": [paragraph, SENTENCES[1]], "source": "en", "target": "fr"}).json()
    assert "translatedText" in r, r
    assert r["translatedText"] == alone[1].translate([paragraph, SENTENCES[1]])
    for span in ("https://example.com/a.b?x=1", "jane.doe@example.com", "{{name}}"):
        assert span in r["translatedText"][0]
    assert r["translatedText"][0].startswith(f"  {alone[0][SENTENCES[1]]}  {alone[0][SENTENCES[2]]} ")


def test_languages_detect_settings_health_and_the_page(client):
    assert client.get("/languages").json() == [{"code": "en", "name": "English", "targets": ["fr"]},
                                               {"code": "fr", "name": "French", "targets": []}]
    assert client.request("GET", "/languages", content=b"").status_code == 200  # libretranslatepy's GET with a body
    guesses = client.post("/detect", data={"q": "A man is riding a bicycle down the street."}).json()
    assert guesses[0]["language"] == "en" and guesses[0]["confidence"] > 90
    assert [g["confidence"] for g in guesses] == sorted((g["confidence"] for g in guesses), reverse=True)
    french = client.post("/detect", json={"q": "Un homme fait du vélo dans la rue."}).json()
    assert french[0]["language"] == "fr"  # detected (among the served languages), not assumed to be the source
    assert {g["language"] for g in french} == {"en", "fr"}
    settings = client.get("/frontend/settings").json()
    assert settings["charLimit"] == 5000 and settings["language"]["source"]["code"] == "en"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["models"][0]["queue_depth"] == 0
    page = client.get("/")
    assert page.status_code == 200 and "/v1/translate" in page.text
    assert not re.search(r"""(src|href)=["']https?://""", page.text), "the page loads nothing from outside"


def test_the_native_endpoint_gives_scores_n_best_and_attention(client, alone):
    r = client.post("/v1/translate", json={"src": [SENTENCES[5], ""], "beam": 4, "n_best": 3, "attention": True})
    body = r.json()
    assert r.status_code == 200 and body["model"] and body["time_ms"] >= 0
    first, empty = body["translations"]
    assert first["text"] == alone[0][SENTENCES[5]] and len(first["n_best"]) == 3
    assert [h["score"] for h in first["n_best"]] == sorted((h["score"] for h in first["n_best"]), reverse=True)
    att = first["attention"]
    assert len(att["weights"]) == len(att["target_pieces"]) and len(att["weights"][0]) == len(att["source_pieces"])
    assert all(abs(sum(row) - 1) < 0.01 for row in att["weights"])
    assert empty == {"text": "", "score": 0.0, "n_best": [], "attention": None}


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("params, status, text", [
    ({"source": "en", "target": "fr"}, 400, "Invalid request: missing q parameter"),
    ({"q": "a", "target": "fr"}, 400, "Invalid request: missing source parameter"),
    ({"q": "a", "source": "en"}, 400, "Invalid request: missing target parameter"),
    ({"q": "a", "source": "de", "target": "fr"}, 400, "de is not supported"),
    ({"q": "a", "source": "en", "target": "zz"}, 400, "zz is not supported"),
    ({"q": "a", "source": "en", "target": "fr", "format": "pdf"}, 400, "pdf format is not supported"),
    ({"q": "a", "source": "en", "target": "fr", "alternatives": 99}, 400, "alternatives must be an integer"),
    ({"q": "a", "source": "en", "target": "fr", "alternatives": "two"}, 400, "alternatives must be an integer"),
    ({"q": 5, "source": "en", "target": "fr"}, 400, "q must be a string or a list of strings"),
    ({"q": ["a", {"b": 1}], "source": "en", "target": "fr"}, 400, "q must be a string or a list of strings"),
    ({"q": "x" * 5001, "source": "en", "target": "fr"}, 400, "exceeds text limit (5000)"),
    ({"q": "x" * 100_000, "source": "en", "target": "fr"}, 400, "exceeds text limit"),
    ({"q": ["a"] * 65, "source": "en", "target": "fr"}, 400, "Request (65) exceeds text limit (64)"),
])
def test_bad_requests_get_libretranslate_errors(client, params, status, text):
    error(client.post("/translate", json=params), status, text)


@pytest.mark.parametrize("body, kind, text", [
    (b"{not json", "application/json", "not valid JSON"),
    (b"\xff\xfe{}", "application/json", "not valid UTF-8"),
    (b"[" * 50_000 + b"]" * 50_000, "application/json", None),
    (b'["a list"]', "application/json", "must be an object"),
    (b"q=a", "text/csv", "unsupported content type"),
])
def test_hostile_bodies_get_a_400_and_the_server_goes_on(client, body, kind, text):
    error(client.post("/translate", content=body, headers={"Content-Type": kind}), 400, text)
    assert client.get("/health").status_code == 200


def test_404_405_413_are_json(learned):
    with make_client(learned[0], max_body_bytes=1000) as c:
        error(c.get("/nowhere"), 404, "Not found")
        error(c.get("/translate"), 405, "Method not allowed")
        error(c.post("/translate", json={"q": "a" * 2000, "source": "en", "target": "fr"}), 413, "too large")


def test_api_keys_and_rate_limits(learned):
    now = [0.0]
    access = Access({"good": None, "limited": 2}, rate_limit=0, clock=lambda: now[0])
    with make_client(learned[0], access=access) as c:
        params = {"q": "a dog", "source": "en", "target": "fr"}
        error(c.post("/translate", json=params), 403, "Invalid API key")
        error(c.post("/translate", json={**params, "api_key": "bad"}), 403, "Invalid API key")
        for _ in range(3):
            assert c.post("/translate", json={**params, "api_key": "good"}).status_code == 200
        assert c.post("/translate", data={**params, "api_key": "limited"}).status_code == 200
        assert c.post("/translate", data={**params, "api_key": "limited"}).status_code == 200
        r = c.post("/translate", data={**params, "api_key": "limited"})
        error(r, 429, "Slowdown: 2 per 1 minute")
        assert int(r.headers["Retry-After"]) >= 1
        now[0] += 61
        assert c.post("/translate", data={**params, "api_key": "limited"}).status_code == 200
        assert c.get("/frontend/settings").json()["keyRequired"] is True
    with make_client(learned[0], access=Access(None, rate_limit=1, clock=lambda: now[0])) as c:  # per address
        assert c.post("/translate", json=params).status_code == 200
        error(c.post("/translate", json=params), 429, "Slowdown: 1 per 1 minute")


def test_a_failure_inside_is_a_500_without_traceback_and_the_server_goes_on(learned):
    with make_client(learned[0]) as c:
        model = c.app.state.service.models[0]
        real = model.batcher._translate
        model.batcher._translate = lambda texts, options, told: 1 / 0
        error(c.post("/translate", json={"q": "a dog", "source": "en", "target": "fr"}), 500, "Internal server error")
        model.batcher._translate = real
        assert c.post("/translate", json={"q": "a dog", "source": "en", "target": "fr"}).status_code == 200


def test_a_full_queue_and_a_timeout_are_503_with_retry_after_a_request_over_the_queue_413(learned):
    with make_client(learned[0], queue_size=3, request_timeout=1.0) as c:
        model = c.app.state.service.models[0]
        real = model.batcher._translate
        release = threading.Event()
        model.batcher._translate = lambda texts, options, told: (release.wait(5), real(texts, options, told))[1]
        answers = {}
        ask = lambda name, q: answers.__setitem__(name, c.post("/translate", json={  # noqa: E731
            "q": q, "source": "en", "target": "fr"}))
        held = threading.Thread(target=ask, args=("held", ["a dog", "a cat"]))  # in the batch that hangs
        held.start()
        time.sleep(0.2)
        waiting = threading.Thread(target=ask, args=("waiting", ["a man", "a boy"]))  # 2 of the queue's 3 places
        waiting.start()
        time.sleep(0.2)
        error(c.post("/translate", json={"q": ["a", "b"], "source": "en", "target": "fr"}), 503, "queue is full")
        # more sentences than the queue holds: retrying can never help, so no 503 and no Retry-After
        r = c.post("/translate", json={"q": ["a", "b", "c", "d"], "source": "en", "target": "fr"})
        error(r, 413, "more than the translation queue holds (3, mt serve --queue-size)")
        assert "Retry-After" not in r.headers
        held.join(10), waiting.join(10)
        for name in ("held", "waiting"):
            error(answers[name], 503, "timed out")
            assert answers[name].headers["Retry-After"]
        release.set()
        time.sleep(0.2)
        model.batcher._translate = real
        assert c.post("/translate", json={"q": "a dog", "source": "en", "target": "fr"}).status_code == 200


# -- batching -------------------------------------------------------------------------------
def test_concurrent_clients_get_their_own_translations_batched_equals_alone(client, alone):
    results, errors = {}, []

    def ask(i, sentence):
        try:
            r = client.post("/translate", json={"q": sentence, "source": "en", "target": "fr"})
            results[i] = r.json()["translatedText"]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    before = sum(client.get("/health").json()["models"][0]["batch_sizes"].values())
    threads = [threading.Thread(target=ask, args=(i, s)) for i, s in enumerate(SENTENCES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == len(SENTENCES)
    assert [results[i] for i in range(len(SENTENCES))] == [alone[0][s] for s in SENTENCES]
    health = client.get("/health").json()["models"][0]
    assert sum(health["batch_sizes"].values()) - before < len(SENTENCES), "concurrent requests were batched"


def test_a_sentence_is_answered_when_its_translation_ends_not_its_batch(learned):
    """The batcher answers each sentence the moment the translation tells it, while the rest of
    the batch is still being translated; and a Translator tells every sentence once, exactly
    what it returns."""
    import asyncio

    from machine_translation.inference.translate import Translator
    from machine_translation.serve.batcher import Batcher
    release = threading.Event()

    def translate(texts, options, told):  # the short one ends first; the long one takes until released
        told(0, "short done")
        release.wait(10)
        return ["short done", "long done"]

    batcher = Batcher("m", translate, ServeOptions(batch_delay_ms=50))
    batcher.start()

    async def scenario():
        short, long = batcher.submit(["short", "a long one"], [2, 4], SearchOptions())
        assert await asyncio.wait_for(short.future, 5) == "short done"  # before the batch has ended
        assert not long.future.done()
        release.set()
        assert await asyncio.wait_for(long.future, 5) == "long done"
    try:
        asyncio.run(scenario())
    finally:
        release.set()
        batcher.stop()
    assert batcher.batch_counts() == {2: 1}, "one batch"

    translator = Translator.from_pretrained(learned[0], "cpu")
    lines = SENTENCES[:6] + [""]
    for options in (SearchOptions(beam=4, n_best=2), SearchOptions(beam=1)):
        told = {}
        result = translator.translations(lines, options, on_translation=lambda i, t: told.setdefault(i, []).append(t))
        assert told == {i: [t] for i, t in enumerate(result)}


def test_the_batcher_respects_its_limits(learned):
    from machine_translation.serve.batcher import Batcher, Item
    opts = ServeOptions(max_batch_sentences=3, max_batch_tokens=20)
    b = Batcher("m", None, opts)
    a, other = SearchOptions(beam=4), SearchOptions(beam=2)
    b._pending = [Item(t, n, o, None, None, 0.0) for t, n, o in
                  [("a", 5, a), ("b", 5, other), ("c", 5, a), ("d", 8, a), ("e", 2, a), ("f", 2, a)]]
    first = b._take()
    assert [i.text for i in first] == ["a", "c", "e"]  # same settings; "d" would make 3 x 8 > 20 tokens
    assert [i.text for i in b._pending] == ["b", "d", "f"]  # the rest keep their order


# -- a live server, a real client -----------------------------------------------------------
@pytest.fixture(scope="module")
def live(learned):
    proc, url = start_server("--model", learned[0])
    yield proc, url
    if proc.poll() is None:
        proc.kill()


def test_libretranslatepy_against_the_live_server(live, alone):
    from libretranslatepy import LibreTranslateAPI
    lt = LibreTranslateAPI(live[1])
    assert lt.translate(SENTENCES[6], "en", "fr") == alone[0][SENTENCES[6]]
    assert {"code": "en", "name": "English", "targets": ["fr"]} in lt.languages()
    assert lt.detect("a man")[0]["language"] == "en"


def test_live_threads_get_their_own_results(live, alone):
    import httpx
    out = [None] * 12

    def ask(i):
        out[i] = httpx.post(f"{live[1]}/translate", json={"q": SENTENCES[i], "source": "en", "target": "fr"},
                            timeout=60).json()["translatedText"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert out == [alone[0][s] for s in SENTENCES[:12]]


def test_sigterm_answers_the_open_request_then_stops(learned):
    import httpx
    proc, url = start_server("--model", learned[0])
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(r=httpx.post(
        f"{url}/translate", json={"q": SENTENCES[:20], "source": "en", "target": "fr"}, timeout=60)))
    thread.start()
    time.sleep(0.3)  # the request is in
    proc.send_signal(signal.SIGTERM)
    thread.join(60)
    proc.wait(60)
    assert answer["r"].status_code == 200 and len(answer["r"].json()["translatedText"]) == 20
    proc.log_reader.join(10)
    assert "mt serve: stopped" in "".join(proc.log)
    assert proc.returncode == -signal.SIGTERM, "ended by the signal (143 in a shell): a clean stop for systemd"


def test_a_taken_port_and_a_language_model_are_one_line_errors(learned, live, tmp_path):
    from machine_translation.model.directory import save_pretrained
    from machine_translation.model.transformer import ModelConfig, build_model
    from mt_tokenizers import CharTokenizer
    port = live[1].rsplit(":", 1)[1]
    taken = subprocess.run([sys.executable, "-m", "machine_translation", "serve", "--model", str(learned[0]),
                            "--port", port], capture_output=True, text=True, timeout=60)
    assert taken.returncode == 2 and "already in use" in taken.stderr and len(taken.stderr.splitlines()) == 1
    tok = CharTokenizer.train(["to be or not to be"])
    config = ModelConfig.from_preset("tiny", "lm", tok.vocab_size)
    save_pretrained(tmp_path / "lm", build_model(config), config, tok, tok)
    lm = subprocess.run([sys.executable, "-m", "machine_translation", "serve", "--model", str(tmp_path / "lm"),
                         "--port", "0"], capture_output=True, text=True, timeout=60)
    assert lm.returncode == 2 and "language model" in lm.stderr and len(lm.stderr.splitlines()) == 1
    keys = tmp_path / "keys.txt"
    keys.write_text("onlykey 5 extra\n")
    bad = subprocess.run([sys.executable, "-m", "machine_translation", "serve", "--model", str(learned[0]),
                          "--api-keys", str(keys)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "line 1" in bad.stderr and len(bad.stderr.splitlines()) == 1
    import httpx
    assert httpx.get(f"{live[1]}/health", timeout=10).status_code == 200


def test_a_client_that_goes_away_has_its_queued_sentences_dropped(learned):
    import asyncio

    from machine_translation.serve.api import ClientGone
    opts = ServeOptions(batch_delay_ms=0)
    model = load_models([learned[0]], "cpu", None, 1, opts)[0]
    release, seen = threading.Event(), []
    model.batcher._translate = lambda texts, options, told: (seen.append(list(texts)), release.wait(5),
                                                       [[None]] * len(texts))[2]
    model.batcher.start()

    class GoneClient:  # the ASGI receive of a client that disconnects after 0.2 s
        scope = {}

        async def receive(self):
            await asyncio.sleep(0.2)
            return {"type": "http.disconnect"}

    class StaysClient:
        scope = {}

        async def receive(self):
            await asyncio.sleep(60)

    async def scenario():
        from machine_translation.serve.app import Service
        service = Service([model], opts, Access(None, 0))
        busy = asyncio.ensure_future(service.run(model, ["first"], SearchOptions(), StaysClient()))
        await asyncio.sleep(0.1)  # "first" is being translated; the next request waits in the queue
        with pytest.raises(ClientGone):
            await service.run(model, ["gone 1", "gone 2"], SearchOptions(), GoneClient())
        assert model.batcher.depth == 0, "the sentences of the client that left were dropped"
        release.set()
        await busy

    asyncio.run(scenario())
    model.batcher.stop()
    assert seen == [["first"]], "nothing of the departed client was translated"


def test_several_models_one_per_pair(learned, tmp_path):
    """Two pairs served at once: /languages lists both, each request goes to its pair's
    model, auto cannot choose between two source languages, and a pair twice is refused."""
    import shutil

    from machine_translation.base.errors import ConfigError
    other = tmp_path / "fr-en"
    shutil.copytree(learned[0], other, ignore=shutil.ignore_patterns("checkpoints", "data"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "pair": "fr-en"}))
    opts = ServeOptions()
    models = load_models([learned[0], other], "cpu", None, 1, opts)
    with TestClient(build_app(models, opts, Access(None, 0))) as c:
        assert c.get("/languages").json() == [{"code": "en", "name": "English", "targets": ["fr"]},
                                              {"code": "fr", "name": "French", "targets": ["en"]}]
        assert c.post("/translate", json={"q": "a dog", "source": "fr", "target": "en"}).status_code == 200
        assert c.post("/v1/translate", json={"src": ["a dog"], "source": "fr", "target": "en"}).json()["model"] == "fr-en"
        # source=auto routes each text to the model of its detected language
        english = c.post("/translate", json={"q": "A dog runs in the snow.", "source": "auto", "target": "fr"}).json()
        assert english["detectedLanguage"]["language"] == "en"
        french = c.post("/translate", json={"q": "Un chien court dans la neige.", "source": "auto", "target": "en"})
        assert french.status_code == 200 and french.json()["detectedLanguage"]["language"] == "fr"
        error(c.post("/translate", json={"q": "Un chien court dans la neige.", "source": "auto", "target": "fr"}),
              400, "source and target are both fr")
        error(c.post("/translate", json={"q": "Ein Hund läuft durch den Schnee.", "source": "auto", "target": "fr"}),
              400, "looks de")
    with pytest.raises(ConfigError, match="both translate en-fr"):
        load_models([learned[0], learned[0]], "cpu", None, 1, opts)
