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
                   "model config key 'd_model' is missing"),
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


def raise_(e):
    raise e


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), ValueError("a bug's own ValueError"),
                                 OSError(22, "an OSError on no path of the user's")], ids=lambda e: type(e).__name__)
def test_an_unexpected_error_is_one_line_naming_the_traceback_file(model_dir, tmp_path, monkeypatch, bug):
    """Only mt's typed errors and an OSError on a path are the user's (exit 2): a ValueError or
    an OSError from inside mt is a bug, exit 1, its traceback in a file."""
    from machine_translation.inference import translate
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(translate.Translator, "translations", lambda *a, **k: raise_(bug))  # what the CLI calls
    r = runner.invoke(app, ["translate", "--model", str(model_dir), "x"])
    assert_one_line(r, "this is a bug in mt", code=1)
    logs = list((tmp_path / "mt" / "crashes").iterdir())
    assert len(logs) == 1 and str(logs[0]) in r.stderr and type(bug).__name__ in logs[0].read_text()


def test_a_corpus_too_small_for_validation_says_so(tmp_path):
    lines = write_lines(tmp_path / "c.en", [f"line {i}" for i in range(15)])
    r = runner.invoke(app, ["train", "--src", str(lines), "--tgt", str(lines), "--out", str(tmp_path / "o"),
                            "--preset", "tiny", "--max-steps", "2"])
    assert r.exit_code == 2 and "has 15 pairs, too few to hold out validation" in r.stderr.splitlines()[-1]


def test_identical_weights_give_identical_bytes_in_every_process(tmp_path):
    """The tied weights' aliases are metadata; the bytes must not depend on the process (hash seed)."""
    script = ("import sys, torch; from machine_translation.model.directory import save_weights; "
              "from machine_translation.model.transformer import build_model; from tests.conftest import tiny_config; "
              "from pathlib import Path; torch.manual_seed(0); save_weights(build_model(tiny_config()), Path(sys.argv[1]))")
    files = []
    for seed in range(4):
        path = tmp_path / f"w{seed}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, cwd=REPO, timeout=120)
        files.append(path.read_bytes())
    assert all(f == files[0] for f in files)


# -- refuse nonsense before spending, and say the true thing ---------------------------------
@pytest.fixture
def corpus_files(tmp_path):
    from tests.conftest import multi30k_lines
    return (write_lines(tmp_path / "c.en", multi30k_lines("en", 100)),
            write_lines(tmp_path / "c.fr", multi30k_lines("fr", 100)))


REFUSED = [  # (row of the issue, argv after the command's own flags, first words of the one line)
    ("1 clip norm below 0", ["train", "--clip-norm", "-1"], "--clip-norm -1.0: must be a finite number above 0"),
    ("1 clip norm 0", ["train", "--clip-norm", "0"], "--clip-norm 0.0: must be a finite number above 0"),
    ("14 clip norm nan", ["train", "--clip-norm", "nan"], "--clip-norm nan: must be a finite number"),
    ("14 weight decay inf", ["train", "--weight-decay", "inf"], "--weight-decay inf: must be a finite number"),
    ("2 max-len-a inf", ["translate", "--max-len-a", "inf"], "--max-len-a inf: must be a finite number"),
    ("2 max-len-a nan", ["translate", "--max-len-a", "nan"], "--max-len-a nan: must be a finite number"),
    ("3 length penalty nan", ["translate", "--length-penalty", "nan"], "--length-penalty nan: must be a finite"),
    ("3 length penalty inf", ["evaluate", "--length-penalty", "inf"], "--length-penalty inf: must be a finite"),
    ("4 beam over 1024", ["translate", "--beam", "1000000"], "--beam 1000000: at most 1024"),
    ("4 beam over the vocabulary", ["translate", "--beam", "1000"], "--beam 1000: more than the"),
    ("5 d_model by flag", ["train", "--d-model", "10000000"], "d_model 10000000: a model of"),
    ("5 layers by flag", ["train", "--n-encoder-layers", "1000000"], "n_encoder_layers 1000000: a model of"),
    ("6 n_heads 0 by flag", ["train", "--n-heads", "0"], "invalid model config: n_heads must be positive"),
    ("12 a CPU index", ["translate", "--device", "cpu:1"], "--device cpu:1: the CPU has no device 1"),
    ("13 a seed out of range", ["generate", "--seed", str(10**23)], f"--seed {10**23}: must be between 0 and"),
    ("15 MT_DATA_DIR a file", ["train", "--data", "multi30k", "MT_DATA_DIR"], "MT_DATA_DIR"),
    ("16 vocabulary of 1", ["train", "--vocab-size", "1"], "--vocab-size 1 is too small for this text"),
    ("11 a directory as input", ["translate", "--input", "DIR"], "is a directory: name a file"),
]


@pytest.mark.parametrize("row", REFUSED, ids=[r[0] for r in REFUSED])
def test_nonsense_is_refused_in_one_line_before_any_work(row, model_dir, corpus_files, tmp_path, monkeypatch):
    _, argv, needle = row
    command, *flags = argv
    if "MT_DATA_DIR" in flags:
        monkeypatch.setenv("MT_DATA_DIR", str(corpus_files[0]))
        flags = flags[:-1]
    flags = [str(tmp_path) if f == "DIR" else f for f in flags]
    run = ["--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "2"]
    given = {
        "train": run if "--data" in flags else ["--src", str(corpus_files[0]), "--tgt", str(corpus_files[1]), *run],
        "translate": ["--model", str(model_dir), *(["x"] if "--input" not in flags else [])],
        "evaluate": ["--model", str(model_dir), "--src", str(corpus_files[0]), "--ref", str(corpus_files[1])],
        "generate": ["--model", str(model_dir)],
    }[command]
    r = runner.invoke(app, [command, *given, *flags])
    if "--vocab-size" in flags:  # found out by training the tokenizer: after the data's progress lines
        assert r.exit_code == 2 and needle in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.output
    else:
        assert_one_line(r, needle)
    assert not (tmp_path / "run" / "data").exists()  # refused before the data was encoded


@pytest.mark.parametrize("key, value, needle", [
    ("d_model", 10_000_000, "d_model 10000000"), ("d_ff", 10**9, "d_ff 1000000000"),
    ("max_positions", 10**9, "max_positions 1000000000"), ("n_encoder_layers", 10**6, "n_encoder_layers 1000000"),
    ("n_heads", 0, "n_heads must be positive"),
])
def test_a_config_too_large_for_memory_is_refused_before_allocating(model_dir, tmp_path, key, value, needle):
    """Rows 5 and 6: under an address-space limit, so a missed check cannot take the machine's memory."""
    import shutil
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    model_key(key, value)(d)
    if key == "n_heads":
        model_key("d_model", 32)(d)
    limit = 6 * 2**30

    def small_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "machine_translation", "translate", "--model", str(d), "a dog"],
                       capture_output=True, text=True, preexec_fn=small_memory, timeout=120, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "config.json" in lines[0], r.stderr


def test_out_of_memory_is_one_typed_line(model_dir, monkeypatch):
    """Row 7: a MemoryError or an allocator's error (here a real one: an allocation of 1 TiB, which
    the allocator refuses at once) is one line, exit 2, not 'a bug in mt'."""
    from machine_translation.inference import translate
    monkeypatch.setattr(translate.Translator, "translations", lambda *a, **k: torch.empty(2**40, dtype=torch.uint8))
    assert_one_line(runner.invoke(app, ["translate", "--model", str(model_dir), "x"]), "out of memory (an allocation of")
    monkeypatch.setattr(translate.Translator, "translations", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    assert_one_line(runner.invoke(app, ["translate", "--model", str(model_dir), "x"]), "out of memory")


def test_more_workers_than_cores_run_with_one_warning(model_dir, tmp_path):
    """Row 8."""
    from machine_translation.base.runtime import cpu_count
    src = write_lines(tmp_path / "in.en", ["a dog runs", "two cats"] * 70)
    r = runner.invoke(app, ["translate", "--model", str(model_dir), "--input", str(src), "--workers",
                            str(cpu_count() + 1), "--batch-size", "8"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 140, r.output
    assert sum("more worker processes than the" in line for line in r.stderr.splitlines()) == 1


def test_a_closed_stdout_is_one_line(model_dir):
    """Row 9: `mt translate 'a dog' >&-`."""
    r = subprocess.run([sys.executable, "-m", "machine_translation", "translate", "--model", str(model_dir), "a dog"],
                       capture_output=False, stderr=subprocess.PIPE, text=True, timeout=120, cwd=REPO,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 2 and r.stderr.strip() == "error: standard output is closed: redirect it (> FILE) or give " \
                                                     "--output FILE", r.stderr


def test_an_unreachable_hub_is_one_line_without_retries(tmp_path):
    """Row 10: the hub's address answers nothing (a closed loopback port), offline variables unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    r = subprocess.run([sys.executable, "-m", "machine_translation", "train", "--data", "hf:does-not-exist", "--out",
                        str(tmp_path / "run"), "--max-steps", "1"], capture_output=True, text=True, timeout=120,
                       cwd=REPO, env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "the hub cannot be reached" in lines[0], r.stderr


def test_pipes_are_read_like_files(model_dir, tmp_path, corpus_files):
    """Row 11: `--input <(...)`, a named pipe, and `mt train --src <(...) --tgt <(...)` (read several times)."""
    import threading
    fifos = {}
    for name, source in (("in", corpus_files[0]), ("src", corpus_files[0]), ("tgt", corpus_files[1])):
        fifos[name] = tmp_path / f"{name}.fifo"
        os.mkfifo(fifos[name])
        threading.Thread(target=lambda p=fifos[name], s=source: p.write_bytes(s.read_bytes()), daemon=True).start()
    r = runner.invoke(app, ["translate", "--model", str(model_dir), "--input", str(fifos["in"]), "--beam", "1"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 100, r.output
    r = runner.invoke(app, ["train", "--src", str(fifos["src"]), "--tgt", str(fifos["tgt"]), "--out",
                            str(tmp_path / "run"), "--preset", "tiny", "--vocab-size", "400", "--max-steps", "2"])
    assert r.exit_code == 0, r.output


def test_the_non_finite_stop_names_only_what_exists(tmp_path):
    """Row 14: with no checkpoint saved yet, no checkpoint directory is named."""
    from tests.test_training import ToyTask, toy_trainer
    from machine_translation.base.errors import TrainingError
    trainer = toy_trainer(tmp_path, ToyTask(nan_steps=range(0, 100)), max_steps=50, save_every=1000)
    with pytest.raises(TrainingError) as e:
        trainer.run()
    assert "no checkpoint was saved yet" in str(e.value) and "checkpoints" not in str(e.value)


def test_the_smallest_vocabulary_named_works(corpus_files):
    """Row 16: the size the message names is enough."""
    import re

    from mt_tokenizers import SentencePieceTokenizer, TokenizerError
    lines = corpus_files[0].read_text().splitlines() + corpus_files[1].read_text().splitlines()
    with pytest.raises(TokenizerError) as e:
        SentencePieceTokenizer.train(lines, 1)
    needed = int(re.search(r"--vocab-size (\d+) or more", str(e.value)).group(1))
    assert SentencePieceTokenizer.train(lines, needed).vocab_size >= needed - 5


def test_a_torn_log_line_is_skipped_by_plot_and_cut_by_resume(tmp_path, corpus_files):
    """Row 17: a full disk can leave the log's last line half written."""
    out = tmp_path / "run"
    base = ["train", "--src", str(corpus_files[0]), "--tgt", str(corpus_files[1]), "--out", str(out), "--preset",
            "tiny", "--vocab-size", "400", "--save-every", "2", "--eval-every", "2"]
    assert runner.invoke(app, [*base, "--max-steps", "2"]).exit_code == 0
    with open(out / "train_log.jsonl", "a") as f:
        f.write('{"type": "train", "st')
    r = runner.invoke(app, ["plot", str(out)])
    assert r.exit_code == 0 and "cut short" in r.stderr, r.output
    r = runner.invoke(app, [*base, "--max-steps", "4", "--resume"])
    assert r.exit_code == 0, r.output
    lines = (out / "train_log.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and json.loads(lines[-1])["step"] == 4


def test_a_run_killed_before_its_first_validation_has_no_model_to_use(tmp_path, corpus_files):
    """Row 19: it used to translate with its random initial weights, exit 0."""
    import signal
    import time
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "machine_translation", "train", "--src", str(corpus_files[0]),
                             "--tgt", str(corpus_files[1]), "--out", str(out), "--preset", "tiny", "--vocab-size",
                             "400", "--max-steps", "100000", "--eval-every", "100000", "--log-every", "1"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "train_log.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert_one_line(runner.invoke(app, ["translate", "--model", str(out), "a dog"]), "has not validated yet")
