"""Would a cleverer choice of checkpoints to average beat what `mt train` keeps (issue 9, item 3)?

For each run, the mean of every non-empty subset of its kept periodic checkpoints (single
checkpoints included) translates the whole val split greedily, the measure `mt train`
selects on; one JSON line per subset. Choosing among all of them on val is an upper bound on
what any averaging rule over those checkpoints could gain.

    python benchmarks/average_subsets.py --runs /tmp/r60/mt /tmp/r60d3/mt
"""
from __future__ import annotations

import argparse
import itertools
import json
import os

import torch
from sacrebleu.metrics import BLEU

from machine_translation.model.directory import load_pretrained
from machine_translation.training.checkpoints import checkpoint_dirs, load_average
from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.inference.translate import Translator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run directories of `mt train` (with checkpoints/)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, ref = read_split(parse_data_spec("multi30k"), "val", "en-fr", os.environ.get("MT_DATA_DIR"))
    bleu = BLEU()
    for run in args.runs:
        loaded = load_pretrained(run, "cpu")
        kept = checkpoint_dirs(loaded.directory)
        for size in range(1, len(kept) + 1):
            for subset in itertools.combinations(kept, size):
                load_average(loaded.model, list(subset))
                translator = Translator(loaded, torch.device("cpu"))
                hyps = translator.translate(src, translator.defaults.updated(beam=1))
                print(json.dumps({"run": run, "checkpoints": [c.name for c in subset],
                                  "val_greedy": round(bleu.corpus_score(hyps, [ref]).score, 2)}), flush=True)


if __name__ == "__main__":
    main()
