"""What `--engine ctranslate2` gives up: mt's repetition guard, which CTranslate2 cannot apply
as mt does. The model translated with its own settings (beam, length penalty, guard on, case
handling on) by mt's search and by CTranslate2 inside mt (the same settings but the guard):
how many lines differ, and BLEU of each, on test_2016_flickr and test_2017_flickr.

    MT_DATA_DIR=../shared/data python benchmarks/engine_guard.py --model /tmp/m6 --out /tmp/guard.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import sacrebleu
    import torch

    from machine_translation.inference.translate import Translator
    from machine_translation.interchange.export import ctranslate2_copy

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    data = Path(os.environ.get("MT_DATA_DIR", "../shared/data")) / "multi30k"
    ours = Translator.from_pretrained(args.model, "cpu")
    theirs = Translator.from_pretrained(args.model, "cpu", workers=2, ctranslate2=ctranslate2_copy(args.model))
    report = {"model": args.model, "settings": str(ours.defaults), "date": time.strftime("%Y-%m-%d %H:%M")}
    for split in ("test_2016_flickr", "test_2017_flickr"):
        src = [line.strip() for line in gzip.open(data / f"{split}.en.gz", "rt", encoding="utf-8")]
        refs = [line.strip() for line in gzip.open(data / f"{split}.fr.gz", "rt", encoding="utf-8")]
        a, b = ours.translate(src), theirs.translate(src)
        report[split] = {"lines differing": sum(x != y for x, y in zip(a, b)), "lines": len(src),
                         "BLEU mt (guard on)": round(sacrebleu.corpus_bleu(a, [refs]).score, 2),
                         "BLEU --engine ctranslate2 (no guard)": round(sacrebleu.corpus_bleu(b, [refs]).score, 2)}
        print(split, report[split])
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
