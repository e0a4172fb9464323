"""The training loop: the learning-rate schedule, the AdamW parameter groups, and the loop's
promises (non-finite steps, bf16, budgets, patience, gradient accumulation, signals)."""
import math
import os
import signal
import time
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from machine_translation.inference import precision
from machine_translation.model.transformer import build_model
from machine_translation.base.options import TrainConfig
from machine_translation.training.trainer import (
    StopRequest, Trainer, TrainingError, TrainState, learning_rate, make_optimizer,
)
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


def test_the_cosine_starts_at_the_peak_where_warmup_ended():
    # a slow machine: warmup took 60% of a 10-minute budget; the decay runs over the other 40%
    cfg = TrainConfig(lr=1e-3, warmup_steps=200, max_minutes=10, min_lr_ratio=0.05)
    state = TrainState(step=199, elapsed=355, decay_from=0.0)
    assert learning_rate(cfg, state, 100) == pytest.approx(1e-3)  # the last warmup step: the peak, not decayed
    assert learning_rate(cfg, TrainState(step=200, elapsed=360, decay_from=0.6), 100) == pytest.approx(1e-3)
    halfway = TrainState(step=300, elapsed=480, decay_from=0.6)  # half of the 40% left
    assert learning_rate(cfg, halfway, 100) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert learning_rate(cfg, TrainState(step=400, elapsed=600, decay_from=0.6), 100) == pytest.approx(5e-5)


def test_the_trainer_records_where_warmup_ended(tmp_path):
    state = toy_trainer(tmp_path / "s", ToyTask(), max_steps=10, warmup_steps=3).run()
    assert state.decay_from == pytest.approx(0.3)  # 3 of 10 steps
    state = toy_trainer(tmp_path / "e", ToyTask(steps_per_epoch=4), epochs=2, warmup_steps=2).run()
    assert state.decay_from == pytest.approx(0.25)  # 2 of 8 steps


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


def test_decay_embeddings_moves_the_tied_embedding_and_nothing_else():
    model = build_model(tiny_config())
    names = {id(p): n for n, p in model.named_parameters()}

    def decayed(cfg):
        return {names[id(p)] for p in make_optimizer(model, cfg).param_groups[0]["params"]}

    before = decayed(TrainConfig(max_steps=1))
    after = decayed(TrainConfig(max_steps=1, decay_embeddings=True))
    assert after - before == {"encoder.embed.token.weight"}  # the one tied Parameter, under its first name


def test_init_std_draws_every_matrix_from_one_normal():
    torch.manual_seed(0)
    model = build_model(tiny_config(d_model=64, d_ff=128, init_std=0.02))
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0) if "norm" not in name else True, name
        elif p.dim() == 2:
            rows = p[1:] if "embed.token" in name else p  # the PAD row is 0
            assert rows.std().item() == pytest.approx(0.02, rel=0.15), name
    assert torch.all(model.encoder.embed.token.weight[0] == 0)
    default = build_model(tiny_config(d_model=64, d_ff=128))
    assert default.encoder.blocks[0].ff.up.bias.abs().sum() > 0  # without it: PyTorch's default init


# -- the loop, driven by a small task whose batches, losses and scores a test controls -----


@dataclass
class ToyBatch:
    x: torch.Tensor  # (B, 4)
    y: torch.Tensor  # (B, 1)
    n_tokens: int
    n_targets: int


class _InfGrad(torch.autograd.Function):
    """Zero in the forward pass, an infinite gradient in the backward pass."""

    @staticmethod
    def forward(ctx, x):
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


class ToyTask:
    """Linear regression on fixed random batches; `nan_steps`/`inf_grad_steps` poison the
    loss or the gradient of those (1-based) loss calls; `scores` are validation results."""

    def __init__(self, steps_per_epoch=4, nan_steps=(), inf_grad_steps=(), scores=None, seconds=0.0):
        g = torch.Generator().manual_seed(0)
        self.data = [ToyBatch(torch.randn(3, 4, generator=g), torch.randn(3, 1, generator=g), 3, 3)
                     for _ in range(steps_per_epoch)]
        self.nan_steps, self.inf_grad_steps, self.scores, self.seconds = nan_steps, inf_grad_steps, scores, seconds
        self.calls, self.autocast, self.dtypes = 0, [], []

    def steps_per_epoch(self):
        return len(self.data)

    def batching(self):
        return {"seed": 1}

    def batches(self, epoch, start):
        yield from self.data[start:]

    def loss_sum(self, model, batch):
        time.sleep(self.seconds)
        self.calls += 1
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        out = model(batch.x)  # (B, 1)
        self.dtypes.append(out.dtype)
        loss = ((out.float() - batch.y) ** 2).sum()
        if self.calls in self.nan_steps:
            loss = loss * float("nan")
        if self.calls in self.inf_grad_steps:  # a finite loss whose gradient overflows, once
            loss = loss + _InfGrad.apply(model.weight).sum()
        return loss

    def validate(self, model):
        score = self.scores.pop(0) if self.scores else 0.0
        return {"val_loss": -score, "score": score}


def toy_trainer(tmp_path, task, **cfg):
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    config = TrainConfig(**{"lr": 0.05, "warmup_steps": 1, "eval_every": 1000, "save_every": 1000,
                            "log_every": 1, **cfg})
    return Trainer(task, model, config, tmp_path, torch.device("cpu"), {"toy": True})


def test_a_non_finite_loss_or_gradient_skips_the_step_and_counts_it(tmp_path):
    task = ToyTask(nan_steps=(3,), inf_grad_steps=(5,))
    trainer = toy_trainer(tmp_path, task, max_steps=6)
    state = trainer.run()
    assert state.step == 6 and state.skipped_steps == 2 and task.calls == 8  # two batches spent on skipped steps
    assert state.nonfinite_in_a_row == 0 and all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_five_non_finite_steps_in_a_row_stop_with_the_last_good_checkpoint(tmp_path):
    task = ToyTask(nan_steps=range(4, 100))
    trainer = toy_trainer(tmp_path, task, max_steps=50, save_every=2)
    with pytest.raises(TrainingError) as e:
        trainer.run()
    message = str(e.value)
    assert "5 non-finite steps in a row at step 3" in message and "lower --lr" in message
    assert str(tmp_path / "checkpoints") in message and (tmp_path / "checkpoints" / "step-00000002").is_dir()
    assert trainer.state.skipped_steps == 5


@pytest.mark.parametrize("flags, auto", [({"avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"), ({"avx2"}, "fp32")])
def test_bf16_runs_the_step_under_bfloat16_autocast(tmp_path, monkeypatch, flags, auto):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))  # auto follows the CPU
    for kind in ("bf16", "fp32", "auto"):
        task = ToyTask()
        toy_trainer(tmp_path / kind, task, max_steps=2, precision=kind).run()
        bf16 = (kind if kind != "auto" else auto) == "bf16"
        assert task.autocast == [bf16, bf16]
        assert set(task.dtypes) == {torch.bfloat16 if bf16 else torch.float32}


def test_impossible_training_precisions_are_refused(tmp_path):
    from machine_translation.base.errors import ConfigError
    for kind, match in (("fp16", "needs CUDA"), ("int8", "choose one of"), ("half", "choose one of")):
        with pytest.raises(ConfigError, match=match):
            toy_trainer(tmp_path, ToyTask(), max_steps=1, precision=kind)


def test_epochs_and_minutes_budgets(tmp_path):
    state = toy_trainer(tmp_path / "e", ToyTask(steps_per_epoch=4), epochs=1.5).run()
    assert state.step == 6 and state.epoch == 1 and state.stop_reason == "reached 1.5 epochs"
    state = toy_trainer(tmp_path / "m", ToyTask(seconds=0.05), max_minutes=0.3 / 60).run()  # 0.3 s
    assert 2 <= state.step <= 7 and state.stop_reason.startswith("reached max_minutes")
    assert state.elapsed >= 0.3


def test_patience_stops_after_n_validations_without_gain(tmp_path):
    task = ToyTask(scores=[1.0, 2.0, 1.5, 1.9, 1.0, 5.0])
    best = []
    trainer = toy_trainer(tmp_path, task, max_steps=100, eval_every=2, patience=3)
    trainer.on_best = lambda model, metrics, state: best.append((state.step, metrics["score"]))
    state = trainer.run()
    assert state.step == 10 and "patience" in state.stop_reason  # validations at 2, 4 (best), 6, 8, 10
    assert best == [(2, 1.0), (4, 2.0)]


def test_grad_accum_equals_one_batch_of_the_same_examples(tmp_path):
    task = ToyTask(steps_per_epoch=2)
    accum = toy_trainer(tmp_path / "a", task, max_steps=1, grad_accum=2)
    accum.run()
    joined = ToyTask(steps_per_epoch=1)
    a, b = task.data
    joined.data = [ToyBatch(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), 6, 6)]
    single = toy_trainer(tmp_path / "s", joined, max_steps=1)
    single.run()
    assert task.calls == 2 and accum.state.batch_in_epoch == 2  # both batches of the epoch, in one step
    for p, q in zip(accum.model.parameters(), single.model.parameters()):
        torch.testing.assert_close(p, q)


def test_first_signal_asks_to_stop_and_a_second_stops_at_once():
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a job started with `&`
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # restored
