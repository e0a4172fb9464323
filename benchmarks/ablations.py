"""Ablations for the en-fr recipe (issue 9): one short, complete `mt train` run per variant,
scored on the full validation set (1,014 sentences, greedy and beam 4). Settings are chosen
here, on val; the test sets are never read.

A run is `mt train --pair en-fr --preset small --max-steps N --eval-every N --average-last 0`
plus the variant's flags, so the model scored is the last one (no selection noise), trained
with the whole cosine schedule. `--parallel 2` runs two variants at a time with one thread
each (step counts, not minutes, fix the budget, so sharing the cores changes no figure).

    python benchmarks/ablations.py --out /tmp/abl --steps 1000 --variants base post-norm
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# name -> extra `mt train` flags; "base" is the current defaults. Combinations: --on-top-of.
VARIANTS: dict[str, list[str]] = {
    "base": [],
    "post-norm": ["--norm", "post"],
    "pre-norm": ["--norm", "pre"],
    "dropout-0.2": ["--dropout", "0.2"],
    "dropout-0.3": ["--dropout", "0.3"],
    "dropout-0.3-att-act-0.1": ["--dropout", "0.3", "--attention-dropout", "0.1", "--activation-dropout", "0.1"],
    "label-smoothing-0.2": ["--label-smoothing", "0.2"],
    "vocab-6000": ["--vocab-size", "6000"],
    "vocab-4000": ["--vocab-size", "4000"],
    "decay-embeddings": ["--decay-embeddings"],
    "init-0.02": ["--init-std", "0.02"],
    "subword-alpha-0.1": ["--subword-alpha", "0.1"],
}


def run(name: str, flags: list[str], out: Path, steps: int, threads: int, extra: list[str]) -> subprocess.Popen:
    log = open(out / f"{name}.log", "w")
    cmd = ["mt", "train", "--pair", "en-fr", "--preset", "small", "--max-steps", str(steps), "--eval-every",
           str(steps), "--average-last", "0", "--threads", str(threads), "--out", str(out / name), "--overwrite",
           *flags, *extra]
    print(" ".join(cmd), file=sys.stderr)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)


def val_bleu(model: Path, beam: int, threads: int) -> float:
    r = subprocess.run(["mt", "evaluate", "--model", str(model), "--split", "val", "--beam", str(beam),
                        "--threads", str(threads), "--json"], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)["bleu"]


def score(model: Path, threads: int, average: list[int]) -> dict:
    """Full-val BLEU of the last model (greedy, beam 4) and, for each K of `average`, beam 4 of
    the mean of the last K periodic checkpoints."""
    result = {f"val_beam{beam}": val_bleu(model, beam, threads) for beam in (1, 4)}
    log = [json.loads(line) for line in (model / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_loss" in r]
    result["val_loss"] = evals[-1]["val_loss"] if evals else None
    for k in average:
        avg = model.parent / f"{model.name}-avg{k}"
        shutil.rmtree(avg, ignore_errors=True)  # this script's own scratch output
        subprocess.run(["mt", "average-checkpoints", "--model", str(model), "--last", str(k), "--out", str(avg)],
                       check=True, capture_output=True)
        result[f"avg{k}_val_beam4"] = val_bleu(avg, 4, threads)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--variants", nargs="+", default=["base", "post-norm"], choices=sorted(VARIANTS))
    p.add_argument("--parallel", type=int, default=1, help="variants trained at once (threads split between them)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--average", type=int, nargs="*", default=[], help="also score the mean of the last K checkpoints")
    p.add_argument("--on-top-of", default="", help="flags every variant adds to the defaults, e.g. "
                   "'--norm post --init-std 0.02' (recorded with each result, named 'FLAGS + VARIANT')")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    threads = max(1, 2 // args.parallel)
    keep = max([4, *args.average])
    extra = ["--seed", str(args.seed), "--save-every", str(args.save_every), "--keep-last", str(keep)]
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    common = args.on_top_of.split()
    flags = {(f"{args.on_top_of} + {v}" if common else v): common + VARIANTS[v] for v in args.variants}
    todo = list(flags)
    while todo:
        group, todo = todo[: args.parallel], todo[args.parallel:]
        start = time.time()
        dirs = {name: name.replace(" ", "").replace("+", "_") for name in group}
        procs = {name: run(dirs[name], flags[name], args.out, args.steps, threads, extra) for name in group}
        for name, proc in procs.items():
            if proc.wait() != 0:
                print(f"{name}: mt train failed, see {args.out / dirs[name]}.log", file=sys.stderr)
                continue
            results[name] = {"flags": flags[name], "steps": args.steps, "seed": args.seed,
                             **score(args.out / dirs[name], threads, args.average)}
            results[name]["minutes_wall"] = round((time.time() - start) / 60, 1)
            results_file.write_text(json.dumps(results, indent=2))
            print(json.dumps({name: results[name]}), flush=True)
    base = results.get("base", {}).get("val_beam4")
    print("| variant | flags | steps | val greedy | val beam 4 | delta beam 4 | val loss | averages (beam 4) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        delta = f"{r['val_beam4'] - base:+.2f}" if base is not None else ""
        averages = ", ".join(f"last {k[3:-10]}: {v:.2f}" for k, v in r.items() if k.startswith("avg"))
        print(f"| {name} | `{' '.join(r['flags'])}` | {r['steps']} | {r['val_beam1']:.2f} | {r['val_beam4']:.2f} | "
              f"{delta} | {r['val_loss']:.3f} | {averages} |")


if __name__ == "__main__":
    main()
