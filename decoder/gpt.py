"""The decoder-only (GPT-style) causal language model: the same `TransformerDecoder`
with cross-attention switched off."""
from __future__ import annotations

from torch import Tensor, nn

from decoder.cache import KVCache
from decoder.decoder import TransformerDecoder
from encoder_transformer import TransformerConfig


class GPT(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.decoder = TransformerDecoder(config, cross_attention=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: (B, T) -> logits (B, T, V)."""
        return self.decoder(input_ids)[0]

    def start_cache(self) -> KVCache:
        return self.decoder.start_cache()

    def decode_step(self, input_ids: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        """New tokens (B, T) after the cached ones -> logits (B, T, V) and the grown cache."""
        return self.decoder(input_ids, cache=cache)
