"""Decoder-only mode end to end: sampling with and without the cache, seeds, the sliding
window, overfitting a short text, save/load/generate, and bad inputs."""
import json

import pytest
import torch
from typer.testing import CliRunner

from machine_translation.cli import app
from machine_translation.model.transformer import build_model
from machine_translation.base.options import SamplingOptions
from machine_translation.inference.search import sample
from machine_translation.training.tasks import sequence_loss
from tests.conftest import tiny_config

runner = CliRunner()


def draw(model, prompt, n, seed, use_cache, temperature=1.0, top_k=0, top_p=None):
    g = torch.Generator().manual_seed(seed)
    options = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=n)
    return list(sample(model, prompt, g, options, use_cache=use_cache))


@pytest.fixture(params=["sinusoidal", "learned"])
def window_gpt(request):
    torch.manual_seed(0)
    return build_model(tiny_config(task="lm", positional=request.param)).eval()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_and_uncached_sampling_agree_across_the_window(window_gpt, temperature):
    gpt = window_gpt
    # max_positions is 32: 60 new tokens after a 10-token prompt slide the window many times
    cached = draw(gpt, list(range(4, 14)), 60, seed=3, use_cache=True, temperature=temperature)
    uncached = draw(gpt, list(range(4, 14)), 60, seed=3, use_cache=False, temperature=temperature)
    assert cached == uncached and len(cached) == 60


def test_seed_determinism(gpt):
    a = draw(gpt, [4, 5], 30, seed=7, use_cache=True)
    assert a == draw(gpt, [4, 5], 30, seed=7, use_cache=True)
    assert a != draw(gpt, [4, 5], 30, seed=8, use_cache=True)


def test_top_k_one_is_greedy(gpt):
    assert draw(gpt, [4, 5], 20, 1, True, top_k=1) == draw(gpt, [4, 5], 20, 2, True, temperature=0.0)


def test_overfits_a_short_text():
    torch.manual_seed(0)
    text = [4 + (i * 7) % 13 for i in range(40)]  # a fixed sequence of 40 tokens
    model = build_model(tiny_config(task="lm", max_positions=64, d_model=64, d_ff=128))
    x, y = torch.tensor([text[:-1]]), torch.tensor([text[1:]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = sequence_loss(model(x), y, pad_id=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert draw(model, text[:1], 39, 0, True, temperature=0.0) == text[1:]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    text = d / "text.txt"
    text.write_text("ROMEO: what light through yonder window breaks?\nJULIET: ay me.\n" * 60, encoding="utf-8")
    out = d / "model"
    r = runner.invoke(app, ["train", "--task", "lm", "--data", str(text), "--out", str(out), "--preset", "tiny",
                            "--max-steps", "100", "--eval-every", "50", "--batch-size", "8", "--block-size", "32",
                            "--lr", "3e-3", "--warmup-steps", "5", "--json"])
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout.splitlines()[-1])


def test_lm_train_and_generate_round_trip(lm_dir):
    out, summary = lm_dir
    # below the uniform guess over its characters (ln |V|): it has learned the text's statistics
    import math
    from mt_tokenizers import load_tokenizer
    assert summary["task"] == "lm" and summary["steps"] == 100
    assert summary["best_val_loss"] < math.log(load_tokenizer(out).vocab_size) - 0.5
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["task"] == "lm" and config["model"]["max_positions"] == 32
    args = ["generate", "--model", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "5"]
    r1, r2 = runner.invoke(app, args), runner.invoke(app, args)
    assert r1.exit_code == 0, r1.output
    assert r1.stdout == r2.stdout and r1.stdout.startswith("ROMEO:")
    r3 = runner.invoke(app, args + ["--num-samples", "2", "--no-cache"])
    # the first sample is the same text (cache or not), then a blank line, then the second sample
    assert r3.stdout.startswith(r1.stdout + "\nROMEO:") and r3.stdout.count("ROMEO:") >= 2


def test_a_language_model_run_has_a_loss_curve(lm_dir, tmp_path):
    from matplotlib.image import imread
    out, _ = lm_dir
    assert imread(out / "training_curve.png").shape[:2] == (600, 800)
    r = runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "lm.png")])
    assert r.exit_code == 0, r.output
    assert imread(tmp_path / "lm.png").shape[:2] == (600, 800)


def test_lm_bad_inputs(lm_dir, tmp_path):
    out, _ = lm_dir
    r = runner.invoke(app, ["generate", "--model", str(out), "--prompt", "Ω≈"])
    assert r.exit_code == 2 and "not in the vocabulary" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["generate", "--model", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no model directory" in r.stderr
    r = runner.invoke(app, ["translate", "--model", str(out), "hello"])
    assert r.exit_code == 2 and "use `mt generate" in r.stderr
    for to in ("ctranslate2", "hf"):
        r = runner.invoke(app, ["export", str(out), "--to", to, "--out", str(tmp_path / to)])
        assert r.exit_code == 2 and "holds a language model: mt export writes translation models" in r.stderr
        assert not (tmp_path / to).exists()
    r = runner.invoke(app, ["generate", "--model", str(out), "--prompt", "ROMEO: " * 20, "--max-new-tokens", "3"])
    assert r.exit_code == 0 and "only its last 32" in r.stderr


def test_python_generate_api(lm_dir):
    from machine_translation import Generator
    out, _ = lm_dir
    gen = Generator.from_pretrained(out, "cpu")
    a = gen.generate(["ROMEO:", "JULIET:"], max_new_tokens=20, seed=3)
    assert a == gen.generate(["ROMEO:", "JULIET:"], max_new_tokens=20, seed=3)
    assert a[0].startswith("ROMEO:") and a[1].startswith("JULIET:") and len(a[0]) > len("ROMEO:")
