"""Write tests/fixtures/formats/: run directories (which are model directories) as earlier
versions of mt wrote them, each with the translations that version gave, so the tests can
check that today's mt loads them, translates them identically and resumes them.

    python scripts/make_format_fixtures.py            # all formats (about two minutes)

Each format is made by the commit that wrote it, checked out into a temporary worktree and
run with this environment's packages: `mt train --preset tiny` on tests/fixtures/formats/
corpus.tsv for 200 steps (one checkpoint), then `mt translate` of sources.txt, greedy and
beam 2. Only what the tests read is kept (no training curve, no token store: a resumed run
rebuilds it). Two language-model runs (Tiny Shakespeare, 600 steps) are made the same way,
with their greedy continuation of a prompt.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "formats"
# name -> (commit, what sets it apart)
FORMATS = {
    "2026-11-23": ("d125cfc", "the first run directories: separate Q and KV self-attention projections; no "
                              "batching, precision or tied-weights records"),
    "2026-11-24": ("96f9163", "fused QKV, precision and batching recorded; no subword sampling, no warmup-end record"),
    "2026-12-06": ("1f89189", "the last format_version 1: every model field, interruption marks"),
}
STEPS = 200
# language models: the first format, and the last of format 1
LM_FORMATS = {"2026-11-23-lm": ("d125cfc", "the first language-model runs: separate Q and KV projections"),
              "2026-12-06-lm": ("1f89189", "the last format_version 1 language model")}
LM_STEPS = 600


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{cwd / 'tokenizers'}"}
    done = subprocess.run([sys.executable, "-m", "machine_translation", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, **kwargs)
    if done.returncode:
        sys.exit(f"{cwd.name}: mt {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done


@contextlib.contextmanager
def checked_out(commit: str, scratch: Path):
    """The repository at `commit`, in a temporary worktree under `scratch` (removed after)."""
    tree = scratch / commit
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO, check=True,
                   capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)


def new_fixture(name: str) -> Path:
    """tests/fixtures/formats/NAME, emptied: only this script's own folders there are replaced."""
    if name not in FORMATS and name not in LM_FORMATS:  # never another folder (and not skipped under -O)
        raise SystemExit(f"{name} is not one of this script's fixtures")
    out = FIXTURES / name
    shutil.rmtree(out, ignore_errors=True)
    return out


def trim(run_dir: Path) -> None:
    """Drop what the tests do not read: the training curve and the token store (a resume rebuilds it)."""
    (run_dir / "training_curve.png").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "data", ignore_errors=True)


def write_expected(out: Path, record: dict) -> None:
    (out / "expected.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def make(name: str, commit: str, note: str, scratch: Path) -> None:
    """A translation run on corpus.tsv, with its greedy and beam-2 translations of sources.txt."""
    with checked_out(commit, scratch) as tree:
        out = new_fixture(name)
        run_dir = out / "run"
        run(["train", "--preset", "tiny", "--data", str(FIXTURES / "corpus.tsv"), "--vocab-size", "400",
             "--max-steps", str(STEPS), "--eval-every", str(STEPS), "--save-every", str(STEPS), "--threads", "1",
             "--batch-tokens", "800", "--warmup-steps", "20", "--lr", "3e-3", "--out", str(run_dir)], tree)
        trim(run_dir)
        translations = {}
        for beam in (1, 2):
            done = run(["translate", "--model", str(run_dir), "--beam", str(beam), "--threads", "1",
                        "--input", str(FIXTURES / "sources.txt")], tree)
            translations[f"beam{beam}"] = done.stdout.splitlines()
        write_expected(out, {"commit": commit, "note": note, "steps": STEPS, "translations": translations})


def make_lm(name: str, commit: str, note: str, scratch: Path, data_dir: Path) -> None:
    """A character language model run on Tiny Shakespeare, with its greedy continuation of a prompt."""
    with checked_out(commit, scratch) as tree:
        out = new_fixture(name)
        run_dir = out / "run"
        run(["train", "--task", "lm", "--data", "tinyshakespeare", "--data-dir", str(data_dir), "--preset", "tiny",
             "--max-steps", str(LM_STEPS), "--eval-every", str(LM_STEPS), "--save-every", str(LM_STEPS),
             "--threads", "1", "--out", str(run_dir)], tree)
        trim(run_dir)
        done = run(["generate", "--model", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "60",
                    "--temperature", "0", "--seed", "1", "--threads", "1"], tree)
        write_expected(out, {"commit": commit, "note": note, "steps": LM_STEPS, "generated": done.stdout})


def main() -> None:
    data = Path(os.environ.get("MT_DATA_DIR", REPO.parent / "shared" / "data")) / "multi30k"
    if not (FIXTURES / "corpus.tsv").is_file():
        import gzip
        with gzip.open(data / "train.en.gz", "rt") as en, gzip.open(data / "train.fr.gz", "rt") as fr:
            pairs = [f"{e.strip()}\t{f.strip()}" for _, e, f in zip(range(300), en, fr)]
        (FIXTURES / "corpus.tsv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
        with gzip.open(data / "val.en.gz", "rt") as en:
            (FIXTURES / "sources.txt").write_text("".join(line for _, line in zip(range(20), en)), encoding="utf-8")
    with tempfile.TemporaryDirectory() as scratch:
        for name, (commit, note) in FORMATS.items():
            make(name, commit, note, Path(scratch))
            print(f"wrote {FIXTURES / name} ({commit})", file=sys.stderr)
        for name, (commit, note) in LM_FORMATS.items():
            make_lm(name, commit, note, Path(scratch), data.parent)
            print(f"wrote {FIXTURES / name} ({commit})", file=sys.stderr)


if __name__ == "__main__":
    main()
