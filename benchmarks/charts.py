"""The charts of docs/benchmarks.md: drawn from the results JSON the benchmark scripts print
(`benchmarks/mt_en_fr.py` writes `results.json` in its --out folder): copy a new run's file
into docs/results/ (a name starting with mt_en_fr_, demo_ or speed_) and run this again.

- quality.png: test BLEU (beam 4, cased sacreBLEU) against training minutes, mt and the
  same-size Marian peer, for each run file that has `minutes`.
- speed.png: translation sentences/s on test_2016_flickr by engine and precision, each at
  its fastest worker setting (1 process x 2 threads or 2 x 1), greedy and beam 4: the median
  over the speed run files, the whiskers their range.

    python benchmarks/charts.py --results docs/results --out docs
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SPLITS = ("test_2016_flickr", "test_2017_flickr")
ENGINES = {  # label: the systems of mt_en_fr.py's speed part, one per worker setting
    "mt fp32": ("mt", "mt-2x1"), "mt bf16": ("mt-bf16", "mt-bf16-2x1"), "mt int8": ("mt-int8", "mt-int8-2x1"),
    "CTranslate2 float32": ("ct2-float32-1x2", "ct2-float32-2x1"), "CTranslate2 int8": ("ct2-int8-1x2", "ct2-int8-2x1"),
    "Marian peer (HF generate)": ("peer-generate",),
}


def load(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) | {"file": p.name} for p in sorted(results.glob("*.json"))]


def quality(runs: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, split in zip(axes, SPLITS):
        for system, minutes_key, marker in (("mt", "minutes", "o"), ("peer", "peer_minutes", "s")):
            points = sorted((r[minutes_key], r[f"{system}_scores"][f"{split}/beam4"]["bleu"]) for r in runs
                            if minutes_key in r and f"{split}/beam4" in r.get(f"{system}_scores", {}))
            if points:
                ax.plot(*zip(*points), marker=marker, label="mt (small preset, its defaults)" if system == "mt"
                        else "Marian peer (same size, same batches)")
                for x, y in points:
                    ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set(title=f"{split}, beam 4", xlabel="training minutes (2 CPU cores)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("BLEU (sacreBLEU, cased)")
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def speed(runs: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt
    timed = [r["speed"] for r in runs if "speed" in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, beam in zip(axes, (1, 4)):
        labels, medians, lows, highs = [], [], [], []
        for label, systems in ENGINES.items():
            fastest = [max(run[f"{s}/beam{beam}"]["sentences_per_s"] for s in systems if f"{s}/beam{beam}" in run)
                       for run in timed if any(f"{s}/beam{beam}" in run for s in systems)]
            if fastest:
                labels.append(label)
                medians.append(statistics.median(fastest))
                lows.append(medians[-1] - min(fastest))
                highs.append(max(fastest) - medians[-1])
        colors = ["tab:blue" if name.startswith("mt") else "tab:gray" for name in labels]
        ax.barh(labels, medians, xerr=[lows, highs], color=colors)
        for y, (value, high) in enumerate(zip(medians, highs)):
            ax.annotate(f"{value:,.0f}", (value + high, y), textcoords="offset points", xytext=(4, -3), fontsize=8)
        ax.set_xlim(0, max(m + h for m, h in zip(medians, highs)) * 1.15)
        ax.invert_yaxis()
        ax.set(title=f"{'greedy' if beam == 1 else 'beam 4'}, test_2016_flickr, batch 64",
               xlabel="sentences/s (fastest of 1x2 and 2x1; median of runs)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("docs/results"))
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args()
    runs = load(args.results)
    quality(runs, args.out / "quality.png")
    speed(runs, args.out / "speed.png")
    print(args.out / "quality.png", args.out / "speed.png")


if __name__ == "__main__":
    main()
