"""Nothing a user made is ever destroyed: the one rule for `--out` (and `--overwrite`), one
writer per run, outputs that respect what is already there (devices, FIFOs, symlinks, modes),
directories written whole or not at all, a full disk in one line, and signals and worker
processes that end cleanly."""
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from machine_translation.cli import app
from tests.conftest import REPO, Crash, crash_at, write_lines

runner = CliRunner()
TRAIN = ["--preset", "tiny", "--vocab-size", "400", "--threads", "1", "--precision", "fp32", "--batch-tokens", "600",
         "--warmup-steps", "5", "--log-every", "1"]


def mt(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def interactive_signals() -> None:
    """In the child: Ctrl+C as a terminal delivers it. A suite started in the background (`make test &`)
    ignores SIGINT, and a child inherits that, as a shell's background job does on purpose."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mt_process(*args, **kwargs):
    then = kwargs.pop("preexec_fn", None)  # a caller's own (a file-size limit)

    def prepare() -> None:
        interactive_signals()
        if then is not None:
            then()

    return subprocess.Popen([sys.executable, "-m", "machine_translation", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=kwargs.pop("cwd", REPO), preexec_fn=prepare,
                            **kwargs)


def one_line(result, needle, code=2):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and needle in lines[0], result.output


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, corpus):
    """A finished tiny run with 3 checkpoints (for average-checkpoints)."""
    out = tmp_path_factory.mktemp("run") / "r"
    r = mt("train", "--src", corpus[0], "--tgt", corpus[1], "--out", out, *TRAIN, "--max-steps", 6,
           "--save-every", 2, "--eval-every", 6)
    assert r.exit_code == 0, r.output
    return out


def sentinel_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.txt").write_text("years of work")
    return path


# -- --out and --overwrite ------------------------------------------------------------------
def refusals(tmp: Path, corpus, model_dir, small_run):
    """(name, argv, the directory that must survive, the first words of the one line)."""
    src, tgt = corpus
    train = ["train", "--src", src, "--tgt", tgt, *TRAIN, "--max-steps", 2, "--overwrite"]
    inside = tmp / "run-with-corpus"
    sentinel_dir(inside)
    (inside / ".mt-run").write_text("")  # a run of mt's ...
    kept_src = write_lines(inside / "c.en", src.read_text().splitlines())  # ... holding the user's corpus
    return [
        ("train --out '' (an unset variable)", [*train, "--out", ""], tmp, "is the working directory"),
        ("train --out .", [*train, "--out", "."], tmp, "is the working directory"),
        ("train --out ..", [*train, "--out", ".."], tmp, "is the working directory"),
        ("train over a folder mt did not write", [*train, "--out", tmp / "mine"], tmp / "mine", "did not write"),
        ("train --init-from X --out X", [*train, "--out", model_dir, "--init-from", model_dir], model_dir,
         "an input of this command"),
        ("train over a run holding its corpus", ["train", "--src", kept_src, "--tgt", tgt, *TRAIN, "--max-steps", 2,
                                                 "--overwrite", "--out", inside], inside, "an input of this command"),
        ("quantize --out ''", ["quantize", "--model", model_dir, "--out", "", "--overwrite"], tmp,
         "is the working directory"),
        ("quantize over a folder mt did not write", ["quantize", "--model", model_dir, "--out", tmp / "mine",
                                                     "--overwrite"], tmp / "mine", "did not write"),
        ("quantize onto its input", ["quantize", "--model", model_dir, "--out", model_dir, "--overwrite"], model_dir,
         "an input of this command"),
        ("quantize over a model without --overwrite", ["quantize", "--model", model_dir, "--out", small_run],
         small_run, "is not empty"),
        ("average over a folder mt did not write", ["average-checkpoints", "--model", small_run, "--last", 2, "--out",
                                                    tmp / "mine", "--overwrite"], tmp / "mine", "did not write"),
        ("average onto its run", ["average-checkpoints", "--model", small_run, "--last", 2, "--out", small_run,
                                  "--overwrite"], small_run, "an input of this command"),
    ]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_never_touches_what_it_may_not_replace(tmp_path, monkeypatch, corpus, model_dir, small_run):
    work = sentinel_dir(tmp_path / "work")
    sentinel_dir(work / "mine")
    monkeypatch.chdir(work)
    for name, argv, survivor, needle in refusals(work, corpus, model_dir, small_run):
        before = snapshot(survivor)
        r = mt(*argv)
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (name, r.output)
        assert snapshot(survivor) == before, name
        assert not [p for p in work.parent.rglob(".*") if "partial" in p.name or "replaced" in p.name], name


def test_overwrite_replaces_an_mt_directory_once_the_new_one_is_whole(tmp_path, model_dir, small_run):
    out = tmp_path / "q"
    assert mt("quantize", "--model", model_dir, "--out", out).exit_code == 0
    first = (out / "model.safetensors").stat().st_ino
    assert mt("quantize", "--model", model_dir, "--out", out, "--overwrite").exit_code == 0
    assert (out / "model.safetensors").stat().st_ino != first and (out / "config.json").is_file()
    avg = tmp_path / "avg"
    for _ in range(2):
        assert mt("average-checkpoints", "--model", small_run, "--last", 2, "--out", avg, "--overwrite").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avg", "q"]


def test_a_failed_start_puts_the_replaced_run_back(tmp_path, corpus, small_run):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    before = snapshot(run)
    empty = write_lines(tmp_path / "empty.en", [""] * 40)
    r = mt("train", "--src", empty, "--tgt", empty, "--out", run, "--overwrite", *TRAIN, "--max-steps", 2)
    assert r.exit_code == 2 and "no non-empty sentence pairs" in r.stderr, r.output
    assert snapshot(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["empty.en", "run"]
    r = mt("train", "--src", corpus[0], "--tgt", corpus[1], "--out", run, "--overwrite", *TRAIN, "--max-steps", 2)
    assert r.exit_code == 0, r.output
    assert len(list((run / "checkpoints").iterdir())) == 2  # step 2 and `latest`: the old run is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.en", "run"]


# -- one writer per run ----------------------------------------------------------------------
def wait_for(condition, proc, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_a_run_has_one_writer(tmp_path, corpus):
    out = tmp_path / "run"
    args = ["train", "--src", corpus[0], "--tgt", corpus[1], *TRAIN, "--save-every", 5, "--eval-every", 100000,
            "--out", out]
    first = mt_process(*args, "--max-minutes", 1)
    try:
        wait_for(lambda: (out / ".mt-run").is_file() and (out / ".mt-run").read_text().strip(), first)
        second = mt(*args, "--max-minutes", 1)  # while the first is still preparing its data (bounded, should it
        one_line(second, f"PID {first.pid}")  # not be refused)
        wait_for(lambda: (out / "checkpoints" / "latest").is_file(), first)
        for argv in ([*args, "--resume", "--max-steps", 1], [*args, "--overwrite", "--max-steps", 1],
                     ["average-checkpoints", "--model", out, "--last", 1, "--out", tmp_path / "avg"]):
            one_line(mt(*argv), f"PID {first.pid}")
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == -signal.SIGTERM and "checkpoint saved" in err, err
    from machine_translation.inference.translate import Translator
    assert Translator.from_pretrained(out, "cpu").translate(["a dog"])  # the first run's model loads
    resumed = mt(*args, "--resume", "--max-steps", 12)
    assert resumed.exit_code == 0, resumed.output  # and resumes once it is gone


# -- outputs onto what is already there ------------------------------------------------------
def translate_to(model_dir, output, **kwargs):
    return mt_process("translate", "--model", model_dir, "--output", output, "a dog runs", "two cats", **kwargs)


@pytest.fixture(scope="module")
def expected(model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("expected") / "plain.fr"
    proc = translate_to(model_dir, path)
    assert proc.wait(timeout=120) == 0
    return path.read_text()


def test_outputs_write_through_fifos_devices_and_symlinks(tmp_path, model_dir, expected):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    assert translate_to(model_dir, fifo).wait(timeout=120) == 0
    reader.join(timeout=30)
    assert got == [expected] and stat.S_ISFIFO(fifo.stat().st_mode)

    target = tmp_path / "elsewhere" / "target.fr"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(target, 0o600)  # a private document's translation stays private
    link = tmp_path / "link.fr"
    link.symlink_to(target)
    assert translate_to(model_dir, link).wait(timeout=120) == 0
    assert link.is_symlink() and target.read_text() == expected and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["target.fr"]

    to_stdout = tmp_path / "stdout.fr"
    to_stdout.symlink_to("/proc/self/fd/1")
    for output in (to_stdout, Path("/dev/stdout")):
        proc = translate_to(model_dir, output)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out == expected, err
    assert to_stdout.is_symlink()

    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private copy of /dev/null
    except PermissionError:
        pytest.skip("mknod is refused here (not root): character devices untested")
    assert translate_to(model_dir, device).wait(timeout=120) == 0
    assert stat.S_ISCHR(device.stat().st_mode)


def test_a_new_model_directory_has_one_mode_and_an_unreadable_file_is_named(tmp_path, model_dir, monkeypatch):
    out = tmp_path / "q"
    assert mt("quantize", "--model", model_dir, "--out", out).exit_code == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1, modes  # model.safetensors as its siblings (safetensors writes 0600)
    weights = out / "model.safetensors"
    os.chmod(weights, 0)
    if os.geteuid() == 0:  # root reads any file: what another user would meet, simulated
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == weights else real(p, mode))
    one_line(mt("translate", "--model", out, "x"), f"{weights}: permission denied")


# -- whole directories or none ---------------------------------------------------------------
@pytest.mark.parametrize("command", ["quantize", "average-checkpoints"])
def test_a_crash_at_every_file_event_leaves_nothing_or_a_whole_directory(tmp_path, monkeypatch, model_dir, small_run,
                                                                         command):
    from machine_translation.inference.precision import quantize_directory
    from machine_translation.inference.translate import Translator
    from machine_translation.training.averaging import average_checkpoints
    write = {"quantize": lambda out: quantize_directory(model_dir, out),
             "average-checkpoints": lambda out: average_checkpoints(small_run, 2, out)}[command]
    point, completed = 0, False
    while not completed:
        point += 1
        out = tmp_path / f"out-{point}"
        crash_at(point, monkeypatch, ("replace", "fsync", "chmod", "mkdir", "rmdir"))
        try:
            write(out)
            completed = True
        except Crash:
            pass
        finally:
            monkeypatch.undo()
        if out.exists():
            assert Translator.from_pretrained(out, "cpu").translate(["a dog"]), point  # whole
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
        assert not leftovers, (point, leftovers)
    assert point > 8  # every file event was tried, and the last run completed
    write(tmp_path / "again")  # and a rerun succeeds


def test_kill_9_while_writing_a_directory_then_the_rerun_succeeds(tmp_path, model_dir):
    out = tmp_path / "q"
    script = ("import os, sys; from machine_translation.inference.precision import quantize_directory\n"
              "from pathlib import Path\n"
              "real = os.replace\n"
              "def replace(a, b):\n"
              "    if Path(b).name == 'model.safetensors': os.kill(os.getpid(), 9)\n"
              "    real(a, b)\n"
              "os.replace = replace\n"
              "quantize_directory(Path(sys.argv[1]), Path(sys.argv[2]))\n")
    killed = subprocess.run([sys.executable, "-c", script, str(model_dir), str(out)], cwd=REPO, timeout=120)
    assert killed.returncode == -9 and not out.exists()
    assert [p.name.startswith(".q.partial-") for p in tmp_path.iterdir()] == [True]  # what kill -9 leaves
    assert mt("quantize", "--model", model_dir, "--out", out).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]  # the leftover is cleaned up


# -- a full disk -----------------------------------------------------------------------------
def full_disk(limit):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("what", ["safetensors (quantize)", "safetensors (average)", "torch.save (checkpoint)"])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, model_dir, small_run, corpus, what):
    out = tmp_path / "out"
    argv, limit = {
        "safetensors (quantize)": (["quantize", "--model", model_dir, "--out", out], 60_000),
        "safetensors (average)": (["average-checkpoints", "--model", small_run, "--last", 2, "--out", out], 60_000),
        # the model (240 KB) fits, the checkpoint's optimizer state (twice that) does not
        "torch.save (checkpoint)": (["train", "--src", corpus[0], "--tgt", corpus[1], "--out", out, *TRAIN,
                                     "--max-steps", 2], 400_000),
    }[what]
    proc = mt_process(*argv, preexec_fn=full_disk(limit))
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and "disk full while writing" in lines[-1] and "Traceback" not in err, err
    assert f"while writing {out}" in lines[-1] and "partial" not in lines[-1], err  # the user's path, no temporary
    if what == "torch.save (checkpoint)":
        assert not (out / "checkpoints").exists() or not [p for p in (out / "checkpoints").iterdir()]
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- signals and worker processes ------------------------------------------------------------
@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    lines = [f"a man in a red shirt rides a bicycle {i}" for i in range(40000)]
    return write_lines(d / "long.en", lines), write_lines(d / "long.fr", lines)


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += children - found
            found |= children
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("command", ["translate", "evaluate"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_with_its_code_and_one_line(tmp_path, model_dir, long_input, command, sig):
    src, ref = long_input
    out = tmp_path / "out.fr"
    argv = {"translate": ["translate", "--model", model_dir, "--input", src, "--output", out, "--beam", "1"],
            "evaluate": ["evaluate", "--model", model_dir, "--src", src, "--ref", ref, "--beam", "1", "--save-dir",
                         tmp_path / "eval"]}[command]
    proc = mt_process(*argv)
    time.sleep(5)  # well into the translation
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -sig, err  # a shell shows 130 / 143
    progress = re.compile(r"^\d+ lines: \d+ sentences \[")  # the progress bar of long inputs (stderr)
    lines = [line for line in err.strip().splitlines() if not progress.match(line)]
    assert lines == ["interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, half or whole


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads children from /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_worker_processes_end_with_their_parent(tmp_path, model_dir, long_input, sig):
    proc = mt_process("translate", "--model", model_dir, "--input", long_input[0], "--output", tmp_path / "o",
                      "--workers", 2, "--beam", "1")
    deadline = time.time() + 60
    while len(descendants(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = descendants(proc.pid)
    assert len(workers) >= 2, proc.communicate()
    time.sleep(2)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    deadline = time.time() + 5
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    survivors = [w for w in workers if alive(w)]
    for w in survivors:  # (only when this test fails: leave no process behind it)
        os.kill(w, signal.SIGKILL)
    assert not survivors, "worker processes outlived their parent"
    assert not (tmp_path / "o").exists()
