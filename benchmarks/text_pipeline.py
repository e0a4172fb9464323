"""The text pipeline's choices and costs (docs/benchmarks.md, Text pipeline):

1. sentence splitters on the cases of tests/test_text.py: pysbd (chosen), sentencex, spaCy's
   rule-based sentencizer: cases right, load time, microseconds per line;
2. language identifiers on tests/fixtures/languages.tsv: py3langid (chosen) and
   lingua-language-detector: accuracy (all, and texts of 20 characters or more), load time,
   milliseconds per text;
3. the pipeline alone (split + protected spans + join, no model): sentences/s;
4. `Translator.translate` of 1,000 test_2016_flickr sentences written as paragraphs (four a
   line) against the same sentences one a line: medians of interleaved rounds;
5. test_2016_flickr BLEU with splitting on and off (`mt evaluate`'s default and --no-split-sentences).

    MT_DATA_DIR=../shared/data python benchmarks/text_pipeline.py --model models/demo-en-fr --out /tmp/text.json

The alternatives come with the `bench` extra (`pip install -e '.[bench]'`).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def splitters() -> dict:
    from tests.test_text import SPLITS

    def pysbd_split(lang):
        import pysbd
        seg = pysbd.Segmenter(language=lang, clean=False)
        return lambda t: [s.strip() for s in seg.segment(t) if s.strip()]

    def sentencex_split(lang):
        import sentencex
        return lambda t: [s.strip() for s in sentencex.segment(lang, t) if s.strip()]

    def spacy_split(lang):
        import spacy
        nlp = spacy.blank(lang)
        nlp.add_pipe("sentencizer")
        return lambda t: [s.text.strip() for s in nlp(t).sents if s.text.strip()]

    results = {}
    for name, make in (("pysbd", pysbd_split), ("sentencex", sentencex_split), ("spacy sentencizer", spacy_split)):
        t0 = time.perf_counter()
        split = {lang: make(lang) for lang in ("en", "fr")}
        load = time.perf_counter() - t0
        right = sum(split[lang](line) == expected for lang, line, expected in SPLITS)
        t0 = time.perf_counter()
        for _ in range(20):
            for lang, line, _ in SPLITS:
                split[lang](line)
        results[name] = {"right": right, "cases": len(SPLITS), "load_ms": round(1000 * load),
                         "us_per_line": round((time.perf_counter() - t0) / (20 * len(SPLITS)) * 1e6, 1)}
    return results


def identifiers() -> dict:
    rows = [line.split("\t") for line in (REPO / "tests/fixtures/languages.tsv").read_text().splitlines()
            if line and not line.startswith("#")]

    def py3langid_make():
        from machine_translation.text.detect import detect
        return lambda text: detect(text)[0].language

    def lingua_make():
        from lingua import LanguageDetectorBuilder
        detector = LanguageDetectorBuilder.from_all_languages().build()
        return lambda text: detector.detect_language_of(text).iso_code_639_1.name.lower()

    results = {}
    for name, make in (("py3langid", py3langid_make), ("lingua", lingua_make)):
        t0 = time.perf_counter()
        detect = make()
        got = [detect(text) for _, text in rows]  # the first pass loads what is loaded lazily
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = [detect(text) for _, text in rows]
        per = (time.perf_counter() - t0) / len(rows)
        long = [(lang, g) for (lang, text), g in zip(rows, got) if len(text) >= 20]
        results[name] = {"right": sum(lang == g for (lang, _), g in zip(rows, got)), "texts": len(rows),
                         "right_20_chars": sum(lang == g for lang, g in long), "texts_20_chars": len(long),
                         "load_and_first_pass_ms": round(1000 * load), "ms_per_text": round(1000 * per, 3)}
    return results


def test_sentences(data_dir: Path, n: int) -> list[str]:
    with gzip.open(data_dir / "multi30k" / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as f:
        return [line.strip() for _, line in zip(range(n), f)]


def pipeline_only(sentences: list[str]) -> dict:
    from machine_translation.base.options import TextOptions
    from machine_translation.inference import pipeline
    paragraphs = [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]
    best = []
    for _ in range(3):
        t0 = time.perf_counter()
        prepared = pipeline.prepare(paragraphs, TextOptions(), "en", lambda s: True)
        fake = [type("T", (), {"text": s})() for s in prepared.sentences]
        pipeline.finish(prepared, fake, None)
        best.append(time.perf_counter() - t0)
    return {"sentences": len(prepared.sentences), "sentences_per_s": round(len(prepared.sentences) / min(best))}


def translate_timing(model: str, sentences: list[str], rounds: int) -> dict:
    from machine_translation.base.options import AS_IS
    from machine_translation.inference.translate import Translator
    translator = Translator.from_pretrained(model, "cpu")
    paragraphs = [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]
    translator.translate(sentences[:64], text=AS_IS)  # warm up
    times = {"paragraphs": [], "lines": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        translator.translate(paragraphs)
        times["paragraphs"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        translator.translate(sentences, text=AS_IS)
        times["lines"].append(time.perf_counter() - t0)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "median_paragraphs_over_lines": round(medians["paragraphs"] / medians["lines"], 3)}


def split_bleu(model: str, data_dir: Path) -> dict:
    from machine_translation.base.options import AS_IS, TextOptions
    from machine_translation.data.sources import parse_data_spec, read_split
    from machine_translation.inference.evaluate import corpus_bleu
    from machine_translation.inference.translate import Translator
    translator = Translator.from_pretrained(model, "cpu")
    out = {}
    for split in ("test_2016_flickr", "test_2017_flickr"):
        src, ref = read_split(parse_data_spec(None, pair="en-fr"), split, "en-fr", data_dir)
        on = translator.translate(src, text=TextOptions())
        off = translator.translate(src, text=AS_IS)
        out[split] = {"bleu_split": round(corpus_bleu(on, ref), 2), "bleu_no_split": round(corpus_bleu(off, ref), 2),
                      "lines_changed": sum(a != b for a, b in zip(on, off))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(os.environ.get("MT_DATA_DIR", REPO.parent / "shared" / "data"))
    sentences = test_sentences(data_dir, 1000)
    results = {"splitters": splitters(), "identifiers": identifiers(), "pipeline_only": pipeline_only(sentences),
               "translate": translate_timing(args.model, sentences, args.rounds), "bleu": split_bleu(args.model, data_dir)}
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
