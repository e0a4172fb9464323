"""The training loop shared by translation and language modelling.

A `Task` supplies batches, the loss and validation; this module owns the rest: AdamW,
warmup then cosine decay over the rest of whichever budget ends the run first (steps, epochs or
minutes), gradient accumulation and clipping, skipping non-finite steps, periodic
validation with early stopping, resumable checkpoints, the JSON-lines log, the progress
bar, and a clean stop on SIGINT/SIGTERM. What to do with a new best model is the caller's
(`on_best`).
"""
from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from machine_translation.base.errors import Interrupted, Terminated, TrainingError
from machine_translation.base.options import TrainConfig
from machine_translation.inference.precision import resolve
from machine_translation.training import checkpoints as ckpt
from machine_translation.training.distributed import DistInfo, all_reduce_sum, any_rank
from machine_translation.training.state import (
    TrainState, budget_progress, learning_rate, make_optimizer, parameter_groups, rng_state, set_rng_state,
)

logger = logging.getLogger(__name__)


class Batch(Protocol):
    """What the trainer needs to know of a task's batch (each task has its own batch type)."""

    n_tokens: int  # real (non-PAD) tokens, for tokens/s
    n_targets: int  # non-PAD target tokens the loss is summed over


class Task(Protocol):
    def steps_per_epoch(self) -> int: ...

    def batches(self, epoch: int, start: int) -> Iterator[Batch]: ...

    def loss_sum(self, model: nn.Module, batch) -> Tensor:
        """The loss summed over the target tokens of one of this task's own batches."""
        ...

    def validate(self, model: nn.Module) -> dict:
        """Metrics; "score" (higher is better) picks the best model."""
        ...

    def batching(self) -> dict:
        """The settings that decide the batches ({flag name: value}): a resumed run must keep them."""
        ...


def drop_torn_line(path: Path) -> None:
    """Cut a last line that a full disk or a kill left without its newline, so appending
    goes on from a whole record."""
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
                logger.warning("%s: its last line was cut short and is dropped", path)
    except FileNotFoundError:
        pass


class StopRequest:
    """SIGINT/SIGTERM: the first asks the loop to save and stop after the current step;
    a second one stops at once (files on disk are only ever replaced atomically)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = signal.SIGINT  # the signal that asked
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.requested, self.signum = True, signum
        logger.warning("%s: saving a checkpoint after this step (press Ctrl+C again to stop at once)",
                       signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


OnBest = Callable[[nn.Module, dict, TrainState], None]  # (model, validation metrics, state at that step)
OnValidated = Callable[[TrainState], None]  # after every validation, once it is logged


class Trainer:
    def __init__(self, task: Task, model: nn.Module, cfg: TrainConfig, run_dir: Path, device: torch.device,
                 model_config_dict: dict, dist_info: DistInfo = DistInfo(), on_best: OnBest | None = None,
                 on_validated: OnValidated | None = None):
        self.task, self.model, self.cfg, self.run_dir, self.device = task, model, cfg, Path(run_dir), device
        self.model_config_dict = model_config_dict
        self.dist = dist_info
        self.on_best = on_best  # called on the main process whenever validation finds a new best model
        self.on_validated = on_validated  # called on the main process after every validation
        # Under torchrun, gradients are all-reduced by DDP; evaluation and saving use the bare model.
        self.train_model = model
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel
            self.train_model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        self.optimizer = make_optimizer(model, cfg)
        # bf16/fp16: autocast over float32 weights; fp16 (CUDA only) scales the loss against underflow
        plan = resolve(cfg.precision, device, training=True)
        self.precision, self.autocast_dtype = plan.precision, plan.autocast_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.state = TrainState()
        self.log_path = self.run_dir / "train_log.jsonl"

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, interrupted: bool = False) -> Path:
        training = {"state": asdict(self.state), "optimizer": self.optimizer.state_dict(), "rng": rng_state(),
                    "train_config": asdict(self.cfg), "model_config": self.model_config_dict,
                    "batching": self.task.batching(), "precision": self.precision}
        path = ckpt.save_training_checkpoint(self.run_dir, self.model, training, self.state.step, self.cfg.keep_last,
                                             interrupted)
        logger.debug("saved checkpoint %s", path)
        return path

    def resume(self) -> Path:
        """Continue the run from its latest valid checkpoint: weights, optimizer, schedule,
        data position and random state, after checking this session would see the same run."""
        path, training = ckpt.load_training_checkpoint(self.run_dir, self.model,
                                                       parameter_groups(self.model, self.cfg), self.device)
        ckpt.check_continues(training, path, self.run_dir, self.model_config_dict, self.task.batching(),
                             self.precision, self.cfg)
        drop_torn_line(self.log_path)
        self.optimizer.load_state_dict(training["optimizer"])
        self.state = TrainState(**training["state"])
        self.state.stop_reason = ""  # the budget of this session decides when it stops
        set_rng_state(training["rng"])
        logger.info("resumed from %s at step %d", path, self.state.step)
        return path

    def log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")

    # -- the loop ----------------------------------------------------------------------
    def spent_budget(self) -> str:
        """Which budget is spent ("" while none is)."""
        c, s = self.cfg, self.state
        if c.max_steps is not None and s.step >= c.max_steps:
            return f"reached max_steps {c.max_steps}"
        if c.max_minutes is not None and s.elapsed >= 60 * c.max_minutes:
            return f"reached max_minutes {c.max_minutes}"
        if c.epochs is not None and s.step >= c.epochs * self.task.steps_per_epoch():
            return f"reached {c.epochs} epochs"
        return ""

    def micro_batches(self) -> Iterator[Batch]:
        """Endless stream of batches, tracking the data position (epoch, batch) in the state."""
        while True:
            for batch in self.task.batches(self.state.epoch, self.state.batch_in_epoch):
                self.state.batch_in_epoch += 1
                yield batch
            self.state.epoch += 1
            self.state.batch_in_epoch = 0

    def train_step(self, stream: Iterator[Batch]) -> tuple[float | None, int]:
        """One optimizer step over grad_accum batches: (mean loss per target token or None if skipped, tokens)."""
        self.model.train()
        batches = [next(stream) for _ in range(self.cfg.grad_accum)]
        world = self.dist.world_size
        # The loss is averaged over the global batch's target tokens; DDP averages gradients
        # over ranks, hence the factor `world`: the gradient equals the one-process gradient.
        n_targets, tokens = all_reduce_sum([sum(b.n_targets for b in batches), sum(b.n_tokens for b in batches)],
                                           self.dist, self.device)
        total = 0.0
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            for b in batches:
                loss = self.task.loss_sum(self.train_model, b) * world / n_targets
                self.scaler.scale(loss).backward()
                total += loss.item()
        total = all_reduce_sum([total], self.dist, self.device)[0] / world
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        tokens = int(tokens)
        if not (math.isfinite(total) and torch.isfinite(grad_norm)):
            if self.scaler.is_enabled():
                self.scaler.update()  # lower the fp16 loss scale; the step is skipped
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped_steps += 1
            self.state.nonfinite_in_a_row += 1
            logger.warning("step %d: non-finite loss or gradient, step skipped", self.state.step + 1)
            if self.state.nonfinite_in_a_row >= self.cfg.max_nonfinite:
                saved = ckpt.checkpoint_dirs(self.run_dir)
                where = (f"the last good checkpoint is {saved[-1]} (--resume continues from it)" if saved
                         else "no checkpoint was saved yet")
                raise TrainingError(f"stopped: {self.state.nonfinite_in_a_row} non-finite steps in a row at step "
                                    f"{self.state.step}; lower --lr; {where}")
            return None, tokens
        self.scaler.step(self.optimizer)  # (the plain optimizer step unless fp16)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.nonfinite_in_a_row = 0
        return total, tokens

    def validate(self) -> dict:
        """Validate on the main process (others wait at the next collective); report a new best model."""
        if not self.dist.is_main:
            return {}
        metrics = self._record(self.task.validate(self.model))
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        logger.info("step %d: %s", self.state.step, shown)
        if metrics["score"] <= self.state.best_score:
            self.state.evals_without_gain += 1
        else:
            self.state.evals_without_gain = 0
        self._after_validation(metrics)
        return metrics

    def validate_average(self) -> dict:
        """Validate the mean of the last `average_last` periodic checkpoints; it becomes the best
        model (`on_best`) if it scores better than every single checkpoint validated. The model
        itself keeps its own weights."""
        k = min(self.cfg.average_last, self.cfg.keep_last)
        chosen = ckpt.checkpoint_dirs(self.run_dir, periodic_only=True)[-k:]
        if k < 2 or len(chosen) < 2:
            return {}
        own = {name: t.clone() for name, t in self.model.state_dict().items()}
        ckpt.load_average(self.model, chosen)
        best_single = self.state.best_score
        metrics = self._record({**self.task.validate(self.model), "averaged_checkpoints": len(chosen)})
        logger.info("average of the last %d checkpoints: score %.3f against %.3f for the best single checkpoint (%s)",
                    len(chosen), metrics["score"], best_single, "kept" if metrics["score"] > best_single else "not kept")
        self._after_validation(metrics)
        self.model.load_state_dict(own)
        return metrics

    def _record(self, metrics: dict) -> dict:
        """One validation's metrics into the state's history and the log."""
        s = self.state
        record = {"step": s.step, "epoch": s.epoch, "elapsed": round(s.elapsed, 1), **metrics}
        s.history.append(record)
        self.log({"type": "eval", **record})
        return metrics

    def _after_validation(self, metrics: dict) -> None:
        """A better score makes the model the best (`on_best`); then `on_validated`."""
        if metrics["score"] > self.state.best_score:
            self.state.best_score = metrics["score"]
            if self.on_best is not None:
                self.on_best(self.model, metrics, self.state)
        if self.on_validated is not None:
            self.on_validated(self.state)

    def run(self) -> TrainState:
        """Train until the budget is spent, patience runs out or a signal arrives; then
        validate (if the last step was not validated), save, and report an interruption."""
        c, s = self.cfg, self.state
        stream = self.micro_batches()
        total = c.max_steps or (int(c.epochs * self.task.steps_per_epoch()) if c.epochs else None)
        bar = tqdm(total=total, initial=s.step, file=sys.stderr, dynamic_ncols=True, unit="step",
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, disable=not self.dist.is_main)
        clock = _Clock(s.elapsed)
        validated_at = -1  # the step of this session's last validation
        with StopRequest() as stop:
            try:
                while not self._should_stop(stop):
                    for group in self.optimizer.param_groups:
                        group["lr"] = learning_rate(c, s, self.task.steps_per_epoch())
                    t0 = time.perf_counter()
                    loss, tokens = self.train_step(stream)
                    clock.add(tokens, time.perf_counter() - t0)
                    s.elapsed = clock.elapsed()
                    if loss is None:
                        continue
                    s.step += 1
                    if s.step == c.warmup_steps:
                        s.decay_from = budget_progress(c, s, self.task.steps_per_epoch())
                    bar.update(1)
                    self._log_step(loss, clock, bar)
                    if s.step % c.eval_every == 0:
                        validated_at = s.step
                        if self._validate_and_check_patience(clock):
                            break
                    if s.step % c.save_every == 0 and self.dist.is_main:
                        self.save_checkpoint()
            finally:
                bar.close()
            self._finish(validated_at, stop.signum)
        return s

    def _should_stop(self, stop: StopRequest) -> bool:
        """One collective per step, so every rank stops at the same step; sets the stop reason."""
        spent = self.spent_budget()
        interrupted, any_spent = all_reduce_sum([float(stop.requested), float(bool(spent))], self.dist, self.device)
        if interrupted:
            self.state.stop_reason = "interrupted"
        elif any_spent:
            self.state.stop_reason = spent or "stopped with the other processes"
        return bool(interrupted or any_spent)

    def _log_step(self, loss: float, clock: _Clock, bar: tqdm) -> None:
        c, s = self.cfg, self.state
        if s.step % c.log_every == 0 or s.step == 1:
            lr, tps = self.optimizer.param_groups[0]["lr"], clock.take_rate()
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:.0f}", lr=f"{lr:.2e}", refresh=False)
            self.log({"type": "train", "step": s.step, "epoch": s.epoch, "loss": loss, "lr": lr,
                      "tokens_per_s": tps, "elapsed": s.elapsed})

    def _validate_and_check_patience(self, clock: _Clock) -> bool:
        """Validate; True (on every rank) when patience has run out, with the stop reason set."""
        c, s = self.cfg, self.state
        self.validate()
        s.elapsed = clock.elapsed()
        patience_out = c.patience is not None and s.evals_without_gain >= c.patience
        if any_rank(patience_out, self.dist, self.device):
            s.stop_reason = f"no validation gain in {c.patience} evaluations (patience)"
            return True
        return False

    def _finish(self, validated_at: int, signum: int) -> None:
        s = self.state
        interrupted = s.stop_reason == "interrupted"
        if s.step == 0:
            if interrupted:
                raise Interrupted("interrupted before the first step: nothing to save", signum)
            return
        if validated_at != s.step and not interrupted:
            self.validate()
        if not s.history and self.dist.is_main and self.on_best is not None:
            self.on_best(self.model, {}, s)  # interrupted before any validation: keep what there is
        between_saves = interrupted and s.step % self.cfg.save_every != 0  # (at a periodic step it is periodic)
        path = self.save_checkpoint(between_saves) if self.dist.is_main else self.run_dir / ckpt.CHECKPOINT_DIR
        if not interrupted and self.dist.is_main:
            self.validate_average()
        if interrupted:
            raise Interrupted(f"interrupted at step {s.step}: checkpoint saved in {path}; continue with --resume",
                              signum)


class _Clock:
    """Wall time of the run across sessions, and a tokens/s window reset at every log."""

    def __init__(self, elapsed_before: float):
        self.start, self.before = time.perf_counter(), elapsed_before
        self.tokens, self.busy = 0, 0.0

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def add(self, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.busy += seconds

    def take_rate(self) -> float:
        rate = self.tokens / max(self.busy, 1e-9)
        self.tokens, self.busy = 0, 0.0
        return rate
