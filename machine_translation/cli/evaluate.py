"""`mt evaluate`: translate a test set (a corpus split, or --src/--ref files) with a model and
score it, or score a hypothesis file (--hyp) without a model. Hypotheses and scores are
saved beside the model (or in --save-dir)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from machine_translation.cli.app import app, cli_errors
from machine_translation.cli.translate import (
    ENGINE_HELP, MODEL_SETTING, NORMALIZE_CASE_HELP, PRECISION_HELP, REPEAT_GUARD_HELP, WORKERS_HELP, load_translator,
)
from machine_translation.base.errors import DataError
from machine_translation.base.options import DEFAULT_PAIR, SearchOptions, TextOptions


@app.command()
@cli_errors
def evaluate(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory (default: models/<pair>)."),
    pair: Optional[str] = typer.Option(None, help="Language pair (default: the model's, or en-fr)."),
    split: str = typer.Option("test_2016_flickr", help="Split of the corpus to score on."),
    data: Optional[str] = typer.Option(None, help="Corpus: NAME, TSV path, or hf:NAME[:CONFIG] (default multi30k)."),
    data_dir: Optional[str] = typer.Option(None, envvar="MT_DATA_DIR", help="Where local corpora are."),
    src: Optional[Path] = typer.Option(None, help="Source file (with --ref) instead of a corpus split."),
    ref: Optional[Path] = typer.Option(None, help="Reference file."),
    hyp: Optional[Path] = typer.Option(None, help="Score this hypothesis file; no model is run."),
    beam: Optional[int] = typer.Option(None, min=1, help=f"Beam size; 1 is greedy "
                                       f"({MODEL_SETTING.format(SearchOptions.beam)})."),
    length_penalty: Optional[float] = typer.Option(None, help=MODEL_SETTING.format(SearchOptions.length_penalty)),
    batch_size: int = typer.Option(SearchOptions.batch_size, min=1),
    repeat_guard: Optional[bool] = typer.Option(None, "--repeat-guard/--no-repeat-guard", help=REPEAT_GUARD_HELP),
    normalize_case: Optional[bool] = typer.Option(None, "--normalize-case/--keep-case", help=NORMALIZE_CASE_HELP),
    save_dir: Optional[Path] = typer.Option(None, help="Where hypotheses and scores go (default: MODEL/eval)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    device: Optional[str] = typer.Option(None),
    threads: Optional[int] = typer.Option(None, min=1),
    workers: int = typer.Option(1, min=1, help=WORKERS_HELP),
    precision: Optional[str] = typer.Option(None, help=PRECISION_HELP),
    split_sentences: bool = typer.Option(True, "--split-sentences/--no-split-sentences", help="Split lines into sentences, as `mt translate` does "
                               "(off: each line one sentence for the model)."),
    engine: str = typer.Option("torch", help=ENGINE_HELP),
) -> None:
    """Translate a test set and score it with sacreBLEU (BLEU, chrF, TER), or score --hyp FILE."""
    from machine_translation.data.corpora import read_file_pair, read_lines
    from machine_translation.data.sources import parse_data_spec, read_split
    from machine_translation.inference.evaluate import evaluate as evaluate_test_set, score_translations

    if (src is None) != (ref is None) and hyp is None:
        raise DataError("--src and --ref go together: give both files")
    translator = None
    if hyp is None:
        translator = load_translator(model, pair, device, threads, workers, precision, engine)
        pair = pair or translator.pair
    pair = pair or DEFAULT_PAIR
    if ref is not None:
        sources, references = read_file_pair(src, ref) if src is not None else (None, read_lines(ref))
        name = ref.name
    else:
        sources, references = read_split(parse_data_spec(data, pair=pair), split, pair, data_dir)
        name = f"{split}.{pair}"
    if translator is None:
        result = {"pair": pair, "test_set": name, **score_translations(read_lines(hyp), references)}
    else:
        options = translator.defaults.updated(beam=beam, length_penalty=length_penalty, batch_size=batch_size,
                                              repeat_guard=repeat_guard, normalize_case=normalize_case)
        text = TextOptions(split_sentences=split_sentences)
        result = {**evaluate_test_set(translator, name, sources, references, options, save_dir, text), "pair": pair}
    if json_out:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    for metric in ("bleu", "chrf", "ter", "bleu_lc"):
        label = "BLEU (lowercased)" if metric == "bleu_lc" else metric.upper().replace("CHRF", "chrF")
        typer.echo(f"{label} = {result[metric]:.2f}   {result[metric + '_signature']}")
    if result.get("hypotheses_file"):
        typer.echo(f"hypotheses: {result['hypotheses_file']}")
