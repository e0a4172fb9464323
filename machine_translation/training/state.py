"""What a run carries from step to step, and the rules that act on it: the state (step, data
position, best score, history), the learning-rate schedule (linear warmup, then cosine decay
over the rest of whichever budget ends first: steps, epochs or minutes), AdamW and its
parameter groups, and the random number generators' state, saved and restored on resume.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from torch import nn

from machine_translation.base.options import TrainConfig


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # data position: batches of this epoch already consumed
    elapsed: float = 0.0  # wall-clock seconds of training (validation included) over all sessions of the run
    decay_from: float = 0.0  # the budget's progress when warmup ended: the cosine runs over the rest
    best_score: float = float("-inf")
    evals_without_gain: int = 0
    nonfinite_in_a_row: int = 0
    skipped_steps: int = 0
    stop_reason: str = ""
    history: list = field(default_factory=list)  # eval records


def budget_progress(cfg: TrainConfig, state: TrainState, steps_per_epoch: int) -> float:
    """How much of the budget that ends first is spent, 0..1 (steps, epochs or minutes)."""
    progress = 0.0
    if cfg.max_steps:
        progress = max(progress, state.step / cfg.max_steps)
    if cfg.epochs:
        progress = max(progress, state.step / (cfg.epochs * steps_per_epoch))
    if cfg.max_minutes:
        progress = max(progress, state.elapsed / (60 * cfg.max_minutes))
    return min(progress, 1.0)


def learning_rate(cfg: TrainConfig, state: TrainState, steps_per_epoch: int) -> float:
    """Linear warmup to the peak, then cosine decay to min_lr_ratio over the rest of the budget.

    The decay starts where warmup ended (`state.decay_from`), so the run reaches its peak
    however large a share of a time budget warmup takes on a slow machine."""
    if state.step < cfg.warmup_steps:
        return cfg.lr * (state.step + 1) / cfg.warmup_steps
    rest = 1.0 - state.decay_from
    progress = (budget_progress(cfg, state, steps_per_epoch) - state.decay_from) / rest if rest > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    decay = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * decay


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[list[str]]:
    """The names of the parameters with weight decay, and of those without: biases, LayerNorm
    gains, and embeddings unless `cfg.decay_embeddings` (a tied Parameter is listed once)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and (cfg.decay_embeddings or "embed" not in name) else no_decay).append(name)
    return [decay, no_decay]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over `parameter_groups`."""
    params = dict(model.named_parameters())
    decay, no_decay = ([params[name] for name in names] for names in parameter_groups(model, cfg))
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), eps=1e-9)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
