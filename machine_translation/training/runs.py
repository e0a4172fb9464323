"""A training run of `mt train`, for either task (translation or language model): the run
directory (refused if it holds a previous run, unless --resume or --overwrite), data, the
tokenizer, the model config (the saved one wins on resume), the trainer, what happens to a
new best model (`on_best`), and the model card.

The run directory is itself a model directory: the best weights so far sit at its top,
training checkpoints under `checkpoints/`.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from machine_translation.model import directory as modeldir
from machine_translation.training.distributed import DistInfo, barrier, init_distributed, shutdown
from machine_translation.data.sources import (
    drop_empty, iter_split, iter_text, read_split, sample_pairs, split_pair, split_text,
)
from machine_translation.base.errors import ConfigError, ModelDirError
from machine_translation.base.files import write_atomic
from machine_translation.model.transformer import ModelConfig, build_model, check_fits
from machine_translation.base.runtime import pick_device, release_freed_memory, set_threads
from machine_translation.inference.precision import resolve
from machine_translation.training.checkpoints import checkpoint_dirs
from machine_translation.model.outputs import (RUN_MARKER, check_place, is_empty_or_absent, lock_run,
                                         refuse_if_running, written_by_mt)
from machine_translation.base.options import POST_NORM_WARMUP, RunOptions, SamplingOptions, SearchOptions
from machine_translation.data.store import PairStore, open_tokens, write_token_files
from machine_translation.training.tasks import LanguageModelTask, TranslationTask
from machine_translation.training.plot import CURVE_FILE, plot_run
from machine_translation.training.state import TrainState
from machine_translation.training.trainer import Trainer
from mt_tokenizers import CharTokenizer, SentencePieceTokenizer, load_tokenizer

logger = logging.getLogger(__name__)

TRAIN_STORE = Path("data") / "train.arrow"  # the run's encoded training split, inside the run directory
LM_STORE = {"train": Path("data") / "lm-train.ids", "val": Path("data") / "lm-val.ids"}  # language-model text
SEARCH_OPTIONS = {"mt": SearchOptions, "lm": SamplingOptions}


def new_model_search(task: str) -> dict:
    """The generation_config.json of a newly trained model: the library defaults, plus what
    new models turn on (the options class's NEW_MODEL)."""
    options = SEARCH_OPTIONS[task]
    return options(**options.NEW_MODEL).generation_config()


class RunDirectory:
    """The run directory of this process, locked (`outputs.lock_run`) while it trains. A run
    it replaces (--overwrite, or an unfinished run started again) is first renamed aside, and
    deleted only once the new run has a model (`commit`); if the new run fails before that,
    `rollback` puts the old one back."""

    def __init__(self, out: Path, lock, replaced: Path | None):
        self.out, self.lock, self.replaced = out, lock, replaced

    def commit(self) -> None:
        if self.replaced is not None:
            shutil.rmtree(self.replaced, ignore_errors=True)  # the run --overwrite replaced (mt's own: checked)
            self.replaced = None

    def rollback(self) -> None:
        if self.replaced is not None:
            self.lock.release()
            shutil.rmtree(self.out, ignore_errors=True)  # made by this process moments ago
            os.replace(self.replaced, self.out)
            logger.warning("the new run failed before its first model: %s is as it was", self.out)
            self.replaced = None


def run_inputs(opts: RunOptions) -> list[Path | None]:
    """Files and folders the run reads: --out may never hold one of them."""
    spec = opts.data
    named = [Path(spec.name)] if spec is not None and spec.kind in ("tsv", "text") else []
    return [opts.init_from, opts.data_dir and Path(opts.data_dir), *(named),
            *((spec.src_file, spec.tgt_file) if spec is not None else ())]


def prepare_out_dir(opts: RunOptions) -> RunDirectory:
    """A new run needs an empty directory (`outputs`' rule). A run that stopped before its first
    checkpoint (killed or interrupted during its start, or a start that failed) is simply
    started again; a finished run or an mt model directory is replaced with --overwrite;
    anything else is refused with the way out. A run another process is writing is refused."""
    out = opts.out
    check_place(out, run_inputs(opts))
    has_checkpoint = bool(checkpoint_dirs(out))
    if opts.resume:
        refuse_int8(out, "--resume")
        if not has_checkpoint:
            raise ModelDirError(f"nothing to resume in {out}: no checkpoint was saved there; start the run without "
                                "--resume (an unfinished run is started again)")
        return RunDirectory(out, lock_run(out), None)
    replaced = None
    if not is_empty_or_absent(out):
        refuse_if_running(out)
        if opts.overwrite and not written_by_mt(out):
            raise ModelDirError(f"{out} holds files mt did not write: --overwrite replaces only a run or model "
                                "directory of mt's; choose a new --out directory")
        if opts.overwrite:
            logger.warning("--overwrite: %s is replaced once the new run has its first model", out)
        elif has_checkpoint:
            raise ModelDirError(f"{out} already holds a run: continue it with --resume, or replace it with --overwrite")
        elif (out / RUN_MARKER).is_file():
            logger.warning("%s holds a run that stopped before its first checkpoint: starting it again", out)
        else:
            raise ModelDirError(f"{out} is not empty and holds no unfinished run: choose a new --out directory "
                                "(or --overwrite to replace a run or model directory of mt's)")
        old_lock = lock_run(out)  # held while it is moved aside, so no other process takes it meanwhile
        replaced = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
        os.replace(out, replaced)
        old_lock.release()
    out.mkdir(parents=True, exist_ok=True)
    return RunDirectory(out, lock_run(out), replaced)


def resolve_config(opts: RunOptions, vocab_size: int, saved: ModelConfig | None,
                   defaults: dict | None = None) -> ModelConfig:
    """A saved config (resume, init-from) wins; a model flag that contradicts it is an error.
    A new model is the preset, then the task's `defaults`, then the user's flags."""
    if saved is None:
        overrides = {k: v for k, v in (defaults or {}).items() if v is not None} | opts.model_overrides
        return ModelConfig.from_preset(opts.preset, opts.task, vocab_size, **overrides)
    conflicts = {k: v for k, v in opts.model_overrides.items() if getattr(saved, k) != v}
    if conflicts:
        flags = ", ".join(f"--{k.replace('_', '-')} {v} (saved: {getattr(saved, k)})" for k, v in conflicts.items())
        raise ConfigError(f"{flags} contradicts the saved model config: drop the flag or start a new run")
    if saved.task != opts.task:
        raise ConfigError(f"the saved model is a {modeldir.TASK_NAMES[saved.task]}: use --task {saved.task}")
    return saved


def write_model_card(out: Path, title: str, data: str, preset: str, state: TrainState, metrics: dict) -> None:
    lines = [f"# mt model: {title}", "", f"- data: {data}", f"- preset: {preset}",
             f"- steps: {state.step} (epoch {state.epoch})", f"- training time: {state.elapsed / 60:.1f} min"]
    if "val_bleu" in metrics:
        import sacrebleu
        on = f"{metrics['val_bleu_sentences']} val sentences" if "val_bleu_sentences" in metrics else "val"
        lines.append(f"- validation BLEU (greedy, {on}): {metrics['val_bleu']:.2f}, sacreBLEU signature: "
                     f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}")
    if "val_loss" in metrics:
        lines.append(f"- validation loss: {metrics['val_loss']:.4f}")
    if "averaged_checkpoints" in metrics:
        lines.append(f"- weights: the average of the last {metrics['averaged_checkpoints']} checkpoints, which "
                     "validated better than the best single checkpoint")
    elif metrics:
        lines.append(f"- weights: the best single checkpoint by validation (step {state.step})")
    use = (f"mt translate --model {out} \"...\"" if "val_bleu" in metrics else f"mt generate --model {out} --prompt \"...\"")
    lines += ["", f"Use: `{use}`."]
    write_atomic(out / "README.md", ("\n".join(lines) + "\n").encode())


@dataclass
class Setup:
    """What a task needs before training: texts read, tokenizer and model ready."""
    config: ModelConfig
    model: torch.nn.Module
    tokenizer: object  # the target side's (and the only one of a joint vocabulary or a language model)
    loaded_from: Path | None
    src_tokenizer: object = None  # None: `tokenizer` serves both sides
    generation: dict | None = None  # the search settings of the model fine-tuned (None: a new model's)

    @property
    def tokenizers(self) -> tuple:
        """(source, target): one object twice for a joint vocabulary."""
        return (self.src_tokenizer or self.tokenizer), self.tokenizer


def refuse_int8(directory: Path, flag: str) -> None:
    """An int8 model directory (`mt quantize`) is for translating only."""
    if modeldir.is_model_dir(directory) and modeldir.stored_precision(directory) == "int8":
        raise ConfigError(f"{flag} {directory}: an int8 model (made by `mt quantize`) cannot be trained; "
                          "use the float32 model or run it was made from")


def setup_model(opts: RunOptions, device: torch.device, train_tokenizer, info: DistInfo,
                defaults: dict | None = None) -> Setup:
    """Resume: the run's own config and tokenizer; --init-from: the given model's (and weights);
    otherwise a new tokenizer (`train_tokenizer()`, by the main process; the others load it
    from the run directory) and the preset with overrides."""
    saved_from = opts.out if opts.resume else opts.init_from
    if saved_from is None:
        if info.is_main:
            tokenizer = train_tokenizer()
            tokenizer.save(opts.out)
            release_freed_memory()  # the tokenizer's sample, no longer needed
        barrier(info)
        if not info.is_main:
            tokenizer = load_tokenizer(opts.out)
        config = resolve_config(opts, tokenizer.vocab_size, None, defaults)
        return Setup(config, build_model(config).to(device), tokenizer, None)
    refuse_int8(saved_from, "--resume" if opts.resume else "--init-from")
    loaded = modeldir.load_pretrained(saved_from, device, weights=bool(opts.init_from))
    if opts.task == "mt" and loaded.pair and loaded.pair != opts.pair:
        raise ConfigError(f"{saved_from} is a {loaded.pair} model but --pair is {opts.pair}")
    config = resolve_config(opts, loaded.config.vocab_size, loaded.config)
    check_fits(config, training=True)
    model = loaded.model  # (to resume: freshly initialised; the checkpoint is loaded into it)
    return Setup(config, model, loaded.tgt_tokenizer, saved_from, loaded.src_tokenizer, loaded.generation)


def mt_task(opts: RunOptions, device: torch.device, info: DistInfo) -> tuple[Setup, TranslationTask]:
    """The training split is streamed twice (a sample for the tokenizer, then encoding into
    the run's token store) and never held in memory; the validation split is small and is."""
    split_pair(opts.pair)
    train_pairs = lambda: iter_split(opts.data, "train", opts.pair, opts.data_dir)  # noqa: E731
    val_src, val_tgt = drop_empty(*read_split(opts.data, "val", opts.pair, opts.data_dir), "val")

    def train_tokenizer():
        t0 = time.perf_counter()
        sample, n = sample_pairs(train_pairs(), opts.tokenizer_sample, opts.train.seed)
        logger.info("data %s %s: %d training pairs, %d validation pairs", opts.data.describe(), opts.pair, n,
                    len(val_src))
        tok = SentencePieceTokenizer.train([s for s, _ in sample] + [t for _, t in sample], opts.vocab_size,
                                           seed=opts.train.seed)
        logger.info("trained a joint SentencePiece vocabulary of %d on %d pairs in %.1fs", tok.vocab_size,
                    len(sample), time.perf_counter() - t0)
        return tok

    setup = setup_model(opts, device, train_tokenizer, info)
    (src_tok, tok), config = setup.tokenizers, setup.config
    max_len = min(opts.max_len, config.max_positions - 1)
    store_path = opts.out / TRAIN_STORE
    if info.is_main and not (opts.resume and store_path.is_file()):
        t0 = time.perf_counter()
        PairStore.build(store_path, train_pairs(), (src_tok, tok), max_len, "train")
        logger.info("encoded the training split into %s in %.1fs", store_path, time.perf_counter() - t0)
    barrier(info)
    train = PairStore.open(store_path)
    val = PairStore.from_pairs(zip(val_src, val_tgt), (src_tok, tok), max_len, "val")
    loaded = modeldir.LoadedModel(setup.model, config, src_tok, tok, opts.pair, setup.generation or {}, opts.out)
    task = TranslationTask(loaded, train, val, (val_src, val_tgt), opts.batch_tokens, opts.train.seed,
                           opts.train.label_smoothing, device, shard=(info.rank, info.world_size),
                           subword_alpha=opts.train.subword_alpha, max_len=max_len)
    return setup, task


def lm_task(opts: RunOptions, device: torch.device, info: DistInfo) -> tuple[Setup, LanguageModelTask]:
    """The text is streamed (a pass to count it, one to train the tokenizer, one to encode
    it into the run's token files) and never held in memory."""
    lines = lambda: iter_text(opts.data, opts.data_dir)  # noqa: E731
    n_chars = sum(map(len, lines()))
    cut = int(n_chars * (1 - opts.val_fraction))
    logger.info("data %s: %d characters, the last %.0f%% held out for validation", opts.data.describe(), n_chars,
                100 * opts.val_fraction)
    train_text = lambda: (text for part, text in split_text(lines(), cut) if part == "train")  # noqa: E731

    def train_tokenizer():
        if opts.tokenizer == "char":
            return CharTokenizer.train(train_text())
        tok = SentencePieceTokenizer.train((ln for text in train_text() for ln in text.splitlines()), opts.vocab_size,
                                           seed=opts.train.seed)
        logger.info("trained a SentencePiece vocabulary of %d", tok.vocab_size)
        return tok

    if opts.batch_size < info.world_size:
        raise ConfigError(f"--batch-size {opts.batch_size} is smaller than the {info.world_size} processes")
    setup = setup_model(opts, device, train_tokenizer, info, {"max_positions": opts.block_size})
    block = setup.config.max_positions
    if opts.block_size is not None and opts.block_size > block:
        raise ConfigError(f"--block-size {opts.block_size} exceeds the model's max_positions {block}")
    paths = {part: opts.out / path for part, path in LM_STORE.items()}
    if info.is_main and not (opts.resume and all(p.is_file() for p in paths.values())):
        write_token_files(paths, split_text(lines(), cut), setup.tokenizer)
    barrier(info)
    train, val = (open_tokens(paths[part], setup.tokenizer.vocab_size) for part in ("train", "val"))
    task = LanguageModelTask(train, val, opts.block_size or block, opts.batch_size,
                             opts.train.seed, device, shard=(info.rank, info.world_size))
    return setup, task


def train_run(opts: RunOptions) -> dict | None:
    """Run `mt train` for either task; returns the summary the CLI prints (None on ranks > 0)."""
    info, device = init_distributed(pick_device(opts.device))
    finished = False
    try:
        summary = _train_run(opts, info, device)
        finished = True
        return summary
    finally:
        shutdown(info, finished)


def _train_run(opts: RunOptions, info: DistInfo, device: torch.device) -> dict | None:
    if not info.is_main:
        logging.getLogger("machine_translation").setLevel(logging.WARNING)
    set_threads(device, opts.threads)
    torch.manual_seed(opts.train.seed)
    resolve(opts.train.precision, device, training=True, warn=False)  # fails before any work
    if not opts.resume and opts.init_from is None:  # a bad preset, model flag or size fails before any work
        check_fits(resolve_config(opts, opts.vocab_size, None), training=True)
    run_dir = prepare_out_dir(opts) if info.is_main else None
    barrier(info)
    try:
        return _train_in(opts, info, device, run_dir)
    except BaseException:
        if run_dir is not None:
            run_dir.rollback()  # a replaced run comes back if the new one has no model yet
        raise
    finally:
        if run_dir is not None:
            run_dir.lock.release()


def _train_in(opts: RunOptions, info: DistInfo, device: torch.device, run_dir: RunDirectory | None) -> dict | None:
    """The run in its prepared directory (`run_dir` on the main process, None on the others)."""
    setup, task = (mt_task if opts.task == "mt" else lm_task)(opts, device, info)
    if not setup.config.norm_first and setup.loaded_from is None and opts.train.warmup_steps < POST_NORM_WARMUP:
        logger.warning("--warmup-steps %d is short for a post-norm model: it can collapse (every sentence "
                       "translated alike); use --warmup-steps %d or more, or --norm pre",
                       opts.train.warmup_steps, POST_NORM_WARMUP)
    if not opts.resume and info.is_main:
        modeldir.save_pretrained(opts.out, setup.model, setup.config, *setup.tokenizers,
                             opts.pair if opts.task == "mt" else None,
                             new_model_search(opts.task) if setup.generation is None else setup.generation,
                             weights=False)  # no model to use until the first validation
        (opts.out / "train_log.jsonl").unlink(missing_ok=True)
    title = opts.pair if opts.task == "mt" else f"language model ({opts.data.describe()})"
    preset = "saved config" if setup.loaded_from else opts.preset

    def on_best(model: torch.nn.Module, metrics: dict, state: TrainState) -> None:
        """The run directory's top holds the best weights so far, and a card saying how good they are."""
        modeldir.save_weights(model, opts.out / modeldir.WEIGHTS_FILE)
        write_model_card(opts.out, title, opts.data.describe(), preset, state, metrics)
        run_dir.commit()  # the new run has a model: a run it replaces can go

    def on_validated(state: TrainState) -> None:
        """Redraw the run's training_curve.png; a picture that cannot be drawn never stops training."""
        try:
            plot_run(opts.out)
        except Exception as e:  # noqa: BLE001  (matplotlib, disk)
            logger.warning("could not draw %s (%s)", opts.out / CURVE_FILE, str(e).splitlines()[0] if str(e) else e)

    trainer = Trainer(task, setup.model, opts.train, opts.out, device, setup.config.to_dict(), info, on_best,
                      on_validated)
    if opts.resume:
        trainer.resume()
    logger.info("model: %s, %.2fM parameters; %d steps per epoch; device %s, %d threads", preset,
                sum(p.numel() for p in setup.model.parameters()) / 1e6, task.steps_per_epoch(), device,
                torch.get_num_threads())
    state = trainer.run()
    if not info.is_main:
        return None
    best = max(state.history, key=lambda r: r["score"], default={})
    return {"out": str(opts.out), "task": opts.task, "steps": state.step, "epochs": state.epoch,
            "minutes": round(state.elapsed / 60, 2), "stop_reason": state.stop_reason, "best_step": best.get("step"),
            "best_val_bleu": best.get("val_bleu"), "best_val_loss": best.get("val_loss"),
            "best_is_average_of": best.get("averaged_checkpoints"),
            "skipped_steps": state.skipped_steps}
