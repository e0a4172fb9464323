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
