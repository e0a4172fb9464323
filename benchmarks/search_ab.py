"""A/B of two versions of the search, or of the int8 layer, in one process: this checkout's
`machine_translation/inference/search.py` (B) against another checkout's (A, e.g. a git worktree of
main), or this checkout's `Int8Linear.forward` against another checkout's precision.py
(`--precision int8`), alternated round by round on the same loaded model, so that the machine's drift
between runs (10-20% on the shared machines of docs/benchmarks.md) hits both alike. Prints
each side's median sentences/s, the median of the per-round ratios B/A and how many
translations differ.

    git worktree add /tmp/A main
    python benchmarks/search_ab.py --model DIR --old /tmp/A/machine_translation/inference/search.py --rounds 8
    python benchmarks/search_ab.py --model DIR --old /tmp/A/machine_translation/inference/precision.py --precision int8
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch

import machine_translation.inference.precision as new_precision
import machine_translation.inference.search as new_search
import machine_translation.inference.translate as translate_module
from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.base.options import SearchOptions
from machine_translation.inference.translate import Translator


def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--old", required=True, help="the other checkout's machine_translation/inference/search.py or precision.py (A)")
    p.add_argument("--sentences", type=int, default=320)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default=None, help="fp32, bf16 or int8 (default: the model's)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    src = src[: args.sentences]
    old = load_module(args.old, "version_a")
    if args.old.endswith("precision.py"):  # the same search; each side's int8 layer
        forwards = {"A": old.Int8Linear.forward, "B": new_precision.Int8Linear.forward}

        def use(name: str) -> None:
            new_precision.Int8Linear.forward = forwards[name]
    else:
        versions = {"A": old, "B": new_search}

        def use(name: str) -> None:
            translate_module.beam_search = versions[name].beam_search
            translate_module.greedy_search = versions[name].greedy_search
    translator = Translator.from_pretrained(args.model, "cpu", precision=args.precision)
    for beam in (1, 4):
        options = SearchOptions(beam=beam, batch_size=64)
        rates: dict[str, list[float]] = {"A": [], "B": []}
        outputs = {}
        for r in range(args.rounds):
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                use(name)
                if r == 0:
                    translator.translate(src[:64], options)  # warm-up
                start = time.perf_counter()
                outputs[name] = translator.translate(src, options)
                rates[name].append(len(src) / (time.perf_counter() - start))
        ratios = [b / a for a, b in zip(rates["A"], rates["B"])]
        differ = sum(a != b for a, b in zip(outputs["A"], outputs["B"]))
        print(f"beam {beam}: A {statistics.median(rates['A']):.1f} sent/s, B {statistics.median(rates['B']):.1f}; "
              f"B/A per round: median {statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}); "
              f"{differ} of {len(src)} translations differ")


if __name__ == "__main__":
    main()
