"""A training run of `mt train --task mt`: the run directory (refused if it holds a previous
run, unless --resume or --overwrite), data, the joint SentencePiece vocabulary, the model
config (the saved one wins on resume), the trainer, and the model card.

The run directory is itself a model directory: the best weights so far sit at its top,
training checkpoints under `checkpoints/`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from machine_translation import checkpoint as ckpt
from machine_translation.data import DataSpec, drop_empty, encode_pairs, read_split, split_pair
from machine_translation.errors import ConfigError, ModelDirError
from machine_translation.model import ModelConfig, build_model
from machine_translation.tasks import TranslationTask
from machine_translation.training import TrainConfig, Trainer, TrainState
from machine_translation.translate import pick_device
from mt_tokenizers import SentencePieceTokenizer
from mt_tokenizers.base import write_atomic

logger = logging.getLogger(__name__)

GENERATION_DEFAULTS = {"beam": 4, "length_penalty": 1.0, "max_len_a": 1.5, "max_len_b": 10}


@dataclass
class RunOptions:
    out: Path
    pair: str = "en-fr"
    data: DataSpec | None = None
    data_dir: str | None = None
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)  # only the flags the user gave
    vocab_size: int = 8000
    batch_tokens: int = 6000
    max_len: int = 100  # pairs with a side longer than this (in tokens) are skipped
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_minutes=60))
    resume: bool = False
    overwrite: bool = False
    init_from: Path | None = None
    device: str | None = None
    threads: int | None = None


def set_threads(device: torch.device, threads: int | None) -> None:
    """On CPU, one intra-op thread per core (the default can oversubscribe shared machines)."""
    if device.type == "cpu":
        torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1))


def prepare_out_dir(opts: RunOptions) -> None:
    out = opts.out
    if opts.resume:
        if not ckpt.is_model_dir(out):
            raise ModelDirError(f"nothing to resume in {out}: start the run without --resume")
        return
    if out.exists() and any(out.iterdir()):
        if not opts.overwrite:
            raise ModelDirError(f"{out} already holds a run: continue it with --resume, or replace it with --overwrite")
        logger.warning("--overwrite: deleting the previous run in %s", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def resolve_config(opts: RunOptions, vocab_size: int, saved: ModelConfig | None) -> ModelConfig:
    """A saved config (resume, init-from) wins; a model flag that contradicts it is an error."""
    if saved is None:
        return ModelConfig.from_preset(opts.preset, "mt", vocab_size, **opts.model_overrides)
    conflicts = {k: v for k, v in opts.model_overrides.items() if getattr(saved, k) != v}
    if conflicts:
        flags = ", ".join(f"--{k.replace('_', '-')} {v} (saved: {getattr(saved, k)})" for k, v in conflicts.items())
        raise ConfigError(f"{flags} contradicts the saved model config: drop the flag or start a new run")
    if saved.task != "mt":
        raise ConfigError("the saved model is a language model: use --task lm")
    return saved


def write_model_card(out: Path, pair: str, data: str, preset: str, state: TrainState, metrics: dict) -> None:
    lines = [
        f"# mt model: {pair}", "",
        f"- data: {data}", f"- preset: {preset}", f"- steps: {state.step} (epoch {state.epoch})",
        f"- training time: {state.elapsed / 60:.1f} min",
        f"- validation BLEU (greedy, val sample): {metrics.get('val_bleu', float('nan')):.2f}, "
        "sacreBLEU signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:"
        + __import__("sacrebleu").__version__,
        f"- validation loss: {metrics.get('val_loss', float('nan')):.4f}", "",
        f"Translate: `mt translate --model {out} \"...\"`; score: `mt evaluate --model {out} --split test_2016_flickr`.",
    ]
    write_atomic(out / "README.md", ("\n".join(lines) + "\n").encode())


def load_texts(opts: RunOptions):
    src, tgt = read_split(opts.data, "train", opts.pair, opts.data_dir)
    src, tgt = drop_empty(src, tgt, "train")
    val_src, val_tgt = read_split(opts.data, "val", opts.pair, opts.data_dir)
    val_src, val_tgt = drop_empty(val_src, val_tgt, "val")
    return (src, tgt), (val_src, val_tgt)


def train_translation(opts: RunOptions) -> dict:
    split_pair(opts.pair)
    device = pick_device(opts.device)
    set_threads(device, opts.threads)
    torch.manual_seed(opts.train.seed)
    prepare_out_dir(opts)
    (src, tgt), (val_src, val_tgt) = load_texts(opts)
    logger.info("data %s %s: %d training pairs, %d validation pairs", opts.data.describe(), opts.pair,
                len(src), len(val_src))

    saved_from = opts.out if opts.resume else opts.init_from
    if saved_from is not None:
        loaded = ckpt.load_pretrained(saved_from, device)
        if loaded.pair and loaded.pair != opts.pair:
            raise ConfigError(f"{saved_from} is a {loaded.pair} model but --pair is {opts.pair}")
        config = resolve_config(opts, loaded.config.vocab_size, loaded.config)
        model = loaded.model if opts.init_from else build_model(config).to(device)
        tokenizer = loaded.tgt_tokenizer
    else:
        t0 = time.perf_counter()
        tokenizer = SentencePieceTokenizer.train(src + tgt, opts.vocab_size, seed=opts.train.seed)
        logger.info("trained a joint SentencePiece vocabulary of %d in %.1fs", tokenizer.vocab_size,
                    time.perf_counter() - t0)
        config = resolve_config(opts, tokenizer.vocab_size, None)
        model = build_model(config).to(device)
    if not opts.resume:
        ckpt.save_pretrained(opts.out, model, config, tokenizer, tokenizer, opts.pair, GENERATION_DEFAULTS)
        (opts.out / "train_log.jsonl").unlink(missing_ok=True)

    max_len = min(opts.max_len, config.max_positions - 1)
    train_pairs = encode_pairs(src, tgt, tokenizer, tokenizer, max_len, "train")
    val_pairs = encode_pairs(val_src, val_tgt, tokenizer, tokenizer, max_len, "val")
    loaded = ckpt.LoadedModel(model, config, tokenizer, tokenizer, opts.pair, GENERATION_DEFAULTS, opts.out)
    data_name = opts.data.describe()
    preset = "saved config" if saved_from else opts.preset

    def save_best(m, metrics, step):
        ckpt.save_weights(m, opts.out / ckpt.WEIGHTS_FILE)
        write_model_card(opts.out, opts.pair, data_name, preset, trainer.state, metrics)

    task = TranslationTask(loaded, train_pairs, val_pairs, (val_src, val_tgt), opts.batch_tokens, opts.train.seed,
                           opts.train.label_smoothing, device, save_best)
    trainer = Trainer(task, model, opts.train, opts.out, device, config.to_dict())
    if opts.resume:
        trainer.resume()
    logger.info("model: %s, %.1fM parameters; %d batches per epoch; device %s, %d threads", preset,
                sum(p.numel() for p in model.parameters()) / 1e6, task.steps_per_epoch(), device,
                torch.get_num_threads())
    state = trainer.run()
    best = max(state.history, key=lambda r: r["score"], default={})
    return {"out": str(opts.out), "steps": state.step, "epochs": state.epoch, "minutes": round(state.elapsed / 60, 2),
            "stop_reason": state.stop_reason, "best_step": best.get("step"), "best_val_bleu": best.get("val_bleu"),
            "skipped_steps": state.skipped_steps}

