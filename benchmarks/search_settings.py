"""Which beam size and length penalty translate val best (issue 9)? Chosen on val only.

Each model directory translates the whole val split once per (beam, length penalty) pair of
the grid, with everything else as its generation_config.json says (repeat guard, case
handling, output length limit); one JSON line per setting, then the mean over the models of
each setting's gain over the model's own recorded setting.

    python benchmarks/search_settings.py --models /tmp/r60/mt /tmp/r60d3/mt --beams 4 5 6 \\
        --length-penalties 0.6 0.8 1.0 1.2 1.4
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from sacrebleu.metrics import BLEU

from machine_translation.model.directory import load_pretrained
from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.inference.translate import Translator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="trained model directories")
    p.add_argument("--split", default="val", help="the split to choose on (val; test sets are for reporting)")
    p.add_argument("--beams", nargs="+", type=int, default=[4, 5, 6])
    p.add_argument("--length-penalties", nargs="+", type=float, default=[0.6, 0.8, 1.0, 1.2, 1.4])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, ref = read_split(parse_data_spec("multi30k"), args.split, "en-fr", os.environ.get("MT_DATA_DIR"))
    bleu = BLEU()
    gains: dict[tuple[int, float], list[float]] = {}
    for directory in args.models:
        loaded = load_pretrained(directory, "cpu")
        translator = Translator(loaded, torch.device("cpu"))
        recorded = translator.defaults  # the model's generation_config.json
        scores = {}
        for beam in args.beams:
            for lp in args.length_penalties:
                t = time.perf_counter()
                hyps = translator.translate(src, recorded.updated(beam=beam, length_penalty=lp))
                scores[beam, lp] = bleu.corpus_score(hyps, [ref]).score
                print(json.dumps({"model": directory, "split": args.split, "beam": beam, "length_penalty": lp,
                                  "bleu": round(scores[beam, lp], 2),
                                  "seconds": round(time.perf_counter() - t, 1)}), flush=True)
        base = (recorded.beam, recorded.length_penalty)
        if base not in scores:
            print(f"{directory}: its own setting {base} is not in the grid; no gains", file=sys.stderr)
            continue
        for key, score in scores.items():
            gains.setdefault(key, []).append(score - scores[base])
    for (beam, lp), g in sorted(gains.items(), key=lambda kv: -statistics.mean(kv[1])):
        print(json.dumps({"beam": beam, "length_penalty": lp, "mean_gain": round(statistics.mean(g), 2),
                          "gains": [round(x, 2) for x in g]}))


if __name__ == "__main__":
    main()
