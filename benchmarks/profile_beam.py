"""Where beam search spends its time while a model translates the first N sentences of
test_2016_flickr (one thread, batch 64): the PyTorch profiler's top operators, or, with
`--timers`, wall-clock timers around the model's parts and the search's steps.

    python benchmarks/profile_beam.py --model /tmp/bench/mt --sentences 320 --beam 4
    python benchmarks/profile_beam.py --model /tmp/bench/mt --sentences 1000 --beam 4 --timers --precision int8

The profiler's own cost per operator inflates the large ones unevenly (on the AMD EPYC of
docs/benchmarks-log.md, 1c. Translation speed and precision, it put the 256-row output layer at 26 ms a call; timed alone in the
search, 15 ms), so shares of time come from `--timers`, and the profiler names the operators.
Timers nest: "decoder step" includes the indented rows, which are its parts (attention rows
include their projections); each level ends with its remainder, so each level adds up.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

import machine_translation.inference.search as search
from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.base.options import SearchOptions
from machine_translation.inference.translate import Translator


def add_timers(translator: Translator) -> Counter:
    """Wrap the model's parts and the search's steps (on this translator and module only)
    with wall-clock timers; returns the seconds per part, filled as it translates."""
    seconds: Counter = Counter()

    def timed(owner, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            seconds[name] += time.perf_counter() - start
            return out
        setattr(owner, attr, wrapper)

    model = translator.model
    timed(model, "encode", "encoder")
    timed(model.decoder, "start_cache", "encoder keys/values for cross-attention")
    timed(model, "decode_step", "decoder step")
    for block in model.decoder.blocks:
        timed(block.self_attn, "project_qkv", "  self-attention q/k/v projection")
        timed(block.self_attn, "attend", "  self-attention (SDPA + output projection)")
        timed(block.cross_attn, "forward", "  cross-attention (q projection + SDPA + output projection)")
        timed(block.ff, "forward", "  feed-forward")
    timed(model.decoder.lm_head, "forward", "  output layer")
    for name in ("_expand", "_finalize", "_select"):
        timed(search, name, f"search: {name.strip('_')}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--sentences", type=int, default=320)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default=None, help="fp32, bf16 or int8 (default: the model's)")
    p.add_argument("--timers", action="store_true", help="wall-clock timers instead of the profiler")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    src = src[: args.sentences]
    translator = Translator.from_pretrained(args.model, "cpu", precision=args.precision)
    options = SearchOptions(beam=args.beam, batch_size=64)
    seconds = add_timers(translator) if args.timers else None
    translator.translate(src[:128], options)  # warm-up
    if seconds is not None:
        seconds.clear()
    start = time.perf_counter()
    translator.translate(src, options)
    total = time.perf_counter() - start
    print(f"{len(src) / total:.1f} sentences/s, beam {args.beam}, {translator.precision}, {args.threads} thread(s)")
    if seconds is not None:
        # the remainders, so that the rows at each level add up to the whole
        parts = sum(s for name, s in seconds.items() if name.startswith("  "))
        top = sum(s for name, s in seconds.items() if not name.startswith("  "))
        seconds["  the rest of the step (norms, residuals, cache, dispatch)"] = seconds["decoder step"] - parts
        seconds["outside every timer (batching, tokenising, the search loop)"] = total - top
        for name, s in seconds.items():
            print(f"{name:60s} {s:7.2f} s {100 * s / total:5.1f}%")
        return
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        translator.translate(src, options)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
