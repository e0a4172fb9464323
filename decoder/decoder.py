"""The decoder stack: embeddings, N decoder blocks, final LayerNorm, output projection (tied
to the token embedding unless the config says otherwise).

`forward(tgt_input_ids, encoder_hidden_states, src_padding_mask)` gives logits
(B, T, V). Given a `KVCache` (from `start_cache`), only the new positions are computed and a
new cache is returned; without one the whole sequence is processed (training).
"""
from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from decoder.block import DecoderBlock
from decoder.cache import KVCache
from encoder_transformer import TransformerConfig, masks
from encoder_transformer.layers import Embeddings


class TransformerDecoder(nn.Module):
    def __init__(self, config: TransformerConfig, cross_attention: bool = True):
        super().__init__()
        self.config = config
        self.cross_attention = cross_attention
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(DecoderBlock(config, cross_attention) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model) if config.norm_first else nn.Identity()
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.output_bias)
        if config.output_bias:
            nn.init.zeros_(self.lm_head.bias)
        if config.tie_output:
            self.lm_head.weight = self.embed.token.weight  # tied: one Parameter

    def start_cache(
        self, encoder_hidden_states: Tensor | None = None, src_padding_mask: Tensor | None = None
    ) -> KVCache:
        """An empty cache holding the encoder's cross-attention keys/values, projected once."""
        cache = KVCache.empty(len(self.blocks))
        if not self.cross_attention:
            return cache
        if encoder_hidden_states is None:
            raise ValueError("a translation decoder needs encoder_hidden_states")
        cross_kv = tuple(block.cross_attn.project_kv(encoder_hidden_states) for block in self.blocks)
        return KVCache(cache.self_kv, cross_kv, src_padding_mask)

    def forward(
        self,
        tgt_input_ids: Tensor,
        encoder_hidden_states: Tensor | None = None,
        src_padding_mask: Tensor | None = None,
        cache: KVCache | None = None,
        tgt_attention_mask: Tensor | None = None,
    ) -> tuple[Tensor, KVCache | None]:
        """tgt_input_ids: (B, T) new target tokens; encoder_hidden_states: (B, S, D) and
        src_padding_mask: (B, 1, 1, S), unless the cache already holds them;
        tgt_attention_mask: (B, T) True = real token (default: ids != PAD).
        Returns logits (B, T, V) and the updated cache (None when none was given)."""
        if cache is None:
            cache_in = self.start_cache(encoder_hidden_states, src_padding_mask)
        else:
            cache_in = cache
        n_past = cache_in.length
        x = self.embed(tgt_input_ids, start=n_past)  # (B, T, D)
        if tgt_attention_mask is None and n_past == 0:
            tgt_attention_mask = masks.decoder_token_mask(tgt_input_ids, self.config.pad_id)
        self_attn_mask = masks.decoder_self_mask(tgt_attention_mask, tgt_input_ids.size(1), n_past, x.device)

        present = []
        for i, (block, cross_kv) in enumerate(zip(self.blocks, cache_in.cross_kv)):
            x, kv = block(x, self_attn_mask, partial(cache_in.extend, i), cross_kv, cache_in.src_padding_mask)
            present.append(kv)
        logits = self.lm_head(self.final_norm(x))  # (B, T, V)

        if cache is None:
            return logits, None
        return logits, KVCache(tuple(present), cache_in.cross_kv, cache_in.src_padding_mask)
