"""Does a change to the search keep its float32 output? Translate test_2016_flickr (greedy and
beam 4, batch 64) with one code version and save the translations with their scores, then
compare two such files: how many sentences differ, and whether the differing ones have equal
scores (a tie broken the other way by a different floating-point order).

    PYTHONPATH=/path/to/old/checkout:/path/to/old/checkout/tokenizers \\
        python benchmarks/search_equality.py save --model DIR --out /tmp/before.json
    python benchmarks/search_equality.py save --model DIR --out /tmp/after.json
    python benchmarks/search_equality.py compare /tmp/before.json /tmp/after.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def save(model: str, out: Path, split: str) -> None:
    import torch

    from machine_translation.data.sources import parse_data_spec, read_split
    from machine_translation.base.options import SearchOptions
    from machine_translation.inference.translate import Translator
    torch.set_num_threads(2)
    src, _ = read_split(parse_data_spec("multi30k"), split, "en-fr", os.environ.get("MT_DATA_DIR"))
    translator = Translator.from_pretrained(model, "cpu")
    result = {}
    for beam in (1, 4):
        for guard in (False, True):  # the raw search, and with the repetition guard riding along
            opts = SearchOptions(beam=beam, batch_size=64, repeat_guard=guard)
            result[f"beam{beam}" + ("-guard" if guard else "")] = [[(t.text, t.score) for t in n_best]
                                                                   for n_best in translator.translations(src, opts)]
    out.write_text(json.dumps(result, ensure_ascii=False))
    print(f"wrote {out}", file=sys.stderr)


def compare(a: Path, b: Path, tolerance: float) -> None:
    before, after = json.loads(a.read_text()), json.loads(b.read_text())
    for key in before:
        differ = [(i, x[0], y[0]) for i, (x, y) in enumerate(zip(before[key], after[key])) if x[0][0] != y[0][0]]
        ties = sum(abs(x[1] - y[1]) <= tolerance for _, x, y in differ)
        max_score_diff = max((abs(x[0][1] - y[0][1]) for x, y in zip(before[key], after[key])), default=0.0)
        print(f"{key}: {len(differ)} of {len(before[key])} sentences differ, {ties} of them with equal scores "
              f"(|diff| <= {tolerance}); largest score difference over all sentences {max_score_diff:.2e}")
        for i, x, y in differ[:5]:
            print(f"  {i}: {x[1]:.6f} {x[0]!r}\n  {' ' * len(str(i))}  {y[1]:.6f} {y[0]!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save")
    s.add_argument("--model", required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--split", default="test_2016_flickr")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()
    if args.command == "save":
        save(args.model, args.out, args.split)
    else:
        compare(args.before, args.after, args.tolerance)


if __name__ == "__main__":
    main()
