"""Token ids of a training corpus on disk, memory-mapped rather than read into Python lists,
so a corpus of millions of pairs costs about the same RAM as a small one (the OS pages in
the parts a batch touches).

Translation: a run encodes its training split once, chunk by chunk, into
`<run>/data/train.arrow` (an Arrow file of source and target id lists); small splits
(validation) live in the same structure in memory. Language modelling: one flat id array
per part (`<run>/data/lm-train.ids`, `lm-val.ids`), as nanoGPT's train.bin.

Files are written under a temporary name and renamed into place; a resumed run reopens
them, so it sees exactly the examples, and therefore the batches, of the run it continues.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from torch import Tensor

from machine_translation.data.sources import Ragged, batch_encode, collate, is_empty
from machine_translation.base.errors import DataError
from machine_translation.base.files import atomic_path

logger = logging.getLogger(__name__)


class PairStore:
    """Source and target token ids (without BOS/EOS) of N sentence pairs."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.lengths = _padded_lengths(table)  # (N,) uint32: 4 bytes a pair, the only per-pair array in memory

    def __len__(self) -> int:
        return self.table.num_rows

    @classmethod
    def open(cls, path: Path) -> PairStore:
        try:
            return cls(pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all())
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{path} is not a readable token file ({e}): delete it to re-encode the data") from None

    @classmethod
    def build(cls, path: Path, pairs: Iterable[tuple[str, str]], tokenizer, max_tokens: int, what: str,
              chunk: int = 10_000) -> PairStore:
        """Encode a stream of pairs into `path`, `chunk` pairs at a time, then memory-map it.
        `tokenizer`: one for both sides (a joint vocabulary), or a (source, target) pair."""
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = _schema(max(t.vocab_size for t in _sides(tokenizer)))
        with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in _encode(pairs, tokenizer, max_tokens, what, schema, chunk):
                writer.write_batch(batch)
        return cls.open(path)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], tokenizer, max_tokens: int, what: str) -> PairStore:
        """The same, in memory: for validation splits."""
        schema = _schema(max(t.vocab_size for t in _sides(tokenizer)))
        return cls(pa.Table.from_batches(list(_encode(pairs, tokenizer, max_tokens, what, schema)), schema))

    def rows(self, indices: np.ndarray) -> tuple[Ragged, Ragged]:
        """The source and target ids of the pairs at `indices`, gathered with one take."""
        rows = self.table.take(pa.array(indices))
        return _ragged(rows["src"]), _ragged(rows["tgt"])

    def collate(self, indices: np.ndarray, pad: int, bos: int, eos: int,
                length: int | None = None) -> tuple[tuple[Tensor, Tensor, Tensor], int, int]:
        """`data.collate` of the pairs at `indices`."""
        return collate(*self.rows(indices), pad, bos, eos, length)


def token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 2**16 else np.int32


def _schema(vocab_size: int) -> pa.Schema:
    ids = pa.list_(pa.from_numpy_dtype(token_dtype(vocab_size)))
    return pa.schema([("src", ids), ("tgt", ids)])


def write_token_files(paths: dict[str, Path], pieces: Iterable[tuple[str, str]], tokenizer,
                      chunk_chars: int = 1 << 20) -> None:
    """Encode a stream of (part, text) pieces into one flat id file per part (`paths[part]`),
    about `chunk_chars` characters at a time."""
    dtype = token_dtype(tokenizer.vocab_size)
    buffers: dict[str, list[str]] = {part: [] for part in paths}
    size = dict.fromkeys(paths, 0)
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:  # every file replaced only once all are written
        files = {part: stack.enter_context(open(stack.enter_context(atomic_path(path)), "wb"))
                 for part, path in paths.items()}

        def flush(part: str) -> None:
            np.asarray(tokenizer.encode("".join(buffers[part])), dtype=dtype).tofile(files[part])
            buffers[part], size[part] = [], 0

        for part, text in pieces:
            buffers[part].append(text)
            size[part] += len(text)
            if size[part] >= chunk_chars:
                flush(part)
        for part in paths:
            flush(part)


def open_tokens(path: Path, vocab_size: int) -> np.ndarray:
    """A flat id file, memory-mapped read-only: (N,)."""
    if not path.is_file() or path.stat().st_size % np.dtype(token_dtype(vocab_size)).itemsize:
        raise DataError(f"{path} is missing or not a token file: delete it to re-encode the data")
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=token_dtype(vocab_size))
    return np.memmap(path, dtype=token_dtype(vocab_size), mode="r")


def _sides(tokenizer) -> tuple:
    """(source, target) tokenizers from one (a joint vocabulary) or a pair."""
    return tokenizer if isinstance(tokenizer, tuple) else (tokenizer, tokenizer)


def _encode(pairs: Iterable[tuple[str, str]], tokenizer, max_tokens: int, what: str, schema: pa.Schema,
            chunk: int = 10_000) -> Iterator[pa.RecordBatch]:
    """Record batches of encoded pairs; empty pairs and pairs with a side over `max_tokens`
    tokens (BOS/EOS excluded) are skipped and counted."""
    pairs, kept, empty, long = iter(pairs), 0, 0, 0
    while raw := list(islice(pairs, chunk)):
        block = [p for p in raw if not is_empty(*p)]
        empty += len(raw) - len(block)
        src = batch_encode(_sides(tokenizer)[0], [s for s, _ in block])
        tgt = batch_encode(_sides(tokenizer)[1], [t for _, t in block])
        keep = [i for i, (s, t) in enumerate(zip(src, tgt)) if len(s) <= max_tokens and len(t) <= max_tokens]
        long += len(src) - len(keep)
        kept += len(keep)
        yield pa.record_batch([pa.array([src[i] for i in keep], schema.field("src").type),
                               pa.array([tgt[i] for i in keep], schema.field("tgt").type)], schema=schema)
    if empty:
        logger.info("%s: skipped %d pairs with an empty side", what, empty)
    if long:
        logger.info("%s: skipped %d pairs longer than %d tokens", what, long, max_tokens)
    if not kept:
        raise DataError(f"{what}: no usable sentence pairs (empty, or every pair longer than {max_tokens} tokens)")


def _padded_lengths(table: pa.Table) -> np.ndarray:
    """max(source, target) + 1 of every pair (the padded length with BOS/EOS), one record
    batch at a time, so no full-length temporary is made: (N,) uint32."""
    out = np.empty(table.num_rows, dtype=np.uint32)
    start = 0
    for batch in table.to_batches():
        src = pc.list_value_length(batch.column("src")).to_numpy(zero_copy_only=False)  # (n,)
        tgt = pc.list_value_length(batch.column("tgt")).to_numpy(zero_copy_only=False)  # (n,)
        np.add(np.maximum(src, tgt), 1, out=out[start : start + len(src)], casting="unsafe")
        start += len(src)
    return out


def _ragged(column: pa.ChunkedArray) -> Ragged:
    """(offsets (B+1,), values) of a list column."""
    arr = column.combine_chunks()
    offsets = arr.offsets.to_numpy()
    return offsets, arr.values.to_numpy(zero_copy_only=False)
