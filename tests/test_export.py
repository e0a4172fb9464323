"""`mt export --to hf`: a model mt made, as a Hugging Face `MarianMTModel` directory that
`transformers` loads and translates with as mt does (teacher-forced logits within 1e-4, the
same greedy output, the same token ids), exactly although mt's sinusoids are interleaved
and Marian's in halves (the model dimension is permuted); `mt import` of the export gives
back a model that translates identically; what Marian cannot represent, and bad flags, are
one line that writes nothing."""
import json

import pytest
import torch
from typer.testing import CliRunner

from machine_translation.base.options import SearchOptions
from machine_translation.cli import app
from machine_translation.inference.translate import Translator
from machine_translation.model.directory import save_pretrained
from machine_translation.model.transformer import build_model
from tests.conftest import multi30k_lines, tiny_config

runner = CliRunner()
SENTENCES = multi30k_lines("en", 8, start=100)


def mt(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_model(root, **overrides):
    """A random post-norm translation model (the default preset's norm), trained tokenizer."""
    from mt_tokenizers import SentencePieceTokenizer
    tok = SentencePieceTokenizer.train(multi30k_lines("en", 300) + multi30k_lines("fr", 300), 500)
    torch.manual_seed(0)
    config = tiny_config(**{"vocab_size": tok.vocab_size, "norm_first": False, "max_positions": 64, **overrides})
    model = build_model(config).eval()
    for p in model.parameters():  # weights far from their initialisation: every permutation error shows
        p.data.add_(torch.randn_like(p) * 0.1)
    return save_pretrained(root, model, config, tok, tok, pair="en-fr", generation={"beam": 2})


@pytest.fixture(scope="module", params=["relu", "swish", "gelu"])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    source = make_model(root / "mt", activation=request.param)
    r = mt("export", source, "--to", "hf", "--out", root / "hf")
    assert r.exit_code == 0, r.output
    return source, root / "hf"


def test_transformers_gives_the_same_logits_ids_and_greedy_output(exported):
    from transformers import MarianMTModel, MarianTokenizer
    source, out = exported
    ours = Translator.from_pretrained(source, "cpu")
    theirs, tokenizer = MarianMTModel.from_pretrained(out).eval(), MarianTokenizer.from_pretrained(out)
    tok = ours.loaded.src_tokenizer
    for sentence in SENTENCES:
        ids = tokenizer(sentence).input_ids
        assert ids == tok.encode(sentence) + [tok.eos_id]  # the same pieces and ids, EOS at the end
        src, tgt = torch.tensor([ids]), torch.tensor([[tok.bos_id] + ids[:6]])
        with torch.no_grad():
            difference = (ours.model(src, tgt) - theirs(input_ids=src, decoder_input_ids=tgt).logits).abs().max()
        assert difference < 1e-4, (sentence, difference)
    options = SearchOptions(beam=1, max_len_a=0.0, max_len_b=20, repeat_guard=False, normalize_case=False,
                            suppress_pad=True)
    for sentence, best in zip(SENTENCES, ours.translations(SENTENCES, options)):
        generated = theirs.generate(torch.tensor([tokenizer(sentence).input_ids]), num_beams=1, do_sample=False,
                                    max_new_tokens=20, forced_eos_token_id=None)[0].tolist()[1:]  # (after <bos>)
        assert generated[:len(best[0].tokens)] == best[0].tokens and len(generated) - len(best[0].tokens) <= 1, \
            (sentence, generated, best[0].tokens)  # the same tokens; transformers also emits the EOS


def test_the_export_says_what_it_keeps_and_what_it_cannot(exported):
    _, out = exported
    record = json.loads((out / "mt_export.json").read_text())
    assert record["to"] == "hf" and record["precision"] == "fp32"
    assert any("repetition guard" in line for line in record["not_kept"])
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "marian" and config["decoder_start_token_id"] == 2  # mt's <bos>


def test_export_then_import_translates_identically(exported, tmp_path):
    source, out = exported
    r = mt("import", out, "--out", tmp_path / "back", "--pair", "en-fr")
    assert r.exit_code == 0, r.output
    options = SearchOptions(beam=2, max_len_a=1.5, max_len_b=5, repeat_guard=False, normalize_case=False,
                            suppress_pad=True)
    before = Translator.from_pretrained(source, "cpu").translations(SENTENCES, options)
    after = Translator.from_pretrained(tmp_path / "back", "cpu").translations(SENTENCES, options)
    assert [h[0].tokens for h in after] == [h[0].tokens for h in before]
    assert all(abs(a[0].score - b[0].score) < 1e-4 for a, b in zip(after, before))


def test_bf16_stores_bfloat16_weights(exported, tmp_path):
    from safetensors import safe_open
    source, _ = exported
    assert mt("export", source, "--to", "hf", "--out", tmp_path / "b", "--precision", "bf16").exit_code == 0
    with safe_open(str(tmp_path / "b" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.shared.weight").dtype == torch.bfloat16


@pytest.mark.parametrize("overrides, message", [
    ({"norm_first": True}, "norm_first true (pre-norm): Marian is post-norm"),
    ({"positional": "learned"}, "positional 'learned'"),
])
def test_what_marian_cannot_represent_is_one_line(tmp_path, overrides, message):
    source = make_model(tmp_path / "mt", **overrides)
    r = mt("export", source, "--to", "hf", "--out", tmp_path / "hf")
    assert r.exit_code == 2 and message in r.output and "--to hf cannot represent it" in r.output, r.output
    assert not (tmp_path / "hf").exists()


def test_bad_flags_and_an_existing_out_are_one_line(exported, tmp_path):
    source, out = exported
    r = mt("export", source, "--to", "onnx", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "--to onnx: mt exports to hf" in r.output
    r = mt("export", source, "--to", "hf", "--out", tmp_path / "x", "--precision", "int8")
    assert r.exit_code == 2 and "--precision int8: --to hf stores its weights in fp32, bf16, fp16" in r.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = mt("export", source, "--to", "hf", "--out", tmp_path / "mine", "--overwrite")
    assert r.exit_code == 2 and "mt did not write" in r.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    r = mt("export", source, "--to", "hf", "--out", out)
    assert r.exit_code == 2 and "is not empty" in r.output
    assert mt("export", source, "--to", "hf", "--out", out, "--overwrite").exit_code == 0  # over its own export
    assert not list(tmp_path.glob("x*"))


# -- CTranslate2 ---------------------------------------------------------------------------------
VAL = multi30k_lines("en", 200, start=29000 - 200)  # held out by the `learned` fixture (the first 6,000 lines)


@pytest.fixture(scope="module")
def ct2_exported(learned, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct2")
    for precision in ("fp32", "int8"):
        r = mt("export", learned[0], "--to", "ctranslate2", "--out", out / precision, "--precision", precision)
        assert r.exit_code == 0, r.output
    return learned[0], out


def ct2_translate(directory, sentences, tok, beam):
    import ctranslate2
    translator = ctranslate2.Translator(str(directory), device="cpu", intra_threads=1)
    pieces = [[tok.id_to_piece(i) for i in tok.encode(s)] + [tok.id_to_piece(tok.eos_id)] for s in sentences]
    results = translator.translate_batch(pieces, beam_size=beam, length_penalty=1.0, return_scores=True,
                                         max_decoding_length=64)
    return [(r.hypotheses[0], r.scores[0]) for r in results]


@pytest.mark.parametrize("beam", [1, 4])
def test_ctranslate2_translates_as_mt_does(ct2_exported, beam):
    """The trained fixture (pre-norm; the default preset's post-norm is held by the same
    mapping) through CTranslate2's own search: the same tokens for at least 99% of 200
    held-out sentences and scores within 1e-3, mt's guard and case handling off, the same
    length penalty and length limit."""
    source, out = ct2_exported
    translator = Translator.from_pretrained(source, "cpu")
    tok = translator.loaded.src_tokenizer
    options = SearchOptions(beam=beam, length_penalty=1.0, max_len_a=0.0, max_len_b=64, repeat_guard=False,
                            normalize_case=False)
    ours = [n[0] for n in translator.translations(VAL, options)]
    theirs = ct2_translate(out / "fp32", VAL, tok, beam)
    differ = [(s, [tok.id_to_piece(i) for i in o.tokens], t) for s, o, (t, _) in zip(VAL, ours, theirs)
              if [tok.id_to_piece(i) for i in o.tokens] != t]
    assert len(differ) <= 2, differ
    scores = [(s, o.score, t) for s, o, (_, t) in zip(VAL, ours, theirs) if abs(o.score - t) > 1e-3]
    assert len(scores) <= len(differ), scores  # only a sentence that differs may score differently


def test_ctranslate2_int8_stays_close_to_float32(ct2_exported):
    """BLEU within 0.5 of float32, and as many lines unchanged as mt's own int8 gives (on this
    d=64 fixture both keep about 78%; on the 7-minute small model, 94%: docs/benchmarks.md)."""
    import sacrebleu
    source, out = ct2_exported
    tok = Translator.from_pretrained(source, "cpu").loaded.src_tokenizer
    options = SearchOptions(beam=4, length_penalty=1.0, max_len_a=0.0, max_len_b=64, repeat_guard=False,
                            normalize_case=False)
    mt_same = sum(a[0].text == b[0].text for a, b in zip(Translator.from_pretrained(source, "cpu").translations(
        VAL, options), Translator.from_pretrained(source, "cpu", precision="int8").translations(VAL, options)))
    refs = multi30k_lines("fr", 200, start=29000 - 200)
    import sentencepiece
    texts = {}
    for p in ("fp32", "int8"):  # decoded by the SentencePiece model the export ships
        pieces = sentencepiece.SentencePieceProcessor(model_file=str(out / p / "sentencepiece.model"))
        texts[p] = [pieces.decode(h) for h, _ in ct2_translate(out / p, VAL, tok, 4)]
    bleu = {p: sacrebleu.corpus_bleu(t, [refs]).score for p, t in texts.items()}
    assert abs(bleu["int8"] - bleu["fp32"]) <= 0.5, bleu
    assert sum(a == b for a, b in zip(texts["fp32"], texts["int8"])) >= mt_same - 10, mt_same


def test_ctranslate2_export_needs_its_package(exported, tmp_path, monkeypatch):
    import sys
    source, _ = exported
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if not installed
    r = mt("export", source, "--to", "ctranslate2", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "pip install 'mt[ctranslate2]'" in r.output and not (tmp_path / "c").exists()


# -- --engine ctranslate2 ------------------------------------------------------------------------
def test_engine_ctranslate2_in_translate_and_evaluate(learned, tmp_path, monkeypatch):
    """`--engine ctranslate2` translates as mt's own search (guard and case handling off),
    exporting the model once into the cache (a note), then reusing it; a copy beside the
    model made from these weights is used instead, and a stale one is not."""
    import shutil
    monkeypatch.setenv("MT_CACHE_DIR", str(tmp_path / "cache"))
    lines = tmp_path / "in.en"
    lines.write_text("\n".join(VAL[:30]) + "\n", encoding="utf-8")
    flags = ["--input", lines, "--no-repeat-guard", "--keep-case", "--beam", 4]
    torch_out = mt("translate", "--model", learned[0], *flags)
    first = mt("translate", "--model", learned[0], "--engine", "ctranslate2", *flags)
    assert first.exit_code == 0, first.output
    assert "exporting" in first.stderr and first.stderr.count("note:") == 1
    same = sum(a == b for a, b in zip(first.stdout.splitlines(), torch_out.stdout.splitlines()))
    assert same >= 29, (first.stdout, torch_out.stdout)
    again = mt("translate", "--model", learned[0], "--engine", "ctranslate2", *flags)
    assert again.stdout == first.stdout and "exporting" not in again.stderr  # the cached copy
    model = tmp_path / "model"
    shutil.copytree(learned[0], model)
    assert mt("export", model, "--to", "ctranslate2", "--out", model / "ctranslate2").exit_code == 0
    shutil.rmtree(tmp_path / "cache")
    beside = mt("translate", "--model", model, "--engine", "ctranslate2", *flags)
    assert beside.stdout == first.stdout and not (tmp_path / "cache").exists()  # MODEL/ctranslate2 was used
    record = model / "ctranslate2" / "mt_export.json"
    record.write_text(record.read_text().replace('"weights_sha256": "', '"weights_sha256": "0'))
    stale = mt("translate", "--model", model, "--engine", "ctranslate2", *flags)
    assert "exporting" in stale.stderr and stale.stdout == first.stdout  # not from these weights: not used
    ref = tmp_path / "ref.fr"
    ref.write_text("\n".join(multi30k_lines("fr", 30, start=29000 - 200)) + "\n", encoding="utf-8")
    scores = [json.loads(mt("evaluate", "--model", learned[0], "--src", lines, "--ref", ref, "--no-repeat-guard",
                            "--keep-case", "--json", "--engine", e, "--save-dir", tmp_path / e).stdout)["bleu"]
              for e in ("torch", "ctranslate2")]
    assert abs(scores[0] - scores[1]) < 0.5, scores
    r = mt("translate", "--model", learned[0], "--engine", "marian", "A dog.")
    assert r.exit_code == 2 and "--engine marian: use torch or ctranslate2" in r.output


def test_engine_ctranslate2_serves_each_client_its_translation(learned, ct2_exported):
    from machine_translation.base.options import ServeOptions
    from machine_translation.serve.api import Access
    from machine_translation.serve.app import build_app
    from machine_translation.serve.server import load_models
    from starlette.testclient import TestClient
    source, out = ct2_exported
    options = ServeOptions()
    models = load_models([source], "cpu", None, 1, options, {source: out / "fp32"})
    assert models[0].translator.engine is not None
    engine = Translator.from_pretrained(source, "cpu", ctranslate2=out / "fp32")
    expected = engine.translate(VAL[:5])
    told = {}  # what the server answers each sentence with as soon as its batch is back
    result = engine.translations(VAL[:5] + [""], on_translation=lambda i, t: told.setdefault(i, []).append(t))
    assert told == {i: [t] for i, t in enumerate(result)}
    with TestClient(build_app(models, options, Access(None, 0))) as client:
        answers = [client.post("/translate", json={"q": s, "source": "en", "target": "fr"}).json()["translatedText"]
                   for s in VAL[:5]]
        page = client.post("/translate", json={"q": f"<p>{VAL[0]}</p>", "source": "en", "target": "fr",
                                               "format": "html"}).json()["translatedText"]
    assert answers == expected and page == f"<p>{expected[0]}</p>"


def test_engine_ctranslate2_server_keeps_every_translator_busy(learned, ct2_exported, monkeypatch):
    """`mt serve --engine ctranslate2 --workers 2`: a batch is split into one part per
    CTranslate2 translator (inter_threads), in one call, as mt's own workers share one;
    the answers are the same as one translator's."""
    from machine_translation.base.options import ServeOptions
    from machine_translation.inference.engine import CTranslate2Search
    from machine_translation.serve.api import Access
    from machine_translation.serve.app import build_app
    from machine_translation.serve.server import load_models
    from starlette.testclient import TestClient
    source, out = ct2_exported
    calls, search = [], CTranslate2Search.search
    monkeypatch.setattr(CTranslate2Search, "search", lambda self, batches, opts: calls.append(len(batches)) or
                        search(self, batches, opts))
    options = ServeOptions()
    models = load_models([source], "cpu", None, 2, options, {source: out / "fp32"})
    expected = Translator.from_pretrained(source, "cpu", ctranslate2=out / "fp32").translate(VAL[:8])
    calls.clear()
    with TestClient(build_app(models, options, Access(None, 0))) as client:
        answer = client.post("/translate", json={"q": VAL[:8], "source": "en", "target": "fr"}).json()
    assert answer["translatedText"] == expected and calls == [2], calls
