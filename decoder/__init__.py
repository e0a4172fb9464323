"""The Transformer decoder: masked self-attention, cross-attention over the encoder's
hidden states, a tied output projection, a key/value cache for incremental decoding,
and the decoder-only language model built from the same blocks.

Imports only the shared layers of `encoder_transformer`.
"""
from decoder.block import DecoderBlock
from decoder.cache import KVCache
from decoder.decoder import TransformerDecoder
from decoder.gpt import GPT

__all__ = ["DecoderBlock", "GPT", "KVCache", "TransformerDecoder"]
