"""`mt export --to ctranslate2`: an mt translation model as a CTranslate2 model directory,
by a `ctranslate2.converters.Converter` whose `_load()` fills a `TransformerSpec` (the route
CTranslate2 documents for converters of its own, as OpenNMT-py's `release_model` takes).

mt's translation models map one to one, post-norm or pre-norm: the self-attention's fused
q, k, v weight and the cross-attention's q weight and fused k, v weight are CTranslate2's own
layout, and mt's position table (its sinusoids, or learned positions) is written into the
model (left out, CTranslate2 would build sinusoids of another layout). The decoder starts from
mt's `<bos>`; the source gets no implicit BOS or EOS (the caller adds `<eos>` as mt does),
unless `source_eos` asks CTranslate2 to add it (for callers that cannot, like Argos). The
tokenizer goes with it as `sentencepiece.model`.
"""
from __future__ import annotations

import math
from pathlib import Path

from machine_translation.base.errors import ConfigError

# mt's precision names -> CTranslate2's quantization (None: the weights as they are, float32)
QUANTIZATION = {"fp32": None, "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}
INSTALL = "pip install 'mt[ctranslate2]'"


def load_ctranslate2():
    """The ctranslate2 module, or one line with the install command."""
    try:
        import ctranslate2
    except ImportError:
        raise ConfigError(f"--to ctranslate2 needs the ctranslate2 package: {INSTALL}") from None
    return ctranslate2


def convert(loaded, out_dir, precision: str, source_eos: bool = False, positions: int | None = None) -> None:
    """Write the CTranslate2 model of `loaded` (a `LoadedModel`) into `out_dir`: with
    `source_eos`, CTranslate2 appends `<eos>` to each source itself; `positions` extends a
    sinusoid table (rows past the model's own are the same formula; no row changes)."""
    ctranslate2 = load_ctranslate2()
    from ctranslate2.converters import Converter
    from ctranslate2.specs import common_spec, transformer_spec

    class MtConverter(Converter):
        def _load(self):
            return model_spec(loaded, transformer_spec, common_spec, source_eos, positions)

    del ctranslate2
    inner = Path(out_dir) / ".ctranslate2"  # (the converter replaces the folder it writes: not mt's own)
    MtConverter().convert(str(inner), quantization=QUANTIZATION[precision])
    for path in inner.iterdir():
        path.rename(Path(out_dir) / path.name)
    inner.rmdir()


def model_spec(loaded, transformer_spec, common_spec, source_eos: bool = False, positions: int | None = None):
    """The `TransformerSpec` of mt's model, every weight set."""
    config, tok = loaded.config, loaded.tgt_tokenizer
    activation = {"relu": common_spec.Activation.RELU, "swish": common_spec.Activation.SWISH,
                  "gelu": common_spec.Activation.GELU}[config.activation]
    spec = transformer_spec.TransformerSpec.from_config((config.n_encoder_layers, config.n_decoder_layers),
                                                        config.n_heads, pre_norm=config.norm_first, activation=activation)
    state = {k: v.detach().float().cpu().numpy() for k, v in loaded.model.state_dict().items()}
    from encoder_transformer.layers import sinusoidal_table
    rows = max(config.max_positions, positions or 0)
    table = sinusoidal_table(rows, config.d_model, config.sinusoid_layout).numpy()
    for side, stack in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        stack.scale_embeddings = math.sqrt(config.d_model)
        stack.position_encodings.encodings = state.get(f"{side}.embed.position.learned.weight", table)
        if config.norm_first:  # pre-norm: the stack's last LayerNorm
            _norm(stack.layer_norm, state, f"{side}.final_norm")
        embeddings = stack.embeddings[0] if isinstance(stack.embeddings, list) else stack.embeddings
        embeddings.weight = state[f"{side}.embed.token.weight"]
        for i, layer in enumerate(stack.layer):
            mine = f"{side}.blocks.{i}."
            _linear(layer.self_attention.linear[0], state, mine + "self_attn.qkv_proj")
            _linear(layer.self_attention.linear[1], state, mine + "self_attn.out_proj")
            _norm(layer.self_attention.layer_norm, state, mine + "self_attn_res.norm")
            if side == "decoder":
                _linear(layer.attention.linear[0], state, mine + "cross_attn.q_proj")
                _linear(layer.attention.linear[1], state, mine + "cross_attn.kv_proj")
                _linear(layer.attention.linear[2], state, mine + "cross_attn.out_proj")
                _norm(layer.attention.layer_norm, state, mine + "cross_attn_res.norm")
            _linear(layer.ffn.linear_0, state, mine + "ff.up")
            _linear(layer.ffn.linear_1, state, mine + "ff.down")
            _norm(layer.ffn.layer_norm, state, mine + "ff_res.norm")
    spec.decoder.projection.weight = state.get("decoder.lm_head.weight", state["decoder.embed.token.weight"])
    if "decoder.lm_head.bias" in state:
        spec.decoder.projection.bias = state["decoder.lm_head.bias"]
    source = loaded.src_tokenizer
    spec.register_source_vocabulary([source.id_to_piece(i) for i in range(source.vocab_size)])
    pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size)]
    spec.register_target_vocabulary(pieces)
    spec.config.unk_token, spec.config.bos_token = pieces[tok.unk_id], pieces[tok.bos_id]
    spec.config.eos_token, spec.config.decoder_start_token = pieces[tok.eos_id], pieces[tok.bos_id]
    spec.config.add_source_bos, spec.config.add_source_eos = False, source_eos
    return spec


def _linear(spec, state: dict, name: str) -> None:
    spec.weight = state[f"{name}.weight"]
    if f"{name}.bias" in state:
        spec.bias = state[f"{name}.bias"]


def _norm(spec, state: dict, name: str) -> None:
    spec.gamma, spec.beta = state[f"{name}.weight"], state[f"{name}.bias"]
