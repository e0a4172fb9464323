"""Directories written by earlier versions of mt keep working: each run directory in
tests/fixtures/formats (written by the commit that defined its format, with
scripts/make_format_fixtures.py) loads, translates exactly as that version translated, and
resumes where it stopped, its optimizer state carried over; its files are upgraded in
memory (`model.compat`), never rewritten by loading.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from machine_translation.model import compat
from machine_translation.model.directory import load_pretrained, read_config
from machine_translation.model.transformer import build_model
from machine_translation.training.checkpoints import checkpoint_dirs, load_training_checkpoint
from machine_translation.training.state import make_optimizer, parameter_groups
from machine_translation.base.options import TrainConfig
from tests.conftest import SHARED_DATA

FORMATS = Path(__file__).parent / "fixtures" / "formats"
NAMES = sorted(p.name for p in FORMATS.iterdir() if (p / "expected.json").is_file() and not p.name.endswith("-lm"))
LM_NAMES = sorted(p.name for p in FORMATS.iterdir() if p.name.endswith("-lm"))


def mt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "machine_translation", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_there_is_a_fixture_of_each_format():
    assert NAMES == ["2026-11-23", "2026-11-24", "2026-12-06"] and LM_NAMES == ["2026-11-23-lm", "2026-12-06-lm"]
    old = json.loads((FORMATS / NAMES[0] / "run" / "config.json").read_text())
    assert old["format_version"] == 1 and "activation" not in old["model"]
    from safetensors import safe_open
    with safe_open(str(FORMATS / NAMES[0] / "run" / "model.safetensors"), "pt") as f:
        assert compat.is_unfused(f.keys())  # the separate q/kv projections of before 2026-11-24


@pytest.mark.parametrize("name", NAMES)
def test_an_old_directory_translates_as_the_version_that_wrote_it(name, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FORMATS / name / "run", run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    expected = json.loads((FORMATS / name / "expected.json").read_text(encoding="utf-8"))
    for beam in (1, 2):
        result = mt("translate", "--model", run, "--beam", beam, "--threads", 1, "--input", FORMATS / "sources.txt")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == expected["translations"][f"beam{beam}"], (name, beam)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # loading rewrites nothing
    config, data = read_config(run)
    assert data["format_version"] == compat.FORMAT_VERSION and data["precision"] == "fp32"


@pytest.mark.parametrize("name", NAMES)
def test_an_old_run_resumes_where_it_stopped(name, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FORMATS / name / "run", run)
    steps = json.loads((FORMATS / name / "expected.json").read_text())["steps"]
    alpha = 0.1 if name >= "2026-12-05" else 0  # subword sampling, the default since 2026-12-05 (none before)
    result = mt("train", "--data", FORMATS / "corpus.tsv", "--out", run, "--resume", "--max-steps", steps + 4,
                "--eval-every", 1000, "--save-every", 1000, "--threads", 1, "--batch-tokens", 800,
                "--subword-alpha", alpha, "--precision", "fp32", "--log-every", 1)
    assert result.returncode == 0, result.stderr
    assert f"at step {steps}" in result.stderr
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    resumed = [r for r in log if r["type"] == "train" and r["step"] > steps]
    assert resumed and resumed[0]["step"] == steps + 1 and max(r["step"] for r in log) == steps + 4
    # the optimizer went on from the checkpoint's moments: the first resumed loss is about the last saved one
    before = [r["loss"] for r in log if r["type"] == "train" and r["step"] <= steps][-1]
    assert abs(resumed[0]["loss"] - before) < 0.5, (before, resumed[0])
    assert load_pretrained(run).config == read_config(run)[0]


@pytest.mark.parametrize("name", NAMES)
def test_the_optimizer_state_is_carried_over_exactly(name):
    """The upgraded optimizer state loads into today's optimizer, and the moments of the fused
    self-attention projection are the old q and kv moments stacked in the order of the weights."""
    run = FORMATS / name / "run"
    config = read_config(run)[0]
    model, cfg = build_model(config), TrainConfig(max_steps=1)
    path, training = load_training_checkpoint(run, model, parameter_groups(model, cfg))
    assert path == checkpoint_dirs(run)[-1] and training["format_version"] == compat.FORMAT_VERSION
    optimizer = make_optimizer(model, cfg)
    optimizer.load_state_dict(training["optimizer"])  # shapes and groups fit today's model
    old = torch.load(path / "training_state.pt", weights_only=True)["optimizer"]
    groups = parameter_groups(model, cfg)
    unfused = name == "2026-11-23"
    old_names = [o for names in groups for name in names for o in (compat.unfused_names(name) if unfused else [name])]
    new_names = [n for names in groups for n in names]
    fused = next(n for n in new_names if ".self_attn.qkv_proj.weight" in n)
    parts = [old["state"][old_names.index(o)]["exp_avg"] for o in (compat.unfused_names(fused) if unfused else [fused])]
    moment = training["optimizer"]["state"][new_names.index(fused)]["exp_avg"]
    assert moment.shape == dict(model.named_parameters())[fused].shape
    torch.testing.assert_close(moment, torch.cat(parts), rtol=0, atol=0)


@pytest.mark.parametrize("name", LM_NAMES)
def test_an_old_language_model_generates_as_before_and_resumes(name, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FORMATS / name / "run", run)
    expected = json.loads((FORMATS / name / "expected.json").read_text(encoding="utf-8"))
    result = mt("generate", "--model", run, "--prompt", "ROMEO:", "--max-new-tokens", 60, "--temperature", 0,
                "--seed", 1, "--threads", 1)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected["generated"]  # greedy: the same text as the version that wrote it
    steps = expected["steps"]
    result = mt("train", "--task", "lm", "--data", "tinyshakespeare", "--data-dir", SHARED_DATA, "--out", run,
                "--resume", "--max-steps", steps + 3, "--eval-every", 1000, "--save-every", 1000, "--threads", 1,
                "--log-every", 1, "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "train" and r["step"] > steps] == [steps + 1, steps + 2, steps + 3]


def test_a_future_format_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FORMATS / NAMES[-1] / "run", run)
    data = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**data, "format_version": compat.FORMAT_VERSION + 1}))
    result = mt("translate", "--model", run, "a dog")
    assert result.returncode == 2 and "use a newer mt" in result.stderr and "Traceback" not in result.stderr
