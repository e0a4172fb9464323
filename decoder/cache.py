"""The key/value cache for incremental decoding: a value owned by the caller.

The decoder takes a cache and returns a new one; nothing is stored on modules. Per layer
it holds the self-attention keys/values of every position decoded so far, one row per
hypothesis (N rows), and the cross-attention keys/values of the encoder with the source
padding mask, one row per source sentence (B rows), projected once. N = B x G: the G
consecutive hypotheses of a sentence (beam search's K) share its row of encoder keys/values.
Search keeps it aligned with its hypotheses through `reorder`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

KV = tuple[Tensor, Tensor]  # keys, values: (B, H, T, Dh) each


@dataclass(frozen=True)
class KVCache:
    self_kv: tuple[KV | None, ...]  # (N, H, T, Dh) each
    cross_kv: tuple[KV | None, ...]  # (B, H, S, Dh) each
    src_padding_mask: Tensor | None = None  # (B, 1, 1, S)

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

        def pick(kv: KV | None, index: Tensor) -> KV | None:
            return None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))

        self_kv = tuple(pick(kv, rows) for kv in self.self_kv)
        if sources is None:
            return replace(self, self_kv=self_kv)
        return KVCache(
            self_kv,
            tuple(pick(kv, sources) for kv in self.cross_kv),
            None if self.src_padding_mask is None else self.src_padding_mask.index_select(0, sources),
        )
