"""Training that survives: exact resume, SIGINT, kill -9 at random moments, corrupt and
malicious checkpoints, checkpoint averaging. Training runs in subprocesses on the tiny preset."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from machine_translation.training.checkpoints import CHECKPOINT_DIR, TRAINING_STATE_FILE, checkpoint_dirs, load_training_checkpoint
from machine_translation.model.transformer import build_model
from machine_translation.model.directory import read_config
from tests.conftest import Crash, crash_at, losses

STEPS = 40
ARGS = ["--preset", "tiny", "--vocab-size", "400", "--eval-every", "20", "--save-every", "5", "--log-every", "1",
        "--batch-tokens", "600", "--lr", "3e-3", "--warmup-steps", "5", "--dropout", "0.1", "--keep-last", "3",
        "--threads", "1", "--max-steps", str(STEPS), "--precision", "fp32"]  # bit-exact resume is fp32's promise


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
def reference_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = start(corpus, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def reference(reference_run):
    return losses(reference_run)


def test_keep_last_leaves_exactly_k_periodic_checkpoints(reference_run):
    # 40 steps, a checkpoint every 5, --keep-last 3
    assert [d.name for d in checkpoint_dirs(reference_run)] == ["step-00000030", "step-00000035", "step-00000040"]
    assert not [p for p in (reference_run / CHECKPOINT_DIR).iterdir() if p.name.startswith(".")]


# (late, the interruption's checkpoint would be among the last --keep-last 3 and the averaged ones)
@pytest.mark.parametrize("sig, at", [(signal.SIGINT, 12), (signal.SIGTERM, 31)])
def test_a_signal_saves_and_resume_continues_exactly(corpus, reference, reference_run, tmp_path, sig, at):
    out = tmp_path / "run"
    proc = start(corpus, out)
    wait_for_step(out, at, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -sig, err  # ended by the signal itself: a shell shows 128 + sig (130, 143)
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
    # the interruption's checkpoint neither counts for --keep-last nor for the final average: the
    # run keeps the same checkpoints and ends with the same model, bit for bit
    assert [d.name for d in checkpoint_dirs(out)] == [d.name for d in checkpoint_dirs(reference_run)]
    assert (out / "model.safetensors").read_bytes() == (reference_run / "model.safetensors").read_bytes()


def test_translation_runs_sample_segmentations_by_default(corpus, reference_run, reference, tmp_path):
    from machine_translation.base.options import SUBWORD_ALPHA
    training = torch.load(checkpoint_dirs(reference_run)[-1] / TRAINING_STATE_FILE, weights_only=True)
    assert training["batching"]["subword_alpha"] == SUBWORD_ALPHA > 0  # no flag given: the default
    clean = tmp_path / "clean"
    proc = start(corpus, clean, "--subword-alpha", "0", "--max-steps", "2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert losses(clean)[1] != reference[1]  # step 1: the same initial model on the same pairs, segmented anew


def test_subword_sampling_changes_the_batches_and_resumes_exactly(corpus, reference, tmp_path):
    alpha = ["--subword-alpha", "0.3", "--max-steps", "24"]
    whole = tmp_path / "whole"
    proc = start(corpus, whole, *alpha)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    sampled = losses(whole)
    assert sampled[1] != reference[1]  # step 1: the same initial model on the same pairs, sampled with another alpha
    out = tmp_path / "run"
    proc = start(corpus, out, *alpha)
    wait_for_step(out, 8, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, err
    stopped_at = max(losses(out))
    refused = start(corpus, out, "--resume", "--max-steps", "24")  # without the flag: other batches
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "--subword-alpha 0.1 differs from the run's 0.3" in err, err
    resumed = start(corpus, out, "--resume", *alpha)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    got = losses(out)
    assert stopped_at < 24 and sorted(got) == list(range(1, 25))
    assert all(got[s] == sampled[s] for s in range(stopped_at + 1, 25)), (got, sampled)


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


def test_corrupt_latest_falls_back_and_pickles_are_refused(corpus, tmp_path, caplog, monkeypatch):
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
    # Whatever the installed torch's default (False before 2.6), the code must ask for weights_only.
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, weights_only=False, **k: real_load(*a, weights_only=weights_only, **k))
    path, _ = load_training_checkpoint(out, model)
    assert path == dirs[-3]
    assert not marker.exists()
    assert "refused: it contains code that would run on load" in caplog.text


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
    assert set(avg) == set(a) == set(b)
    for name in avg:
        torch.testing.assert_close(avg[name], (a[name] + b[name]) / 2)
    r = CliRunner().invoke(app, ["translate", "--model", str(tmp_path / "avg"), "a dog"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["average-checkpoints", "--model", str(out), "--last", "9", "--out",
                                 str(tmp_path / "avg2")])
    assert r.exit_code == 2 and "fewer than --last 9" in r.stderr


def test_a_crash_at_every_point_of_a_checkpoint_write_leaves_a_whole_checkpoint(tmp_path, monkeypatch, caplog):
    """Die before each file-system step of writing checkpoint 10 (each fsync and rename: after
    the temporary files, after their flush, after the directory's rename, before `latest`
    moves): `latest` must always name a whole checkpoint, 5 or 10, and 5 must stay whole."""
    import shutil

    from machine_translation.training.checkpoints import save_training_checkpoint
    from tests.conftest import tiny_config
    torch.manual_seed(0)
    model = build_model(tiny_config())
    base = tmp_path / "base"
    state = {"optimizer": {}, "rng": {}, "train_config": {}, "model_config": {}}  # the entries a checkpoint holds
    save_training_checkpoint(base, model, {**state, "state": {"step": 5}}, 5, keep_last=2)
    point, completed = 0, False
    while not completed:
        point += 1
        run = tmp_path / f"crash-{point}"
        shutil.copytree(base, run)
        crash_at(point, monkeypatch, ("replace", "fsync"))
        try:
            save_training_checkpoint(run, model, {**state, "state": {"step": 10}}, 10, keep_last=2)
            completed = True
        except Crash:
            pass
        finally:
            monkeypatch.undo()
        caplog.clear()
        path, training = load_training_checkpoint(run, build_model(tiny_config()))
        latest = (run / CHECKPOINT_DIR / "latest").read_text().strip()
        assert path.name == latest and "corrupt" not in caplog.text, (point, latest, caplog.text)
        assert training["state"]["step"] == int(latest[-8:])
        old = run / CHECKPOINT_DIR / "step-00000005"
        assert torch.load(old / "training_state.pt", weights_only=True)["state"]["step"] == 5
    assert point > 5 and training["state"]["step"] == 10  # every point was tried, and the last run completed


def test_language_model_resume_continues_exactly(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("ROMEO: what light through yonder window breaks?\nJULIET: ay me.\n" * 40, encoding="utf-8")
    args = ["train", "--task", "lm", "--data", str(text), "--preset", "tiny", "--max-steps", "30", "--save-every", "5",
            "--eval-every", "10", "--log-every", "1", "--batch-size", "4", "--block-size", "16", "--dropout", "0.1",
            "--threads", "1"]

    def train(out, *extra):
        return subprocess.Popen([sys.executable, "-m", "machine_translation", *args, "--out", str(out), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    ref = train(tmp_path / "ref")
    assert ref.wait(timeout=300) == 0
    out = tmp_path / "run"
    proc = train(out, "--max-steps", "30")
    wait_for_step(out, 12, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == -signal.SIGINT
    stopped_at = max(losses(out))
    resumed = train(out, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    got, want = losses(out), losses(tmp_path / "ref")
    assert stopped_at < 30 and sorted(got) == list(range(1, 31))
    assert all(got[step] == want[step] for step in range(stopped_at + 1, 31))


def test_a_checkpoint_of_an_older_mt_resumes_with_a_warning(corpus, reference_run, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    latest = checkpoint_dirs(out)[-1] / "training_state.pt"
    state = torch.load(latest, weights_only=True)
    del state["format_version"]  # format 1 had no number in its training state
    del state["batching"]["bucket_width"]  # as the mt before length buckets wrote it
    for key in ("init_std", "attention_dropout", "activation_dropout"):  # model keys added since
        del state["model_config"][key]
    torch.save(state, latest)
    proc = start(corpus, out, "--resume", "--max-steps", str(STEPS + 2))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "formed its batches differently" in stderr
    assert max(losses(out)) == STEPS + 2


def test_a_run_from_before_subword_sampling_is_not_resumed_sampled(corpus, reference_run, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    latest = checkpoint_dirs(out)[-1] / TRAINING_STATE_FILE
    state = torch.load(latest, weights_only=True)
    del state["format_version"]  # format 1 had no number in its training state
    del state["batching"]["subword_alpha"]  # as the mt before subword sampling wrote it: it never sampled
    torch.save(state, latest)
    proc = start(corpus, out, "--resume", "--max-steps", str(STEPS + 2))  # the default now samples
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--subword-alpha 0.1 differs from the run's 0.0" in err, err
    assert "pass --subword-alpha 0.0" in err and "Traceback" not in err


def test_bf16_resume_matches_an_uninterrupted_bf16_run_and_a_change_of_precision_warns(corpus, tmp_path):
    """Two identical bf16 runs on these CPU kernels match bit for bit, so the tolerance a
    resumed bf16 run is held to is that: exact equality."""
    bf16 = ("--precision", "bf16", "--max-steps", "20")
    ref = start(corpus, tmp_path / "ref", *bf16)
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    out = tmp_path / "run"
    first = start(corpus, out, *bf16)
    wait_for_step(out, 8, first)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == -signal.SIGINT, err
    stopped_at = max(losses(out))
    resumed = start(corpus, out, "--resume", *bf16)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    got, reference = losses(out), losses(tmp_path / "ref")
    assert sorted(got) == list(range(1, 21)) and stopped_at < 20
    for step in range(stopped_at + 1, 21):
        assert got[step] == reference[step], (step, got[step], reference[step])
    # the same run continued in fp32: allowed, with a warning (its weights are float32)
    again = start(corpus, out, "--resume", "--precision", "fp32", "--max-steps", "25")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "trained with --precision bf16 and continues in fp32" in err, err
