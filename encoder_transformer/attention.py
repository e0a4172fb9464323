"""Multi-head attention through `F.scaled_dot_product_attention`, for self- and cross-attention.

Keys and values are projected by `project_kv` separately from the attention itself, so the
decoder can cache them: its own past keys/values grow by one position per step, and the
encoder's are projected once per sentence. The module keeps no state between calls.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from encoder_transformer.config import TransformerConfig


class MultiHeadAttention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_dropout
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.kv_proj = nn.Linear(config.d_model, 2 * config.d_model)  # keys and values in one matmul
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    def _split_heads(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, Dh)
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, Tk, D) -> keys, values, each (B, H, Tk, Dh)."""
        k, v = self.kv_proj(x).chunk(2, dim=-1)  # 2 x (B, Tk, D)
        return self._split_heads(k), self._split_heads(v)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None) -> Tensor:
        """query: (B, Tq, D) hidden states; key, value: (B, H, Tk, Dh) from `project_kv`;
        attn_mask: bool, True = may attend, broadcastable to (B, H, Tq, Tk). Returns (B, Tq, D)."""
        B, Tq, D = query.shape
        q = self._split_heads(self.q_proj(query))  # (B, H, Tq, Dh)
        out = F.scaled_dot_product_attention(
            q, key, value, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, Tq, Dh)
        return self.out_proj(out.transpose(1, 2).reshape(B, Tq, D))
