"""Evaluation: a test set translated by a model and scored with sacreBLEU (BLEU, chrF and TER
on detokenised, cased text, with signatures), the hypotheses and scores saved: the workflow
of `mt evaluate`, which only parses flags and prints the result. Validation during training is
the task's (`training.tasks`), with `corpus_bleu` from here.
"""
from __future__ import annotations

from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF, TER

from machine_translation.base.errors import DataError
from machine_translation.base.files import write_atomic, write_json
from machine_translation.base.options import SearchOptions, TextOptions


def score_translations(hypotheses: list[str], references: list[str], lowercase_bleu: bool = True) -> dict:
    """Corpus scores and their sacreBLEU signatures. `bleu_lc` is lowercased BLEU (the form papers report)."""
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must align line by line")
    if not references:
        raise DataError("nothing to score: the reference file is empty")
    refs = [references]
    metrics = {"bleu": BLEU(), "chrf": CHRF(), "ter": TER()}
    if lowercase_bleu:
        metrics["bleu_lc"] = BLEU(lowercase=True)
    result = {"n_sentences": len(hypotheses)}
    for name, metric in metrics.items():
        result[name] = round(metric.corpus_score(hypotheses, refs).score, 2)
        result[f"{name}_signature"] = str(metric.get_signature())
    return result


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    return BLEU().corpus_score(hypotheses, [references]).score


def evaluate(translator, name: str, sources: list[str], references: list[str], options: SearchOptions,
             save_dir: Path | None = None, text: TextOptions = TextOptions()) -> dict:
    """Translate the test set `name` with `translator` (a `Translator`) under `options` and
    `text` (sentence splitting, protected spans), score it, and save the hypotheses and
    scores in `save_dir` (default: the model's `eval/`) as NAME.beamK[.PRECISION].hyp and
    .scores.json. Returns the scores, the settings and the hypotheses file."""
    hypotheses = translator.translate(sources, options, text)
    precision = translator.precision
    result = {"pair": translator.pair, "test_set": name, **score_translations(hypotheses, references),
              "beam": options.beam, "precision": precision, "split_sentences": text.split_sentences}
    out_dir = Path(save_dir) if save_dir is not None else translator.loaded.directory / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}.beam{options.beam}" + ("" if precision == "fp32" else f".{precision}")
    write_atomic(out_dir / f"{stem}.hyp", "".join(h + "\n" for h in hypotheses).encode("utf-8"))
    result["hypotheses_file"] = str(out_dir / f"{stem}.hyp")
    write_json(out_dir / f"{stem}.scores.json", result)
    return result
