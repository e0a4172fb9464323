"""Configuration of one Transformer stack (encoder, decoder or decoder-only LM).

`LayerConfig` declares, once, what every layer of a stack shares (sizes, dropout, positions,
norm placement); `TransformerConfig` adds what makes it one stack (its vocabulary and its
number of layers) and is passed whole to every module of the stack. The application's model
config extends `LayerConfig` too, so each default is written in one place. Nothing here
parses files.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

POSITIONAL_KINDS = ("sinusoidal", "learned")
ACTIVATIONS = ("relu", "swish", "gelu")  # of the feed-forward (swish = SiLU, as OPUS-MT models use)
SINUSOID_LAYOUTS = ("interleaved", "halves")  # sin and cos per frequency side by side, or sin first then cos (Marian)


@dataclass(frozen=True, kw_only=True)
class LayerConfig:
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1  # on embeddings and residual branches
    # fairseq's defaults: no dropout on attention weights or inside the feed-forward. Both cost
    # a Bernoulli draw over large tensors (a fifth of a CPU training step) for little gain here.
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_positions: int = 256
    positional: str = "sinusoidal"  # or "learned"
    # Pre-norm unless a preset says otherwise: it trains stably at any depth, learning rate
    # and warmup. mt's small translation preset is post-norm (the 2017 paper, Marian), which
    # measured better for 3+3 layers given 200+ warmup steps.
    norm_first: bool = True
    pad_id: int = 0
    activation: str = "relu"
    sinusoid_layout: str = "interleaved"

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_ff", "max_positions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name, allowed in (("positional", POSITIONAL_KINDS), ("activation", ACTIVATIONS),
                              ("sinusoid_layout", SINUSOID_LAYOUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def layer_fields(self) -> dict:
        """The `LayerConfig` part of this config, e.g. to build a stack config from a larger one."""
        return {f.name: getattr(self, f.name) for f in fields(LayerConfig)}

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(LayerConfig):
    vocab_size: int
    n_layers: int = 3
    # the decoder's output projection: tied to its token embedding (one Parameter) or its own,
    # with or without a bias (Marian's `final_logits_bias`)
    tie_output: bool = True
    output_bias: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")
        if self.n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {self.n_layers}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")
