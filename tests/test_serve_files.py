"""LibreTranslate's `/translate_file` and `/download_file` on `mt serve`: a document goes up as
the raw multipart request LibreTranslate documents, comes back translated with its structure
(the same as `mt translate --input FILE`), and lives in a bounded store that expires; bad
uploads are LibreTranslate's 400s, a server without uploads says 403.

No LibreTranslate client installed here has file methods (libretranslatepy 2.1 and npm's
`libretranslate` translate text only), so the raw multipart request is the client."""
import io

import pytest

from machine_translation.serve.files import FileStore
from machine_translation.text import documents
from tests.conftest import SENTENCES
from tests.test_serve import error, make_client

SRT = f"1\n00:00:01,000 --> 00:00:02,000\n{SENTENCES[0]}\n\n2\n00:00:03,500 --> 00:00:05,000\n<i>{SENTENCES[1]}</i>\n"


@pytest.fixture(scope="module")
def client(learned):
    with make_client(learned[0], batch_delay_ms=5) as c:
        yield c


def upload(client, name: str, data: bytes, **fields):
    form = {"source": "en", "target": "fr", **fields}
    return client.post("/translate_file", data=form, files={"file": (name, io.BytesIO(data))})


def download(client, response):
    assert response.status_code == 200, response.text
    url = response.json()["translatedFileUrl"]
    assert url.startswith("http://testserver/download_file/"), url  # absolute, as LibreTranslate answers
    return client.get(url[len("http://testserver"):])


def translated_here(alone, name: str, data: bytes) -> bytes:
    """What `mt translate --input` makes of the same document (the library path)."""
    from machine_translation.base.options import TextOptions
    document = documents.load(name, data)
    return document.build(alone[1].translate(document.texts, text=TextOptions(format=document.format)))


@pytest.mark.parametrize("name, data", [
    ("talk.srt", SRT.encode()),
    ("notes.txt", f"{SENTENCES[2]}\n{SENTENCES[3]}\n".encode()),
    ("page.html", f'<p class="x">{SENTENCES[4]} <b>{SENTENCES[5]}</b></p><script>a<b</script>'.encode()),
    ("sub.vtt", f"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n{SENTENCES[6]}\n".encode()),
])
def test_a_document_goes_up_and_comes_back_translated_with_its_structure(client, alone, name, data):
    r = download(client, upload(client, name, data))
    assert r.status_code == 200
    assert r.content == translated_here(alone, name, data)
    stem, suffix = name.rsplit(".", 1)
    assert f'filename="{stem}_fr.{suffix}"' in r.headers["content-disposition"]


def test_a_word_document_too(client, alone):
    import docx
    doc = docx.Document()
    doc.add_paragraph(SENTENCES[7])
    buffer = io.BytesIO()
    doc.save(buffer)
    r = download(client, upload(client, "report.docx", buffer.getvalue()))
    assert docx.Document(io.BytesIO(r.content)).paragraphs[0].text == alone[0][SENTENCES[7]]
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument")


def test_settings_advertise_the_formats(client):
    settings = client.get("/frontend/settings").json()
    assert settings["filesTranslation"] is True
    assert settings["supportedFilesFormat"] == [".txt", ".srt", ".vtt", ".html", ".htm", ".docx"]


def test_bad_uploads_are_libretranslates_400s(client):
    error(client.post("/translate_file", data={"source": "en", "target": "fr"}), 400,
          "Invalid request: missing file parameter")
    error(client.post("/translate_file", files={"file": ("a.txt", io.BytesIO(b"A dog."))}, data={"target": "fr"}),
          400, "Invalid request: missing source parameter")
    error(upload(client, "program.exe", b"MZ\x90\x00"), 400, "Invalid request: file format not supported")
    error(upload(client, "empty.txt", b""), 400, "Invalid request: empty file")
    error(upload(client, "a.srt", b"1\nnot a time\n"), 400, "not a valid SubRip file")
    error(upload(client, "a.txt", b"\xff\xfe bad"), 400, "not UTF-8 text")
    error(upload(client, "a.txt", b"A dog.", target="zz"), 400, "zz is not supported")
    error(upload(client, "a.txt", ("A dog runs. " * 500).encode()), 400, "exceeds text limit (5000)")
    error(client.get("/download_file/nothing-here.txt"), 404, "no such translated file")
    error(client.get("/download_file/%2E%2E"), 404)  # ".."
    error(client.get("/download_file/..%2F..%2Fetc%2Fpasswd"), 404)


def test_uploads_have_their_own_size_limit_and_can_be_turned_off(learned):
    with make_client(learned[0], max_file_bytes=1000, max_body_bytes=10_000) as small:  # (the form's envelope
        error(upload(small, "a.txt", b"A dog runs. " * 100), 413, "Request body too large")  # counts too)
        assert upload(small, "a.txt", b"A dog.").status_code == 200
    with make_client(learned[0], files_translation=False) as off:
        error(upload(off, "a.txt", b"A dog."), 403, "Files translation are disabled on this server.")
        error(off.get("/download_file/x.txt"), 400, "disabled")
        settings = off.get("/frontend/settings").json()
        assert settings["filesTranslation"] is False and settings["supportedFilesFormat"] == []


def test_the_store_expires_files_and_keeps_within_its_bytes():
    now = [0.0]
    store = FileStore(ttl=60, max_bytes=10, clock=lambda: now[0])
    first = store.add("a.txt", b"12345")
    assert store.get(first).data == b"12345" and store.get(first).filename == "a.txt"
    second = store.add("../../etc/b.txt", b"123456")  # over 10 bytes together: the oldest goes
    assert store.get(first) is None and store.get(second).data == b"123456"
    assert second.endswith(".b.txt") and "/" not in second  # a name fit for a URL, never a path
    assert store.add("big.txt", b"x" * 11) is None  # larger than the whole store
    now[0] = 61.0
    assert store.get(second) is None and store.size == (0, 0)  # expired, and its memory given back
