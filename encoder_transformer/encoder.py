"""The Transformer encoder: embeddings, N self-attention blocks, a final LayerNorm (pre-norm).

Input ids and their padding mask in, hidden states (B, S, D) out; masks come from `masks`.
"""
from __future__ import annotations

from torch import Tensor, nn

from encoder_transformer.attention import MultiHeadAttention
from encoder_transformer.config import TransformerConfig
from encoder_transformer.layers import Embeddings, FeedForward, Residual


class EncoderBlock(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config)
        self.self_attn_res = Residual(config)
        self.ff = FeedForward(config)
        self.ff_res = Residual(config)

    def forward(self, x: Tensor, src_padding_mask: Tensor) -> Tensor:  # (B, S, D) -> (B, S, D)
        h = self.self_attn_res.norm_in(x)
        q, k, v = self.self_attn.project_qkv(h)  # (B, H, S, Dh) each
        x = self.self_attn_res.add(x, self.self_attn.attend(q, k, v, src_padding_mask))
        return self.ff_res.add(x, self.ff(self.ff_res.norm_in(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layers))
        # Pre-norm leaves the residual stream un-normalised: one LayerNorm at the top closes it.
        self.final_norm = nn.LayerNorm(config.d_model) if config.norm_first else nn.Identity()

    def forward(self, input_ids: Tensor, src_padding_mask: Tensor) -> Tensor:
        """input_ids: (B, S); src_padding_mask: (B, 1, 1, S) from `masks.padding_mask`. Returns (B, S, D)."""
        x = self.embed(input_ids)  # (B, S, D)
        for block in self.blocks:
            x = block(x, src_padding_mask)
        return self.final_norm(x)
