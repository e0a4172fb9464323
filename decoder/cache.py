"""The key/value cache for incremental decoding: a value owned by the caller.

The decoder takes a cache and returns a new one; nothing is stored on modules. Per layer
it holds the self-attention keys/values of every position decoded so far, one row per
hypothesis (N rows), and the cross-attention keys/values of the encoder with the source
padding mask, one row per source sentence (B rows), projected once. N = B x G: the G
consecutive hypotheses of a sentence (beam search's K) share its row of encoder keys/values.
Search keeps it aligned with its hypotheses through `reorder`.

Reordering the decoded positions is deferred: `reorder` records which stored row each
hypothesis continues (`rows`), and the next decoding step gathers those rows and appends
the new position in one copy (`extend`), instead of a gather after every step and a
`torch.cat` inside the next one (two copies of the whole cache per step).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

KV = tuple[Tensor, Tensor]  # keys, values: (B, H, T, Dh) each


@dataclass(frozen=True)
class KVCache:
    self_kv: tuple[KV | None, ...]  # (N0, H, T, Dh) each, the rows as last decoded
    cross_kv: tuple[KV | None, ...]  # (B, H, S, Dh) each
    src_padding_mask: Tensor | None = None  # (B, 1, 1, S)
    rows: Tensor | None = None  # (N,) the row of self_kv each hypothesis continues (None: row i)

    @classmethod
    def empty(cls, n_layers: int) -> KVCache:
        return cls(self_kv=(None,) * n_layers, cross_kv=(None,) * n_layers)

    @property
    def length(self) -> int:
        """Number of target positions already decoded."""
        first = self.self_kv[0] if self.self_kv else None
        return 0 if first is None else first[0].size(2)

    def reorder(self, rows: Tensor, sources: Tensor | None = None) -> KVCache:
        """Select hypotheses: rows (N',) indexes the current N rows of decoded positions (beam
        search's parents, or the sentences still being decoded); the new rows must again come
        in groups of G' per source sentence. sources (B',): the source sentences to keep, in
        order (None: all of them, e.g. while beam search only reorders hypotheses within each
        sentence, which leaves the encoder's keys/values in place).
        """
        rows = rows if self.rows is None else self.rows[rows]  # composed, not yet applied
        if sources is None:
            return replace(self, rows=rows)
        return KVCache(
            self.self_kv,
            tuple(_pick(kv, sources) for kv in self.cross_kv),
            None if self.src_padding_mask is None else self.src_padding_mask.index_select(0, sources),
            rows,
        )

    def layer(self, i: int) -> KV | None:
        """Layer i's decoded keys/values, one row per hypothesis: (N, H, T, Dh) each (a copy when reordered)."""
        kv = self.self_kv[i]
        return kv if self.rows is None else _pick(kv, self.rows)

    def extend(self, i: int, new: KV) -> KV:
        """Layer i's keys/values with the new positions appended: (N, H, T + T_new, Dh) each,
        from new (N, H, T_new, Dh) each; the pending reorder is applied in the same copy."""
        past = self.self_kv[i]
        if past is None:
            return new
        return _gather_append(past[0], new[0], self.rows), _gather_append(past[1], new[1], self.rows)


def _pick(kv: KV | None, index: Tensor) -> KV | None:
    """The rows `index` (along dim 0) of keys and values."""
    return None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))


def _gather_append(past: Tensor, new: Tensor, rows: Tensor | None) -> Tensor:
    """past (N0, H, T, Dh), new (N, H, T_new, Dh) -> (N, H, T + T_new, Dh): past[rows] then new."""
    if rows is None:
        return torch.cat([past, new], dim=2)
    if torch.is_grad_enabled() and (past.requires_grad or new.requires_grad):  # `out=` cannot record a graph
        return torch.cat([past.index_select(0, rows), new], dim=2)
    T = past.size(2)
    out = new.new_empty(new.size(0), new.size(1), T + new.size(2), new.size(3))
    torch.index_select(past, 0, rows, out=out[:, :, :T])
    out[:, :, T:] = new
    return out
