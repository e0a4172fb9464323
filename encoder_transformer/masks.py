"""The single home of the project's mask convention.

Every mask is boolean, True = "this query may attend to this key", and broadcastable to
(B, H, Tq, Tk): the convention of `F.scaled_dot_product_attention`. Inputs are
`attention_mask`s in the Hugging Face sense: (B, T) bool, True = real token, False = PAD.

One name per shape, everywhere in the project:
- `attention_mask` (B, T): True = real token (`src_attention_mask`, `tgt_attention_mask` for
  the two sides of a translation model);
- `src_padding_mask` (B, 1, 1, S): the source keys a query may attend to, used by the
  encoder's self-attention and the decoder's cross-attention (`padding_mask` builds it);
- `self_attn_mask` (B or 1, 1, T, n_past + T): the decoder's causal self-attention mask;
- `attn_mask`: whatever mask `MultiHeadAttention` is given (the SDPA argument).

No query row is ever fully masked (that would give NaN): source sequences always end in
EOS, and the decoder's self-attention always lets a position see itself.
"""
from __future__ import annotations

import torch
from torch import Tensor


def token_mask(input_ids: Tensor, pad_id: int) -> Tensor:
    """The default attention_mask: (B, T) True where the id is not PAD."""
    return input_ids != pad_id


def decoder_token_mask(tgt_input_ids: Tensor, pad_id: int) -> Tensor:
    """The decoder's default attention_mask, (B, T): not PAD, except that the first position
    (the decoder's start token) is always real, even where the start token is PAD itself
    (Marian models start decoding from PAD)."""
    mask = tgt_input_ids != pad_id
    mask[:, 0] = True
    return mask


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Keys that are real tokens: (B, S) -> (B, 1, 1, S)."""
    return attention_mask[:, None, None, :]


def causal_mask(n_queries: int, n_past: int, device: torch.device | str | None = None) -> Tensor:
    """Query i (at absolute position n_past + i) may see keys 0..n_past + i: (1, 1, Tq, n_past + Tq)."""
    q_pos = torch.arange(n_queries, device=device)[:, None] + n_past  # (Tq, 1)
    k_pos = torch.arange(n_past + n_queries, device=device)[None, :]  # (1, Tk)
    return (k_pos <= q_pos)[None, None]


def decoder_self_mask(attention_mask: Tensor | None, n_queries: int, n_past: int,
                      device: torch.device | str | None = None) -> Tensor | None:
    """Causal mask for the decoder's self-attention, also hiding PAD keys when the whole
    sequence is given (no cache; attention_mask (B, T)). Every position may see itself, so
    a PAD query never has an empty row. None for one new token over a cache: it sees every key.

    Returns (B or 1, 1, Tq, n_past + Tq) or None.
    """
    if n_past > 0 and n_queries == 1:
        return None
    mask = causal_mask(n_queries, n_past, device)  # (1, 1, Tq, Tk)
    if attention_mask is not None and n_past == 0:
        itself = torch.eye(n_queries, dtype=torch.bool, device=device)  # (T, T)
        mask = mask & (padding_mask(attention_mask) | itself)  # (B, 1, T, T)
    return mask
