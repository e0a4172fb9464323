"""Tiny Shakespeare with the decoder-only mode, against nanoGPT's CPU recipe measured here
(4 layers, 4 heads, d_model 128, block 64: 92.8 s wall, val loss 1.886).

Runs `mt train --task lm` as a subprocess, timing from just before the process starts,
and reports (1) the wall time to the first validation (whole validation split) at or
under 1.88, (2) the validation loss of the last validation within 92.8 s, and (3)
generation speed with and without the KV cache.

    python benchmarks/lm_shakespeare.py --out /tmp/lm-bench [--lr 6e-3 --batch-size 24 ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_LOSS, NANOGPT_SECONDS = 1.88, 92.8


def train(out: Path, extra: list[str]) -> tuple[float, list[dict]]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["mt", "train", "--task", "lm", "--data", "tinyshakespeare", "--preset", "small", "--out", str(out), *extra]
    start = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    from machine_translation.training.plot import read_log
    _, val, _ = read_log(out)  # the run's validations; the end-of-run checkpoint average is apart
    return start, list(val.values())


def generation_speed(out: Path, tokens: int = 500, repeats: int = 3) -> dict:
    import torch

    from machine_translation.model.directory import load_pretrained
    from machine_translation.base.options import SamplingOptions
    from machine_translation.inference.search import sample
    torch.set_num_threads(2)
    loaded = load_pretrained(out)
    prompt = loaded.tgt_tokenizer.encode("ROMEO:")
    result = {}
    for use_cache in (True, False):
        rates = []
        for r in range(repeats):
            g = torch.Generator().manual_seed(r)
            t = time.perf_counter()
            options = SamplingOptions(temperature=0.8, top_k=200, max_new_tokens=tokens)
            n = sum(1 for _ in sample(loaded.model, prompt, g, options, None, use_cache))
            rates.append(n / (time.perf_counter() - t))
        result["cached" if use_cache else "uncached"] = statistics.median(rates)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mt-lm-bench"))
    parser.add_argument("--max-minutes", default="1.5")
    args, extra = parser.parse_known_args()
    start, evals = train(args.out, ["--max-minutes", args.max_minutes, *extra])
    first = next((r for r in evals if r["val_loss"] <= TARGET_LOSS), None)
    within = [r for r in evals if r["time"] - start <= NANOGPT_SECONDS]
    speed = generation_speed(args.out)
    report = {
        "flags": extra,
        "seconds_to_val_loss_1_88": None if first is None else round(first["time"] - start, 1),
        "step_at_1_88": None if first is None else first["step"],
        "val_loss_within_92_8_s": within[-1]["val_loss"] if within else None,
        "best_val_loss": min(r["val_loss"] for r in evals),
        "evals": [(r["step"], round(r["time"] - start, 1), round(r["val_loss"], 4)) for r in evals],
        "generate_tokens_per_s": {k: round(v, 1) for k, v in speed.items()},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
