"""Pictures: the curve of a training run (training and validation loss, and validation BLEU
for a translation model, against the step, with the wall-clock time on a second axis), and
the cross-attention heatmap of one translation (`mt translate --attention`).

The curve is drawn from the run's `train_log.jsonl`, so it works for any run, old or resumed
(a step logged twice, once before a crash and once after, counts once: its last record).

matplotlib's object API (`Figure` and the Agg canvas) is used, not pyplot: no global state,
no display needed.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from machine_translation.base.errors import DataError
from machine_translation.base.files import atomic_path

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
CURVE_FILE = "training_curve.png"
SIZE, DPI = (8.0, 6.0), 100  # inches, dots per inch: an 800 x 600 picture


def read_log(run_dir: Path) -> tuple[dict[int, dict], dict[int, dict], dict[int, dict]]:
    """(train records, validation records, averaged validations) by step, the last record of a step winning."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise DataError(f"no training log at {path}: pass a run directory written by `mt train`")
    train, val, averaged = {}, {}, {}
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            kind, step = record["type"], int(record["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines) and not line.endswith("\n"):  # a write cut short (a full disk, a kill)
                logger.warning("%s: its last line is cut short; drawn without it", path)
                break
            raise DataError(f"{path} line {number} is not a training log record: the log is corrupt") from None
        target = train if kind == "train" else averaged if record.get("averaged_checkpoints") else val
        target[step] = record
    if not train:
        raise DataError(f"{path} has no training steps yet: nothing to plot")
    return train, val, averaged


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    """Draw the run's curve into `out` (default: RUN_DIR/training_curve.png), replacing it atomically."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    train, val, averaged = read_log(run_dir)
    out = Path(out) if out is not None else run_dir / CURVE_FILE
    has_bleu = any("val_bleu" in r for r in val.values())
    fig = Figure(figsize=SIZE, dpi=DPI)
    axes = fig.subplots(2 if has_bleu else 1, 1, sharex=True, squeeze=False)[:, 0]
    steps = sorted(train)
    loss = axes[0]
    loss.plot(steps, [train[s]["loss"] for s in steps], label="training loss", lw=1)
    vsteps = sorted(s for s in val if "val_loss" in val[s])
    if vsteps:
        loss.plot(vsteps, [val[s]["val_loss"] for s in vsteps], "o-", label="validation loss")
    loss.set_ylabel("loss (nats per token)")
    loss.legend()
    loss.grid(alpha=0.3)
    if has_bleu:
        bleu = axes[1]
        bsteps = sorted(s for s in val if "val_bleu" in val[s])
        bleu.plot(bsteps, [val[s]["val_bleu"] for s in bsteps], "o-", color="tab:green", label="validation BLEU")
        for s, r in averaged.items():
            if "val_bleu" in r:
                bleu.plot([s], [r["val_bleu"]], "*", ms=12, color="tab:red",
                          label=f"average of the last {r['averaged_checkpoints']} checkpoints")
        bleu.set_ylabel("BLEU (greedy, validation sample)")
        bleu.legend()
        bleu.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    minutes = [train[s].get("elapsed", 0) / 60 for s in steps]
    if len(steps) > 1 and minutes[-1] > minutes[0]:  # wall-clock time of the run, on top
        top = axes[0].secondary_xaxis("top", functions=(lambda x: _interp(x, steps, minutes),
                                                        lambda m: _interp(m, minutes, steps)))
        top.set_xlabel("minutes of training")
        ticks = MaxNLocator(6).tick_values(minutes[0], minutes[-1])
        top.set_xticks([t for t in ticks if minutes[0] <= t <= minutes[-1]])  # beyond the run the axis is flat
    fig.suptitle(f"{run_dir.name}: {max(steps[-1], *val, *averaged)} steps")
    return _save(fig, out)


def plot_attention(alignment, out: Path) -> Path:
    """A heatmap of an `alignment.Alignment`: target pieces down, source pieces across."""
    from matplotlib.figure import Figure

    S, T = len(alignment.source_pieces), len(alignment.target_pieces)
    fig = Figure(figsize=(max(4.0, 0.45 * S + 2), max(3.0, 0.35 * T + 1.5)), dpi=DPI)
    ax = fig.subplots()
    image = ax.imshow(alignment.weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), alignment.source_pieces, rotation=60, ha="right")
    ax.set_yticks(range(T), alignment.target_pieces)
    ax.set_xlabel("source pieces")
    ax.set_ylabel("output pieces")
    fig.colorbar(image, ax=ax, label="cross-attention (last layer, mean of heads)")
    return _save(fig, Path(out))


def _save(fig, out: Path) -> Path:
    """Write the figure as a PNG, replacing `out` atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.tight_layout()
    with atomic_path(out) as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))
    return out


def _interp(x, xs, ys):
    import numpy as np
    return np.interp(x, xs, ys)
