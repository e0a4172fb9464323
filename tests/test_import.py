"""`mt import`: tiny random MarianMTModels saved by `transformers` in the test are imported,
and the imported model computes what the reference implementation computes: the same
teacher-forced logits, and `generate()`'s greedy and beam outputs, in each variant (swish or
ReLU, shared or separate vocabularies, tied or untied output, a final_logits_bias, a
multilingual one with >>xxx<< tokens). The tokenizer equals `MarianTokenizer`, and bad
sources are one line, exit 2, nothing written."""
import json
import random

import pytest
import torch
from typer.testing import CliRunner

from machine_translation.cli import app
from tests.conftest import multi30k_lines

transformers = pytest.importorskip("transformers")
runner = CliRunner()
MAX_LENGTH = 16  # generate()'s, counting the decoder's start token
VARIANTS = {
    "swish, shared, tied": dict(activation_function="swish"),
    "relu, separate vocabularies, untied": dict(activation_function="relu", share_encoder_decoder_embeddings=False,
                                                tie_word_embeddings=False),
    "gelu, shared, untied": dict(activation_function="gelu", tie_word_embeddings=False),
    "multilingual": dict(activation_function="swish", languages=(">>fra<<", ">>deu<<", ">>spa<<")),
}


def train_spm(lines, path, size):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(path), vocab_size=size,
                                   model_type="unigram", character_coverage=1.0, minloglevel=2,
                                   unk_id=0, bos_id=-1, eos_id=1, pad_id=-1, unk_piece="<unk>", eos_piece="</s>")
    (path.parent / f"{path.name}.model").rename(path)


def marian_vocab(spm_files, languages=(), seed=0):
    """Marian's order: </s>, <unk>, language tokens, the pieces shuffled (not SentencePiece's
    order), <pad> last."""
    import sentencepiece as spm
    pieces = set()
    for f in spm_files:
        sp = spm.SentencePieceProcessor(model_file=str(f))
        pieces |= {sp.id_to_piece(i) for i in range(sp.get_piece_size())} - {"<unk>", "</s>"}
    pieces = sorted(pieces)
    random.Random(seed).shuffle(pieces)
    order = ["</s>", "<unk>", *languages, *pieces, "<pad>"]
    return {p: i for i, p in enumerate(order)}


def make_marian(root, variant):
    """A random MarianMTModel and its MarianTokenizer, saved by transformers into root/name."""
    options = dict(VARIANTS[variant])
    languages = options.pop("languages", ())
    d = root / variant.replace(", ", "-").replace(" ", "_")
    d.mkdir(parents=True)
    separate = options.get("share_encoder_decoder_embeddings") is False
    train_spm(multi30k_lines("en", 400), d / "source.spm", 150)
    train_spm(multi30k_lines("fr", 400), d / "target.spm", 150 if separate else 160)  # (separate: <pad> last in both)
    vocab = marian_vocab([d / "source.spm"] if separate else [d / "source.spm", d / "target.spm"], languages)
    (d / "vocab.json").write_text(json.dumps(vocab))
    decoder_vocab = None
    if separate:
        target_vocab = marian_vocab([d / "target.spm"], seed=1)
        (d / "target_vocab.json").write_text(json.dumps(target_vocab))
        decoder_vocab = len(target_vocab)
    tok = transformers.MarianTokenizer(str(d / "source.spm"), str(d / "target.spm"), str(d / "vocab.json"),
                                       target_vocab_file=str(d / "target_vocab.json") if separate else None,
                                       separate_vocabs=separate)
    pad = (decoder_vocab or len(vocab)) - 1
    config = transformers.MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=decoder_vocab, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
        forced_eos_token_id=0, scale_embedding=True, dropout=0.0, init_std=0.3, **options)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(std=0.5)
        model.final_logits_bias[0, 0] += 6.0  # EOS likelier, so about half the outputs end before the limit
    model.generation_config = transformers.GenerationConfig(
        num_beams=4, max_length=MAX_LENGTH, bad_words_ids=[[pad]], renormalize_logits=True, pad_token_id=pad,
        eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    (d / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# a test model\n")
    return d, model, tok


@pytest.fixture(scope="module", params=list(VARIANTS))
def imported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("marian")
    source, model, tok = make_marian(root, request.param)
    out = root / "imported"
    pair = ["--pair", "en-fr"]
    r = runner.invoke(app, ["import", str(source), "--out", str(out), *pair])
    assert r.exit_code == 0, r.output
    from machine_translation.inference.translate import Translator
    return request.param, model, tok, Translator.from_pretrained(out, "cpu")


SOURCES = [s for s in multi30k_lines("en", 40, start=1000)][:24]


def hf_inputs(tok, variant, sentences):
    prefix = ">>fra<< " if variant == "multilingual" else ""
    return tok([prefix + s for s in sentences], return_tensors="pt", padding=True)


def test_the_tokenizer_equals_marian_tokenizer(imported):
    variant, _, tok, translator = imported
    src = translator.loaded.src_tokenizer
    for s in multi30k_lines("en", 200, start=29000 - 1014):
        expected = hf_inputs(tok, variant, [s])["input_ids"][0].tolist()
        assert src.encode(s) + [src.eos_id] == expected, s
    tgt = translator.loaded.tgt_tokenizer
    for s in multi30k_lines("fr", 100, start=29000 - 1014):
        ids = tok(text_target=s)["input_ids"]
        assert tgt.encode(s) + [tgt.eos_id] == ids, s
        assert tgt.decode(ids) == tok.decode(ids, skip_special_tokens=True)


def test_teacher_forced_logits_equal_the_reference(imported):
    variant, model, tok, translator = imported
    batch = hf_inputs(tok, variant, SOURCES[:8])
    labels = tok(text_target=multi30k_lines("fr", 8, start=1000), return_tensors="pt", padding=True)["input_ids"]
    pad = model.config.pad_token_id
    decoder_input = torch.cat([torch.full((labels.size(0), 1), pad), labels[:, :-1]], dim=1)
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         decoder_input_ids=decoder_input).logits
        got = translator.model(batch["input_ids"], decoder_input)
    real = decoder_input != pad
    real[:, 0] = True
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("beam", [1, 4])
def test_greedy_and_beam_outputs_equal_generate(imported, beam):
    variant, model, tok, translator = imported
    batch = hf_inputs(tok, variant, SOURCES)
    with torch.no_grad():
        out = model.generate(**batch, num_beams=beam, max_length=MAX_LENGTH, do_sample=False)
    expected = []
    for row in out.tolist():
        row = row[1:]  # the decoder's start
        expected.append(row[: row.index(0)] if 0 in row else row)
    options = translator.defaults.updated(beam=beam)
    got = [h[0].tokens for h in translator._search(SOURCES, options)]
    differ = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not differ, differ[:3]
    assert any(len(e) < MAX_LENGTH - 2 for e in expected)  # some outputs end by EOS, not at the limit


def test_the_imported_defaults_are_the_reference_search(imported):
    _, model, _, translator = imported
    d = translator.defaults
    assert (d.beam, d.max_len_a, d.max_len_b, d.suppress_pad, d.stopping, d.repeat_guard, d.normalize_case) \
        == (4, 0.0, MAX_LENGTH - 1, True, "transformers", False, False)
    assert "cc-by-4.0" in (translator.loaded.directory / "README.md").read_text()


# -- hf: downloads, against a loopback server that speaks the hub's file API -----------------
class Hub:
    """A minimal hub on 127.0.0.1: GET /api/models/ORG/NAME/revision/REV (the snapshot's file
    list) and HEAD/GET /ORG/NAME/resolve/REV/FILE, with the headers huggingface_hub reads.
    `cut` names a file whose body stops halfway (an interrupted download)."""

    def __init__(self, repos: dict[str, dict[str, dict[str, bytes]]]):
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.repos, self.cut = repos, None
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _fail(self, code: str):
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self, body: bool):
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:2] == ["api", "models"]:  # .../revision/REV (the snapshot) or .../tree/REV (its files)
                    repo, rev = "/".join(parts[2:4]), parts[5] if len(parts) > 5 else "main"
                elif len(parts) >= 5 and parts[2] == "resolve":
                    repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                else:
                    return self._fail("EntryNotFound")
                if repo not in hub.repos:
                    return self._fail("RepoNotFound")
                commit = next((c for c, r in hub.sha.items() if r == (repo, rev) or c == rev), None)
                if commit is None:
                    return self._fail("RevisionNotFound")
                files = hub.repos[repo][hub.sha[commit][1]]
                if parts[0] == "api" and parts[4] == "tree":
                    data = json.dumps([{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                       for f, b in files.items()]).encode()
                elif parts[0] == "api":
                    data = json.dumps({"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]}).encode()
                elif name not in files:
                    return self._fail("EntryNotFound")
                else:
                    data = files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                if body:
                    self.wfile.write(data[: len(data) // 2] if parts[0] != "api" and name == hub.cut else data)

            def do_GET(self):
                self._serve(True)

            def do_HEAD(self):
                self._serve(False)

        self.sha = {hashlib.sha1(f"{repo}@{rev}".encode()).hexdigest(): (repo, rev)
                    for repo, revisions in repos.items() for rev in revisions}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    source, _, _ = make_marian(tmp_path_factory.mktemp("hub"), "swish, shared, tied")
    files = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
    older = {**files, "config.json": json.dumps({**json.loads(files["config.json"]), "d_model": 48}).encode()}
    server = Hub({"Helsinki-NLP/opus-mt-en-fr": {"main": files, "v1": older}})
    yield server
    server.server.shutdown()


def mt_import(hub, tmp_path, *args):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1")
    return subprocess.run([sys.executable, "-m", "machine_translation", "import", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_hf_sources_download_through_the_hub_api(hub, tmp_path):
    from machine_translation.inference.translate import Translator
    r = mt_import(hub, tmp_path, "hf:Helsinki-NLP/opus-mt-en-fr", "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    assert Translator.from_pretrained(tmp_path / "m", "cpu").pair == "en-fr"  # the pair from the name
    r = mt_import(hub, tmp_path, "hf:Helsinki-NLP/opus-mt-en-fr@v1", "--out", tmp_path / "v1")
    assert r.returncode == 2 and "do not match its config.json" in r.stderr.splitlines()[-1], r.stderr  # v1: d_model 48


@pytest.mark.parametrize("source, needle", [
    ("hf:Helsinki-NLP/opus-mt-en-xx", "no such model on the hub"),
    ("hf:Helsinki-NLP/opus-mt-en-fr@v9", "no revision 'v9'"),
    ("hf:not a name", "name a model as hf:ORG/NAME"),
])
def test_hf_sources_that_do_not_exist_are_one_line(hub, tmp_path, source, needle):
    r = mt_import(hub, tmp_path, source, "--out", tmp_path / "m")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "m").exists()


def test_an_interrupted_download_leaves_no_model_directory(hub, tmp_path):
    hub.cut = "model.safetensors"
    try:
        r = mt_import(hub, tmp_path, "hf:Helsinki-NLP/opus-mt-en-fr", "--out", tmp_path / "m")
    finally:
        hub.cut = None
    assert r.returncode == 2 and "download failed" in r.stderr.strip().splitlines()[-1], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf-home"]
    r = mt_import(hub, tmp_path, "hf:Helsinki-NLP/opus-mt-en-fr", "--out", tmp_path / "m")  # and again, whole
    assert r.returncode == 0, r.stderr


def test_offline_a_hub_source_is_one_line_at_once(tmp_path):
    import time

    class Closed:
        url = "http://127.0.0.1:9"
    start = time.monotonic()
    r = mt_import(Closed, tmp_path, "hf:Helsinki-NLP/opus-mt-en-fr", "--out", tmp_path / "m")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "cannot be reached" in lines[0], r.stderr
    assert time.monotonic() - start < 60  # (no retries: about 3 s plus Python's start)


# -- bad sources ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_source(tmp_path_factory):
    return make_marian(tmp_path_factory.mktemp("good"), "swish, shared, tied")[0]


def damaged(source, tmp_path, change):
    import shutil
    d = tmp_path / "src"
    shutil.copytree(source, d)
    change(d)
    return d


def edit_config(**changes):
    def apply(d):
        config = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, **changes}))
    return apply


def pickled_code(d):
    import pickle

    class Runs:
        def __reduce__(self):
            return (print, ("this ran",))
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Runs()}))


BAD = {
    "a BERT config": (edit_config(model_type="bert"), "is not a Marian model"),
    "legacy normalize_before": (edit_config(normalize_before=True), "normalize_before is set"),
    "a BPE release without spm files": (lambda d: (d / "source.spm").unlink(), "has no source.spm"),
    "truncated weights": (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:900]),
                          "is corrupt or truncated"),
    "vocab.json of another size": (lambda d: (d / "vocab.json").write_text(json.dumps(
        {**json.loads((d / "vocab.json").read_text()), "extra": len(json.loads((d / "vocab.json").read_text()))})),
        "embedding has"),
    "a pickle that would run code": (pickled_code, "holds code that would run"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_sources_are_one_line_and_nothing_is_written(good_source, tmp_path, case):
    change, needle = BAD[case]
    source = damaged(good_source, tmp_path, change)
    r = runner.invoke(app, ["import", str(source), "--out", str(tmp_path / "m"), "--pair", "en-fr"])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and needle in lines[0], r.output
    assert "this ran" not in r.output and not (tmp_path / "m").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_multilingual_model_needs_a_target_it_has_and_serves_them_all(tmp_path_factory, tmp_path):
    from starlette.testclient import TestClient

    from machine_translation.base.options import ServeOptions
    from machine_translation.serve.api import Access
    from machine_translation.serve.app import build_app
    from machine_translation.serve.server import load_models
    from machine_translation.inference.translate import Translator
    source, _, _ = make_marian(tmp_path_factory.mktemp("multi"), "multilingual")
    r = runner.invoke(app, ["import", str(source), "--out", str(tmp_path / "m"), "--pair", "en-it"])
    assert r.exit_code == 2 and ">>deu<<, >>fra<<, >>spa<<" in r.stderr, r.output
    r = runner.invoke(app, ["import", str(source), "--out", str(tmp_path / "m")])  # no pair, none in the name
    assert r.exit_code == 2 and "--pair" in r.stderr, r.output
    assert runner.invoke(app, ["import", str(source), "--out", str(tmp_path / "m"), "--pair", "en-fr"]).exit_code == 0
    translator = Translator.from_pretrained(tmp_path / "m", "cpu")
    options = ServeOptions()
    with TestClient(build_app(load_models([tmp_path / "m"], "cpu", None, 1, options), options, Access(None, 0))) as c:
        assert {"code": "en", "name": "English", "targets": ["de", "es", "fr"]} in c.get("/languages").json()
        answers = {}
        for target, token in (("de", ">>deu<<"), ("fr", ">>fra<<")):
            r = c.post("/translate", json={"q": SOURCES[:4], "source": "en", "target": target})
            answers[target] = r.json()["translatedText"]
            assert answers[target] == translator.translate([f"{token} {s}" for s in SOURCES[:4]]), target
        assert answers["de"] != answers["fr"]


# -- what an imported model can do ------------------------------------------------------------
def test_an_imported_model_quantizes_serves_and_fine_tunes(good_source, tmp_path, corpus):
    from machine_translation.inference.translate import Translator
    out = tmp_path / "m"
    assert runner.invoke(app, ["import", str(good_source), "--out", str(out), "--pair", "en-fr"]).exit_code == 0
    fp32 = Translator.from_pretrained(out, "cpu")
    assert fp32.model.decoder.blocks[0].ff.nonnegative_inputs == ()  # swish's output can be negative
    int8 = Translator.from_pretrained(out, "cpu", precision="int8")
    same = sum(a == b for a, b in zip(fp32.translate(SOURCES), int8.translate(SOURCES)))
    assert same >= len(SOURCES) * 0.7, same
    r = runner.invoke(app, ["train", "--init-from", str(out), "--src", str(corpus[0]), "--tgt", str(corpus[1]),
                            "--out", str(tmp_path / "tuned"), "--max-steps", "12", "--eval-every", "6",
                            "--save-every", "6", "--batch-tokens", "800", "--lr", "1e-3", "--warmup-steps", "2",
                            "--threads", "1", "--precision", "fp32", "--log-every", "1", "--json"])
    assert r.exit_code == 0, r.output
    from starlette.testclient import TestClient

    from machine_translation.base.options import ServeOptions
    from machine_translation.serve.api import Access
    from machine_translation.serve.app import build_app
    from machine_translation.serve.server import load_models
    options = ServeOptions()
    with TestClient(build_app(load_models([out], "cpu", None, 1, options), options, Access(None, 0))) as client:
        r = client.post("/translate", json={"q": SOURCES[0], "source": "en", "target": "fr"})
        assert r.status_code == 200 and r.json()["translatedText"] == fp32.translate(SOURCES[:1])[0]
    tuned = Translator.from_pretrained(tmp_path / "tuned", "cpu")
    assert type(tuned.loaded.src_tokenizer).__name__ == "MarianTokenizer"  # both of its tokenizers kept
    assert tuned.defaults.stopping == "transformers" and tuned.defaults.suppress_pad  # and its search
    assert tuned.translate(SOURCES[:3])
