"""Which float32 library translates faster on this CPU: PyTorch's default BLAS (Intel MKL on
x86 builds) or oneDNN with prepacked weights (`precision.use_onednn`, which
`runtime.onednn_fp32_is_faster` picks on AMD CPUs). The same model in one process, the two
alternated each round, one thread, greedy and beam 4, batch 64, test_2016_flickr.

    python benchmarks/fp32_library.py --model /tmp/r30/mt --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from machine_translation.model.directory import load_pretrained
from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.base.options import SearchOptions
from machine_translation.inference.kernels import use_onednn
from machine_translation.inference.translate import Translator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sentences", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(1)
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    src = src[: args.sentences]
    cpu = torch.device("cpu")
    translators = {"mkl": Translator(load_pretrained(args.model, cpu, task="mt"), cpu),  # nn.Linear as loaded
                   "onednn": Translator(load_pretrained(args.model, cpu, task="mt"), cpu)}
    use_onednn(translators["onednn"].model)
    runs: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, translator in translators.items():
            for beam in (1, 4):
                options = SearchOptions(beam=beam, batch_size=64, repeat_guard=False)  # the search alone
                translator.translate(src[:64], options)  # warm-up
                start = time.perf_counter()
                translator.translate(src, options)
                runs.setdefault(f"{name}/beam{beam}", []).append(round(len(src) / (time.perf_counter() - start), 1))
        print(json.dumps(runs), file=sys.stderr)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({"sentences_per_s": runs, "median": medians,
                      "onednn_over_mkl": {f"beam{b}": round(medians[f"onednn/beam{b}"] / medians[f"mkl/beam{b}"], 3)
                                          for b in (1, 4)}}))


if __name__ == "__main__":
    main()
