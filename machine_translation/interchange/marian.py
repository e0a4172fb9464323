"""`mt import`: an OPUS-MT / Marian model in Hugging Face's format (`MarianMTModel`) as an
ordinary mt model directory, which then translates, serves, quantizes and fine-tunes as mt's
own do.

The architecture is mt's post-norm translation model with a few options set: swish (or ReLU,
GELU) feed-forward, sinusoids in halves (sin, then cos), an output bias (`final_logits_bias`),
the output projection tied or not, PAD as the last id and the decoder's start. The weights
map one to one, the self-attention's q, k, v and the cross-attention's k, v concatenated as
mt stores them. Each side keeps its SentencePiece model and Marian's vocabulary
(`MarianTokenizer`). The search settings are the reference's (`generation_config.json`, or
`config.json` in older hub revisions): its beam, length limit, the ban on PAD and Hugging
Face's stopping rule; mt's repetition guard and case handling are off, so an imported model
translates as `transformers` does.

Nothing is written unless the whole model directory is: it is built beside `--out` and
renamed into place (`files.atomic_directory`), under the one rule for `--out` (`outputs`).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from machine_translation.model.directory import save_pretrained, tied_aliases
from machine_translation.base.errors import ConfigError, ModelDirError
from machine_translation.base.files import atomic_directory, read_json, write_atomic
from machine_translation.model.transformer import ModelConfig, build_model
from machine_translation.model.outputs import check_out_dir
from mt_tokenizers import MarianTokenizer, TokenizerError
from mt_tokenizers.marian import read_vocab

logger = logging.getLogger(__name__)

ACTIVATIONS = {"swish": "swish", "silu": "swish", "relu": "relu", "gelu": "gelu"}  # Hugging Face's name -> mt's
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json", "target_vocab.json", "tokenizer_config.json")
HUB_FILES = ("config.json", "generation_config.json", "README.md", *WEIGHT_FILES, *TOKENIZER_FILES)


@dataclass
class Imported:
    out: Path
    pair: str
    parameters: int
    notes: list[str]  # what mt does differently from the reference, if anything


def import_marian(source: str, out: Path, pair: str | None = None, overwrite: bool = False) -> Imported:
    """Import `source` (a local Marian directory or `hf:ORG/NAME[@REVISION]`) into `out`."""
    out = Path(out)
    local = None if source.startswith("hf:") else Path(source)
    replace = check_out_dir(out, overwrite, [local] if local else [])
    directory = local if local is not None else download(source)
    hf = read_marian_config(directory)
    weights = read_weights(directory)
    config = model_config(hf, directory, weights)
    src_tok, tgt_tok = tokenizers(directory, hf, config)
    pair = pair or pair_from_name(source)
    if pair is None:
        raise ConfigError(f"cannot tell the language pair of {source} from its name: pass --pair SRC-TGT")
    src_tok = with_target_token(src_tok, pair)
    model = build_model(config)
    load_weights(model, directory, weights, config)
    generation, notes = generation_settings(directory, hf)
    with atomic_directory(out, replace) as tmp:
        save_pretrained(tmp, model, config, src_tok, tgt_tok, pair, generation)
        write_atomic(tmp / "README.md", model_card(source, directory, pair, config).encode())
    n = sum(p.numel() for p in model.parameters())
    return Imported(out, pair, n, notes)


# -- where the model comes from ---------------------------------------------------------------
def download(source: str) -> Path:
    """`hf:ORG/NAME[@REVISION]` -> a local snapshot (the Hugging Face cache, HF_HOME and
    HF_ENDPOINT respected). A hub that cannot be reached is found out with one short connection
    (no retries) and only the local cache is looked at."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, \
        RevisionNotFoundError

    from machine_translation.data.corpora import hub_offline, hub_reachable

    repo, _, revision = source[3:].partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ConfigError(f"{source}: name a model as hf:ORG/NAME or hf:ORG/NAME@REVISION")
    offline = not hub_reachable()
    try:
        with hub_offline(offline):
            path = snapshot_download(repo, revision=revision or None, allow_patterns=list(HUB_FILES),
                                     local_files_only=offline)
    except RepositoryNotFoundError:
        raise ModelDirError(f"{source}: no such model on the hub (or it is private: log in with `hf auth login`)") \
            from None
    except RevisionNotFoundError:
        raise ModelDirError(f"{source}: the hub has no revision {revision!r} of {repo}") from None
    except LocalEntryNotFoundError:
        raise ModelDirError(f"{source}: the Hugging Face hub cannot be reached and the model is not in the local "
                            "cache: connect, or import a downloaded directory") from None
    except Exception as e:  # the hub client's network errors (httpx's) share no type with OSError
        if not (isinstance(e, (HfHubHTTPError, OSError)) or type(e).__module__.split(".")[0].startswith("httpx")):
            raise
        raise ModelDirError(f"{source}: the download failed ({str(e).splitlines()[0][:200]}); run again "
                            "(finished files are kept in the cache)") from None
    return Path(path)


def pair_from_name(source: str) -> str | None:
    """"opus-mt-en-fr", "hf:Helsinki-NLP/opus-mt-tc-big-en-fr" -> "en-fr"."""
    name = Path(source.split("@")[0]).name.lower()
    m = re.search(r"opus-mt(?:-tc-[a-z]+)?-([a-z]{2,3})-([a-z]{2,3})$", name)
    return f"{m.group(1)}-{m.group(2)}" if m else None


# -- the model ---------------------------------------------------------------------------------
def read_marian_config(directory: Path) -> dict:
    if not directory.is_dir():
        raise ModelDirError(f"{directory} is not a directory: pass a Marian model directory or hf:ORG/NAME")
    hf = read_json(directory / "config.json", ModelDirError, "model config")
    if not isinstance(hf, dict) or hf.get("model_type") != "marian":
        kind = hf.get("model_type") if isinstance(hf, dict) else None
        raise ModelDirError(f"{directory} is not a Marian model (its config.json says model_type {kind!r}): mt "
                            "imports OPUS-MT / MarianMTModel directories")
    refusals = {
        "normalize_before": ("a pre-norm Marian (normalize_before: true), which transformers would silently run as "
                             "post-norm: the weights would not mean what they say"),
        "add_final_layer_norm": "a final layer norm, which MarianMTModel does not have",
        "normalize_embedding": "a layer norm on the embeddings, which MarianMTModel does not have",
    }
    for key, why in refusals.items():
        if hf.get(key):
            raise ModelDirError(f"{directory / 'config.json'}: {key} is set: {why}")
    if hf.get("scale_embedding") is False:
        raise ModelDirError(f"{directory / 'config.json'}: scale_embedding is false; mt scales embeddings by sqrt(d)")
    return hf


def model_config(hf: dict, directory: Path, weights: dict[str, torch.Tensor]) -> ModelConfig:
    """mt's config of the Marian model. Shared vocabularies share one embedding in mt unless the
    weights hold two different ones (transformers 5 ties them only with tie_word_embeddings)."""
    where = directory / "config.json"
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(a) != hf.get(b):
            raise ModelDirError(f"{where}: {a} {hf.get(a)} and {b} {hf.get(b)} differ: mt's model has one of each")
    activation = ACTIVATIONS.get(hf.get("activation_function", "gelu"))
    if activation is None:
        raise ModelDirError(f"{where}: activation_function {hf.get('activation_function')!r} is not one mt has "
                            f"({', '.join(ACTIVATIONS)})")
    shared = hf.get("share_encoder_decoder_embeddings", True)
    vocab = hf.get("vocab_size")
    decoder_vocab = vocab if shared else (hf.get("decoder_vocab_size") or vocab)
    encoder, decoder = (weights.get(f"model.{side}.embed_tokens.weight") for side in ("encoder", "decoder"))
    one_embedding = shared and (encoder is None or decoder is None or torch.equal(encoder, decoder))
    try:
        return ModelConfig(
            vocab_size=decoder_vocab, src_vocab_size=None if shared else vocab, share_embeddings=one_embedding,
            d_model=hf["d_model"], n_heads=hf["encoder_attention_heads"], d_ff=hf["encoder_ffn_dim"],
            n_encoder_layers=hf["encoder_layers"], n_decoder_layers=hf["decoder_layers"],
            dropout=float(hf.get("dropout", 0.1)), attention_dropout=float(hf.get("attention_dropout", 0.0)),
            activation_dropout=float(hf.get("activation_dropout", 0.0)),
            max_positions=hf.get("max_position_embeddings", 512), positional="sinusoidal", sinusoid_layout="halves",
            norm_first=False, pad_id=hf["pad_token_id"], activation=activation,
            tie_output=hf.get("tie_word_embeddings", True), output_bias=True)
    except KeyError as e:
        raise ModelDirError(f"{where} has no {e.args[0]!r} entry: not a complete Marian config") from None
    except (ConfigError, TypeError) as e:
        raise ModelDirError(f"{where}: {e}") from None


def tokenizers(directory: Path, hf: dict, config: ModelConfig) -> tuple[MarianTokenizer, MarianTokenizer]:
    """The source and target sides: source.spm and target.spm, numbered by vocab.json (the
    target by target_vocab.json when the vocabularies are separate)."""
    missing = [name for name in ("source.spm", "target.spm", "vocab.json") if not (directory / name).is_file()]
    if missing:
        raise ModelDirError(f"{directory} has no {missing[0]}: mt imports the SentencePiece releases of OPUS-MT "
                            "(source.spm, target.spm, vocab.json), not the BPE ones")
    separate = not hf.get("share_encoder_decoder_embeddings", True)
    named = read_json(directory / "tokenizer_config.json", ModelDirError, "tokenizer config") \
        if (directory / "tokenizer_config.json").is_file() else {}
    specials = tuple(str(named.get(f"{t}_token") or default) for t, default in (("eos", "</s>"), ("unk", "<unk>"),
                                                                                ("pad", "<pad>")))
    try:
        src_vocab = read_vocab(directory / "vocab.json")
        tgt_vocab = read_vocab(directory / "target_vocab.json") if separate else src_vocab
        start_id = hf.get("decoder_start_token_id", tgt_vocab.get(specials[2]))
        start = next((p for p, i in tgt_vocab.items() if i == start_id and p != specials[2]), None)
        src = MarianTokenizer((directory / "source.spm").read_bytes(), src_vocab, "source.spm", None, specials, start)
        tgt = MarianTokenizer((directory / "target.spm").read_bytes(), tgt_vocab, "target.spm", None, specials, start)
    except (TokenizerError, RuntimeError, OSError) as e:
        raise ModelDirError(f"{directory}: {e}") from None
    for side, tok, size in (("source", src, config.src_vocab_size or config.vocab_size),
                            ("target", tgt, config.vocab_size)):
        if tok.vocab_size != size:
            raise ModelDirError(f"{directory}: the {side} vocabulary has {tok.vocab_size} entries but the model's "
                                f"embedding has {size} rows")
    if src.pad_id != config.pad_id:
        raise ModelDirError(f"{directory}: <pad> is {src.pad_id} in vocab.json but pad_token_id is {config.pad_id}: "
                            "mt needs one PAD id for both sides")
    if tgt.pad_id != config.pad_id or hf.get("decoder_start_token_id", tgt.pad_id) != tgt.bos_id:
        raise ModelDirError(f"{directory / 'config.json'}: pad_token_id {config.pad_id} must be <pad> ({tgt.pad_id}) "
                            f"and decoder_start_token_id {hf.get('decoder_start_token_id')} a piece of the vocabulary")
    return src, tgt


def with_target_token(src: MarianTokenizer, pair: str) -> MarianTokenizer:
    """A multilingual model is told its target by a `>>xxx<<` token before the source: the
    one for `pair`'s target (two- or three-letter code), or one clear line listing those it has."""
    import langcodes

    codes = src.language_tokens()
    if not codes:
        return src
    target = pair.partition("-")[2]
    try:
        language = langcodes.Language.get(target)
        names = {target, language.language, language.to_alpha3()}
    except (ValueError, LookupError):
        names = {target}
    found = [c for c in codes if c[2:-2] in names]
    if not found:
        raise ConfigError(f"--pair {pair}: this multilingual model has no token for {target!r}; it has "
                          f"{', '.join(codes[:40])}{' ...' if len(codes) > 40 else ''}")
    return MarianTokenizer(src._proto, src.vocab, src.spm_name, found[0], src.specials, src.start)


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or pytorch_model.bin read without running code (refused if it would)."""
    import pickle

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = next((directory / n for n in WEIGHT_FILES if (directory / n).is_file()), None)
    if path is None:
        raise ModelDirError(f"{directory} has no weights ({' or '.join(WEIGHT_FILES)})")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelDirError(f"{path} was refused: it holds code that would run when loaded (not plain weights)") \
            from None
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as e:
        raise ModelDirError(f"{path} is corrupt or truncated ({str(e).splitlines()[0][:150]})") from None
    if not isinstance(weights, dict):
        raise ModelDirError(f"{path} does not hold a state dict")
    return weights


def load_weights(model: torch.nn.Module, directory: Path, weights: dict[str, torch.Tensor], config: ModelConfig) -> None:
    state = mt_state_dict(weights, config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ModelDirError(f"{directory}: the weights do not match its config.json "
                            f"({str(e).splitlines()[-1].strip()[:200]})") from None
    missing = set(missing) - set(tied_aliases(model))
    if missing or unexpected:
        raise ModelDirError(f"{directory}: the weights do not match its config.json (missing {sorted(missing)[:2]}, "
                            f"unexpected {sorted(unexpected)[:2]})")
    model.eval()


def mt_state_dict(hf: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """MarianMTModel's weights under mt's names (q, k, v joined as mt's fused projections)."""
    get = {k.removeprefix("model."): v for k, v in hf.items()}
    shared = get.get("shared.weight")
    out = {"encoder.embed.token.weight": get.get("encoder.embed_tokens.weight", shared),
           "decoder.embed.token.weight": get.get("decoder.embed_tokens.weight", shared),
           "decoder.lm_head.bias": get["final_logits_bias"].reshape(-1) if "final_logits_bias" in get else None}
    if not config.tie_output:
        out["decoder.lm_head.weight"] = get.get("lm_head.weight")
    for side, n in (("encoder", config.n_encoder_layers), ("decoder", config.n_decoder_layers)):
        for i in range(n):
            hf_layer, mt_layer = f"{side}.layers.{i}.", f"{side}.blocks.{i}."
            for name in ("weight", "bias"):
                qkv = [get.get(f"{hf_layer}self_attn.{p}_proj.{name}") for p in "qkv"]
                out[f"{mt_layer}self_attn.qkv_proj.{name}"] = None if None in qkv else torch.cat(qkv)
                pairs = {"self_attn.out_proj": "self_attn.out_proj", "self_attn_res.norm": "self_attn_layer_norm",
                         "ff.up": "fc1", "ff.down": "fc2", "ff_res.norm": "final_layer_norm"}
                if side == "decoder":
                    kv = [get.get(f"{hf_layer}encoder_attn.{p}_proj.{name}") for p in "kv"]
                    out[f"{mt_layer}cross_attn.kv_proj.{name}"] = None if None in kv else torch.cat(kv)
                    pairs |= {"cross_attn.q_proj": "encoder_attn.q_proj", "cross_attn.out_proj": "encoder_attn.out_proj",
                              "cross_attn_res.norm": "encoder_attn_layer_norm"}
                for mine, theirs in pairs.items():
                    out[f"{mt_layer}{mine}.{name}"] = get.get(f"{hf_layer}{theirs}.{name}")
    return {k: v.float() for k, v in out.items() if v is not None}


def generation_settings(directory: Path, hf: dict) -> tuple[dict, list[str]]:
    """The reference's search as mt's generation_config.json, and notes on what differs."""
    path = directory / "generation_config.json"
    given = read_json(path, ModelDirError, "generation config") if path.is_file() else hf
    notes = []
    pad = hf["pad_token_id"]
    banned = given.get("bad_words_ids") or []
    others = [ids for ids in banned if ids != [pad]]
    if others:
        notes.append(f"bad_words_ids {others[:3]} are not applied (mt bans PAD only)")
    early = given.get("early_stopping", False)
    if early is not False:
        notes.append(f"early_stopping {early!r} is searched with Hugging Face's default rule (false)")
    if banned and not given.get("renormalize_logits", False):
        notes.append("scores are renormalised without PAD (the reference does not renormalise): n-best scores may "
                     "differ in the last digits")
    max_length = int(given.get("max_length") or hf.get("max_length") or hf.get("max_position_embeddings", 512))
    settings = {"beam": int(given.get("num_beams") or 1), "length_penalty": float(given.get("length_penalty", 1.0)),
                "max_len_a": 0.0, "max_len_b": max_length - 1, "repeat_guard": False, "normalize_case": False,
                "stopping": "transformers", "suppress_pad": [pad] in banned}
    return settings, notes


def model_card(source: str, directory: Path, pair: str, config: ModelConfig) -> str:
    """The card keeps the source's licence (its README's metadata) and OPUS-MT's attribution."""
    licence = "not stated by the source"
    readme = directory / "README.md"
    if readme.is_file():
        m = re.search(r"^license:\s*(\S+)", readme.read_text(encoding="utf-8", errors="replace"), re.M)
        licence = m.group(1) if m else licence
    return "\n".join([
        f"# mt model: {pair}, imported from {source}", "",
        f"- source: {source} (Marian / OPUS-MT, converted by `mt import`; weights unchanged)",
        f"- licence: {licence} (the source's; it applies to this copy)",
        f"- model: {config.n_encoder_layers}+{config.n_decoder_layers} layers, d_model {config.d_model}, "
        f"{config.activation} feed-forward of {config.d_ff}, vocabulary {config.vocab_size}",
        "- attribution: OPUS-MT, Tiedemann and Thottingal (2020), \"OPUS-MT: Building open translation services "
        "for the World\", EAMT; trained with Marian NMT on OPUS data (https://github.com/Helsinki-NLP/Opus-MT)",
        "", "Use: `mt translate --model <this directory> \"...\"`.", ""])


