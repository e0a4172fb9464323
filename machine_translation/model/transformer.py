"""The models of `mt`, configured by one dataclass: the encoder-decoder translator (joining
`encoder_transformer` and `decoder`) and the decoder-only language model.

`ModelConfig` is what `config.json` stores; presets `tiny` (tests), `small` (the CPU size)
and `base` (Transformer-base, for GPUs) exist for both tasks. Losses live in training.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from torch import Tensor, nn

from decoder import GPT, KVCache, TransformerDecoder
from encoder_transformer import LayerConfig, TransformerConfig, TransformerEncoder, masks, normal_init
from machine_translation.base.errors import ConfigError
from machine_translation.base.fields import type_errors

TASKS = ("mt", "lm")  # translation, language modelling

PRESETS: dict[str, dict[str, dict]] = {
    "mt": {
        "tiny": dict(d_model=32, n_heads=2, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0),
        # Post-norm and Marian's N(0, 0.02) initialisation: +1.3 and +0.7 val BLEU at step 1,000
        # (benchmarks/ablations.py; docs/benchmarks.md, Why the
        # defaults are what they are). Post-norm needs its warmup: at lr 2e-3
        # it collapsed with 100 warmup steps and trained with 200 and 300 (options.POST_NORM_WARMUP).
        # Dropout 0.2: at `mt train`'s default 60 minutes (25 epochs) 0.1 overfits; 0.2 validated
        # +0.77 BLEU over it, 0.3 -0.20 below 0.2 (docs/benchmarks.md, Why the defaults are what they are). Short runs
        # (the demo) want 0.1.
        "small": dict(d_model=256, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024, dropout=0.2,
                      norm_first=False, init_std=0.02),
        "base": dict(d_model=512, n_heads=8, n_encoder_layers=6, n_decoder_layers=6, d_ff=2048, dropout=0.1),
    },
    "lm": {  # decoder-only: n_encoder_layers is 0
        "tiny": dict(d_model=32, n_heads=2, n_decoder_layers=2, d_ff=64, dropout=0.0, max_positions=64),
        # nanoGPT's CPU recipe for Tiny Shakespeare: 4 layers, 4 heads, d_model 128, block 64.
        "small": dict(d_model=128, n_heads=4, n_decoder_layers=4, d_ff=512, dropout=0.0, max_positions=64,
                      positional="learned"),
        "base": dict(d_model=384, n_heads=6, n_decoder_layers=6, d_ff=1536, dropout=0.2, max_positions=256,
                     positional="learned"),
    },
}


@dataclass(frozen=True, kw_only=True)
class ModelConfig(LayerConfig):
    """What `config.json` stores: the layer settings every stack shares (`LayerConfig`, declared
    once in `encoder_transformer`), plus the task, the vocabularies and the depth of each stack."""

    vocab_size: int
    task: str = "mt"
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    src_vocab_size: int | None = None  # None: one joint vocabulary for source and target
    share_embeddings: bool = True  # tie the encoder's embedding too (joint vocabulary only)
    # None: PyTorch's default initialisation (embeddings N(0, 1/d_model)); a value: Marian's
    # N(0, init_std) for every weight matrix and embedding. Only a new run reads it.
    init_std: float | None = None
    tie_output: bool = True  # the decoder's output projection is its token embedding (False: its own)
    output_bias: bool = False  # a bias on the output logits (Marian's final_logits_bias)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "lm" and self.n_encoder_layers:
            object.__setattr__(self, "n_encoder_layers", 0)
        if self.init_std is not None and self.init_std <= 0:
            raise ConfigError(f"init_std must be positive, got {self.init_std}")
        if self.share_embeddings and self.src_vocab_size not in (None, self.vocab_size):
            raise ConfigError("share_embeddings needs a joint vocabulary: set share_embeddings false")
        try:
            self.stack_config(self.n_decoder_layers)
            self.stack_config(self.n_encoder_layers, self.src_vocab_size or self.vocab_size)
        except ValueError as e:
            raise ConfigError(f"invalid model config: {e}") from None

    def stack_config(self, n_layers: int, vocab_size: int | None = None) -> TransformerConfig:
        return TransformerConfig(**self.layer_fields(), vocab_size=vocab_size or self.vocab_size, n_layers=n_layers,
                                 tie_output=self.tie_output, output_bias=self.output_bias)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Build from a JSON object, refusing unknown keys, missing ones and values of the wrong type."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
        if "vocab_size" not in data:
            raise ConfigError("model config key 'vocab_size' is missing")
        problems = type_errors(cls, data)
        if problems:
            raise ConfigError(f"model config key {problems[0]}")
        return cls(**data)

    @classmethod
    def from_preset(cls, preset: str, task: str, vocab_size: int, **overrides) -> ModelConfig:
        if task not in PRESETS:
            raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
        if preset not in PRESETS[task]:
            raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS[task])}")
        return cls.from_dict({"vocab_size": vocab_size, "task": task, **PRESETS[task][preset], **overrides})


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer: `encode` the source once, `decode` target tokens."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = TransformerEncoder(config.stack_config(config.n_encoder_layers, config.src_vocab_size))
        self.decoder = TransformerDecoder(config.stack_config(config.n_decoder_layers), cross_attention=True)
        if config.share_embeddings:
            # Three-way tying: encoder embedding, decoder embedding and output projection are one Parameter.
            self.encoder.embed.token.weight = self.decoder.embed.token.weight

    def encode(self, src_ids: Tensor, src_attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """src_ids: (B, S); src_attention_mask: (B, S) True = real token (default: ids != PAD).
        Returns hidden states (B, S, D) and the source padding mask (B, 1, 1, S)."""
        if src_attention_mask is None:
            src_attention_mask = masks.token_mask(src_ids, self.config.pad_id)
        src_padding_mask = masks.padding_mask(src_attention_mask)
        return self.encoder(src_ids, src_padding_mask), src_padding_mask

    def decode(self, tgt_input_ids: Tensor, encoder_hidden_states: Tensor, src_padding_mask: Tensor,
               tgt_attention_mask: Tensor | None = None) -> Tensor:
        """Whole target prefix (B, T) -> logits (B, T, V)."""
        return self.decoder(tgt_input_ids, encoder_hidden_states, src_padding_mask,
                            tgt_attention_mask=tgt_attention_mask)[0]

    def forward(self, src_ids: Tensor, tgt_input_ids: Tensor, src_attention_mask: Tensor | None = None,
                tgt_attention_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: (B, S), (B, T) -> logits (B, T, V)."""
        return self.decode(tgt_input_ids, *self.encode(src_ids, src_attention_mask), tgt_attention_mask)

    def start_cache(self, src_ids: Tensor) -> KVCache:
        """Encode the source and return a decoding cache holding its cross-attention keys/values."""
        return self.decoder.start_cache(*self.encode(src_ids))

    def decode_step(self, tgt_input_ids: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        """New target tokens (B, T) after the cached ones -> logits (B, T, V) and the grown cache."""
        return self.decoder(tgt_input_ids, cache=cache)


TYPICAL_SIZES = {"d_model": 1024, "d_ff": 4096, "max_positions": 4096, "n_encoder_layers": 12,
                 "n_decoder_layers": 12, "vocab_size": 128_000}  # a large model's: the field furthest above is named


def parameter_count(config: ModelConfig) -> int:
    """Parameters and position tables of `config`, counted from the sizes (no allocation)."""
    D, F = config.d_model, config.d_ff
    attention, feed_forward, norm = 4 * D * D + 4 * D, 2 * D * F + F + D, 2 * D
    cross = config.task == "mt"  # decoder blocks with cross-attention
    stacks = [(config.n_decoder_layers, (1 + cross) * (attention + norm) + feed_forward + norm, config.vocab_size)]
    if cross:
        own_embedding = 0 if config.share_embeddings else (config.src_vocab_size or config.vocab_size)
        stacks.append((config.n_encoder_layers, attention + feed_forward + 2 * norm, own_embedding))
    output = (0 if config.tie_output else config.vocab_size * D) + (config.vocab_size if config.output_bias else 0)
    return output + sum(n * layer + vocab * D + config.max_positions * D + norm for n, layer, vocab in stacks)


def check_fits(config: ModelConfig, training: bool = False) -> None:
    """Refuse, before anything is allocated, a config whose weights (and, to train, their
    gradients and AdamW's two moments) do not fit in the memory this process may use."""
    from machine_translation.base.runtime import memory_available

    params = parameter_count(config)
    need, available = 4 * params * (4 if training else 1), memory_available()
    if need <= available:
        return
    values = {name: getattr(config, name) for name in TYPICAL_SIZES}
    field = max(values, key=lambda name: values[name] / TYPICAL_SIZES[name])
    size = f"{params / 1e9:,.1f}B" if params >= 1e9 else f"{params / 1e6:,.0f}M"
    raise ConfigError(f"{field} {values[field]}: a model of {size} parameters needs about {need / 2**30:,.0f} GiB "
                      f"to {'train' if training else 'run'}, more than the {available / 2**30:,.1f} GiB this process "
                      f"may use; choose a smaller {field}")


def build_model(config: ModelConfig) -> nn.Module:
    """The one place that picks the architecture for a config (checked to fit in memory first)."""
    check_fits(config)
    model = GPT(config.stack_config(config.n_decoder_layers)) if config.task == "lm" else Seq2SeqTransformer(config)
    if config.init_std is not None:
        normal_init(model, config.init_std)
    return model
