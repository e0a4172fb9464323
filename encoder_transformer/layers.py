"""Layers shared by the encoder and the decoder: feed-forward, embeddings with positional
encodings, and the residual-plus-LayerNorm wrapper that makes pre-/post-norm one switch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoder_transformer.config import TransformerConfig
from encoder_transformer.dropout import FastDropout


ACTIVATION_FUNCTIONS = {"relu": F.relu, "swish": F.silu, "gelu": F.gelu}  # (the exact, erf-based GELU)


class FeedForward(nn.Module):
    """Position-wise feed-forward: D -> d_ff -> activation -> D."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)
        self.dropout = FastDropout(config.activation_dropout)
        self.activation = ACTIVATION_FUNCTIONS[config.activation]
        # Linear children whose input is never negative (`down` reads ReLU's output, not
        # swish's or GELU's): int8 inference can then give all of its bits to the magnitude.
        self.nonnegative_inputs = ("down",) if config.activation == "relu" else ()

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return self.down(self.dropout(self.activation(self.up(x))))


def sinusoidal_table(max_positions: int, d_model: int, layout: str = "interleaved") -> Tensor:
    """The fixed encodings of Vaswani et al. 2017: (max_positions, D). "interleaved": sin and
    cos of each frequency side by side; "halves": every sin, then every cos (Marian's)."""
    position = torch.arange(max_positions, dtype=torch.float32)[:, None]  # (P, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    sin, cos = torch.sin(position * freq), torch.cos(position * freq[: d_model // 2])  # (P, ceil(D/2)), (P, D/2)
    if layout == "halves":
        return torch.cat([sin, cos], dim=1)
    table = torch.zeros(max_positions, d_model)
    table[:, 0::2], table[:, 1::2] = sin, cos
    return table


class PositionalEncoding(nn.Module):
    """Sinusoidal (a buffer, not saved: it is a function of the config) or learned."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.max_positions = config.max_positions
        if config.positional == "learned":
            self.learned = nn.Embedding(config.max_positions, config.d_model)
            # The variance of the sinusoidal table (0.5): token embeddings are scaled to unit
            # variance, so GPT-2's std 0.02 would leave positions drowned out at the start.
            nn.init.normal_(self.learned.weight, std=0.5**0.5)
        else:
            self.learned = None
            table = sinusoidal_table(config.max_positions, config.d_model, config.sinusoid_layout)
            self.register_buffer("table", table, persistent=False)

    def forward(self, start: int, length: int) -> Tensor:  # -> (T, D)
        if start + length > self.max_positions:
            raise ValueError(
                f"sequence of {start + length} positions exceeds the model's max_positions ({self.max_positions})"
            )
        if self.learned is not None:
            return self.learned.weight[start : start + length]
        return self.table[start : start + length]


class Embeddings(nn.Module):
    """Token embedding scaled by sqrt(D), plus positions, then dropout.

    `token` is its own nn.Embedding so that models can tie it (one Parameter) to the
    output projection and to the other stack's embedding.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_id)
        # std D^-0.5 makes the scaled embedding unit variance and keeps tied logits small at init.
        nn.init.normal_(self.token.weight, std=config.d_model**-0.5)
        with torch.no_grad():
            self.token.weight[config.pad_id].zero_()
        self.position = PositionalEncoding(config)
        self.scale = math.sqrt(config.d_model)
        self.dropout = FastDropout(config.dropout)

    def forward(self, input_ids: Tensor, start: int = 0) -> Tensor:  # (B, T) -> (B, T, D)
        x = self.token(input_ids) * self.scale + self.position(start, input_ids.size(1))
        return self.dropout(x)


def normal_init(module: nn.Module, std: float) -> None:
    """Marian's (and BART's) initialisation: every Linear and Embedding weight drawn from
    N(0, std), biases and the PAD embedding 0. LayerNorms keep gain 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():  # after the Linears: a tied output layer shares the embedding's weight
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


class Residual(nn.Module):
    """Residual connection with LayerNorm before the sublayer (pre-norm) or after the sum (post-norm).

    Use as: `x = res.add(x, sublayer(res.norm_in(x)))`.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = FastDropout(config.dropout)
        self.norm_first = config.norm_first

    def norm_in(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.norm_first else x

    def add(self, x: Tensor, sublayer_out: Tensor) -> Tensor:
        x = x + self.dropout(sublayer_out)
        return x if self.norm_first else self.norm(x)
