"""Scoring with sacreBLEU: BLEU, chrF and TER on detokenised, cased text, with signatures.

Only scoring: reading test sets and running a model is the `mt evaluate` command's job
(`cli/evaluate.py`), and validation during training is the task's (`tasks.py`)."""
from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF, TER

from machine_translation.base.errors import DataError


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
