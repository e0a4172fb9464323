"""mt's own search against CTranslate2 on the same weights (`mt export --to ctranslate2`),
and CTranslate2 inside mt (`--engine ctranslate2`) against CTranslate2 called directly:
translation speed on test_2016_flickr (1,000 sentences, batches of 64, every system warmed
with one pass, medians of interleaved rounds), 1 process x 2 threads and 2 x 1 (mt's
--workers, CTranslate2's inter_threads), float32 and int8; how often the two give the same
tokens (mt's repetition guard and case handling off: CTranslate2 has neither); and int8's
BLEU and unchanged lines against float32 in each engine.

    MT_DATA_DIR=../shared/data python benchmarks/export_ctranslate2.py --model /tmp/m6 --out /tmp/ct2.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import ctranslate2
    import sacrebleu
    import torch

    from machine_translation.base.options import SearchOptions
    from machine_translation.inference.translate import Translator
    from machine_translation.interchange.export import export

    data = Path(os.environ.get("MT_DATA_DIR", "../shared/data")) / "multi30k"
    src = [line.strip() for line in gzip.open(data / "test_2016_flickr.en.gz", "rt", encoding="utf-8")]
    refs = [line.strip() for line in gzip.open(data / "test_2016_flickr.fr.gz", "rt", encoding="utf-8")]
    scratch = Path(tempfile.mkdtemp(prefix="ct2-bench-"))
    for precision in ("fp32", "int8"):
        export(args.model, "ctranslate2", scratch / precision, precision)
    torch.set_num_threads(2)
    translators = {p: Translator.from_pretrained(args.model, "cpu", precision=p) for p in ("fp32", "int8")}
    two = {p: Translator.from_pretrained(args.model, "cpu", workers=2, precision=p) for p in ("fp32",)}
    engine = {p: Translator.from_pretrained(args.model, "cpu", workers=2, precision=p, ctranslate2=scratch / p)
              for p in ("fp32", "int8")}  # --engine ctranslate2 --workers 2
    tok = translators["fp32"].loaded.src_tokenizer
    pieces = [[tok.id_to_piece(i) for i in tok.encode(s)] + [tok.id_to_piece(tok.eos_id)] for s in src]
    ct2 = {(p, layout): ctranslate2.Translator(str(scratch / p), device="cpu", compute_type="int8" if p == "int8"
                                               else "float32", inter_threads=2 if layout == "2x1" else 1,
                                               intra_threads=1 if layout == "2x1" else 2)
           for p in ("fp32", "int8") for layout in ("1x2", "2x1")}

    def run_mt(translator, beam):
        options = SearchOptions(beam=beam, batch_size=64, length_penalty=1.0, max_len_a=1.5, max_len_b=10,
                                repeat_guard=False, normalize_case=False)
        return [[tok.id_to_piece(i) for i in n[0].tokens] for n in translator.translations(src, options)]

    def run_ct2(translator, beam):
        results = translator.translate_batch(pieces, beam_size=beam, max_batch_size=64, length_penalty=1.0,
                                             max_decoding_length=int(max(map(len, pieces)) * 1.5 + 10))
        return [r.hypotheses[0] for r in results]

    systems = {"mt fp32, 1 x 2": lambda b: run_mt(translators["fp32"], b),
               "mt fp32, 2 x 1": lambda b: run_mt(two["fp32"], b),
               "mt int8, 1 x 2": lambda b: run_mt(translators["int8"], b),
               "CTranslate2 float32, 1 x 2": lambda b: run_ct2(ct2["fp32", "1x2"], b),
               "CTranslate2 float32, 2 x 1": lambda b: run_ct2(ct2["fp32", "2x1"], b),
               "CTranslate2 int8, 1 x 2": lambda b: run_ct2(ct2["int8", "1x2"], b),
               "CTranslate2 int8, 2 x 1": lambda b: run_ct2(ct2["int8", "2x1"], b),
               "mt --engine ctranslate2 fp32, 2 x 1": lambda b: run_mt(engine["fp32"], b),
               "mt --engine ctranslate2 int8, 2 x 1": lambda b: run_mt(engine["int8"], b)}
    result, outputs = {"model": args.model, "sentences": len(src), "speed": {}}, {}
    for beam in (1, 4):
        times = {name: [] for name in systems}
        for name, fn in systems.items():
            outputs[name, beam] = fn(beam)  # the warm-up pass, kept for the comparisons below
        for _ in range(args.rounds):
            for name, fn in systems.items():
                start = time.perf_counter()
                fn(beam)
                times[name].append(time.perf_counter() - start)
        result["speed"][f"beam {beam}"] = {name: round(len(src) / statistics.median(t), 1) for name, t in times.items()}
    decode = lambda out: [tok.decode([tok_id(tok, p) for p in h]) for h in out]  # noqa: E731
    for beam in (1, 4):
        a, b = outputs["mt fp32, 1 x 2", beam], outputs["CTranslate2 float32, 1 x 2", beam]
        result[f"same tokens, mt fp32 vs CTranslate2 float32, beam {beam}"] = sum(x == y for x, y in zip(a, b))
        speed = result["speed"][f"beam {beam}"]
        for p, name in (("fp32", "float32"), ("int8", "int8")):
            result[f"--engine ctranslate2 {p} / CTranslate2 alone, beam {beam}"] = round(
                speed[f"mt --engine ctranslate2 {p}, 2 x 1"] / speed[f"CTranslate2 {name}, 2 x 1"], 3)
    for engine in ("mt", "CTranslate2"):
        f32 = decode(outputs[f"{engine} {'fp32' if engine == 'mt' else 'float32'}, 1 x 2", 4])
        i8 = decode(outputs[f"{engine} int8, 1 x 2", 4])
        result[f"{engine} beam 4 BLEU float32 / int8"] = [round(sacrebleu.corpus_bleu(t, [refs]).score, 2)
                                                         for t in (f32, i8)]
        result[f"{engine} int8 lines unchanged"] = sum(x == y for x, y in zip(f32, i8))
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def tok_id(tok, piece: str) -> int:
    return tok.piece_id(piece) if hasattr(tok, "piece_id") else tok._sp.piece_to_id(piece)


if __name__ == "__main__":
    main()
