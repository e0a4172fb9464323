"""Training that survives: exact resume, SIGINT, kill -9 at random moments, corrupt and
malicious checkpoints, checkpoint averaging. Training runs in subprocesses on the tiny preset."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from machine_translation.checkpoint import CHECKPOINT_DIR, checkpoint_dirs, load_training_checkpoint
from machine_translation.model import build_model
from machine_translation.checkpoint import read_config
from tests.conftest import losses

STEPS = 40
ARGS = ["--preset", "tiny", "--vocab-size", "400", "--eval-every", "20", "--save-every", "5", "--log-every", "1",
        "--batch-tokens", "600", "--lr", "3e-3", "--warmup-steps", "5", "--dropout", "0.1", "--keep-last", "3",
        "--threads", "1", "--max-steps", str(STEPS)]


def start(corpus, out, *extra):
    cmd = [sys.executable, "-m", "machine_translation", "train", "--src", str(corpus[0]), "--tgt", str(corpus[1]),
           "--out", str(out), *ARGS, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(out, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "train_log.jsonl").exists() and max(losses(out), default=0) >= step:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"training did not reach step {step}")


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = start(corpus, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return losses(out)


def test_sigint_saves_and_resume_continues_exactly(corpus, reference, tmp_path):
    out = tmp_path / "run"
    proc = start(corpus, out)
    wait_for_step(out, 12, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved in" in err and "--resume" in err and "Traceback" not in err
    stopped_at = max(losses(out))
    assert stopped_at < STEPS
    resumed = start(corpus, out, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    got = losses(out)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(stopped_at + 1, STEPS + 1):  # CPU kernels here are deterministic: bit for bit
        assert got[step] == reference[step], (step, got[step], reference[step])


def test_kill_9_at_random_moments(corpus, tmp_path):
    steps = ["--max-steps", "120"]
    ref = start(corpus, tmp_path / "ref", *steps)
    assert ref.wait(timeout=300) == 0
    out, rng, kills = tmp_path / "run", random.Random(0), 0
    proc = start(corpus, out, *steps)
    while kills < 3:
        wait_for_step(out, max(losses(out), default=0) + 1 if (out / "train_log.jsonl").exists() else 1, proc)
        time.sleep(rng.uniform(0.05, 0.8))
        if proc.poll() is not None:
            break
        proc.kill()  # SIGKILL: no handler runs, the process dies wherever it is
        proc.wait()
        kills += 1
        if checkpoint_dirs(out):  # every surviving latest checkpoint loads
            model = build_model(read_config(out)[0])
            path, _ = load_training_checkpoint(out, model)
            assert path.name == (out / CHECKPOINT_DIR / "latest").read_text().strip()
            proc = start(corpus, out, *steps, "--resume")
        else:
            proc = start(corpus, out, *steps, "--overwrite")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 2
    assert abs(losses(out)[120] - losses(tmp_path / "ref")[120]) <= 1e-6


def test_corrupt_latest_falls_back_and_pickles_are_refused(corpus, tmp_path, caplog):
    out = tmp_path / "run"
    proc = start(corpus, out, "--max-steps", "15")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    dirs = checkpoint_dirs(out)
    assert [d.name for d in dirs] == ["step-00000005", "step-00000010", "step-00000015"]
    model = build_model(read_config(out)[0])

    weights = dirs[-1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by a full disk
    path, training = load_training_checkpoint(out, model)
    assert path == dirs[-2] and training["state"]["step"] == 10
    assert "corrupt" in caplog.text

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state": Evil()}, dirs[-2] / "training_state.pt")  # a pickle that would run code
    path, _ = load_training_checkpoint(out, model)
    assert path == dirs[-3]
    assert not marker.exists()


def test_average_checkpoints(corpus, tmp_path):
    from typer.testing import CliRunner
    from machine_translation.cli import app
    from safetensors.torch import load_file
    out = tmp_path / "run"
    proc = start(corpus, out, "--max-steps", "15")
    assert proc.wait(timeout=300) == 0
    r = CliRunner().invoke(app, ["average-checkpoints", "--model", str(out), "--last", "2", "--out",
                                 str(tmp_path / "avg")])
    assert r.exit_code == 0, r.output
    dirs = checkpoint_dirs(out)[-2:]
    a, b = (load_file(str(d / "model.safetensors")) for d in dirs)
    avg = load_file(str(tmp_path / "avg" / "model.safetensors"))
    name = next(iter(avg))
    torch.testing.assert_close(avg[name], (a[name] + b[name]) / 2)
    r = CliRunner().invoke(app, ["translate", "--model", str(tmp_path / "avg"), "a dog"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["average-checkpoints", "--model", str(out), "--last", "9", "--out",
                                 str(tmp_path / "avg2")])
    assert r.exit_code == 2 and "fewer than --last 9" in r.stderr
