"""How noisy is choosing the best checkpoint on a sample of validation (issue 9, item 4)?

Every periodic checkpoint of a run translates the whole val split (greedy and beam 4, timed).
Then, for many random draws of S sentences (the same draw for every checkpoint), the
checkpoint that a validation on that sample would pick is compared with the one the whole
split picks with beam 4: how often they agree, and the beam-4 BLEU given up when they do not.

    python benchmarks/selection_noise.py --run /tmp/bench12/mt-bf16 --sample 400 --draws 1000
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

import torch
from sacrebleu.metrics import BLEU

from machine_translation.model.directory import load_pretrained
from machine_translation.training.checkpoints import checkpoint_dirs, load_average
from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.base.options import SearchOptions
from machine_translation.inference.translate import Translator


def stats(bleu: BLEU, hyps: list[str], refs: list[str]) -> list[list[float]]:
    """sacreBLEU's sufficient statistics of each sentence, so a sample's corpus BLEU is a sum."""
    return [bleu._extract_corpus_statistics([h], [[r]])[0] for h, r in zip(hyps, refs)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--sample", type=int, default=400)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, ref = read_split(parse_data_spec("multi30k"), "val", "en-fr", os.environ.get("MT_DATA_DIR"))
    loaded = load_pretrained(args.run, "cpu")
    bleu = BLEU()
    per = {}
    for ckpt in checkpoint_dirs(loaded.directory):
        load_average(loaded.model, [ckpt])
        translator = Translator(loaded, torch.device("cpu"))
        row = {}
        for beam in (1, 4):
            t = time.perf_counter()
            hyps = translator.translate(src, SearchOptions(beam=beam, batch_size=64))
            row[f"seconds_beam{beam}"] = round(time.perf_counter() - t, 2)
            row[f"bleu_beam{beam}"] = bleu.corpus_score(hyps, [ref]).score
            row[f"stats_beam{beam}"] = stats(bleu, hyps, ref)
        per[ckpt.name] = row
        print(json.dumps({ckpt.name: {k: v for k, v in row.items() if not k.startswith("stats")}}), flush=True)
    names = list(per)
    best_full = max(names, key=lambda n: per[n]["bleu_beam4"])
    rng = random.Random(0)
    agree, lost = 0, []
    for _ in range(args.draws):
        pick = rng.sample(range(len(src)), args.sample)

        def sample_bleu(name: str) -> float:
            sums = [sum(col) for col in zip(*(per[name]["stats_beam1"][i] for i in pick))]
            return bleu._compute_score_from_stats(sums).score

        chosen = max(names, key=sample_bleu)
        agree += chosen == best_full
        lost.append(per[best_full]["bleu_beam4"] - per[chosen]["bleu_beam4"])
    print(json.dumps({
        "checkpoints": names, "best_by_full_val_beam4": best_full,
        "sample": args.sample, "draws": args.draws,
        "greedy_sample_picks_the_same": round(agree / args.draws, 3),
        "beam4_bleu_lost_mean": round(statistics.mean(lost), 3), "beam4_bleu_lost_max": round(max(lost), 3),
        "best_by_full_val_greedy": max(names, key=lambda n: per[n]["bleu_beam1"]),
    }))


if __name__ == "__main__":
    main()
