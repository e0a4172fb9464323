"""Is `torch.compile` of the decoding step worth it? Sentences per second of greedy and beam 4
(batch 64, the first N sentences of test_2016_flickr, one thread) with the model's decoding
step compiled (dynamic shapes; `--freezing`: inductor's weight prepacking), after a warm-up
whose time (compilation included) is printed, or eager (`--eager`). The model is loaded with
PyTorch's own `nn.Linear`s: the oneDNN layers mt uses on AMD CPUs hold prepacked weights that
dynamo cannot trace.

    MT_DATA_DIR=../shared/data python benchmarks/compile_decode.py --model DIR [--eager] [--freezing]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from machine_translation.model.directory import load_pretrained
from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.base.options import SearchOptions
from machine_translation.inference.translate import Translator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--sentences", type=int, default=320)
    p.add_argument("--eager", action="store_true", help="no compilation: the reference")
    p.add_argument("--freezing", action="store_true", help="inductor's freezing (prepacked weights)")
    args = p.parse_args()
    torch.set_num_threads(1)
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    src = src[: args.sentences]
    cpu = torch.device("cpu")
    translator = Translator(load_pretrained(args.model, cpu, task="mt"), cpu)  # plain nn.Linear layers
    start = time.perf_counter()
    if not args.eager:
        from torch._inductor import config as inductor_config
        inductor_config.freezing = args.freezing
        translator.model.decode_step = torch.compile(translator.model.decode_step, dynamic=True)
    for beam in (4, 1):
        translator.translate(src[:64], SearchOptions(beam=beam, batch_size=64))  # warm-up (and compilation)
    print(f"warm-up {time.perf_counter() - start:.1f} s")
    for beam in (1, 4):
        options = SearchOptions(beam=beam, batch_size=64)
        start = time.perf_counter()
        translator.translate(src, options)
        print(f"beam {beam}: {len(src) / (time.perf_counter() - start):.1f} sentences/s")


if __name__ == "__main__":
    main()
