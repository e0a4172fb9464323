"""The `mt` command line (typer). Parses flags at the edge, calls the library, prints results
to stdout and progress, logs and one-line errors to stderr. The only module that prints
errors or chooses exit codes: 2 for a user error, 130 for an interruption."""
from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from machine_translation import __version__
from machine_translation.errors import ConfigError, MTError, ModelDirError
from mt_tokenizers import TokenizerError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="mt: train, run and score Transformer translation and language models.")
logger = logging.getLogger("mt")

EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130
DEFAULT_MODELS = Path("models")
WORKERS_HELP = ("CPU: share the batches among N processes of one thread each (e.g. one per core); "
                "faster than N threads for small models on large inputs.")


def cli_errors(fn):
    """User errors become one line on stderr and a non-zero exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from machine_translation.training import Interrupted
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
        try:
            return fn(*args, **kwargs)
        except (MTError, TokenizerError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except Interrupted as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mt {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """mt: an encoder-decoder Transformer toolkit."""


def model_dir_for(model: Optional[Path], pair: Optional[str]) -> Path:
    return model if model is not None else DEFAULT_MODELS / (pair or "en-fr")


def load_translator(model: Optional[Path], pair: Optional[str], device: Optional[str], threads: Optional[int],
                    workers: int = 1):
    from machine_translation.checkpoint import is_model_dir, read_config
    from machine_translation.runs import set_threads
    from machine_translation.translate import Translator, pick_device

    directory = model_dir_for(model, pair)
    if not is_model_dir(directory):
        if model is None:
            p = pair or "en-fr"
            raise ModelDirError(f"no trained {p} model in {directory}: run `mt train --pair {p}` first, "
                                "or pass --model DIR")
        raise ModelDirError(f"no model in {directory}: pass the directory `mt train --out` wrote")
    config, data = read_config(directory)
    if config.task != "mt":
        raise ModelDirError(f"{directory} holds a language model: use `mt generate --model {directory}`")
    if pair and data.get("pair") and data["pair"] != pair:
        raise ModelDirError(f"{directory} translates {data['pair']}, not {pair}: "
                            f"train one with `mt train --pair {pair}` or pass --model DIR")
    set_threads(pick_device(device), threads)
    return Translator.from_pretrained(directory, device, workers)


def search_options(beam: int, n_best: int, length_penalty: float, max_len_a: float, max_len_b: int,
                   batch_size: int):
    from machine_translation.translate import SearchOptions
    return SearchOptions(beam=beam, length_penalty=length_penalty, max_len_a=max_len_a, max_len_b=max_len_b,
                         n_best=n_best, batch_size=batch_size)


def read_input_lines(text: list[str], input_file: Optional[Path]) -> list[str]:
    from machine_translation.corpora import read_lines
    if input_file is not None and text:
        raise ConfigError("give the text as arguments or with --input, not both")
    if input_file is not None:
        return read_lines(input_file) if str(input_file) != "-" else _stdin_lines()
    if text == ["-"] or not text:
        if not text and sys.stdin.isatty():
            raise ConfigError("nothing to translate: pass text, `-` for stdin, or --input FILE")
        return _stdin_lines()
    return list(text)


def _stdin_lines() -> list[str]:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ConfigError(f"standard input is not valid UTF-8 (byte {e.start})") from None


def write_output(lines: list[str], output: Optional[Path]) -> None:
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from mt_tokenizers.base import write_atomic
        write_atomic(output, text.encode("utf-8"))


@app.command()
@cli_errors
def translate(
    text: list[str] = typer.Argument(None, help="Sentences to translate; `-` reads stdin (one per line)."),
    input_file: Optional[Path] = typer.Option(None, "--input", "-i", help="Read sentences from FILE (`-`: stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write translations to FILE."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory (default: models/<pair>)."),
    pair: Optional[str] = typer.Option(None, help="Language pair, e.g. en-fr (default: the model's, or en-fr)."),
    beam: int = typer.Option(4, min=1, help="Beam size; 1 is greedy search."),
    n_best: int = typer.Option(1, "--n-best", min=1, help="Print the K best hypotheses with their scores."),
    length_penalty: float = typer.Option(1.0, help="Scores are log-prob / (length+1) ** this."),
    max_len_a: float = typer.Option(1.5, help="Output length limit: a * source tokens + b."),
    max_len_b: int = typer.Option(10, help="Output length limit: a * source tokens + b."),
    batch_size: int = typer.Option(64, min=1, help="Sentences per batch."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, mps (default: auto-detected)."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads (default: one per core)."),
    workers: int = typer.Option(1, min=1, help=WORKERS_HELP),
) -> None:
    """Translate sentences: one line out per line in, in the same order."""
    lines = read_input_lines(text or [], input_file)
    opts = search_options(beam, n_best, length_penalty, max_len_a, max_len_b, batch_size)
    translator = load_translator(model, pair, device, threads, workers)
    if n_best == 1:
        write_output(translator.translate(lines, opts), output)
        return
    out = []
    for i, hyps in enumerate(translator.search(lines, opts)):
        for h in hyps:
            out.append(f"{i}\t{h.score:.4f}\t{translator.loaded.tgt_tokenizer.decode(h.tokens)}")
    write_output(out, output)


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
    beam: int = typer.Option(4, min=1, help="Beam size; 1 is greedy."),
    length_penalty: float = typer.Option(1.0),
    batch_size: int = typer.Option(64, min=1),
    save_dir: Optional[Path] = typer.Option(None, help="Where hypotheses and scores go (default: MODEL/eval)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    device: Optional[str] = typer.Option(None),
    threads: Optional[int] = typer.Option(None, min=1),
    workers: int = typer.Option(1, min=1, help=WORKERS_HELP),
) -> None:
    """Translate a test set and score it with sacreBLEU (BLEU, chrF, TER), or score --hyp FILE."""
    from machine_translation.evaluate import evaluate_command
    result = evaluate_command(model=model_dir_for(model, pair) if hyp is None else model, pair=pair, split=split,
                              data=data, data_dir=data_dir, src=src, ref=ref, hyp=hyp,
                              options=search_options(beam, 1, length_penalty, 1.5, 10, batch_size),
                              save_dir=save_dir, load=lambda: load_translator(model, pair, device, threads, workers))
    if json_out:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    for name in ("bleu", "chrf", "ter", "bleu_lc"):
        label = "BLEU (lowercased)" if name == "bleu_lc" else name.upper().replace("CHRF", "chrF")
        typer.echo(f"{label} = {result[name]:.2f}   {result[name + '_signature']}")
    if result.get("hypotheses_file"):
        typer.echo(f"hypotheses: {result['hypotheses_file']}")


@app.command("average-checkpoints")
@cli_errors
def average_checkpoints(
    model: Path = typer.Option(..., "--model", "-m", help="Run directory whose checkpoints to average."),
    last: int = typer.Option(5, min=1, help="Average the last K checkpoints."),
    out: Path = typer.Option(..., help="New model directory for the averaged weights."),
) -> None:
    """Average the weights of the last K training checkpoints into a new model directory."""
    from machine_translation.checkpoint import average_checkpoints as average
    chosen = average(model, last, out)
    typer.echo(f"averaged {len(chosen)} checkpoints ({chosen[0].name} .. {chosen[-1].name}) into {out}")


from machine_translation.cli_generate import generate  # noqa: E402  (own files, for length)
from machine_translation.cli_train import train  # noqa: E402

app.command()(cli_errors(train))
app.command()(cli_errors(generate))


def main() -> None:
    app()
