"""Multi-head attention through `F.scaled_dot_product_attention`, for self- and cross-attention.

Self-attention projects queries, keys and values with one fused matmul (`qkv_proj`, D -> 3D);
cross-attention projects its queries (`q_proj`) apart from the encoder's keys/values
(`kv_proj`, D -> 2D), which the decoder projects once per sentence and caches. The decoder's
own keys/values are returned so that it can cache them too. The module keeps no state between
calls.

On a CPU in bfloat16 or float16 the attention is written out (scores, softmax in float32,
weighted sum) instead of calling PyTorch's fused CPU kernel, which is several times slower
in reduced precision at translation's lengths (measured in docs/benchmarks.md, Training speed);
float32 and GPUs keep `F.scaled_dot_product_attention`.

Cross-attention's weights, which the fused kernel does not return, are computed on request
(`attention_weights`) by the same formula the written-out path uses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoder_transformer.config import TransformerConfig
from encoder_transformer.dropout import fast_dropout


class MultiHeadAttention(nn.Module):
    def __init__(self, config: TransformerConfig, self_attention: bool = True):
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_dropout
        self.self_attention = self_attention
        D = config.d_model
        if self_attention:
            self.qkv_proj = nn.Linear(D, 3 * D)  # queries, keys and values in one matmul
        else:
            self.q_proj = nn.Linear(D, D)
            self.kv_proj = nn.Linear(D, 2 * D)  # the encoder's keys and values in one matmul
        self.out_proj = nn.Linear(D, D)

    def _split_heads(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, Dh)
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention: (B, T, D) -> queries, keys, values, each (B, H, T, Dh)."""
        q, k, v = self.qkv_proj(x).chunk(3, dim=-1)  # 3 x (B, T, D)
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention: the encoder's (B, S, D) -> keys, values, each (B, H, S, Dh)."""
        k, v = self.kv_proj(x).chunk(2, dim=-1)  # 2 x (B, S, D)
        return self._split_heads(k), self._split_heads(v)

    def attend(self, q: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None) -> Tensor:
        """q: (B, H, Tq, Dh); key, value: (B, H, Tk, Dh); attn_mask: bool, True = may attend,
        broadcastable to (B, H, Tq, Tk). Returns (B, Tq, D) after the output projection."""
        B, H, Tq, Dh = q.shape
        dropout_p = self.dropout if self.training else 0.0
        if q.device.type == "cpu" and q.dtype != torch.float32:
            out = _written_out_attention(q, key, value, attn_mask, dropout_p)  # (B, H, Tq, Dh)
        else:
            out = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask, dropout_p=dropout_p)
        return self.out_proj(out.transpose(1, 2).reshape(B, Tq, H * Dh))

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Cross-attention. query: (N, Tq, D) hidden states; key, value: (B, H, S, Dh) from
        `project_kv`, with N = B x G: G consecutive rows share one source (beam search's
        hypotheses), which is then held once, not G times; attn_mask broadcastable to
        (B, H, Tq, S). Returns (N, Tq, D)."""
        N, Tq, D = query.shape
        B = key.size(0)
        G = N // B
        q = self._split_heads(self.q_proj(query).reshape(B, G * Tq, D))  # (B, H, G*Tq, Dh)
        return self.attend(q, key, value, attn_mask).reshape(N, Tq, D)

    def attention_weights(self, query: Tensor, key: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Cross-attention's weights, which the fused kernel does not return: for the hidden
        states `query` (B, Tq, D) over keys from `project_kv` (B, H, S, Dh) and the mask
        `forward` was given, (B, H, Tq, S) float32, each row summing to 1."""
        return attention_weights(self._split_heads(self.q_proj(query)), key, attn_mask)


def attention_weights(q: Tensor, key: Tensor, attn_mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(Dh)) in float32, masked (True = may attend): (B, H, Tq, Tk) for
    q (B, H, Tq, Dh) and key (B, H, Tk, Dh). No row is fully masked (masks.py)."""
    scores = (q @ key.transpose(-2, -1)) * q.size(-1) ** -0.5  # (B, H, Tq, Tk)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1)


def _written_out_attention(q: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None, dropout_p: float) -> Tensor:
    """softmax(q k^T / sqrt(Dh)) v with the softmax in float32: what the fused kernel computes.
    q: (B, H, Tq, Dh); key, value: (B, H, Tk, Dh); attn_mask: True = may attend."""
    weights = fast_dropout(attention_weights(q, key, attn_mask), dropout_p)  # (B, H, Tq, Tk)
    return weights.to(q.dtype) @ value  # (B, H, Tq, Dh)
