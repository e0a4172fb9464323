"""Where corpora come from: named corpora and their splits, local copies, the per-user
cache, downloads from the official source, TSV files, aligned file pairs, and Hugging Face
datasets (`hf:NAME[:CONFIG]`, through `datasets`).

Everything yields plain text pairs one at a time, so a corpus of millions of lines is never
held in memory; `read_*` collect the small splits (validation, test) into lists. Alignment
and UTF-8 are checked here; empty and over-long pairs are skipped and counted by the data layer.
"""
from __future__ import annotations

import atexit
import contextlib
import gzip
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Iterator
from itertools import zip_longest
from dataclasses import dataclass
from pathlib import Path

from machine_translation.base.errors import DataError
from machine_translation.base.files import write_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedCorpus:
    name: str
    url: str  # base URL of the official files; override with MT_<NAME>_URL (e.g. a mirror)
    splits: tuple[str, ...]
    languages: tuple[str, ...]
    file_pattern: str  # relative path of one split in one language

    def base_url(self) -> str:
        return os.environ.get(f"MT_{self.name.upper()}_URL", self.url).rstrip("/")


CORPORA = {
    "multi30k": NamedCorpus(
        "multi30k", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",
        ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr"),
        ("en", "fr", "de", "cs"), "{split}.{lang}.gz",
    ),
    "tinyshakespeare": NamedCorpus(
        "tinyshakespeare", "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare",
        ("train",), (), "input.txt",
    ),
}
DEFAULT_CORPUS = {"en-fr": "multi30k", "fr-en": "multi30k", "en-de": "multi30k", "de-en": "multi30k"}


def data_dirs(data_dir: str | Path | None) -> list[Path]:
    """Where local copies are looked for, in order: --data-dir, MT_DATA_DIR, the user cache."""
    for d in (data_dir, os.environ.get("MT_DATA_DIR")):
        if d and Path(d).exists() and not Path(d).is_dir():
            name = "MT_DATA_DIR" if str(d) == os.environ.get("MT_DATA_DIR") else "--data-dir"  # (typer reads one as the other)
            raise DataError(f"{name} {d} is a file, not a folder: point it at the folder that holds the corpora "
                            "(such as multi30k/)")
    dirs = [Path(d) for d in (data_dir, os.environ.get("MT_DATA_DIR")) if d]
    return dirs + [cache_dir()]


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "mt" / "data"


def corpus_file(corpus: NamedCorpus, split: str, lang: str | None, data_dir: str | Path | None) -> Path:
    """The local path of one file of a named corpus, downloading it into the cache if needed."""
    if split not in corpus.splits:
        raise DataError(f"{corpus.name} has no split {split!r}: choose one of {', '.join(corpus.splits)}")
    if lang is not None and lang not in corpus.languages:
        raise DataError(f"{corpus.name} has no language {lang!r}: it has {', '.join(corpus.languages)}")
    relative = Path(corpus.name) / corpus.file_pattern.format(split=split, lang=lang)
    for d in data_dirs(data_dir):
        if (d / relative).is_file():
            return d / relative
    return download(corpus, relative, cache_dir() / relative, searched=data_dirs(data_dir))


def download(corpus: NamedCorpus, relative: Path, target: Path, searched: list[Path]) -> Path:
    url = f"{corpus.base_url()}/{relative.relative_to(corpus.name).as_posix()}"
    logger.info("downloading %s -> %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
    except urllib.error.HTTPError as e:
        raise DataError(f"{corpus.name} file {relative.name} is not available at {url} (HTTP {e.code})") from None
    except (urllib.error.URLError, OSError) as e:
        where = " or ".join(str(d / corpus.name) for d in searched)
        raise DataError(
            f"{relative.name} of {corpus.name} is not on disk and could not be downloaded from {url} "
            f"({getattr(e, 'reason', e)}): put the file in {where}, or set MT_DATA_DIR / --data-dir"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    return target


def check_readable(path: Path) -> None:
    """A file, a named pipe or a process substitution (`<(...)`) may be read; say what else it is."""
    if path.is_dir():
        raise DataError(f"{path} is a directory: name a file")
    if not path.exists():
        raise DataError(f"file not found: {path}")


def open_text(path: Path):
    """Plain or gzipped file as binary lines (decoding is checked per line by the reader)."""
    check_readable(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def rereadable(path: Path) -> Path:
    """A path that can be read more than once: a training corpus is streamed several times, so
    a named pipe or a process substitution is copied once into a temporary file (removed when
    the process ends)."""
    path = Path(path)
    check_readable(path)
    if path.is_file():
        return path
    fd, copy = tempfile.mkstemp(prefix="mt-corpus-", suffix=path.suffix)
    atexit.register(lambda: Path(copy).unlink(missing_ok=True))
    with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
        shutil.copyfileobj(source, out)
    logger.info("%s is a pipe: read once into %s", path, copy)
    return Path(copy)


def decode_line(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} line {number}: not valid UTF-8 (byte {e.start}); convert the file to UTF-8") from None


def iter_lines(path: Path) -> Iterator[str]:
    """The decoded lines of a plain or gzipped UTF-8 file, one at a time (large files stream)."""
    with open_text(path) as f:
        try:
            for i, raw in enumerate(f, 1):
                yield decode_line(raw, path, i)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise DataError(f"{path} is not a readable gzip file ({e})") from None


def read_lines(path: Path) -> list[str]:
    return list(iter_lines(path))


def count_lines(path: Path) -> int:
    with open_text(path) as f:
        try:
            return sum(1 for _ in f)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise DataError(f"{path} is not a readable gzip file ({e})") from None


def iter_file_pair(src_path: Path, tgt_path: Path) -> Iterator[tuple[str, str]]:
    """Aligned lines of two files; files of different lengths are an error naming both counts."""
    src, tgt = iter_lines(src_path), iter_lines(tgt_path)
    for n, (s, t) in enumerate(zip_longest(src, tgt), 1):
        if s is None or t is None:  # one file ended: count the rest of the other
            rest = 1 + sum(1 for _ in (src if t is None else tgt))
            counts = (n - 1 + rest, n - 1) if t is None else (n - 1, n - 1 + rest)
            raise DataError(f"{src_path} has {counts[0]} lines but {tgt_path} has {counts[1]}: "
                            "the files are not aligned")
        yield s, t


def read_file_pair(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    return unzip(iter_file_pair(src_path, tgt_path))


def iter_tsv(path: Path) -> Iterator[tuple[str, str]]:
    for i, line in enumerate(iter_lines(path), 1):
        cols = line.split("\t") if line.strip() else ["", ""]  # empty pairs are counted and skipped later
        if len(cols) != 2:
            raise DataError(f"{path} line {i}: expected 2 tab-separated columns (source, target), found {len(cols)}")
        yield cols[0], cols[1]


def unzip(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    src, tgt = [], []
    for s, t in pairs:
        src.append(s)
        tgt.append(t)
    return src, tgt


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (HF_ENDPOINT) accepts a connection; False at once in offline mode."""
    import socket
    import urllib.parse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline(offline: bool):
    """`datasets` and `huggingface_hub` in offline mode for the block (they read the setting
    from their modules at each call), then as they were."""
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    if offline:
        datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def load_hf(name: str, config: str | None, split: str, column: str):
    """One split of a Hugging Face dataset (hub name or local folder), checked for `column`.
    The dataset is memory-mapped Arrow in the `datasets` cache, not a Python list."""
    import datasets

    offline = not Path(name).is_dir() and not hub_reachable()
    try:  # (offline: no retries against a hub that cannot answer; the local cache only, at once)
        with hub_offline(offline):
            ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types (offline, missing split, bad name)
        where = " (the hub cannot be reached, and it is not in the local cache)" if offline else ""
        raise DataError(f"could not load Hugging Face dataset {name!r} split {split!r}{where}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if column not in ds.column_names:
        raise DataError(f"dataset {name!r} has no {column!r} column (columns: {', '.join(ds.column_names)})")
    return ds.select_columns([column])


def iter_hf(name: str, config: str | None, split: str, src_lang: str, tgt_lang: str,
            chunk: int = 10_000) -> Iterator[tuple[str, str]]:
    """A Hugging Face dataset in the standard `translation` schema ({"translation": {"en": ..., "fr": ...}})."""
    hf_split = {"val": "validation", "dev": "validation"}.get(split, split)
    ds = load_hf(name, config, hf_split, "translation")
    for rows in ds.iter(batch_size=chunk):
        try:
            yield from ((row[src_lang], row[tgt_lang]) for row in rows["translation"])
        except KeyError as e:
            raise DataError(f"dataset {name!r} has no language {e} in its translation pairs") from None


def iter_hf_text(name: str, config: str | None, split: str = "train", chunk: int = 10_000) -> Iterator[str]:
    """The rows of a Hugging Face dataset's `text` column, one at a time."""
    for rows in load_hf(name, config, split, "text").iter(batch_size=chunk):
        yield from rows["text"]
