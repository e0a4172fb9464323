"""Sentences per second of one code version's search, for A/B comparisons of two checkouts:
run it alternately under each version's PYTHONPATH (the same model, nothing else running).
Greedy and beam 4, batch 64, the first N sentences of test_2016_flickr, after a warm-up batch.

    for i in 1 2 3; do
      PYTHONPATH=/path/to/A:/path/to/A/tokenizers python benchmarks/search_speed.py --model DIR
      PYTHONPATH=/path/to/B:/path/to/B/tokenizers python benchmarks/search_speed.py --model DIR
    done
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.base.options import SearchOptions
from machine_translation.inference.translate import Translator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--sentences", type=int, default=320)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="processes of one thread each (`mt translate --workers`)")
    p.add_argument("--precision", default=None, help="fp32, bf16 or int8 (default: the model's)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    src = src[: args.sentences]
    translator = Translator.from_pretrained(args.model, "cpu", workers=args.workers, precision=args.precision)
    result = {}
    for beam in (1, 4):
        options = SearchOptions(beam=beam, batch_size=64, repeat_guard=False)
        translator.translate(src[:64 * args.workers], options)  # warm-up (and start the workers)
        start = time.perf_counter()
        translator.translate(src, options)
        result[f"beam{beam}_sentences_per_s"] = round(len(src) / (time.perf_counter() - start), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
