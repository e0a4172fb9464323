"""One decoder block: causal self-attention, optional cross-attention, feed-forward.

With `cross_attention=False` the same class is a GPT block; there is no second copy.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from decoder.cache import KV
from encoder_transformer import MultiHeadAttention, TransformerConfig
from encoder_transformer.layers import FeedForward, Residual


class DecoderBlock(nn.Module):
    def __init__(self, config: TransformerConfig, cross_attention: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(config)
        self.self_attn_res = Residual(config)
        self.cross_attn = MultiHeadAttention(config, self_attention=False) if cross_attention else None
        self.cross_attn_res = Residual(config) if cross_attention else None
        self.ff = FeedForward(config)
        self.ff_res = Residual(config)

    def forward(
        self,
        x: Tensor,
        self_attn_mask: Tensor | None,
        extend_kv: Callable[[KV], KV] | None = None,
        cross_kv: KV | None = None,
        src_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, KV]:
        """x: (B, T, D) new positions; extend_kv: appends this layer's new keys/values to its
        cached ones, (B, H, T, Dh) -> (B, H, Tpast + T, Dh) (`KVCache.extend`; None: no cache);
        cross_kv: the encoder's projected keys/values (B / G, H, S, Dh), one row per source sentence
        shared by G consecutive rows of x (beam search's hypotheses), with src_padding_mask (B / G, 1, 1, S).
        Returns the new hidden states (B, T, D) and present_kv (B, H, Tpast + T, Dh)."""
        h = self.self_attn_res.norm_in(x)
        q, k, v = self.self_attn.project_qkv(h)  # (B, H, T, Dh) each
        if extend_kv is not None:
            k, v = extend_kv((k, v))
        x = self.self_attn_res.add(x, self.self_attn.attend(q, k, v, self_attn_mask))

        if self.cross_attn is not None:
            if cross_kv is None:
                raise ValueError("this decoder block has cross-attention: pass the encoder's keys/values")
            h = self.cross_attn_res.norm_in(x)
            x = self.cross_attn_res.add(x, self.cross_attn(h, cross_kv[0], cross_kv[1], src_padding_mask))

        x = self.ff_res.add(x, self.ff(self.ff_res.norm_in(x)))
        return x, (k, v)
