"""Peak memory of `mt train` as the corpus grows from 30 thousand to 3 million pairs.

No corpus that large is on disk, so one is synthesised by repeating Multi30k's training
split and shuffling it (seeded). Each size is trained for a few steps with the tiny preset
(the model is not the point: reading, sampling for SentencePiece, encoding into the token
store and batching are), while this script polls the process's memory every 0.1 s:

- peak RSS: everything resident, including pages of memory-mapped files the OS can drop;
- peak anonymous RSS: the process's own heap (Python objects, tensors, arrays).

    python benchmarks/large_corpus.py --work /tmp/mt-large [--sizes 30000 300000 3000000]
        [--baseline REV --baseline-sizes 30000 300000] [MT TRAIN FLAGS, e.g. --precision fp32]

`--baseline REV` runs the same measurement with the code of a git revision (checked out
into a worktree) for comparison, e.g. the last commit that read corpora into lists.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MT_DATA_DIR", REPO.parent / "shared" / "data"))


def synthesise(work: Path, n: int) -> tuple[Path, Path]:
    """n pairs: Multi30k's training pairs repeated and shuffled, written as plain text."""
    src, tgt = work / f"synth-{n}.en", work / f"synth-{n}.fr"
    if src.is_file() and tgt.is_file():
        return src, tgt
    sys.path.insert(0, str(REPO))
    from machine_translation.data.corpora import read_file_pair
    en, fr = read_file_pair(DATA / "multi30k" / "train.en.gz", DATA / "multi30k" / "train.fr.gz")
    rng = random.Random(n)
    with open(src, "w", encoding="utf-8") as fs, open(tgt, "w", encoding="utf-8") as ft:
        for start in range(0, n, len(en)):
            order = list(range(len(en)))
            rng.shuffle(order)
            for i in order[: n - start]:
                fs.write(en[i] + "\n")
                ft.write(fr[i] + "\n")
    return src, tgt


def status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile of a process in KiB (empty once it has exited)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssFile") if k in fields}


def measure(src: Path, tgt: Path, out: Path, steps: int, code: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "machine_translation", "train", "--src", str(src), "--tgt", str(tgt),
           "--out", str(out), "--overwrite", "--preset", "tiny", "--max-steps", str(steps), "--eval-every",
           str(steps), "--json", *extra]
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{code / 'tokenizers'}"}
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    while proc.poll() is None:
        for k, v in status(proc.pid).items():
            peak[k] = max(peak[k], v)
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"mt train failed on {src}:\n{stderr[-2000:]}")
    return {"wall_s": round(time.time() - start, 1), "peak_rss_mib": round(peak["VmRSS"] / 1024),
            "peak_anon_mib": round(peak["RssAnon"] / 1024), "peak_file_mib": round(peak["RssFile"] / 1024),
            "steps": json.loads(stdout)["steps"],
            "log": [line for line in stderr.splitlines() if "pairs" in line or "encoded" in line]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mt-large"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[30_000, 300_000, 3_000_000])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--baseline", help="a git revision to measure too, for comparison")
    parser.add_argument("--baseline-sizes", type=int, nargs="+", default=[30_000, 300_000])
    args, extra = parser.parse_known_args()  # the rest goes to mt train, e.g. --precision fp32
    args.work.mkdir(parents=True, exist_ok=True)
    runs = [("current", REPO, n) for n in args.sizes]
    if args.baseline:
        tree = args.work / f"baseline-{args.baseline}"
        if not tree.is_dir():
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline],
                           check=True, stdout=sys.stderr)
        runs += [(args.baseline, tree, n) for n in args.baseline_sizes]
    results = []
    for label, code, n in runs:
        src, tgt = synthesise(args.work, n)
        r = {"code": label, "pairs": n, **measure(src, tgt, args.work / f"run-{label}-{n}", args.steps, code, extra)}
        print(json.dumps(r), file=sys.stderr)
        results.append(r)
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
