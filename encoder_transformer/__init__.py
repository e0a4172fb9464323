"""The Transformer encoder and the building blocks it shares with the decoder.

This package imports only torch: attention, feed-forward, embeddings, positional
encodings and the mask helpers live here so that `decoder/` can reuse them without
the encoder ever depending on the decoder.
"""
from encoder_transformer.attention import MultiHeadAttention
from encoder_transformer.config import LayerConfig, TransformerConfig
from encoder_transformer.encoder import EncoderBlock, TransformerEncoder
from encoder_transformer.layers import Embeddings, FeedForward, PositionalEncoding, Residual, normal_init
from encoder_transformer import masks

__all__ = [
    "Embeddings", "EncoderBlock", "FeedForward", "LayerConfig", "MultiHeadAttention", "PositionalEncoding",
    "Residual", "TransformerConfig", "TransformerEncoder", "masks", "normal_init",
]
