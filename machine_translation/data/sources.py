"""Data for training and evaluation: which corpus a `--data` flag names, streaming a split in
either direction, cleaning (empty pairs are skipped and counted), sampling a large corpus
for the tokenizer, length-bucketed token-budget batches, and collation for teacher forcing.

Target shifting happens here and only here: decoder input `<bos> y1..yn`, labels `y1..yn <eos>`.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from machine_translation.data import corpora
from machine_translation.base.errors import DataError
from machine_translation.base.options import DataSpec

logger = logging.getLogger(__name__)


def parse_data_spec(data: str | None, src: Path | None = None, tgt: Path | None = None,
                    pair: str | None = None, task: str = "mt") -> DataSpec:
    if (src is None) != (tgt is None):
        raise DataError("--src and --tgt go together: give both files of the aligned pair")
    if src is not None:
        if data:
            raise DataError("give either --data or --src/--tgt, not both")
        return DataSpec("files", src_file=corpora.rereadable(src), tgt_file=corpora.rereadable(tgt))
    if not data:
        default = "tinyshakespeare" if task == "lm" else corpora.DEFAULT_CORPUS.get(pair or "")
        if default is None:
            raise DataError(f"no default corpus for the pair {pair!r}: pass --data or --src/--tgt")
        data = default
    if data.startswith("hf:"):
        name, _, config = data[3:].partition(":")
        if not name:
            raise DataError("--data hf: needs a dataset name, e.g. hf:wmt14:fr-en")
        return DataSpec("hf", name, config or None)
    if data in corpora.CORPORA:
        return DataSpec("named", data)
    path = Path(data)
    if not path.exists():
        raise DataError(f"--data {data}: not a named corpus ({', '.join(corpora.CORPORA)}), "
                        f"hf:NAME, or an existing file")
    return DataSpec("text" if task == "lm" else "tsv", str(corpora.rereadable(path)))


def split_pair(pair: str) -> tuple[str, str]:
    src, sep, tgt = pair.partition("-")
    if not sep or not src or not tgt or src == tgt:
        raise DataError(f"--pair {pair!r} is not of the form SRC-TGT, e.g. en-fr")
    return src, tgt


def iter_split(spec: DataSpec, split: str, pair: str, data_dir: str | Path | None = None,
               valid_size: int = 1000) -> Iterator[tuple[str, str]]:
    """(source, target) sentences of one split, one pair at a time (not yet cleaned).

    A TSV or a file pair has no splits of its own: its last `valid_size` pairs are "val"
    (at most 5%), the rest "train".
    """
    src_lang, tgt_lang = split_pair(pair)
    if spec.kind == "named":
        corpus = corpora.CORPORA[spec.name]
        return corpora.iter_file_pair(corpora.corpus_file(corpus, split, src_lang, data_dir),
                                      corpora.corpus_file(corpus, split, tgt_lang, data_dir))
    if spec.kind == "hf":
        return corpora.iter_hf(spec.name, spec.config, split, src_lang, tgt_lang)
    if spec.kind == "files":
        n, pairs = corpora.count_lines(spec.src_file), corpora.iter_file_pair(spec.src_file, spec.tgt_file)
    elif spec.kind == "tsv":
        n, pairs = corpora.count_lines(Path(spec.name)), corpora.iter_tsv(Path(spec.name))
    else:
        raise DataError(f"{spec.describe()} is plain text: use it with --task lm")
    if split not in ("train", "val"):
        raise DataError(f"{spec.describe()} has only the splits train and val (held out from its end)")
    if split == "val" and n // 20 == 0:
        raise DataError(f"{spec.describe()} has {n} pairs, too few to hold out validation (its last 5%): "
                        "give at least 20 pairs")
    first_val = n - min(valid_size, n // 20)
    # every line is read, so a misaligned pair of files is reported whichever split is asked for
    return (p for i, p in enumerate(pairs) if (i >= first_val) == (split == "val"))


def read_split(spec: DataSpec, split: str, pair: str, data_dir: str | Path | None = None,
               valid_size: int = 1000) -> tuple[list[str], list[str]]:
    """A small split (validation, test) as two aligned lists."""
    return corpora.unzip(iter_split(spec, split, pair, data_dir, valid_size))


def is_empty(src: str, tgt: str) -> bool:
    return not (src.strip() and tgt.strip())


def drop_empty(src: list[str], tgt: list[str], what: str) -> tuple[list[str], list[str]]:
    keep = [i for i, (s, t) in enumerate(zip(src, tgt)) if not is_empty(s, t)]
    if len(keep) < len(src):
        logger.info("%s: skipped %d pairs with an empty side", what, len(src) - len(keep))
    if not keep:
        raise DataError(f"{what}: no non-empty sentence pairs")
    return [src[i] for i in keep], [tgt[i] for i in keep]


def sample_pairs(pairs: Iterable[tuple[str, str]], k: int, seed: int) -> tuple[list[tuple[str, str]], int]:
    """A uniform sample of at most k non-empty pairs from a stream of any length (reservoir
    sampling), and how many non-empty pairs the stream had. A stream of at most k pairs
    comes back whole, in order. Reading the whole stream also checks all of it (UTF-8,
    alignment) before anything is trained."""
    rng, sample, n = random.Random(seed), [], 0
    for pair in pairs:
        if is_empty(*pair):
            continue
        n += 1
        if len(sample) < k:
            sample.append(pair)
        elif (j := rng.randrange(n)) < k:
            sample[j] = pair
    return sample, n


def batch_encode(tok, texts: list[str]) -> list[list[int]]:
    return tok.encode_batch(texts) if hasattr(tok, "encode_batch") else [tok.encode(t) for t in texts]


BUCKET_WIDTH = 2  # padded lengths are multiples of 2: 27 shapes on Multi30k for 2% more PAD than exact lengths


@dataclass(frozen=True)
class Batch:
    """The examples of one batch and the length both its sides are padded to."""

    length: int  # L: source + EOS and BOS + target are padded to (B, L)
    indices: np.ndarray  # (B,) example indices


def bucket_bounds(lengths: np.ndarray, multiple: int = 8, width: int = BUCKET_WIDTH) -> np.ndarray:
    """The padded lengths batches are drawn at: the multiples of `width` that cover `lengths`,
    a bound holding fewer than `multiple` examples merged into the next longer one (the
    longest few into the bound below them, padded up), so every bucket fills a batch of
    `multiple` sentences. Depends on the lengths only: a run uses the same shapes every epoch."""
    counts = np.bincount((np.asarray(lengths) + width - 1) // width)  # counts[i]: examples padded to i*width
    present = np.flatnonzero(counts).tolist()
    kept, carry = [], 0
    for i in present:
        carry += int(counts[i])
        if carry >= multiple:
            kept.append(i)
            carry = 0
    if carry or not kept:  # the longest examples, too few for a bucket of their own
        kept[-1:] = [present[-1]]
    return np.array(kept, dtype=np.int64) * width


def token_batches(lengths: np.ndarray, batch_tokens: int, seed: int, epoch: int, multiple: int = 8,
                  width: int = BUCKET_WIDTH) -> list[Batch]:
    """The batches of one epoch. Every example goes to the smallest bucket bound L that holds
    it (`bucket_bounds`); a bucket's examples are shuffled and cut into batches of the same
    number of sentences, as many as fit `batch_tokens` padded tokens at length L, rounded
    down to a multiple of `multiple` (fairseq's required-batch-size-multiple; a bucket of very
    long sentences may exceed the budget to reach it). So the batches of a run come in a small
    fixed set of shapes (B, L), and shape-specialised kernels are built once, not per batch.
    The same (seed, epoch) gives the same batches in the same order; under torchrun every
    rank takes a slice of each (up to `multiple` processes).

    Memory is a few bytes a pair: the lengths, and one shuffled index array per bucket.
    lengths: (N,) the padded length each example needs (max of source and target + 1)."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    index_dtype = np.uint32 if len(lengths) < 2**32 else np.int64
    batches, low = [], 0
    for bound in bucket_bounds(lengths, multiple, width).tolist():
        members = np.flatnonzero((lengths > low) & (lengths <= bound)).astype(index_dtype)  # (n,)
        low = bound
        rng.shuffle(members)
        rows = max(multiple, batch_tokens // bound // multiple * multiple)
        cuts = list(range(rows, len(members), rows))
        if cuts and len(members) - cuts[-1] < multiple:  # no undersized batch: the rest joins the last one
            cuts.pop()
        batches += [Batch(bound, part) for part in np.split(members, cuts)]
    return [batches[i] for i in rng.permutation(len(batches))]


Ragged = tuple[np.ndarray, np.ndarray]  # offsets (B+1,), values: the ids of B rows of any length


def ragged(seqs: list[list[int]]) -> Ragged:
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return offsets, np.fromiter((i for ids in seqs for i in ids), dtype=np.int64, count=int(offsets[-1]))


def pad_ragged(rows: Ragged, pad_id: int, before: int | None = None, after: int | None = None,
               length: int | None = None) -> Tensor:
    """Right-padded (B, L) ids of ragged rows, with an optional token before and after each row;
    L is the longest row (with those tokens), or `length` when given (a bucket's bound)."""
    offsets, values = rows
    lengths = np.diff(offsets)  # (B,)
    shift = int(before is not None)
    longest = int(lengths.max()) + shift + int(after is not None)
    if length is not None and length < longest:
        raise ValueError(f"a row of {longest} tokens does not fit the padded length {length}")
    out = np.full((len(lengths), length or longest), pad_id, dtype=np.int64)
    position = np.arange(out.shape[1])[None, :] - shift  # (1, L)
    out[(position >= 0) & (position < lengths[:, None])] = values[offsets[0] : offsets[-1]]
    if before is not None:
        out[:, 0] = before
    if after is not None:
        out[np.arange(len(lengths)), lengths + shift] = after
    return torch.from_numpy(out)


def pad_batch(seqs: list[list[int]], pad_id: int) -> Tensor:
    """Right-pad sequences into a (B, L) tensor."""
    return pad_ragged(ragged(seqs), pad_id)


def collate(src: Ragged, tgt: Ragged, pad_id: int, bos_id: int, eos_id: int,
            length: int | None = None) -> tuple[tuple[Tensor, Tensor, Tensor], int, int]:
    """Source ids + EOS (B, S); decoder input `<bos> y` (B, T); labels `y <eos>` (B, T); and
    the real source+target and target token counts (PAD excluded). S and T are the longest
    rows, or both `length` when given."""
    tensors = (pad_ragged(src, pad_id, after=eos_id, length=length),
               pad_ragged(tgt, pad_id, before=bos_id, length=length),
               pad_ragged(tgt, pad_id, after=eos_id, length=length))
    n_rows = len(src[0]) - 1
    n_targets = int(tgt[0][-1] - tgt[0][0]) + n_rows
    return tensors, int(src[0][-1] - src[0][0]) + n_rows + n_targets, n_targets


def collate_pairs(
    src: list[list[int]], tgt: list[list[int]], pad_id: int, bos_id: int, eos_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """`collate` of id lists: the three teacher-forcing tensors."""
    return collate(ragged(src), ragged(tgt), pad_id, bos_id, eos_id)[0]


def iter_text(spec: DataSpec, data_dir: str | Path | None = None) -> Iterator[str]:
    """The lines (each ending in a newline) of a language-modelling corpus: named, a UTF-8
    file, or hf:NAME's `text` column; streamed, never read whole."""
    if spec.kind == "named":
        corpus = corpora.CORPORA[spec.name]
        if corpus.languages:
            raise DataError(f"{spec.name} is a parallel corpus: language models train on plain text "
                            "(e.g. --data tinyshakespeare or --data FILE)")
        lines = corpora.iter_lines(corpora.corpus_file(corpus, "train", None, data_dir))
    elif spec.kind == "hf":
        lines = corpora.iter_hf_text(spec.name, spec.config)
    elif spec.kind == "text":
        lines = corpora.iter_lines(Path(spec.name))
    else:
        raise DataError("a language model trains on one text: pass --data NAME|FILE|hf:NAME, not --src/--tgt")
    return (line + "\n" for line in lines)


def split_text(lines: Iterable[str], cut: int) -> Iterator[tuple[str, str]]:
    """("train" | "val", piece) for a stream of text whose first `cut` characters are training
    text and the rest validation (the line holding the cut is split there)."""
    seen = 0
    for line in lines:
        if seen + len(line) <= cut:
            yield "train", line
        elif seen >= cut:
            yield "val", line
        else:
            yield "train", line[: cut - seen]
            yield "val", line[cut - seen :]
        seen += len(line)
