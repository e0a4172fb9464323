"""Tokenizers: Unicode round trip, fixed special ids, save/load, and HF `tokenizers` unshadowed."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mt_tokenizers import (
    BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharTokenizer, SentencePieceTokenizer, TokenizerError, load_tokenizer,
)

FRENCH = [
    "« Où est le château ? »", "Le garçon mange une pomme à côté de l'église.", "Un homme âgé lit un journal.",
    "Deux femmes marchent près d'un lac gelé.", "Une fille en robe rose saute dans l'herbe.",
    "Where is the castle?", "A boy eats an apple next to the church.", "An old man reads a newspaper.",
] * 20
SAMPLE = "« Où est le château ? »"


@pytest.fixture(scope="module")
def spm_tok():
    return SentencePieceTokenizer.train(FRENCH, vocab_size=400)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_round_trip(model_type):
    tok = SentencePieceTokenizer.train(FRENCH, vocab_size=400, model_type=model_type)
    ids = tok.encode(SAMPLE)
    assert UNK_ID not in ids
    assert tok.decode(ids) == SAMPLE
    assert tok.decode(tok.encode("Ça coûte 3 €, ô ñ")) == "Ça coûte 3 €, ô ñ"  # unseen chars: byte fallback


def test_sampled_segmentations_repeat_by_seed_and_spell_the_same_text(spm_tok):
    from machine_translation.data.sources import ragged
    from machine_translation.training.tasks import resegment
    draws = {tuple(spm_tok.sample_encode(SAMPLE, 0.1, u)) for u in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)}
    assert len(draws) > 2  # different draws, different segmentations
    assert all(spm_tok.decode(list(d)) == SAMPLE for d in draws)
    assert spm_tok.sample_encode(SAMPLE, 0.1, 0.3) == spm_tok.sample_encode(SAMPLE, 0.1, 0.3)
    assert spm_tok.sample_encode(SAMPLE, 100.0, 0.99) == spm_tok.encode(SAMPLE)  # a sharp alpha: the best one
    rows = ragged([spm_tok.encode(SAMPLE), spm_tok.encode("Un chat.")])
    u = [0.7, 0.3]
    again = resegment(rows, spm_tok, 0.1, u, max_len=100)
    assert all((a == b).all() for a, b in zip(resegment(rows, spm_tok, 0.1, u, max_len=100), again))
    short = resegment(rows, spm_tok, 0.1, u, max_len=len(spm_tok.encode(SAMPLE)))  # a longer draw: kept
    offsets, values = short
    assert values[offsets[0]:offsets[1]].tolist() in (spm_tok.encode(SAMPLE), spm_tok.sample_encode(SAMPLE, 0.1, 0.7))
    assert spm_tok.can_sample and not SentencePieceTokenizer.train(FRENCH, vocab_size=400, model_type="bpe").can_sample


def test_special_ids_are_fixed(spm_tok):
    for tok in (spm_tok, CharTokenizer.train(FRENCH)):
        assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [spm_tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<bos>", "<eos>"]


def test_save_load_identical(tmp_path, spm_tok):
    char = CharTokenizer.train(FRENCH)
    for tok, sub in ((spm_tok, "spm"), (char, "char")):
        tok.save(tmp_path / sub)
        loaded = load_tokenizer(tmp_path / sub)
        assert type(loaded) is type(tok)
        assert loaded.vocab_size == tok.vocab_size
        assert loaded.encode(SAMPLE) == tok.encode(SAMPLE)
        assert loaded.decode(loaded.encode(SAMPLE)) == SAMPLE


def test_char_tokenizer_unknown_chars():
    tok = CharTokenizer.train(["abc"])
    assert tok.encode("abz") == [4, 5, UNK_ID]
    with pytest.raises(TokenizerError, match="'z'"):
        tok.encode("abz", strict=True)


def test_corrupt_or_missing_tokenizer_files(tmp_path, spm_tok):
    with pytest.raises(TokenizerError, match="missing"):
        load_tokenizer(tmp_path)
    spm_tok.save(tmp_path)
    (tmp_path / "spm.model").write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["pad_id"] = 5
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(TokenizerError, match="special ids"):
        load_tokenizer(tmp_path)


def test_huggingface_tokenizers_is_not_shadowed():
    """Installing or importing mt must leave Hugging Face's `tokenizers` importable as itself,
    also from the repo root, where our plain `tokenizers/` folder sits on sys.path."""
    repo = Path(__file__).resolve().parents[1]
    code = (
        "import machine_translation, mt_tokenizers, tokenizers; "
        "from tokenizers import Tokenizer, models; "
        "Tokenizer(models.BPE()); "
        "assert 'site-packages' in tokenizers.__file__, tokenizers.__file__; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    hf = importlib.import_module("tokenizers")
    assert hasattr(hf, "Tokenizer") and "site-packages" in (hf.__file__ or "")
