"""The training loop's pieces: the learning-rate schedule and the AdamW parameter groups."""
import math

import pytest

from machine_translation.model import build_model
from machine_translation.options import TrainConfig
from machine_translation.training import TrainState, learning_rate, make_optimizer
from tests.conftest import tiny_config


def lr_at(cfg, step=0, elapsed=0.0, steps_per_epoch=100):
    return learning_rate(cfg, TrainState(step=step, elapsed=elapsed), steps_per_epoch)


def test_warmup_is_linear_then_cosine_decays_to_the_floor():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=1000, min_lr_ratio=0.05)
    assert lr_at(cfg, 0) == pytest.approx(1e-4 * (0.05 + 0.95 * 0.5 * (1 + math.cos(0))))  # (0+1)/10 of the peak
    assert lr_at(cfg, 4) == pytest.approx(lr_at(cfg, 9) * 5 / 10, rel=1e-2)
    peak = lr_at(cfg, 9)
    assert peak == pytest.approx(1e-3, rel=1e-3)
    middle = lr_at(cfg, 500)
    assert middle == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5), rel=1e-6)  # cos(pi/2) = 0
    assert lr_at(cfg, 1000) == pytest.approx(5e-5) and lr_at(cfg, 5000) == pytest.approx(5e-5)
    rates = [lr_at(cfg, s) for s in range(9, 1001, 7)]
    assert rates == sorted(rates, reverse=True)


def test_the_budget_that_ends_first_drives_the_decay():
    cfg = TrainConfig(lr=1e-3, warmup_steps=1, max_steps=1000, max_minutes=10, epochs=2)
    # half the time spent at step 10: time is the budget that ends first
    assert lr_at(cfg, 10, elapsed=300) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    # 2 epochs of 100 steps: at step 100 half of the epochs budget is gone
    assert lr_at(cfg, 100, elapsed=1) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    with pytest.raises(ValueError, match="give a budget"):
        TrainConfig()


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = build_model(tiny_config())
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1, max_steps=1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert decayed and all(n.endswith("weight") and "norm" not in n and "embed" not in n for n in decayed)
    assert any("embed.token" in n for n in exempt) and any(n.endswith("bias") for n in exempt)
    assert any("norm" in n for n in exempt)
    assert len(decayed) + len(exempt) == len(list(model.parameters()))  # every parameter, once (tied: once)
