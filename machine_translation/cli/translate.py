"""`mt translate`, and what `mt evaluate` shares with it: finding and loading the model
directory, the search flags (each defaults to the model's own setting), reading input lines
and writing output files."""
from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from machine_translation.cli.app import app, cli_errors
from machine_translation.base.errors import ConfigError, ModelDirError
from machine_translation.base.options import DEFAULT_MODELS, DEFAULT_PAIR, SearchOptions, TextOptions

MODEL_SETTING = "default: the model's generation_config.json, else {}"
REPEAT_GUARD_HELP = ("Never emit a piece 4 times or a character 5 times in a row unless the source does "
                     "(default: the model's generation_config.json; on for models trained by this version).")
NORMALIZE_CASE_HELP = ("Translate ALL-CAPS and Title-Case sentences in sentence case, ALL-CAPS ones back in capitals "
                       "(default: the model's generation_config.json; on for models trained by this version).")
PRECISION_HELP = ("fp32, bf16 (fast on CPUs with AVX-512 BF16 or AMX) or int8 (CPU: dynamic quantization of "
                  "the linear layers); default: the model's own, fp32 unless made by `mt quantize`.")
WORKERS_HELP = ("CPU: share the batches among N processes of one thread each (e.g. one per core); "
                "faster than N threads for small models on large inputs.")


def model_dir_for(model: Optional[Path], pair: Optional[str]) -> Path:
    return model if model is not None else DEFAULT_MODELS / (pair or DEFAULT_PAIR)


ENGINE_HELP = ("torch: mt's own search; ctranslate2: CTranslate2's, on the model's exported copy (MODEL/ctranslate2 "
               "if made from these weights, else one exported once into ~/.cache/mt; pip install 'mt[ctranslate2]').")


def load_translator(model: Optional[Path], pair: Optional[str], device: Optional[str], threads: Optional[int],
                    workers: int = 1, precision: Optional[str] = None, engine: str = "torch"):
    """The Translator of --model (or models/<pair>), with a hint to train one when it is missing;
    `engine` "ctranslate2": searching with CTranslate2 on the model's exported copy."""
    from machine_translation.model.directory import is_model_dir
    from machine_translation.base.runtime import prepare
    from machine_translation.inference.translate import Translator

    directory = model_dir_for(model, pair)
    if not is_model_dir(directory):
        if model is None:
            p = pair or DEFAULT_PAIR
            raise ModelDirError(f"no trained {p} model in {directory}: run `mt train --pair {p}` first, "
                                "or pass --model DIR")
        raise ModelDirError(f"no model in {directory}: pass the directory `mt train --out` wrote")
    from machine_translation.inference.engine import ENGINES
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine}: use {' or '.join(ENGINES)}")
    copy = None
    if engine == "ctranslate2":
        from machine_translation.interchange.export import ctranslate2_copy
        copy = ctranslate2_copy(directory, precision)
    prepare(device, threads)
    return Translator.from_pretrained(directory, device, workers, pair=pair, precision=precision, ctranslate2=copy)


def read_terms(path: Optional[Path]) -> tuple[str, ...]:
    """--do-not-translate FILE: its non-empty lines, each a term passed through untouched."""
    if path is None:
        return ()
    from machine_translation.data.corpora import read_lines
    return tuple(line.strip() for line in read_lines(path) if line.strip())


def read_input_lines(text: list[str], input_file: Optional[Path]) -> list[str]:
    from machine_translation.data.corpora import read_lines
    if input_file is not None and text:
        raise ConfigError("give the text as arguments or with --input, not both")
    if input_file is not None:
        return read_lines(input_file) if str(input_file) != "-" else _stdin_lines()
    if text == ["-"] or not text:
        if not text and sys.stdin.isatty():
            raise ConfigError("nothing to translate: pass text, `-` for stdin, or --input FILE")
        return _stdin_lines()
    for i, sentence in enumerate(text, 1):
        try:
            sentence.encode("utf-8")
        except UnicodeEncodeError:  # bytes the terminal passed that are not UTF-8 (kept by Python as surrogates)
            raise ConfigError(f"argument {i} is not valid UTF-8 text: set your terminal to UTF-8 or use --input "
                              "FILE") from None
    return list(text)


def _stdin_lines() -> list[str]:
    """Standard input split like a file: on \\n only (a \\r\\n ending is removed), so a line
    holding \\f, \\r or U+2028 stays one line and the output stays aligned with the input."""
    from machine_translation.data.corpora import decode_line
    data = sys.stdin.buffer.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last line
    return [decode_line(raw, Path("standard input"), i) for i, raw in enumerate(lines, 1)]


def write_output(lines: list[str], output: Optional[Path]) -> None:
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from machine_translation.base.files import write_atomic
        if output.is_dir():
            raise ConfigError(f"--output {output} is a directory: name a file")
        write_atomic(output, text.encode("utf-8"))


@app.command()
@cli_errors
def translate(
    text: list[str] = typer.Argument(None, help="Sentences to translate; `-` reads stdin (one per line)."),
    input_file: Optional[Path] = typer.Option(None, "--input", "-i", help="Read sentences from FILE (`-`: stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write translations to FILE."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory (default: models/<pair>)."),
    pair: Optional[str] = typer.Option(None, help="Language pair, e.g. en-fr (default: the model's, or en-fr)."),
    beam: Optional[int] = typer.Option(None, min=1, help="Beam size; 1 is greedy search "
                                       f"({MODEL_SETTING.format(SearchOptions.beam)})."),
    n_best: int = typer.Option(SearchOptions.n_best, "--n-best", min=1,
                               help="Print the K best hypotheses with their scores."),
    length_penalty: Optional[float] = typer.Option(None, help="Scores are log-prob / (length+1) ** this "
                                                   f"({MODEL_SETTING.format(SearchOptions.length_penalty)})."),
    max_len_a: Optional[float] = typer.Option(None, help="Output length limit: a * source tokens + b "
                                              f"({MODEL_SETTING.format(SearchOptions.max_len_a)})."),
    max_len_b: Optional[int] = typer.Option(None, help="Output length limit: a * source tokens + b "
                                            f"({MODEL_SETTING.format(SearchOptions.max_len_b)})."),
    batch_size: int = typer.Option(SearchOptions.batch_size, min=1, help="Sentences per batch."),
    repeat_guard: Optional[bool] = typer.Option(None, "--repeat-guard/--no-repeat-guard", help=REPEAT_GUARD_HELP),
    normalize_case: Optional[bool] = typer.Option(None, "--normalize-case/--keep-case", help=NORMALIZE_CASE_HELP),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, mps (default: auto-detected)."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads (default: one per core)."),
    workers: int = typer.Option(1, min=1, help=WORKERS_HELP),
    precision: Optional[str] = typer.Option(None, help=PRECISION_HELP),
    attention: Optional[Path] = typer.Option(None, help="Draw the cross-attention of the translation (one "
                                             "sentence) as a heatmap into this PNG file."),
    split_sentences: bool = typer.Option(True, "--split-sentences/--no-split-sentences", help="Split each line into sentences for the model and "
                               "join their translations with the line's own spacing (off: a line is one sentence)."),
    do_not_translate: Optional[Path] = typer.Option(None, "--do-not-translate", help="A file of terms (one a line) "
                                                    "to pass through untouched, like {{placeholders}}, %s, URLs "
                                                    "and e-mail addresses, which always are."),
    text_format: str = typer.Option("text", "--format", help="html: each text (or the --input file, or stdin) is "
                                    "HTML: its blocks are translated and its tags kept. Files named .html, .srt, "
                                    ".vtt or .docx are read as such whatever this says."),
    paragraphs: bool = typer.Option(False, "--paragraphs", help="Plain text of blank-line-separated paragraphs "
                                    "that span lines: each paragraph translated whole and wrapped again."),
    engine: str = typer.Option("torch", help=ENGINE_HELP),
) -> None:
    """Translate text: one line out per line in, in the same order; a line may hold several
    sentences. Documents (--input FILE: .html, .srt, .vtt, .docx, and .txt with --paragraphs)
    come out with their structure: tags, cues and timings, paragraphs and runs."""
    terms = read_terms(do_not_translate)
    options = TextOptions(split_sentences=split_sentences, terms=terms, format=text_format)
    name = document_name(input_file, text or [], text_format, paragraphs)
    if name is not None and (n_best != 1 or attention is not None):
        raise ConfigError(f"--n-best and --attention translate lines, not documents: leave them out for {name}")
    lines = read_input_lines(text or [], input_file) if name is None else []
    if attention is not None and (len(lines) != 1 or not lines[0].strip()):
        raise ConfigError(f"--attention draws one sentence, and {len(lines)} lines were given: translate one "
                          "non-empty sentence with it")
    if attention is not None and attention.is_dir():
        raise ConfigError(f"--attention {attention} is a directory: name a PNG file")
    translator = load_translator(model, pair, device, threads, workers, precision, engine)
    opts = translator.defaults.updated(beam=beam, length_penalty=length_penalty, max_len_a=max_len_a,
                                       max_len_b=max_len_b, n_best=n_best, batch_size=batch_size,
                                       repeat_guard=repeat_guard, normalize_case=normalize_case)
    if name is not None:
        translate_document(translator, opts, options, name, input_file, output, paragraphs)
        return
    warn_if_another_language(lines, translator.source_language, translator.pair)
    with progress_bar(len(lines)) as progress:
        if n_best == 1 and attention is None:
            write_output(translator.translate(lines, opts, options, progress), output)
            return
        results = translator.translations(lines, opts, progress)  # n-best lists and attention: of whole lines
    if attention is not None:
        from machine_translation.training.plot import plot_attention
        plot_attention(translator.alignment(results[0][0]), attention)
    if n_best == 1:
        write_output([n_best_list[0].text for n_best_list in results], output)
        return
    write_output([f"{i}\t{t.score:.4f}\t{t.text}" for i, n_best_list in enumerate(results) for t in n_best_list],
                 output)


# Document types people will try that mt does not read: named in one line, not read as lines.
UNSUPPORTED = {".pdf", ".odt", ".odp", ".ods", ".epub", ".pptx", ".ppt", ".doc", ".rtf", ".xlsx", ".xls"}


def document_name(input_file: Optional[Path], text: list[str], text_format: str, paragraphs: bool) -> Optional[str]:
    """The name a document is read by (its extension chooses the reader), or None for lines:
    an --input of a document type, or stdin/--input read whole as HTML or paragraphs."""
    from machine_translation.text import documents

    suffix = input_file.suffix.lower() if input_file is not None and str(input_file) != "-" else ""
    if suffix in UNSUPPORTED:
        raise ConfigError(f"--input {input_file}: {suffix} documents are not read by mt: use one of "
                          f"{', '.join(documents.supported())} (or plain lines)")
    if suffix in documents.supported() and (suffix != ".txt" or paragraphs):
        if paragraphs and suffix != ".txt":
            raise ConfigError(f"--paragraphs is for plain text, and --input {input_file} is {suffix}: leave it out")
        return str(input_file)
    if paragraphs and text:
        raise ConfigError("--paragraphs reads a file or stdin whole: give --input FILE or `-`, not text")
    if paragraphs and text_format == "html":
        raise ConfigError("--paragraphs is for plain text: leave out --format html")
    if text or not (paragraphs or text_format == "html"):
        return None  # lines (--format html with text arguments: each one a page)
    base = "standard input" if not suffix and (input_file is None or str(input_file) == "-") else str(input_file)
    wanted = ".txt" if paragraphs else ".html"  # the reader of a file read whole
    return base if base.lower().endswith(wanted) else base + wanted


def translate_document(translator, opts: SearchOptions, options: TextOptions, name: str,
                       input_file: Optional[Path], output: Optional[Path], paragraphs: bool) -> None:
    """Read the document, translate its texts in one batch, write it back with its structure."""
    from dataclasses import replace

    from machine_translation.base.files import write_atomic
    from machine_translation.text import documents

    if output is not None and input_file is not None and output.exists() and output.resolve() == input_file.resolve():
        raise ConfigError(f"--output {output} is the --input file: write the translation to another file")
    if output is not None and output.is_dir():
        raise ConfigError(f"--output {output} is a directory: name a file")
    if name.endswith(".docx") and output is None:
        raise ConfigError(f"{name} translates into a .docx file: give --output FILE")
    data = sys.stdin.buffer.read() if input_file is None or str(input_file) == "-" else read_bytes(input_file)
    document = documents.load(name, data, paragraphs)  # (refused before translating anything)
    with progress_bar(len(document.texts)) as progress:
        translated = translator.translate(document.texts, opts, replace(options, format=document.format), progress)
    if output is None:
        sys.stdout.buffer.write(document.build(translated))
        sys.stdout.flush()
    else:
        write_atomic(output, document.build(translated))


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"--input {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--input {path} is a directory: name a file") from None


PROGRESS_FROM = 200  # lines: fewer are done before a bar would help
DETECT_SAMPLE, DETECT_LENGTH, DETECT_CONFIDENCE = 200, 20, 0.9


@contextlib.contextmanager
def progress_bar(lines: int):
    """A progress bar on stderr (sentences done and sentences/s) for inputs of PROGRESS_FROM
    lines or more; yields the callback the Translator calls (None: no bar)."""
    if lines < PROGRESS_FROM:
        yield None
        return
    from tqdm import tqdm
    with tqdm(desc=f"{lines} lines", unit=" sentences", file=sys.stderr, dynamic_ncols=True,
              mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
        yield bar.update


def warn_if_another_language(lines: list[str], source: str, pair: Optional[str]) -> None:
    """One warning when most of the (first 200) lines of 20 characters or more are detected,
    with confidence >= 0.9, as a language other than the model's source."""
    from machine_translation.text.detect import detect

    long_lines = [line for line in lines if len(line.strip()) >= DETECT_LENGTH][:DETECT_SAMPLE]
    guesses = [detect(line)[0] for line in long_lines]
    others = Counter(g.language for g in guesses if g.language != source and g.confidence >= DETECT_CONFIDENCE)
    if others and sum(others.values()) * 2 > len(long_lines):
        language, _ = others.most_common(1)[0]
        logging.getLogger(__name__).warning(
            "most lines look like %s, not %s: this model translates %s; check --model (or --pair)", language,
            source, pair or source)
