"""Scoring with sacreBLEU: BLEU, chrF and TER on detokenised, cased text, with signatures."""
from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF, TER

from machine_translation.errors import DataError


def score_translations(hypotheses: list[str], references: list[str], lowercase_bleu: bool = True) -> dict:
    """Corpus scores and their sacreBLEU signatures. `bleu_lc` is lowercased BLEU (the form papers report)."""
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must align line by line")
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


def evaluate_command(model, pair, split, data, data_dir, src, ref, hyp, options, save_dir, load) -> dict:
    """`mt evaluate`: references from --ref or a corpus split; hypotheses from --hyp or the model."""
    import json
    from pathlib import Path

    from machine_translation.corpora import read_file_pair, read_lines
    from machine_translation.data import parse_data_spec, read_split
    from mt_tokenizers.base import write_atomic

    if (src is None) != (ref is None) and hyp is None:
        raise DataError("--src and --ref go together: give both files")
    translator = None
    if hyp is None:
        translator = load()
        pair = pair or translator.pair or "en-fr"
    pair = pair or "en-fr"
    if ref is not None:
        sources, references = (read_file_pair(src, ref) if src is not None else (None, read_lines(ref)))
        name = Path(ref).name
    else:
        sources, references = read_split(parse_data_spec(data, pair=pair), split, pair, data_dir)
        name = f"{split}.{pair}"
    if hyp is not None:
        hypotheses = read_lines(hyp)
    else:
        hypotheses = translator.translate(sources, options)
    result = {"pair": pair, "test_set": name, **score_translations(hypotheses, references)}
    if hyp is None:
        result["beam"] = options.beam
        out_dir = Path(save_dir) if save_dir else Path(model) / "eval"
        out_dir.mkdir(parents=True, exist_ok=True)
        hyp_file = out_dir / f"{name}.beam{options.beam}.hyp"
        write_atomic(hyp_file, "".join(h + "\n" for h in hypotheses).encode("utf-8"))
        result["hypotheses_file"] = str(hyp_file)
        write_atomic(out_dir / f"{name}.beam{options.beam}.scores.json",
                     (json.dumps(result, indent=2, ensure_ascii=False) + "\n").encode())
    return result
