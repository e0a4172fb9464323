"""`mt train`: flags parsed into RunOptions / TrainConfig (the only place they are parsed);
each flag's default is the one declared in `options`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from machine_translation.cli.app import app, cli_errors
from machine_translation.base.options import DEFAULT_MAX_MINUTES, DEFAULT_MODELS, SUBWORD_ALPHA, RunOptions, TrainConfig

T, R = TrainConfig, RunOptions  # the defaults


def precision_flag(precision: str, bf16: Optional[bool]) -> str:
    """--bf16/--no-bf16 are the older spellings of --precision bf16/fp32."""
    from machine_translation.base.errors import ConfigError
    if bf16 is None:
        return precision
    alias = "bf16" if bf16 else "fp32"
    if precision not in (TrainConfig.precision, alias):
        raise ConfigError(f"--{'' if bf16 else 'no-'}bf16 and --precision {precision} disagree: give one")
    return alias


@app.command()
@cli_errors
def train(
    task: str = typer.Option(R.task, help="mt (translation) or lm (decoder-only language model)."),
    pair: str = typer.Option(R.pair, help="Language pair SRC-TGT; either direction of a corpus works."),
    data: Optional[str] = typer.Option(None, help="NAME (multi30k), a TSV of pairs, or hf:NAME[:CONFIG]."),
    src: Optional[Path] = typer.Option(None, help="Source side of an aligned pair of files (plain or .gz)."),
    tgt: Optional[Path] = typer.Option(None, help="Target side of an aligned pair of files."),
    data_dir: Optional[str] = typer.Option(None, envvar="MT_DATA_DIR", help="Where local corpora are."),
    out: Optional[Path] = typer.Option(None, help="Run/model directory (default: models/<pair>)."),
    preset: str = typer.Option(R.preset, help="tiny (tests), small (CPU), base (Transformer-base, GPU)."),
    vocab_size: int = typer.Option(R.vocab_size, help="SentencePiece vocabulary size (joint)."),
    seed: int = typer.Option(T.seed, help="Seed for data order, init and dropout: runs repeat."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="Total optimizer steps of the run."),
    max_minutes: Optional[float] = typer.Option(None, min=0.0, help="Training time budget (minutes)."),
    epochs: Optional[float] = typer.Option(None, min=0.0, help="Epochs budget. With no budget: "
                                           f"{DEFAULT_MAX_MINUTES:g} minutes."),
    eval_every: int = typer.Option(T.eval_every, min=1, help="Validate (loss and greedy BLEU) every N steps."),
    save_every: int = typer.Option(T.save_every, min=1, help="Write a training checkpoint every N steps."),
    keep_last: int = typer.Option(T.keep_last, min=1, help="Periodic checkpoints to keep."),
    average_last: int = typer.Option(T.average_last, min=0, help="At the end, average the last K periodic "
                                     "checkpoints (at most --keep-last) and keep the average if it validates "
                                     "better (0: off)."),
    log_every: int = typer.Option(T.log_every, min=1, help="Log training loss every N steps."),
    patience: Optional[int] = typer.Option(None, min=1, help="Stop after N validations without a BLEU gain."),
    lr: float = typer.Option(T.lr, help="Peak learning rate."),
    warmup_steps: int = typer.Option(T.warmup_steps, min=0, help="Linear warmup steps."),
    label_smoothing: float = typer.Option(T.label_smoothing, min=0.0, max=1.0),
    subword_alpha: Optional[float] = typer.Option(T.subword_alpha, min=0.0, help="Subword regularisation: segment each "
                                                  "training sentence anew, sampled from the SentencePiece model "
                                                  "with this alpha (smaller: more varied; 0: off). Never at "
                                                  f"validation. Default: {SUBWORD_ALPHA:g} for --task mt."),
    batch_tokens: int = typer.Option(R.batch_tokens, min=1, help="Padded tokens per batch (the global batch "
                                     "under torchrun)."),
    grad_accum: int = typer.Option(T.grad_accum, min=1, help="Batches per optimizer step."),
    clip_norm: float = typer.Option(T.clip_norm, help="Gradient norm clipping."),
    weight_decay: float = typer.Option(T.weight_decay, min=0.0, help="AdamW weight decay of the weight matrices."),
    decay_embeddings: bool = typer.Option(T.decay_embeddings, help="Weight decay on the (tied) embedding too."),
    max_len: int = typer.Option(R.max_len, min=1, help="Skip pairs with a side longer than this (tokens)."),
    tokenizer_sample: int = typer.Option(R.tokenizer_sample, min=1, help="Train the joint SentencePiece model "
                                         "on a uniform sample of this many pairs (all of them if fewer)."),
    d_model: Optional[int] = typer.Option(None, help="Override the preset's d_model."),
    n_heads: Optional[int] = typer.Option(None, help="Override the preset's attention heads."),
    n_encoder_layers: Optional[int] = typer.Option(None, help="Override the preset's encoder layers."),
    n_decoder_layers: Optional[int] = typer.Option(None, help="Override the preset's decoder layers."),
    d_ff: Optional[int] = typer.Option(None, help="Override the preset's feed-forward size."),
    dropout: Optional[float] = typer.Option(None, help="Override the preset's dropout (embeddings, residuals)."),
    attention_dropout: Optional[float] = typer.Option(None, help="Dropout on attention weights (default: the "
                                                      "preset's)."),
    activation_dropout: Optional[float] = typer.Option(None, help="Dropout inside the feed-forward (default: the "
                                                       "preset's)."),
    max_positions: Optional[int] = typer.Option(None, help="Override the preset's max positions."),
    positional: Optional[str] = typer.Option(None, help="sinusoidal or learned."),
    init_std: Optional[float] = typer.Option(None, help="Initialise every weight matrix and embedding from "
                                             "N(0, STD), biases 0, as Marian does (default: the preset's).", min=0.0),
    norm: Optional[str] = typer.Option(None, help="pre or post LayerNorm placement (default: the preset's; the "
                                       "small translation preset is post-norm)."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its latest checkpoint."),
    overwrite: bool = typer.Option(False, help="Replace an existing run in --out."),
    init_from: Optional[Path] = typer.Option(None, help="Fine-tune from this model directory (fresh optimizer)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, mps (default: auto-detected)."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads (default: one per core)."),
    precision: str = typer.Option(TrainConfig.precision, help="auto, fp32, bf16 or fp16 (CUDA): autocast over "
                                  "float32 weights; auto = bf16 where it is native (AVX-512 BF16 or AMX "
                                  "CPUs, CUDA, mps), else fp32."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="Aliases of --precision bf16 and fp32."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    tokenizer: str = typer.Option(R.tokenizer, help="--task lm: char or sentencepiece."),
    block_size: Optional[int] = typer.Option(None, min=2, help="--task lm: tokens per training block "
                                             "(default: the preset's context length)."),
    batch_size: int = typer.Option(R.batch_size, min=1, help="--task lm: blocks per batch."),
) -> None:
    """Train a translation model (or, with --task lm, a language model)."""
    from machine_translation.data.sources import parse_data_spec
    from machine_translation.base.errors import ConfigError
    from machine_translation.training.runs import train_run

    if norm not in (None, "pre", "post"):
        raise ConfigError(f"--norm {norm!r}: choose pre or post")
    overrides = {k: v for k, v in dict(
        d_model=d_model, n_heads=n_heads, n_encoder_layers=n_encoder_layers, n_decoder_layers=n_decoder_layers,
        d_ff=d_ff, dropout=dropout, attention_dropout=attention_dropout, activation_dropout=activation_dropout,
        max_positions=max_positions, positional=positional, init_std=init_std,
        norm_first=None if norm is None else norm == "pre").items() if v is not None}
    if max_steps is None and max_minutes is None and epochs is None:
        max_minutes = DEFAULT_MAX_MINUTES
    cfg = TrainConfig(lr=lr, warmup_steps=warmup_steps, label_smoothing=label_smoothing, clip_norm=clip_norm,
                      weight_decay=weight_decay, decay_embeddings=decay_embeddings, subword_alpha=subword_alpha,
                      grad_accum=grad_accum, max_steps=max_steps, max_minutes=max_minutes, epochs=epochs,
                      eval_every=eval_every, save_every=save_every, keep_last=keep_last, average_last=average_last,
                      patience=patience, log_every=log_every,
                      seed=seed, precision=precision_flag(precision, bf16))
    spec = parse_data_spec(data, src, tgt, pair, task)
    default_out = DEFAULT_MODELS / (pair if task == "mt" else f"lm-{Path(spec.name).stem or 'text'}")
    opts = RunOptions(out=out or default_out, task=task, pair=pair, data=spec, tokenizer=tokenizer,
                      block_size=block_size, batch_size=batch_size,
                      data_dir=data_dir, preset=preset, model_overrides=overrides, vocab_size=vocab_size,
                      batch_tokens=batch_tokens, max_len=max_len, tokenizer_sample=tokenizer_sample, train=cfg,
                      resume=resume, overwrite=overwrite, init_from=init_from, device=device, threads=threads)
    summary = train_run(opts)
    if summary is None:  # not the main process of a torchrun job
        return
    if json_out:
        typer.echo(json.dumps(summary))
        return
    best = (f"val BLEU {summary['best_val_bleu']:.2f}" if task == "mt" else f"val loss {summary['best_val_loss']:.4f}")
    typer.echo(f"trained {summary['steps']} steps ({summary['stop_reason']}); best {best} at step "
               f"{summary['best_step']}; model in {summary['out']}")
