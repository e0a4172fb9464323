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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from machine_translation import checkpoint as ckpt
from machine_translation.distributed import DistInfo, all_reduce_sum, any_rank
from machine_translation.errors import Interrupted, MTError, Terminated
from machine_translation.options import TrainConfig
from machine_translation.runtime import TRAIN_PRECISIONS, check_precision

logger = logging.getLogger(__name__)


class TrainingError(MTError):
    """Training cannot go on (e.g. the loss keeps being non-finite)."""


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
        """The settings that decide the batches ({flag name: value}): a resumed run must keep them.
        A task may also have `batching_before`: the value of each setting added since the first
        checkpoints, as checkpoints written before it behaved."""
        ...


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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm gains, nor on embeddings unless
    `cfg.decay_embeddings`."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # a tied Parameter is listed once
        (decay if p.dim() >= 2 and (cfg.decay_embeddings or "embed" not in name) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), eps=1e-9)


def rng_state() -> dict:
    import random
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


OnBest = Callable[[nn.Module, dict, "TrainState"], None]  # (model, validation metrics, state at that step)
OnValidated = Callable[["TrainState"], None]  # after every validation, once it is logged


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
        self.precision = check_precision(cfg.precision, device, TRAIN_PRECISIONS)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
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
        path, training = ckpt.load_training_checkpoint(self.run_dir, self.model, self.device)
        saved_config = training.get("model_config", {})  # lacks the keys added to mt after it was written
        if {**self.model_config_dict, **saved_config} != self.model_config_dict:
            raise TrainingError(f"{path} was trained with another model config than {self.run_dir}/config.json")
        saved, now = training.get("batching", {}), self.task.batching()  # (no entry: a checkpoint of older mt)
        # A setting added to mt later is absent from an older checkpoint, which did without it.
        saved = {**getattr(self.task, "batching_before", {}), **saved} if saved else saved
        if saved and set(saved) != set(now):  # an mt that drew its batches another way (e.g. before buckets)
            logger.warning("%s was written by an mt that formed its batches differently: the run continues, "
                           "on batches of the same sentences drawn the new way", path)
        for key in sorted(set(saved) & set(now)):
            if saved[key] != now[key]:
                flag = "--" + key.replace("_", "-")
                raise TrainingError(f"{flag} {now[key]} differs from the run's {saved[key]}: a resumed run must see "
                                    f"the same batches; pass {flag} {saved[key]} (or start a new run)")
        before = training.get("precision")  # as resolved (no entry: a checkpoint of older mt)
        if before is not None and before != self.precision:
            logger.warning("the run was trained with --precision %s and continues in %s: the weights and the "
                           "optimizer state are float32, so this works, but the steps are not bit-identical to "
                           "an uninterrupted run", before, self.precision)
        saved_decay = training.get("train_config", {}).get("decay_embeddings", False)
        if saved_decay != self.cfg.decay_embeddings:  # the optimizer's parameter groups would not match
            flag = "--decay-embeddings" if saved_decay else "--no-decay-embeddings"
            raise TrainingError(f"the run was started with {flag}: pass it to resume it (or start a new run)")
        if ckpt.unfused_attention(path):
            raise TrainingError(f"{path} was written by an older mt (separate self-attention projections): its "
                                f"optimizer state does not fit this version; continue with `mt train --init-from "
                                f"{self.run_dir} --out NEW_DIR` (fresh optimizer) or with the mt that started it")
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
        metrics = self.task.validate(self.model)
        s = self.state
        record = {"step": s.step, "epoch": s.epoch, "elapsed": round(s.elapsed, 1), **metrics}
        s.history.append(record)
        self.log({"type": "eval", **record})
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        tqdm.write(f"step {s.step}: {shown}", file=sys.stderr)
        if metrics["score"] > s.best_score:
            s.best_score, s.evals_without_gain = metrics["score"], 0
            if self.on_best is not None:
                self.on_best(self.model, metrics, s)
        else:
            s.evals_without_gain += 1
        if self.on_validated is not None:
            self.on_validated(s)
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
        s = self.state
        metrics = {**self.task.validate(self.model), "averaged_checkpoints": len(chosen)}
        record = {"step": s.step, "epoch": s.epoch, "elapsed": round(s.elapsed, 1), **metrics}
        s.history.append(record)
        self.log({"type": "eval", **record})
        better = metrics["score"] > s.best_score
        tqdm.write(f"average of the last {len(chosen)} checkpoints: score {metrics['score']:.3f} against "
                   f"{s.best_score:.3f} for the best single checkpoint ({'kept' if better else 'not kept'})",
                   file=sys.stderr)
        if better:
            s.best_score = metrics["score"]
            if self.on_best is not None:
                self.on_best(self.model, metrics, s)
        self.model.load_state_dict(own)
        if self.on_validated is not None:
            self.on_validated(s)
        return metrics

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
