"""Model directories: save/load round trip keeps weights and tying; bad directories give one clear error."""
import json

import pytest
import torch

from machine_translation.model.directory import load_pretrained, save_pretrained
from machine_translation.base.errors import ConfigError, ModelDirError
from machine_translation.model.transformer import ModelConfig
from mt_tokenizers import CharTokenizer
from tests.conftest import tiny_config

TEXT = ["the cat sat on the mat", "le chat est assis sur le tapis"]


@pytest.fixture
def saved(tmp_path, seq2seq):
    tok = CharTokenizer.train(TEXT)
    model = type(seq2seq)(tiny_config(vocab_size=tok.vocab_size)).eval()
    save_pretrained(tmp_path / "m", model, model.config, tok, tok, pair="en-fr", generation={"beam": 2})
    return tmp_path / "m", model


def test_round_trip_keeps_weights_and_tying(saved):
    directory, model = saved
    loaded = load_pretrained(directory)
    m2 = loaded.model
    assert loaded.pair == "en-fr" and loaded.generation == {"beam": 2}
    assert loaded.config == model.config
    assert m2.decoder.lm_head.weight is m2.decoder.embed.token.weight is m2.encoder.embed.token.weight
    src, tgt = torch.tensor([[5, 6, 3]]), torch.tensor([[2, 7, 8]])
    torch.testing.assert_close(m2(src, tgt), model(src, tgt))
    assert loaded.src_tokenizer is loaded.tgt_tokenizer


def test_an_old_config_json_keeps_the_old_architecture(saved):
    """Keys added to the model config over time are absent from older model directories; the
    defaults they load with are the old behaviour (pre-norm, no attention or activation
    dropout, PyTorch's init), whatever the presets now choose."""
    from machine_translation.model.transformer import PRESETS
    directory, model = saved
    data = json.loads((directory / "config.json").read_text())
    for key in ("norm_first", "attention_dropout", "activation_dropout", "init_std"):
        del data["model"][key]
    (directory / "config.json").write_text(json.dumps(data))
    loaded = load_pretrained(directory)
    assert loaded.config.norm_first and loaded.config.init_std is None and loaded.config.attention_dropout == 0
    src, tgt = torch.tensor([[5, 6, 3]]), torch.tensor([[2, 7, 8]])
    torch.testing.assert_close(loaded.model(src, tgt), model(src, tgt), rtol=0, atol=0)
    assert PRESETS["mt"]["small"]["norm_first"] is False  # the defaults of new runs (docs/benchmarks.md, Why the defaults)
    assert PRESETS["mt"]["small"]["init_std"] == 0.02


def test_separate_vocabularies_round_trip(tmp_path):
    from machine_translation.model.transformer import build_model
    src_tok, tgt_tok = CharTokenizer.train(TEXT[:1]), CharTokenizer.train(TEXT[1:])
    cfg = tiny_config(vocab_size=tgt_tok.vocab_size, src_vocab_size=src_tok.vocab_size, share_embeddings=False)
    save_pretrained(tmp_path, build_model(cfg), cfg, src_tok, tgt_tok, pair="en-fr")
    loaded = load_pretrained(tmp_path)
    assert loaded.src_tokenizer.chars == src_tok.chars and loaded.tgt_tokenizer.chars == tgt_tok.chars


def test_unknown_config_key(saved):
    directory, _ = saved
    data = json.loads((directory / "config.json").read_text())
    data["model"]["n_layer"] = 4
    (directory / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match="unknown model config keys: n_layer"):
        load_pretrained(directory)
    with pytest.raises(ConfigError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({"vocab_size": 10, "colour": "red"})


def test_vocab_size_mismatch(saved):
    directory, _ = saved
    data = json.loads((directory / "config.json").read_text())
    data["model"]["vocab_size"] += 1
    (directory / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match="tokenizer has .* entries but the model expects"):
        load_pretrained(directory)


@pytest.mark.parametrize("victim", ["config.json", "model.safetensors", "char_vocab.json", "tokenizer_config.json"])
def test_missing_file(saved, victim):
    directory, _ = saved
    (directory / victim).unlink()
    with pytest.raises(ModelDirError, match="missing"):
        load_pretrained(directory)


@pytest.mark.parametrize("victim", ["config.json", "model.safetensors", "char_vocab.json"])
def test_corrupt_file(saved, victim):
    directory, _ = saved
    path = directory / victim
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated, as by a crash
    with pytest.raises(ModelDirError, match="corrupt"):
        load_pretrained(directory)


def test_weights_of_another_architecture(saved, tmp_path):
    directory, _ = saved
    data = json.loads((directory / "config.json").read_text())
    data["model"]["n_decoder_layers"] = 3
    (directory / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match="does not match"):
        load_pretrained(directory)


def test_no_model_directory(tmp_path):
    with pytest.raises(ModelDirError, match="mt train"):
        load_pretrained(tmp_path / "nowhere")


def test_an_old_generation_config_keeps_the_old_search(saved):
    """A model directory written before the repetition guard existed (no such key) translates as before."""
    from machine_translation.inference.translate import Translator
    directory, _ = saved
    assert json.loads((directory / "generation_config.json").read_text()) == {"beam": 2}
    defaults = Translator.from_pretrained(directory, "cpu").defaults
    assert defaults.beam == 2 and defaults.repeat_guard is False


def unfuse(weights_file):
    """Rewrite a weights file in the layout of mt before fused self-attention: separate
    q_proj (D rows) and kv_proj (2D rows) where qkv_proj is now."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights_file))
    for name in [n for n in tensors if ".qkv_proj." in n]:
        fused = tensors.pop(name)
        d = fused.size(0) // 3
        tensors[name.replace(".qkv_proj.", ".q_proj.")] = fused[:d].clone()
        tensors[name.replace(".qkv_proj.", ".kv_proj.")] = fused[d:].clone()
    save_file(tensors, str(weights_file))
    return sorted(tensors)


def test_a_model_directory_from_before_fused_attention_translates_as_before(saved):
    directory, model = saved
    names = unfuse(directory / "model.safetensors")
    assert "encoder.blocks.0.self_attn.q_proj.weight" in names and not any("qkv_proj" in n for n in names)
    m2 = load_pretrained(directory).model
    src, tgt = torch.tensor([[5, 6, 3], [7, 3, 0]]), torch.tensor([[2, 7, 8], [2, 9, 0]])
    torch.testing.assert_close(m2(src, tgt), model(src, tgt), atol=0, rtol=0)
