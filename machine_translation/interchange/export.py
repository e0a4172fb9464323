"""`mt export MODEL --to hf|ctranslate2|argos --out PATH`: an mt translation model for another
engine. CTranslate2: `interchange.ct2`; Argos Translate and LibreTranslate (a `.argosmodel`
file): `interchange.argos`. Hugging Face: an mt translation model as a
`MarianMTModel` directory (config.json, generation_config.json, model.safetensors, and
`MarianTokenizer`'s source.spm, target.spm, vocab.json, tokenizer_config.json), which
`transformers` loads and `generate()`s with, and through it ONNX and Optimum.

mt's post-norm translation model is Marian's architecture; what differs is the layout of
the sinusoids: mt interleaves sin and cos (dimension 2i, 2i+1), Marian puts them in halves
(i, D/2 + i). The export permutes the model dimension to match, exactly: the embedding's
columns, LayerNorm parameters, the input columns of every projection that reads the model
dimension (q, k, v, the feed-forward's first layer, an untied output layer) and the output
rows and biases of those that write it (attention outputs, the feed-forward's second layer).
A model already in halves (an imported one) is written as it is. What has no Marian
equivalent is refused naming the field: pre-norm, learned positions, a language model,
separate or untied embeddings. The decoder starts from mt's `<bos>` (Marian's from `<pad>`);
`generation_config.json` says so. `mt_export.json` records the source and what the export
keeps and what it cannot (`NOT_KEPT`).

Nothing is written unless the whole directory is (`files.atomic_directory`), under the one
rule for `--out` (`outputs`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from machine_translation.base.errors import ConfigError
from machine_translation.base.options import SearchOptions
from machine_translation.interchange import argos, ct2
from machine_translation.base.files import atomic_directory, write_atomic, write_json
from machine_translation.model.directory import WEIGHTS_FILE, load_pretrained, read_config
from machine_translation.model.outputs import EXPORT_MARKER, check_out_dir
from mt_tokenizers import SentencePieceTokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # --precision of --to hf
PRECISIONS = {"hf": tuple(DTYPES), "ctranslate2": tuple(ct2.QUANTIZATION), "argos": tuple(ct2.QUANTIZATION)}
TARGETS = tuple(PRECISIONS)
logger = logging.getLogger(__name__)
NOT_KEPT = {
    "hf": ("mt's repetition guard and case handling (transformers has neither; no_repeat_ngram_size is another rule)",
           "mt's length limit a * source + b (transformers: max_length)",
           "mt's length penalty, log-prob / (length + 1) ** p (transformers divides by length ** p)"),
    "ctranslate2": ("mt's repetition guard and case handling (CTranslate2 has neither; no_repeat_ngram_size is "
                    "another rule)", "mt's length limit a * source + b (CTranslate2: max_decoding_length)"),
    "argos": ("mt's repetition guard and case handling (Argos has neither)",
              "mt's search settings: Argos searches with beam ARGOS_BEAM_SIZE (4), length penalty 0.2, up to "
              f"{argos.ARGOS_MAX_TOKENS} tokens, and replaces unknown words by source words",
              "mt's sentence splitter, protected spans and tag placement (Argos splits with spaCy's sentencizer "
              "when ARGOS_CHUNK_TYPE=SPACY; its output has every '_' turned into a space)")}


@dataclass
class Exported:
    out: Path
    kept: list[str]
    not_kept: list[str]


def export(model_dir: Path, to: str, out: Path, precision: str = "fp32", overwrite: bool = False) -> Exported:
    """Export the translation model of `model_dir` to `out` (see the module's docstring)."""
    if to not in TARGETS:
        raise ConfigError(f"--to {to}: mt exports to {' or '.join(TARGETS)}")
    if precision not in PRECISIONS[to]:
        raise ConfigError(f"--precision {precision}: --to {to} stores its weights in {', '.join(PRECISIONS[to])}")
    model_dir, out = Path(model_dir), Path(out)
    if read_config(model_dir)[0].task != "mt":
        raise ConfigError(f"{model_dir} holds a language model: mt export writes translation models (no "
                          f"decoder-only export is built); `mt generate --model {model_dir}` runs it")
    if to == "argos":
        argos.check_out_file(out, overwrite)
        spacy = argos.load_requirements()  # missing: one line with the install command, before any work
        loaded = load_pretrained(model_dir, task="mt")
        kept = argos.write_argos(loaded, spacy, model_dir, precision, out,
                                 lambda folder, kept: record(folder, model_dir, to, precision, kept))
        return Exported(out, kept, list(NOT_KEPT[to]))
    replace = check_out_dir(out, overwrite, [model_dir])
    if to == "ctranslate2":
        ct2.load_ctranslate2()  # missing: one line with the install command, before any work
    loaded = load_pretrained(model_dir, task="mt")
    write = write_ctranslate2 if to == "ctranslate2" else write_hf
    return Exported(out, write(loaded, model_dir, precision, out, replace), list(NOT_KEPT[to]))


def write_ctranslate2(loaded, model_dir: Path, precision: str, out: Path, replace: bool) -> list[str]:
    """The CTranslate2 model directory with the tokenizer (`sentencepiece.model` for mt's joint
    SentencePiece model; another tokenizer in `tokenizer/`, `source_tokenizer/`); what it keeps."""
    kept = [f"the weights ({precision})", "the tokenizer's pieces and ids", "the position table, as it is"]
    with atomic_directory(out, replace) as tmp:
        ct2.convert(loaded, tmp, precision)
        tok = loaded.tgt_tokenizer
        if isinstance(tok, SentencePieceTokenizer) and loaded.src_tokenizer is tok:
            write_atomic(tmp / "sentencepiece.model", tok.model_proto)
        else:
            tok.save(tmp / "tokenizer")
            if loaded.src_tokenizer is not tok:
                loaded.src_tokenizer.save(tmp / "source_tokenizer")
        record(tmp, model_dir, "ctranslate2", precision, kept)
    return kept


def record(directory: Path, model_dir: Path, to: str, precision: str, kept: list[str]) -> None:
    """`mt_export.json`: where the export came from (and the digest of its weights), what it
    keeps and what it cannot."""
    write_json(directory / EXPORT_MARKER, {"from": str(model_dir.resolve()), "weights_sha256": weights_digest(model_dir),
                                           "to": to, "precision": precision, "kept": kept,
                                           "not_kept": list(NOT_KEPT[to])})


def weights_digest(model_dir: Path) -> str:
    """The SHA-256 of a model directory's weights file."""
    digest = hashlib.sha256()
    with open(Path(model_dir) / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ctranslate2_copy(model_dir: Path, precision: str | None = None) -> Path:
    """The model's CTranslate2 copy for `--engine ctranslate2`: MODEL_DIR/ctranslate2 when it
    was exported from these very weights in this precision, else one exported once into the
    cache ($MT_CACHE_DIR, or ~/.cache/mt), with a note on stderr."""
    model_dir, precision = Path(model_dir), precision or "fp32"
    digest = weights_digest(model_dir)

    def matches(directory: Path) -> bool:
        try:
            found = json.loads((directory / EXPORT_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return found.get("weights_sha256") == digest and found.get("precision") == precision and found.get("to") == \
            "ctranslate2"

    if matches(model_dir / "ctranslate2"):
        return model_dir / "ctranslate2"
    root = Path(os.environ.get("MT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mt")
    cached = root / "ctranslate2" / f"{digest[:20]}-{precision}"
    if not matches(cached):
        logger.info("note: exporting %s to CTranslate2 (%s) into %s, once: `mt export --to ctranslate2 --out %s` "
                    "puts it beside the model", model_dir, precision, cached, model_dir / "ctranslate2")
        export(model_dir, "ctranslate2", cached, precision, overwrite=True)
    return cached


def write_hf(loaded, model_dir: Path, precision: str, out: Path, replace: bool) -> list[str]:
    """The MarianMTModel directory; what it keeps."""
    config = loaded.config
    check_marian(config, loaded, model_dir)
    weights = {k: v.to(DTYPES[precision]).contiguous() for k, v in marian_weights(loaded.model, config).items()}
    generation = loaded.search_defaults(SearchOptions)
    tok = loaded.tgt_tokenizer
    kept = [f"the weights ({precision}), exactly: the same logits to float rounding", "the tokenizer's pieces and ids",
            f"beam {generation.beam}, the ban on <pad>"]
    from safetensors.torch import save_file
    with atomic_directory(out, replace) as tmp:
        write_json(tmp / "config.json", marian_config(config, tok, precision))
        write_json(tmp / "generation_config.json", {
            "num_beams": generation.beam, "max_length": config.max_positions, "length_penalty": generation.length_penalty,
            "decoder_start_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id,
            "bad_words_ids": [[tok.pad_id]], "forced_eos_token_id": tok.eos_id})
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_tokenizer(tmp, tok, loaded.pair, config.max_positions)
        record(tmp, model_dir, "hf", precision, kept)
    return kept


def check_marian(config, loaded, model_dir: Path) -> None:
    """Refuse, naming the field, what MarianMTModel cannot represent."""
    where = model_dir / "config.json"
    refusals = [(config.norm_first, "norm_first true (pre-norm): Marian is post-norm"),
                (config.positional != "sinusoidal", f"positional {config.positional!r}: Marian has sinusoids only"),
                (config.src_vocab_size is not None, "separate source and target vocabularies (src_vocab_size): "
                                                    "exported with one joint vocabulary only"),
                (not config.share_embeddings, "share_embeddings false: exported with one shared embedding only"),
                (config.activation not in ("relu", "swish", "gelu"), f"activation {config.activation!r}"),
                (not isinstance(loaded.tgt_tokenizer, SentencePieceTokenizer),
                 f"a {type(loaded.tgt_tokenizer).__name__}: export models mt trained (an imported model's "
                 "original is already in this format)")]
    for refused, why in refusals:
        if refused:
            raise ConfigError(f"{where}: {why}; --to hf cannot represent it")


def halves_order(d_model: int) -> torch.Tensor:
    """The permutation from mt's interleaved sinusoids to Marian's halves: new dimension k
    holds old dimension order[k] (sin of frequency i at 2i -> i, cos at 2i + 1 -> D/2 + i)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def marian_weights(model, config) -> dict[str, torch.Tensor]:
    """The model's weights under MarianMTModel's names, the model dimension permuted to
    Marian's sinusoid layout (see the module's docstring)."""
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    order = halves_order(config.d_model) if config.sinusoid_layout == "interleaved" else torch.arange(config.d_model)
    reads = lambda w: w[:, order]  # noqa: E731  (a layer that reads the model dimension)
    writes = lambda w: w[order]  # noqa: E731  (a layer that writes it, a LayerNorm, a bias on it)
    embedding = reads(state["decoder.embed.token.weight"])
    out = {"model.shared.weight": embedding, "model.encoder.embed_tokens.weight": embedding.clone(),
           "model.decoder.embed_tokens.weight": embedding.clone(),  # (stored thrice, as transformers writes them)
           "final_logits_bias": state.get("decoder.lm_head.bias", torch.zeros(config.vocab_size)).reshape(1, -1)}
    if not config.tie_output:
        out["lm_head.weight"] = reads(state["decoder.lm_head.weight"])
    d = config.d_model
    for side, n in (("encoder", config.n_encoder_layers), ("decoder", config.n_decoder_layers)):
        for i in range(n):
            mine, theirs = f"{side}.blocks.{i}.", f"model.{side}.layers.{i}."
            qkv_w, qkv_b = state[f"{mine}self_attn.qkv_proj.weight"], state[f"{mine}self_attn.qkv_proj.bias"]
            for j, p in enumerate("qkv"):
                out[f"{theirs}self_attn.{p}_proj.weight"] = reads(qkv_w[j * d : (j + 1) * d])
                out[f"{theirs}self_attn.{p}_proj.bias"] = qkv_b[j * d : (j + 1) * d]
            layers = {"self_attn.out_proj": ("self_attn.out_proj", writes), "fc1": ("ff.up", reads),
                      "fc2": ("ff.down", writes), "self_attn_layer_norm": ("self_attn_res.norm", writes),
                      "final_layer_norm": ("ff_res.norm", writes)}
            if side == "decoder":
                kv_w, kv_b = state[f"{mine}cross_attn.kv_proj.weight"], state[f"{mine}cross_attn.kv_proj.bias"]
                for j, p in enumerate("kv"):
                    out[f"{theirs}encoder_attn.{p}_proj.weight"] = reads(kv_w[j * d : (j + 1) * d])
                    out[f"{theirs}encoder_attn.{p}_proj.bias"] = kv_b[j * d : (j + 1) * d]
                layers |= {"encoder_attn.q_proj": ("cross_attn.q_proj", reads),
                           "encoder_attn.out_proj": ("cross_attn.out_proj", writes),
                           "encoder_attn_layer_norm": ("cross_attn_res.norm", writes)}
            for name, (source, how) in layers.items():
                out[f"{theirs}{name}.weight"] = how(state[f"{mine}{source}.weight"])
                bias = state[f"{mine}{source}.bias"]
                out[f"{theirs}{name}.bias"] = writes(bias) if how is writes else bias  # (a reader's bias is not on D)
    return out


def marian_config(config, tok, precision: str) -> dict:
    return {
        "architectures": ["MarianMTModel"], "model_type": "marian", "vocab_size": config.vocab_size,
        "decoder_vocab_size": config.vocab_size, "d_model": config.d_model,
        "encoder_layers": config.n_encoder_layers, "decoder_layers": config.n_decoder_layers,
        "encoder_attention_heads": config.n_heads, "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.d_ff, "decoder_ffn_dim": config.d_ff,
        "activation_function": {"swish": "swish", "relu": "relu", "gelu": "gelu"}[config.activation],
        "max_position_embeddings": config.max_positions, "scale_embedding": True, "static_position_embeddings": True,
        "dropout": config.dropout, "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout, "pad_token_id": tok.pad_id, "eos_token_id": tok.eos_id,
        "bos_token_id": tok.bos_id, "decoder_start_token_id": tok.bos_id, "forced_eos_token_id": tok.eos_id,
        "share_encoder_decoder_embeddings": True, "tie_word_embeddings": config.tie_output, "is_encoder_decoder": True,
        "torch_dtype": {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[precision],
        "init_std": 0.02, "use_cache": True}


def write_tokenizer(directory: Path, tok: SentencePieceTokenizer, pair: str | None, max_positions: int) -> None:
    """MarianTokenizer's files: the joint SentencePiece model as both sides, its ids as vocab.json."""
    proto = tok.model_proto
    write_atomic(directory / "source.spm", proto)
    write_atomic(directory / "target.spm", proto)
    write_json(directory / "vocab.json", {tok.id_to_piece(i): i for i in range(tok.vocab_size)})
    source, target = (pair or "-").split("-") if pair else (None, None)
    write_json(directory / "tokenizer_config.json", {
        "tokenizer_class": "MarianTokenizer", "source_lang": source, "target_lang": target,
        "eos_token": tok.id_to_piece(tok.eos_id), "unk_token": tok.id_to_piece(tok.unk_id),
        "pad_token": tok.id_to_piece(tok.pad_id), "model_max_length": max_positions, "separate_vocabs": False})
