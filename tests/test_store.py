"""The streamed data path: file pairs read one line at a time, the tokenizer's reservoir
sample, and the memory-mapped token files that training batches come from (an Arrow
file of pairs for translation, flat id files for language models)."""
from __future__ import annotations

import numpy as np
import pytest

from machine_translation.data import corpora
from machine_translation.data.sources import collate_pairs, sample_pairs, split_text, token_batches
from machine_translation.base.errors import DataError
from machine_translation.data.store import PairStore, open_tokens, write_token_files
from mt_tokenizers import CharTokenizer


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def tok():
    return CharTokenizer.train(["abcdefghijklmnopqrstuvwxyz ABC"])


def test_misaligned_files_are_reported_whichever_is_longer(tmp_path):
    a, b = write(tmp_path / "a.en", ["x"] * 5), write(tmp_path / "b.fr", ["y"] * 7)
    with pytest.raises(DataError, match=r"a.en has 5 lines but .*b.fr has 7"):
        list(corpora.iter_file_pair(a, b))
    with pytest.raises(DataError, match=r"b.fr has 7 lines but .*a.en has 5"):
        list(corpora.iter_file_pair(b, a))


def test_reservoir_sample_is_whole_when_small_and_uniform_when_large():
    pairs = [(f"s{i}", f"t{i}") for i in range(100)] + [("", "t"), ("s", " ")]
    sample, n = sample_pairs(iter(pairs), 1000, seed=0)
    assert n == 100 and sample == pairs[:100]  # in order, empty pairs left out
    sample, n = sample_pairs(iter(pairs), 10, seed=0)
    assert n == 100 and len(set(sample)) == 10 and sample == sample_pairs(iter(pairs), 10, seed=0)[0]
    hits = np.zeros(100)
    for seed in range(400):  # every pair is about equally likely, the late ones too
        for s, _ in sample_pairs(iter(pairs), 10, seed)[0]:
            hits[int(s[1:])] += 1
    assert hits[:50].sum() == pytest.approx(hits[50:].sum(), rel=0.15)


def test_store_on_disk_equals_the_list_reference(tmp_path, tok):
    rng = np.random.default_rng(0)
    words = ["a", "bb", "ccc", "dddd", "Abc", "xyz"]
    pairs = [(" ".join(rng.choice(words, rng.integers(1, 6))), " ".join(rng.choice(words, rng.integers(1, 8))))
             for _ in range(2500)]
    pairs[7] = ("", "tgt only")
    pairs[9] = ("a" * 80, "b")  # over max_tokens: skipped
    store = PairStore.build(tmp_path / "data" / "train.arrow", iter(pairs), tok, 60, "train", chunk=1000)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["train.arrow"]  # no temporary left behind
    kept = [p for i, p in enumerate(pairs) if i not in (7, 9)]
    assert len(store) == len(kept) == len(PairStore.open(tmp_path / "data" / "train.arrow"))
    src_ids = [tok.encode(s) for s, _ in kept]
    tgt_ids = [tok.encode(t) for _, t in kept]
    assert store.lengths.tolist() == [max(len(s), len(t)) + 1 for s, t in zip(src_ids, tgt_ids)]
    for batch in token_batches(store.lengths, 200, seed=3, epoch=1)[:20]:
        tensors, n_tokens, n_targets = store.collate(batch.indices, pad=0, bos=2, eos=3, length=batch.length)
        expected = collate_pairs([src_ids[i] for i in batch.indices], [tgt_ids[i] for i in batch.indices], 0, 2, 3)
        for got, want in zip(tensors, expected):  # the same ids, then PAD up to the bucket's length
            assert got.shape == (len(batch.indices), batch.length) and got.dtype == want.dtype
            assert got[:, : want.size(1)].equal(want) and (got[:, want.size(1) :] == 0).all()
        assert n_targets == int((expected[2] != 0).sum())
        assert n_tokens == n_targets + int((expected[0] != 0).sum())


def test_store_errors_are_one_line(tmp_path, tok):
    with pytest.raises(DataError, match="no usable sentence pairs"):
        PairStore.from_pairs(iter([("", ""), ("a" * 50, "b")]), tok, 10, "val")
    bad = tmp_path / "train.arrow"
    bad.write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match="not a readable token file .* delete it"):
        PairStore.open(bad)


def test_a_failed_build_leaves_nothing_behind(tmp_path, tok):
    def broken():
        yield "abc", "abc"
        raise DataError("line 2: not valid UTF-8")

    with pytest.raises(DataError, match="UTF-8"):
        PairStore.build(tmp_path / "train.arrow", broken(), tok, 30, "train")
    assert list(tmp_path.iterdir()) == []


def test_text_split_at_a_character_count():
    lines = ["abc\n", "defgh\n", "ij\n"]
    pieces = list(split_text(iter(lines), 6))
    assert "".join(t for part, t in pieces if part == "train") == "abc\nde"
    assert "".join(t for part, t in pieces if part == "val") == "fgh\nij\n"


def test_language_model_token_files_round_trip(tmp_path, tok):
    text = "the quick brown fox\njumps over the lazy dog\n" * 50
    cut = int(len(text) * 0.9)
    paths = {"train": tmp_path / "data" / "lm-train.ids", "val": tmp_path / "data" / "lm-val.ids"}
    write_token_files(paths, split_text(iter(text.splitlines(keepends=True)), cut), tok, chunk_chars=100)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["lm-train.ids", "lm-val.ids"]
    train, val = (open_tokens(paths[k], tok.vocab_size) for k in ("train", "val"))
    assert train.dtype == np.uint16 and isinstance(train, np.memmap)
    assert train.tolist() == tok.encode(text[:cut]) and val.tolist() == tok.encode(text[cut:])
    paths["train"].write_bytes(paths["train"].read_bytes()[:-1])  # a torn write: odd byte count
    with pytest.raises(DataError, match="not a token file: delete it"):
        open_tokens(paths["train"], tok.vocab_size)
