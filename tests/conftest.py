"""Shared fixtures and helpers: tiny CPU models (D=32, 2 layers), the shared data folder,
slices of Multi30k written to files, and reading a run's training log, and `mt serve` in a process."""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from machine_translation.model.transformer import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]
# The data folder beside the repository, unless MT_DATA_DIR points elsewhere (as for the CLI).
SHARED_DATA = Path(os.environ.get("MT_DATA_DIR") or REPO.parent / "shared" / "data")


def tiny_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=40, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
                dropout=0.0, max_positions=32)
    return ModelConfig(**{**base, **overrides})


def write_lines(path, lines):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return path


def multi30k_lines(lang: str, n: int, start: int = 0, split: str = "train") -> list[str]:
    """Lines start..start+n of a Multi30k split (the training split unless named) in one language."""
    with gzip.open(SHARED_DATA / f"multi30k/{split}.{lang}.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for i, line in zip(range(start + n), f) if i >= start]


class Crash(BaseException):
    """A process dying at this instant (not an Exception, so no handler of the code catches it)."""


def crash_at(point: int, monkeypatch, events: tuple[str, ...]) -> None:
    """Make the `point`-th call of any of the `os` functions `events` raise `Crash` (undone
    by `monkeypatch.undo()`): the writes a crash could interrupt, tried one by one."""
    real, calls = {name: getattr(os, name) for name in events}, [0]

    def dying(name):
        def call(*args, **kwargs):
            calls[0] += 1
            if calls[0] == point:
                raise Crash(name)
            return real[name](*args, **kwargs)
        return call

    for name in events:
        monkeypatch.setattr(os, name, dying(name))


def losses(out) -> dict[int, float]:
    """Training loss per step; a step logged twice (re-done after a crash) keeps its last value."""
    result = {}
    for line in (Path(out) / "train_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "train":
            result[record["step"]] = record["loss"]
    return result


@pytest.fixture
def seq2seq():
    torch.manual_seed(0)
    return build_model(tiny_config()).eval()


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return build_model(tiny_config(task="lm")).eval()


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "multi30k").is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}: the repo expects ../shared/data beside it "
                    "(or MT_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def slice_files(tmp_path_factory):
    """The first 400 pairs of Multi30k: (train.en.gz, train.fr, en lines, fr lines)."""
    d = tmp_path_factory.mktemp("slice")
    en, fr = multi30k_lines("en", 400), multi30k_lines("fr", 400)
    return write_lines(d / "train.en.gz", en), write_lines(d / "train.fr", fr), en, fr


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The first 300 pairs of Multi30k as plain files (c.en, c.fr), for training subprocesses."""
    d = tmp_path_factory.mktemp("corpus")
    return write_lines(d / "c.en", multi30k_lines("en", 300)), write_lines(d / "c.fr", multi30k_lines("fr", 300))


@pytest.fixture(scope="session")
def learned(tmp_path_factory):
    """A small en-fr model that has learned something (about 15 validation BLEU on its own
    held-out lines; distinct, real translations), trained once per session in about 40 s on
    one thread: the end-to-end tests compare real translations, not degenerate ones.
    Returns (model directory, the `--json` summary)."""
    d = tmp_path_factory.mktemp("learned")
    en, fr = multi30k_lines("en", 6000), multi30k_lines("fr", 6000)
    keep = [i for i in range(len(en)) if len(en[i].split()) <= 10]  # short captions are learned fastest
    src, tgt = write_lines(d / "train.en", [en[i] for i in keep]), write_lines(d / "train.fr", [fr[i] for i in keep])
    cmd = [sys.executable, "-m", "machine_translation", "train", "--src", str(src), "--tgt", str(tgt),
           "--out", str(d / "model"), "--preset", "tiny", "--d-model", "64", "--d-ff", "256", "--vocab-size", "1000",
           "--max-steps", "400", "--eval-every", "200", "--save-every", "200", "--batch-tokens", "2000",
           "--lr", "3e-3", "--warmup-steps", "40", "--threads", "1", "--precision", "fp32", "--subword-alpha", "0",
           "--json"]  # calibrated without subword sampling (the default of translation runs since)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return d / "model", json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A random tiny en-fr model directory (SentencePiece on 600 lines, beam 2): quick to load,
    for what does not need real translations."""
    from machine_translation.model.directory import save_pretrained
    from mt_tokenizers import SentencePieceTokenizer
    d = tmp_path_factory.mktemp("model") / "m"
    tok = SentencePieceTokenizer.train(multi30k_lines("en", 300) + multi30k_lines("fr", 300), 500)
    torch.manual_seed(0)
    model = build_model(tiny_config(vocab_size=tok.vocab_size)).eval()
    save_pretrained(d, model, model.config, tok, tok, pair="en-fr", generation={"beam": 2})
    return d


def start_server(*args):
    """`mt serve --port 0 ARGS` in a process, once it listens: (process, its URL on 127.0.0.1)."""
    proc = subprocess.Popen([sys.executable, "-m", "machine_translation", "serve", "--port", "0", "--threads", "1",
                             *map(str, args)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:  # its log is read on into proc.log (a line per request: a full pipe would block it)
            proc.log = []
            proc.log_reader = threading.Thread(target=lambda: proc.log.extend(proc.stderr), daemon=True)
            proc.log_reader.start()
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("".join(lines))


# -- mt serve ------------------------------------------------------------------------------
SENTENCES = [s for s in multi30k_lines("en", 60, start=29000 - 60) if len(s.split()) <= 12][:24]  # the server tests' requests


@pytest.fixture(scope="session")
def alone(learned):
    """Each sentence translated alone, through the Translator: what the server must give."""
    from machine_translation.inference.translate import Translator
    tr = Translator.from_pretrained(learned[0], "cpu")
    return {s: tr.translate([s])[0] for s in SENTENCES}, tr
