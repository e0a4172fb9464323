"""`mt export --to argos`: an mt translation model as an Argos Translate package, the
`.argosmodel` file Argos Translate and LibreTranslate install (`argostranslate.package.
install_from_path`, or unzipped into `ARGOS_PACKAGES_DIR`).

The file is a zip of one folder, `translate-SRC_TGT-1_0/`, holding what Argos reads:
`metadata.json` (codes, names, package version, the Argos version it was made for),
`model/` (the CTranslate2 model of `interchange.ct2`, told to append `<eos>` to each source
itself, since Argos passes the pieces alone), `sentencepiece.model`, and `spacy/`, a blank
spaCy pipeline of the source language to which Argos adds spaCy's rule-based sentencizer
when run with `ARGOS_CHUNK_TYPE=SPACY`: sentences are split without a download (Argos's
default splitter, MiniSBD, fetches a model on first use). Also `README.md` and mt's
`mt_export.json` (the source, the weights' digest, what is kept and what is not).

Argos searches with its own settings: beam `ARGOS_BEAM_SIZE` (4), length penalty 0.2, up to
256 tokens, unknown words replaced by source words; the sinusoid table is extended to 256
positions so that a long sentence is not an error there (rows past mt's `max_positions`
were never trained). Written whole or not at all (`files.atomic_path`); `--overwrite`
replaces only a package mt wrote.
"""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from machine_translation.base.errors import ConfigError
from machine_translation.base.files import atomic_path, write_atomic, write_json
from machine_translation.base.languages import language_name
from machine_translation.interchange import ct2
from machine_translation.model.outputs import EXPORT_MARKER
from mt_tokenizers import SentencePieceTokenizer

INSTALL = "pip install 'mt[argos]'"
SUFFIX = ".argosmodel"
PACKAGE_VERSION = "1.0"
ARGOS_VERSION = "1.11.0"  # the version it is tested with; a package's own spaCy splitter needs 1.10 or later
ARGOS_MAX_TOKENS = 256  # CTranslate2's max_decoding_length, which Argos leaves at its default


def check_out_file(out: Path, overwrite: bool) -> None:
    """An `.argosmodel` file that is new, or one mt wrote and `--overwrite` replaces."""
    if out.suffix != SUFFIX:
        raise ConfigError(f"--out {out}: an Argos package is a file named *{SUFFIX}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory: name a new {SUFFIX} file")
    if not out.exists():
        return
    if not overwrite:
        raise ConfigError(f"--out {out} exists: choose a new file (or --overwrite to replace a package mt wrote)")
    if not written_by_mt(out):
        raise ConfigError(f"--out {out} is not a package mt wrote: --overwrite replaces only those; choose a new file")


def written_by_mt(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.count("/") == 1 and name.endswith("/" + EXPORT_MARKER) for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_requirements():
    """spaCy (for the package's sentence splitter) and CTranslate2, or one line with the install command."""
    try:
        import spacy
    except ImportError:
        raise ConfigError(f"--to argos needs spaCy for the package's sentence splitter: {INSTALL}") from None
    try:
        ct2.load_ctranslate2()
    except ConfigError:
        raise ConfigError(f"--to argos needs the ctranslate2 package: {INSTALL}") from None
    return spacy


def languages(loaded, model_dir: Path) -> tuple[str, str]:
    if not loaded.pair or "-" not in loaded.pair:
        raise ConfigError(f"{model_dir / 'config.json'}: no language pair recorded ('pair'): an Argos package names "
                          "its languages; set \"pair\": \"SRC-TGT\" there")
    source, target = loaded.pair.split("-", 1)
    return source, target


def write_argos(loaded, spacy, model_dir: Path, precision: str, out: Path, record) -> list[str]:
    """Write the package (see the module's docstring); what it keeps. The caller has checked
    `out` (`check_out_file`) and loaded `spacy` (`load_requirements`), before the model;
    `record(directory, kept)` writes mt's `mt_export.json`."""
    tok = loaded.tgt_tokenizer
    if not (isinstance(tok, SentencePieceTokenizer) and loaded.src_tokenizer is tok):
        raise ConfigError(f"{model_dir}: an Argos package carries one SentencePiece model for both sides; this model "
                          "has its own tokenizers (an imported model: use its original Argos package or --to "
                          "ctranslate2)")
    source, target = languages(loaded, model_dir)
    kept = [f"the weights ({precision})", "the tokenizer's pieces and ids", "the position table, extended to "
            f"{ARGOS_MAX_TOKENS} positions", "<eos> appended to each source (by CTranslate2)"]
    name = f"translate-{source}_{target}-{PACKAGE_VERSION.replace('.', '_')}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mt-argos-") as tmp:  # (zipped from here into `out`, atomically)
        folder = Path(tmp) / name
        (folder / "model").mkdir(parents=True)
        ct2.convert(loaded, folder / "model", precision, source_eos=True, positions=ARGOS_MAX_TOKENS)
        write_atomic(folder / "sentencepiece.model", tok.model_proto)
        splitter(spacy, source).to_disk(folder / "spacy")
        metadata = {"package_version": PACKAGE_VERSION, "argos_version": ARGOS_VERSION, "from_code": source,
                    "from_name": language_name(source), "to_code": target, "to_name": language_name(target),
                    "type": "translate", "links": []}
        write_json(folder / "metadata.json", metadata)
        write_atomic(folder / "README.md", readme(model_dir, source, target).encode())
        record(folder, kept)
        with atomic_path(out) as path, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for file in sorted(folder.rglob("*")):
                z.write(file, file.relative_to(tmp).as_posix())
    return kept


def splitter(spacy, language: str):
    """A blank spaCy pipeline of `language` (its tokenizer's rules; the multi-language one if
    spaCy has none), saved without components: Argos adds the sentencizer when it loads it."""
    try:
        return spacy.blank(language)
    except ImportError:
        return spacy.blank("xx")


def readme(model_dir: Path, source: str, target: str) -> str:
    return (f"# {language_name(source)} to {language_name(target)}\n\n"
            f"Exported by `mt export --to argos` from the mt model `{model_dir.name}`.\n\n"
            "Split sentences with the package's own spaCy pipeline, without a download: set "
            "`ARGOS_CHUNK_TYPE=SPACY` (Argos's default splitter, MiniSBD, downloads a model on first use).\n\n"
            "What mt does that Argos does not (see mt_export.json): the repetition guard and case handling, "
            "mt's sentence splitter, protected spans and tag placement, and its length limit.\n")
