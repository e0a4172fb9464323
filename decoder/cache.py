"""The key/value cache for incremental decoding: a value owned by the caller.

The decoder takes a cache and returns a new one; nothing is stored on modules. Per layer
it holds the self-attention keys/values of every position decoded so far, and the
cross-attention keys/values of the encoder (projected once per sentence) with the
source padding mask.
Beam search keeps it aligned with its hypotheses through `reorder`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

KV = tuple[Tensor, Tensor]  # keys, values: (B, H, T, Dh) each


@dataclass(frozen=True)
class KVCache:
    self_kv: tuple[KV | None, ...]
    cross_kv: tuple[KV | None, ...]
    src_padding_mask: Tensor | None = None  # (B, 1, 1, S)

    @classmethod
    def empty(cls, n_layers: int) -> KVCache:
        return cls(self_kv=(None,) * n_layers, cross_kv=(None,) * n_layers)

    @property
    def length(self) -> int:
        """Number of target positions already decoded."""
        first = self.self_kv[0] if self.self_kv else None
        return 0 if first is None else first[0].size(2)

    def reorder(self, index: Tensor, same_sources: bool = False) -> KVCache:
        """Select rows of the batch (beam search's parent hypotheses, or the sentences
        still being decoded): index (N,) of row numbers into the current batch.

        same_sources: every new row has the same source sentence as the row it takes the
        place of (beam search reordering hypotheses within each sentence), so the encoder
        keys/values are left as they are and only the decoded positions are gathered.
        """

        def pick(kv: KV | None) -> KV | None:
            return None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))

        if same_sources:
            return replace(self, self_kv=tuple(pick(kv) for kv in self.self_kv))
        return replace(
            self,
            self_kv=tuple(pick(kv) for kv in self.self_kv),
            cross_kv=tuple(pick(kv) for kv in self.cross_kv),
            src_padding_mask=None if self.src_padding_mask is None else self.src_padding_mask.index_select(0, index),
        )
