"""Where beam search spends its time: the PyTorch profiler's top operators while a model
translates the first N sentences of test_2016_flickr (one thread, batch 64).

    python benchmarks/profile_beam.py --model /tmp/bench/mt --sentences 320 --beam 4
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile

from machine_translation.data import parse_data_spec, read_split
from machine_translation.options import SearchOptions
from machine_translation.translate import Translator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--sentences", type=int, default=320)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    src = src[: args.sentences]
    translator = Translator.from_pretrained(args.model, "cpu")
    options = SearchOptions(beam=args.beam, batch_size=64)
    translator.translate(src[:128], options)  # warm-up
    t = time.perf_counter()
    translator.translate(src, options)
    print(f"{len(src) / (time.perf_counter() - t):.1f} sentences/s, beam {args.beam}, {args.threads} thread(s)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        translator.translate(src, options)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
