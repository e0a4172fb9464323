"""Every mistake a user can make gets one clear line: damaged model directories (each kind of
damage) and hostile inputs, through the commands that read them. Each case must exit 2 with
exactly one line on stderr naming the file or flag, no traceback, and no temporary file left."""
import json
import os
import resource
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from machine_translation.cli import app
from tests.conftest import REPO, write_lines

runner = CliRunner()


def damage_json(name, change):
    def apply(d):
        data = json.loads((d / name).read_text())
        (d / name).write_text(json.dumps(change(data)))
    return apply


def write(name, data: bytes):
    return lambda d: (d / name).write_bytes(data)


def model_key(key, value):
    return damage_json("config.json", lambda c: {**c, "model": {**c["model"], key: value}})


DAMAGE = {  # what is done to a copy of the model directory -> what the one line must name
    "float d_model": (model_key("d_model", 32.0), "'d_model' must be int"),
    "float n_heads": (model_key("n_heads", 4.5), "'n_heads' must be int"),
    "string norm_first": (model_key("norm_first", "no"), "'norm_first' must be bool"),
    "no d_model": (damage_json("config.json", lambda c: {**c, "model": {k: v for k, v in c["model"].items()
                                                                         if k != "d_model"}}),
                   "model.safetensors does not match config.json"),
    "tokenizers without target": (damage_json("config.json", lambda c: {**c, "tokenizers": {"source": "."}}),
                                  "'tokenizers'"),
    "tokenizers a list": (damage_json("config.json", lambda c: {**c, "tokenizers": ["."]}), "'tokenizers'"),
    "config random bytes": (write("config.json", os.urandom(64)), "config.json"),
    "config empty": (write("config.json", b""), "config.json"),
    "generation beam a string": (damage_json("generation_config.json", lambda g: {"beam": "4"}),
                                 "generation_config.json: 'beam' must be int"),
    "generation a list": (write("generation_config.json", b"[4]"), "generation_config.json"),
    "generation beam 0": (damage_json("generation_config.json", lambda g: {"beam": 0}), "generation_config.json"),
    "generation unknown key": (damage_json("generation_config.json", lambda g: {"beems": 4}),
                               "generation_config.json: unknown key 'beems'"),
    "empty spm.model": (write("spm.model", b""), "spm.model"),
    "random spm.model": (write("spm.model", os.urandom(300)), "spm.model"),
    "truncated weights": (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:500]),
                          "model.safetensors"),
    "empty weights": (write("model.safetensors", b""), "model.safetensors"),
    "random weights": (write("model.safetensors", os.urandom(4000)), "model.safetensors"),
    "weights of another shape": (model_key("d_ff", 128), "model.safetensors does not match config.json"),
}


def leftovers(*folders):
    return [p.name for folder in folders if folder.is_dir() for p in folder.rglob(".*tmp*")]


def assert_one_line(result, needle, code=2):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_model_directory_gets_one_line(model_dir, tmp_path, damage):
    import shutil
    change, needle = DAMAGE[damage]
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    change(d)
    for args in (["translate", "--model", d, "a dog"], ["evaluate", "--model", d, "--src", d / "config.json",
                                                        "--ref", d / "config.json"]):
        assert_one_line(runner.invoke(app, [str(a) for a in args]), needle)
    assert not leftovers(d)


def test_hostile_inputs_get_one_line(model_dir, tmp_path):
    empty = write_lines(tmp_path / "empty.txt", [])
    a_file = write_lines(tmp_path / "file.txt", ["x"])
    cases = [
        (["translate", "--model", model_dir, "--device", "bogus", "x"], "--device 'bogus'"),
        (["translate", "--model", model_dir, "--beam", "0", "x"], "--beam"),
        (["translate", "--model", model_dir, "caf\udce9 ok"], "argument 1 is not valid UTF-8"),
        (["translate", "--model", model_dir, "--output", tmp_path / "missing" / "out.fr", "x"], "missing"),
        (["translate", "--model", model_dir, "--output", tmp_path, "x"], str(tmp_path)),
        (["evaluate", "--hyp", empty, "--ref", empty], "empty"),
        (["train", "--src", a_file, "--tgt", a_file, "--out", tmp_path / "r", "--max-minutes", "0"], "--max-minutes 0"),
        (["train", "--src", a_file, "--tgt", a_file, "--out", tmp_path / "r", "--epochs", "0"], "--epochs 0"),
        (["train", "--src", a_file, "--tgt", a_file, "--out", a_file], "is a file"),
        (["generate", "--model", model_dir, "--top-p", "2"], "--top-p"),
        (["average-checkpoints", "--model", model_dir, "--last", "1", "--out", tmp_path / "avg"], "checkpoints"),
        (["average-checkpoints", "--model", model_dir, "--last", "1", "--out", a_file], "is a file"),
    ]
    if not torch.cuda.is_available():
        cases.append((["translate", "--model", model_dir, "--device", "cuda", "x"], "CUDA is not available"))
    for args, needle in cases:
        assert_one_line(runner.invoke(app, [str(a) for a in args]), needle)
    assert not leftovers(tmp_path)


def test_stdin_is_split_like_a_file(model_dir, tmp_path):
    text = b"a dog\x0cruns\nthe cat\xe2\x80\xa8sleeps\na man\rwalks\n"
    r = runner.invoke(app, ["translate", "--model", str(model_dir), "-"], input=text)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3  # one line out per \n-ended line in
    (tmp_path / "in.txt").write_bytes(text)
    r2 = runner.invoke(app, ["translate", "--model", str(model_dir), "--input", str(tmp_path / "in.txt")])
    assert r2.stdout == r.stdout


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(model_dir, tmp_path):
    source = write_lines(tmp_path / "in.en", ["a man is walking down the street"] * 300)
    out = tmp_path / "out" / "o.fr"
    out.parent.mkdir()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    r = subprocess.run([sys.executable, "-m", "machine_translation", "translate", "--model", str(model_dir),
                        "--input", str(source), "--output", str(out), "--beam", "1"],
                       capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "disk full while writing" in r.stderr, r.stderr
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_a_run_stopped_before_its_first_checkpoint_is_started_again(tmp_path, slice_files):
    src, tgt, _, _ = slice_files
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--src", str(src), "--tgt", str(tgt), "--out", str(tmp_path / "huge"),
                            "--preset", "huge", "--max-steps", "2"])
    assert_one_line(r, "unknown preset 'huge'")  # refused before any work: nothing written
    assert not (tmp_path / "huge").exists()
    r = runner.invoke(app, ["train", "--src", str(src), "--tgt", str(tgt), "--out", str(out), "--preset", "tiny",
                            "--vocab-size", "400", "--max-len", "1", "--max-steps", "2"])  # a start that fails late
    assert r.exit_code == 2 and "no usable sentence pairs" in r.stderr.splitlines()[-1]
    assert any(out.iterdir()) and not (out / "checkpoints").exists()
    r = runner.invoke(app, ["train", "--src", str(src), "--tgt", str(tgt), "--out", str(out), "--resume",
                            "--preset", "tiny", "--max-steps", "2"])
    assert_one_line(r, "start the run without --resume")
    args = ["train", "--src", str(src), "--tgt", str(tgt), "--out", str(out), "--preset", "tiny", "--vocab-size", "400",
            "--max-steps", "2", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "stopped before its first checkpoint" in r.stderr
    r = runner.invoke(app, ["train", "--src", str(src), "--tgt", str(tgt), "--out", str(tmp_path), "--preset", "tiny",
                            "--max-steps", "2"])  # a folder that is not a run is never deleted
    assert_one_line(r, "holds no unfinished run")
    assert (out / "checkpoints").is_dir()


def test_a_model_directory_without_checkpoints_is_never_replaced(model_dir, tmp_path, slice_files):
    import shutil
    src, tgt, _, _ = slice_files
    averaged = tmp_path / "avg"  # what average-checkpoints writes: trained weights, no checkpoints
    shutil.copytree(model_dir, averaged)
    before = (averaged / "model.safetensors").read_bytes()
    r = runner.invoke(app, ["train", "--src", str(src), "--tgt", str(tgt), "--out", str(averaged), "--preset", "tiny",
                            "--max-steps", "2"])
    assert_one_line(r, "holds no unfinished run")
    assert (averaged / "model.safetensors").read_bytes() == before


def test_an_unexpected_error_is_one_line_naming_the_traceback_file(model_dir, tmp_path, monkeypatch):
    from machine_translation import translate
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(translate.Translator, "translations", lambda *a, **k: 1 / 0)  # what the CLI calls
    r = runner.invoke(app, ["translate", "--model", str(model_dir), "x"])
    assert_one_line(r, "this is a bug in mt", code=1)
    logs = list((tmp_path / "mt" / "crashes").iterdir())
    assert len(logs) == 1 and str(logs[0]) in r.stderr and "ZeroDivisionError" in logs[0].read_text()


def test_a_corpus_too_small_for_validation_says_so(tmp_path):
    lines = write_lines(tmp_path / "c.en", [f"line {i}" for i in range(15)])
    r = runner.invoke(app, ["train", "--src", str(lines), "--tgt", str(lines), "--out", str(tmp_path / "o"),
                            "--preset", "tiny", "--max-steps", "2"])
    assert r.exit_code == 2 and "has 15 pairs, too few to hold out validation" in r.stderr.splitlines()[-1]


def test_identical_weights_give_identical_bytes_in_every_process(tmp_path):
    """The tied weights' aliases are metadata; the bytes must not depend on the process (hash seed)."""
    script = ("import sys, torch; from machine_translation.checkpoint import save_weights; "
              "from machine_translation.model import build_model; from tests.conftest import tiny_config; "
              "from pathlib import Path; torch.manual_seed(0); save_weights(build_model(tiny_config()), Path(sys.argv[1]))")
    files = []
    for seed in range(4):
        path = tmp_path / f"w{seed}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, cwd=REPO, timeout=120)
        files.append(path.read_bytes())
    assert all(f == files[0] for f in files)
