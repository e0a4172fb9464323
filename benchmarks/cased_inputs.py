"""Translation of input cased unlike the corpus: clean, ALL-CAPS, Title-Case and lowercase
copies of a Multi30k test set, and copies without the final full stop or with extra spaces, with the repetition guard off and on, and case normalisation. Reports lowercased BLEU (sacreBLEU,
13a) and the count of degenerate outputs (a character 5 times, or a piece of 2+ characters
4 times, in a row, spaces between allowed).

    python benchmarks/cased_inputs.py --model models/en-fr [--split test_2016_flickr] [--beam 4]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
from pathlib import Path

DEGENERATE = re.compile(r"(.)\1{4,}|(\S{2,}?)(?:\s?\2){3,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--split", default="test_2016_flickr")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--data-dir", default=os.environ.get("MT_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    ap.add_argument("--only-defaults", action="store_true", help="every input with the guard and case handling "
                    "on (a new model's defaults), and clean input with both off")
    ap.add_argument("--inputs", nargs="*", help="only these inputs (e.g. 'no final stop')")
    args = ap.parse_args()

    import sacrebleu

    from machine_translation.base.options import SearchOptions
    from machine_translation.inference.translate import Translator

    def lines(lang):
        with gzip.open(Path(args.data_dir) / "multi30k" / f"{args.split}.{lang}.gz", "rt", encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]

    src, ref = lines("en"), lines("fr")
    translator = Translator.from_pretrained(args.model)
    variants = {"clean": src, "ALL CAPS": [s.upper() for s in src], "Title Case": [s.title() for s in src],
                "lowercase": [s.lower() for s in src], "no final stop": [s.rstrip(" .") for s in src],
                "extra spaces": ["  " + "   ".join(s.split()) + " " for s in src]}
    rows = []
    for guard, case in ((False, False), (True, False), (True, True)):
        for name, sources in variants.items():
            if args.only_defaults and (guard, case) != (True, True) and (name, guard) != ("clean", False):
                continue
            if args.inputs and name not in args.inputs:
                continue
            hyps = translator.translate(sources, SearchOptions(beam=args.beam, repeat_guard=guard, normalize_case=case))
            # Without a final stop in, none comes out (the reader's expectation): the references
            # lose theirs too, so the score measures the words, not the stop the input lacked.
            refs = [r.rstrip(" .") for r in ref] if name == "no final stop" else ref
            bleu = sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score
            rows.append({"input": name, "repeat_guard": guard, "normalize_case": case, "bleu_lc": round(bleu, 2),
                         "degenerate": sum(bool(DEGENERATE.search(h)) for h in hyps)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| input | repeat guard | case normalised | lowercased BLEU | degenerate outputs (of {len(src)}) |\n"
          "|---|---|---|---|---|")
    on = {True: "on", False: "off"}
    for r in rows:
        print(f"| {r['input']} | {on[r['repeat_guard']]} | {on[r['normalize_case']]} | {r['bleu_lc']:.2f} | "
              f"{r['degenerate']} |")


if __name__ == "__main__":
    main()
