"""Data: turning token sequences into teacher-forcing batches (and, with the CLI, corpora).

Target shifting happens here and only here: decoder input `<bos> y1..yn`, labels `y1..yn <eos>`.
"""
from __future__ import annotations

import torch
from torch import Tensor


def pad_batch(seqs: list[list[int]], pad_id: int) -> Tensor:
    """Right-pad sequences into a (B, L) tensor."""
    out = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
    for row, ids in enumerate(seqs):
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def collate_pairs(
    src: list[list[int]], tgt: list[list[int]], pad_id: int, bos_id: int, eos_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Source ids + EOS (B, S); decoder input `<bos> y` (B, T); labels `y <eos>` (B, T)."""
    src_ids = pad_batch([s + [eos_id] for s in src], pad_id)
    tgt_in = pad_batch([[bos_id] + t for t in tgt], pad_id)
    labels = pad_batch([t + [eos_id] for t in tgt], pad_id)
    return src_ids, tgt_in, labels
