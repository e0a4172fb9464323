"""Milliseconds per training step (forward, backward, AdamW) of a preset on random ids, in
float32, with bfloat16 autocast, or under torch.compile: a quick check of what a kernel-level
change buys on this machine before a full benchmark.

    python benchmarks/step_time.py --task mt --batch 128 --length 30 --modes fp32 bf16
    python benchmarks/step_time.py --task lm --batch 24 --length 64 --modes fp32 bf16 compile
    python benchmarks/step_time.py --batch 200 --length 20 --modes bf16 --steps 5 --profile
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from machine_translation.model.transformer import ModelConfig, build_model
from machine_translation.training.tasks import sequence_loss


def step_ms(task: str, preset: str, vocab: int, batch: int, length: int, mode: str, steps: int,
            profile: bool = False) -> tuple[float, float]:
    """(seconds of the first step, which includes compiling; median ms of the next `steps`)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(preset, task, vocab))
    forward = torch.compile(model) if mode == "compile" else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(4, vocab, (batch, length))  # (B, T)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            logits = forward(x) if task == "lm" else forward(x, x)
            loss = sequence_loss(logits, x, pad_id=-100)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    for _ in range(3):
        step()
    if profile:  # where the time of `steps` steps goes, by operator
        from torch.profiler import profile as torch_profile
        with torch_profile() as prof:
            for _ in range(steps):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - t))
    return first, statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=["mt", "lm"], default="mt")
    p.add_argument("--preset", default="small")
    p.add_argument("--vocab", type=int, default=None, help="default: 8000 (mt), 69 (lm, Tiny Shakespeare chars)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--length", type=int, default=30)
    p.add_argument("--modes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "compile"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's operator table")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    vocab = args.vocab or (8000 if args.task == "mt" else 69)
    for mode in args.modes:
        first, ms = step_ms(args.task, args.preset, vocab, args.batch, args.length, mode, args.steps,
                            args.profile)
        print(f"{args.task} {args.preset} batch {args.batch}x{args.length} {mode}: first step {first:.1f} s, "
              f"median {ms:.1f} ms/step")


if __name__ == "__main__":
    main()
