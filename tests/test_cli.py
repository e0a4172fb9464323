"""End to end through the CLI on the tiny preset and a slice of Multi30k: train -> translate
-> evaluate, resume, beam 1 = greedy, batch = one by one, and the one-line errors."""
import json

import pytest
from typer.testing import CliRunner

from machine_translation.cli import app
from tests.conftest import write_lines

runner = CliRunner()
TINY = ["--preset", "tiny", "--vocab-size", "400", "--eval-every", "20", "--save-every", "20", "--log-every", "1",
        "--batch-tokens", "1500", "--lr", "3e-3", "--warmup-steps", "10"]


def mt(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, slice_files):
    out = tmp_path_factory.mktemp("run") / "en-fr"
    src, tgt, _, _ = slice_files
    r = mt("train", "--src", src, "--tgt", tgt, "--out", out, "--max-steps", 40, "--json", *TINY)
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_train_writes_a_loadable_model_dir(trained):
    out, summary = trained
    assert summary["steps"] == 40 and summary["best_val_bleu"] is not None
    for name in ("config.json", "model.safetensors", "spm.model", "tokenizer_config.json", "README.md",
                 "generation_config.json", "checkpoints/latest", "data/train.arrow"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "train"] == list(range(1, 41))
    assert {r["step"] for r in log if r["type"] == "eval"} == {20, 40}
    n_val = {r["val_bleu_sentences"] for r in log if r["type"] == "eval"}
    assert len(n_val) == 1 and f"validation BLEU (greedy, {n_val.pop()} val sentences)" in (out / "README.md").read_text()


def test_the_learned_fixture_translates(learned, shared_data):
    out, summary = learned
    assert summary["best_val_bleu"] > 5  # on its own held-out lines
    r = mt("translate", "--model", out, "a man is riding a bike", "two dogs play in the snow", "a woman sings")
    lines = r.stdout.splitlines()
    assert r.exit_code == 0 and len(set(lines)) == 3
    assert "homme" in lines[0] and "chiens" in lines[1] and "femme" in lines[2]


def test_translate_lines_in_lines_out(learned, tmp_path):
    out, _ = learned
    r = mt("translate", "--model", out, "a man", "", "two dogs play in the snow")
    assert r.exit_code == 0, r.output
    lines = r.stdout.split("\n")[:-1]
    assert len(lines) == 3 and lines[1] == "" and lines[0] and lines[2]
    # stdin and --input/--output give the same lines
    r2 = mt("translate", "--model", out, "-", input="a man\n\ntwo dogs play in the snow\n")
    assert r2.stdout == r.stdout
    src = write_lines(tmp_path / "in.txt", ["a man", "", "two dogs play in the snow"])
    assert mt("translate", "--model", out, "--input", src, "--output", tmp_path / "o.txt").exit_code == 0
    assert (tmp_path / "o.txt").read_text() == r.stdout


def test_batch_equals_one_by_one_and_beam1_equals_greedy(learned, slice_files):
    from machine_translation.inference.search import beam_search, greedy_search
    from machine_translation.base.options import SearchOptions
    from machine_translation.inference.translate import Translator
    out, _ = learned
    sentences = slice_files[2][:12]
    tr = Translator.from_pretrained(out, "cpu")
    batch = tr.translate(sentences, SearchOptions(beam=4, batch_size=5))
    assert batch == [tr.translate([s], SearchOptions(beam=4))[0] for s in sentences]
    assert len(set(batch)) == len(sentences)  # real, distinct translations are compared
    import torch
    from machine_translation.data.sources import pad_batch
    src = pad_batch(tr._encode_source(sentences), 0)
    max_len = torch.full((len(sentences),), 20)
    greedy = greedy_search(tr.model, tr.model.start_cache(src), max_len, 2, 3)
    beam1 = beam_search(tr.model, tr.model.start_cache(src), max_len, 2, 3, beam=1)
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beam1]


def test_worker_processes_give_the_same_translations_in_order(learned, slice_files, tmp_path):
    out, _ = learned
    lines = slice_files[2][40:60]
    lines[3] = ""
    src = write_lines(tmp_path / "in.en", lines)
    one = mt("translate", "--model", out, "--input", src, "--batch-size", 4, "--beam", 2)
    two = mt("translate", "--model", out, "--input", src, "--batch-size", 4, "--beam", 2, "--workers", 2)
    assert one.exit_code == two.exit_code == 0, two.output
    assert two.stdout == one.stdout and len(one.stdout.splitlines()) == 20 and one.stdout.splitlines()[3] == ""


def test_the_longest_batch_is_searched_first(learned, slice_files, monkeypatch):
    """Worker processes take batches in the order given: the longest first, so that none is
    left translating it at the end while the others wait; the output keeps the input's order."""
    from machine_translation.base.options import SearchOptions
    from machine_translation.inference.translate import Translator
    tr = Translator.from_pretrained(learned[0], "cpu")
    longest: list[list[int]] = []  # per call, the longest source of each batch, in search order
    search_batches = Translator._search_batches

    def spy(self, batches, opts, ends=None):
        longest.append([max(map(len, b)) for b in batches])
        return search_batches(self, batches, opts, ends)

    monkeypatch.setattr(Translator, "_search_batches", spy)
    sentences = slice_files[2][:12]
    out = tr.translate(sentences, SearchOptions(beam=1, batch_size=4))
    assert len(longest[0]) == 3 and longest[0] == sorted(longest[0], reverse=True) and longest[0][0] > longest[0][-1]
    assert out == [tr.translate([s], SearchOptions(beam=1))[0] for s in sentences]


def test_n_best(learned):
    out, _ = learned
    r = mt("translate", "--model", out, "--beam", 3, "--n-best", 3, "a man")
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == 3 and all(row[0] == "0" for row in rows)
    scores = [float(row[1]) for row in rows]
    assert scores == sorted(scores, reverse=True)


def test_evaluate_model_and_hyp_file(learned, shared_data, tmp_path):
    import gzip
    out, _ = learned
    with gzip.open(shared_data / "multi30k/val.en.gz", "rt") as f_en, gzip.open(shared_data / "multi30k/val.fr.gz",
                                                                               "rt") as f_fr:
        en, fr = [next(f_en).rstrip("\n") for _ in range(60)], [next(f_fr).rstrip("\n") for _ in range(60)]
    ref = write_lines(tmp_path / "ref.fr", fr)  # held-out lines: the model never saw them
    srcf = write_lines(tmp_path / "src.en", en)
    r = mt("evaluate", "--model", out, "--src", srcf, "--ref", ref, "--beam", 2, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert {"bleu", "chrf", "ter", "bleu_lc", "bleu_signature"} <= set(result)
    assert "nrefs:1|case:mixed" in result["bleu_signature"]
    assert 3 < result["bleu"] < 100 and result["n_sentences"] == 60
    hyp_file = result["hypotheses_file"]
    r2 = mt("evaluate", "--hyp", hyp_file, "--ref", ref, "--json")
    assert r2.exit_code == 0 and json.loads(r2.stdout)["bleu"] == result["bleu"]
    r3 = mt("evaluate", "--hyp", ref, "--ref", ref, "--json")
    assert json.loads(r3.stdout)["bleu"] == 100.0


def test_evaluate_named_split(learned, shared_data, tmp_path):
    out, _ = learned
    r = mt("evaluate", "--hyp", shared_data / "multi30k/test_2016_flickr.fr.gz", "--split", "test_2016_flickr",
           "--data-dir", shared_data)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("BLEU = 100.00")
    r = mt("evaluate", "--model", out, "--split", "test_2016_flickr", "--data-dir", shared_data, "--beam", 1,
           "--save-dir", tmp_path, "--json")  # the model on the named split: its references, its sources
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["n_sentences"] == 1000 and result["test_set"] == "test_2016_flickr.en-fr" and result["bleu"] > 3
    hyps = (tmp_path / "test_2016_flickr.en-fr.beam1.hyp").read_text().splitlines()
    assert len(hyps) == 1000 and len(set(hyps)) > 500


def test_resume_continues_the_step_count(trained, tmp_path, slice_files):
    import shutil
    out, _ = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    src, tgt, _, _ = slice_files
    r = mt("train", "--src", src, "--tgt", tgt, "--out", run, "--resume", "--max-steps", 50, "--json", *TINY)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["steps"] == 50
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 50 and 41 in steps


@pytest.mark.parametrize("args, message", [
    (["--resume", "--d-model", "64"], "contradicts the saved model config"),
    (["--resume", "--seed", "7"], "--seed 7 differs from the run's 1234"),
    (["--resume", "--batch-tokens", "999"], "--batch-tokens 999 differs from the run's 1500: a resumed run must see"),
    ([], "already holds a run: continue it with --resume, or replace it with --overwrite"),
    (["--resume", "--decay-embeddings"], "the run was started with --no-decay-embeddings: pass it to resume it"),
])
def test_train_refusals(trained, slice_files, args, message):
    out, _ = trained
    src, tgt, _, _ = slice_files
    before = (out / "model.safetensors").read_bytes()
    r = mt("train", "--src", src, "--tgt", tgt, "--out", out, "--max-steps", 60, *TINY, *args)
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.output
    assert (out / "model.safetensors").read_bytes() == before  # nothing lost


def test_resume_without_checkpoint(tmp_path, slice_files):
    src, tgt, _, _ = slice_files
    r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "none", "--resume", "--max-steps", 5, *TINY)
    assert r.exit_code == 2 and "nothing to resume" in r.stderr


def test_translate_errors(trained, tmp_path):
    out, _ = trained
    r = mt("translate", "--model", tmp_path / "missing", "x")
    assert r.exit_code == 2 and "no model in" in r.stderr
    r = mt("translate", "--model", out, "--pair", "fr-en", "x")
    assert r.exit_code == 2 and "translates en-fr, not fr-en" in r.stderr
    r = mt("translate", "--model", out, "--n-best", 5, "--beam", 2, "x")
    assert r.exit_code == 2 and "n_best" in r.stderr
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe bad\n")
    r = mt("translate", "--model", out, "--input", bad)
    assert r.exit_code == 2 and "bad.txt line 2: not valid UTF-8" in r.stderr


def test_too_long_input_is_split_and_whole_lines_are_truncated_with_a_warning(trained):
    out, _ = trained
    r = mt("translate", "--model", out, "a man " * 200)
    assert r.exit_code == 0 and "truncated" not in r.stderr and len(r.stdout.splitlines()) == 1
    r = mt("translate", "--model", out, "--no-split-sentences", "a man " * 200)  # one sentence, still cut to fit
    assert r.exit_code == 0 and "truncated" not in r.stderr and len(r.stdout.splitlines()) == 1
    r = mt("translate", "--model", out, "--n-best", "2", "a man " * 200)  # n-best lists are of whole lines
    assert r.exit_code == 0
    assert "truncated" in r.stderr and len(r.stdout.splitlines()) == 2


def test_bad_training_data(tmp_path, slice_files):
    _, _, en, fr = slice_files
    src = write_lines(tmp_path / "a.en", en[:50])
    tgt = write_lines(tmp_path / "a.fr", fr[:49])
    r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "o", "--max-steps", 2, *TINY)
    assert r.exit_code == 2 and "a.en has 50 lines but" in r.stderr and "a.fr has 49" in r.stderr
    bad = tmp_path / "b.fr"
    bad.write_bytes("\n".join(fr[:49]).encode() + b"\ncaf\xe9\n")
    r = mt("train", "--src", src, "--tgt", bad, "--out", tmp_path / "o", "--max-steps", 2, *TINY)
    assert r.exit_code == 2 and "b.fr line 50: not valid UTF-8" in r.stderr


def test_empty_and_long_pairs_are_skipped_and_counted(tmp_path, slice_files):
    _, _, en, fr = slice_files
    en2, fr2 = list(en[:300]), list(fr[:300])
    en2[5], fr2[9] = "", "   "
    en2[20] = " ".join(["word"] * 300)
    src, tgt = write_lines(tmp_path / "c.en", en2), write_lines(tmp_path / "c.fr", fr2)
    r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "o", "--max-steps", 2, *TINY)
    assert r.exit_code == 0, r.output
    assert "train: skipped 2 pairs with an empty side" in r.stderr
    from mt_tokenizers import load_tokenizer
    tok = load_tokenizer(tmp_path / "o")
    train = [(s, t) for s, t in zip(en2[:285], fr2[:285]) if s.strip() and t.strip()]  # last 5% is val
    too_long = sum(max(len(tok.encode(s)), len(tok.encode(t))) > 100 for s, t in train)
    assert too_long >= 1
    assert f"train: skipped {too_long} pairs longer than 100 tokens" in r.stderr


def test_init_from_fine_tunes_with_a_fresh_run(trained, slice_files, tmp_path):
    out, _ = trained
    src, tgt, _, _ = slice_files
    new = tmp_path / "tuned"
    r = mt("train", "--src", src, "--tgt", tgt, "--out", new, "--init-from", out, "--max-steps", 5, "--json", *TINY)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["steps"] == 5  # a new run: its own step count from 0
    assert (new / "spm.model").read_bytes() == (out / "spm.model").read_bytes()  # the model's vocabulary
    first = json.loads((new / "train_log.jsonl").read_text().splitlines()[0])
    scratch = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1 and first["loss"] < scratch["loss"]  # starts from the trained weights


def test_bf16_autocast_trains_on_cpu(tmp_path, slice_files):
    src, tgt, _, _ = slice_files
    r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "o", "--max-steps", 3, "--bf16", "--json", *TINY)
    assert r.exit_code == 0, r.output
    losses = [json.loads(x)["loss"] for x in (tmp_path / "o" / "train_log.jsonl").read_text().splitlines()
              if '"train"' in x]
    assert len(losses) == 3 and all(0 < x < 20 for x in losses)


def test_bad_recipe_values_are_one_line_before_any_work(tmp_path, slice_files):
    src, tgt, _, _ = slice_files
    for flags, text in ((["--init-std", "0"], "init_std must be positive"),
                        (["--weight-decay", "-1"], "--weight-decay"),
                        (["--dropout", "1.5"], "dropout must be in [0, 1)"),
                        (["--norm", "middle"], "--norm 'middle': choose pre or post"),
                        (["--subword-alpha", "-0.1"], "--subword-alpha"),
                        (["--task", "lm", "--subword-alpha", "0.1"], "it is for --task mt")):
        r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "o", "--max-steps", 3, *flags, *TINY)
        assert r.exit_code == 2 and text in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "o").exists()


def test_a_short_warmup_for_a_post_norm_model_is_warned_about(tmp_path, slice_files):
    """Post-norm (the small preset's) collapsed in the demo with 100 warmup steps: a new run
    asking for fewer than POST_NORM_WARMUP is told so, and still trains; pre-norm is not."""
    src, tgt, _, _ = slice_files
    r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "post", "--max-steps", 2, "--norm", "post", *TINY)
    assert r.exit_code == 0 and "--warmup-steps 10 is short for a post-norm model" in r.stderr, r.output
    r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "pre", "--max-steps", 2, "--norm", "pre", *TINY)
    assert r.exit_code == 0 and "short for a post-norm" not in r.stderr, r.output


def test_impossible_training_precisions_are_one_line_before_any_work(tmp_path, slice_files):
    src, tgt, _, _ = slice_files
    for flags, text in ((["--precision", "fp16"], "needs CUDA"), (["--precision", "int8"], "choose one of"),
                        (["--precision", "fp32", "--bf16"], "disagree")):
        r = mt("train", "--src", src, "--tgt", tgt, "--out", tmp_path / "o", "--max-steps", 3, *flags, *TINY)
        assert r.exit_code == 2 and text in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "o").exists()


def test_generation_config_sets_the_search_when_no_flag_is_given(learned, slice_files, tmp_path):
    import shutil

    from machine_translation.inference.translate import Translator
    out, _ = learned
    model = tmp_path / "m"
    shutil.copytree(out, model)
    config = json.loads((model / "generation_config.json").read_text())
    assert config["beam"] == 4  # what training wrote: the library default
    assert config["repeat_guard"] is True  # new models turn the repetition guard on
    (model / "generation_config.json").write_text(json.dumps({**config, "beam": 2}))
    assert Translator.from_pretrained(model, "cpu").defaults.beam == 2
    src = write_lines(tmp_path / "in.en", slice_files[2][:8])
    by_file = mt("translate", "--model", model, "--input", src)
    assert by_file.exit_code == 0, by_file.output
    assert by_file.stdout == mt("translate", "--model", model, "--input", src, "--beam", 2).stdout
    r = mt("translate", "--model", model, "--n-best", 3, "a man")  # beam 2 from the file: 3 best cannot exist
    assert r.exit_code == 2 and "n_best (3) cannot exceed the beam size (2)" in r.stderr
    r = mt("translate", "--model", model, "--n-best", 3, "--beam", 3, "a man")  # a flag wins over the file
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3


def test_resume_skips_a_training_state_without_its_entries(trained, slice_files, tmp_path):
    import shutil

    import torch
    out, _ = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    state = torch.load(latest / "training_state.pt", weights_only=True)
    del state["optimizer"]  # loads safely, but is not a whole training state
    torch.save(state, latest / "training_state.pt")
    src, tgt, _, _ = slice_files
    r = mt("train", "--src", src, "--tgt", tgt, "--out", run, "--resume", "--max-steps", 45, "--json", *TINY)
    assert r.exit_code == 0, r.output
    assert "has no 'optimizer' entry" in r.stderr and "resuming from the older checkpoint" in r.stderr
    assert "Traceback" not in r.output


def test_training_ends_with_the_better_of_the_best_checkpoint_and_the_average(slice_files, tmp_path):
    import torch
    from safetensors.torch import load_file

    from machine_translation.model.directory import load_pretrained
    from machine_translation.training.checkpoints import checkpoint_dirs, load_average
    src, tgt, _, _ = slice_files
    out = tmp_path / "run"
    r = mt("train", "--src", src, "--tgt", tgt, "--out", out, "--max-steps", 40, "--json", *TINY, "--save-every", 10,
           "--average-last", 3, "--keep-last", 3)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.splitlines()[-1])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    averaged = [x for x in log if x.get("averaged_checkpoints")]
    assert len(averaged) == 1 and averaged[0]["averaged_checkpoints"] == 3 and averaged[0]["step"] == 40
    singles = [x["score"] for x in log if x["type"] == "eval" and not x.get("averaged_checkpoints")]
    verdict = "kept" if averaged[0]["score"] > max(singles) else "not kept"  # the user is told both scores
    assert (f"score {averaged[0]['score']:.3f} against {max(singles):.3f} for the best single checkpoint "
            f"({verdict})") in r.stderr
    top = load_file(str(out / "model.safetensors"))
    model = load_pretrained(out).model
    load_average(model, checkpoint_dirs(out)[-3:])
    mean = {k: v for k, v in model.state_dict().items() if k in top}
    card = (out / "README.md").read_text()
    if averaged[0]["score"] > max(singles):  # the average won: it is the model at the top
        assert summary["best_is_average_of"] == 3 and "average of the last 3 checkpoints" in card
        assert all(torch.equal(top[k], mean[k]) for k in top)
    else:  # the best single checkpoint stays
        assert summary["best_is_average_of"] is None and "best single checkpoint" in card
        assert not all(torch.equal(top[k], mean[k]) for k in top)


def test_every_run_draws_its_training_curve_and_mt_plot_redraws_it(trained, tmp_path):
    import shutil

    from matplotlib.image import imread
    out, _ = trained
    curve = imread(out / "training_curve.png")  # written by mt train at each validation
    assert curve.shape[:2] == (600, 800) and curve[..., :3].std() > 0.05  # a real picture, not a blank one
    run = tmp_path / "run"
    shutil.copytree(out, run)
    r = mt("plot", run, "--out", tmp_path / "c.png")
    assert r.exit_code == 0 and r.stdout.strip() == str(tmp_path / "c.png")
    assert imread(tmp_path / "c.png").shape[:2] == (600, 800)
    with open(run / "train_log.jsonl", "a") as f:  # a resumed run logs the steps it re-does again
        f.write(json.dumps({"type": "train", "step": 40, "loss": 5.0, "lr": 1e-4, "elapsed": 99.0}) + "\n")
    assert mt("plot", run).exit_code == 0 and (run / "training_curve.png").is_file()
    (run / "train_log.jsonl").write_text('{"type": "train", "step": 1}\n{not json\n')
    r = mt("plot", run)
    assert r.exit_code == 2 and "line 2 is not a training log record" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    r = mt("plot", tmp_path / "nothing")
    assert r.exit_code == 2 and "no training log" in r.stderr


def test_attention_heatmap_of_one_sentence(learned, tmp_path):
    out, _ = learned
    png = tmp_path / "att.png"
    r = mt("translate", "--model", out, "--attention", png, "a man is riding a bike .")
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and r.stdout.strip()
    two = mt("translate", "--model", out, "--attention", tmp_path / "b.png", "a man", "a dog")
    assert two.exit_code == 2 and "one sentence" in two.output and not (tmp_path / "b.png").exists()


def test_alignment_rows_are_distributions_over_the_source(learned):
    from machine_translation.inference.translate import Translator
    tr = Translator.from_pretrained(learned[0], "cpu")
    best = tr.translations(["a man is riding a bike ."])[0][0]
    al = tr.alignment(best)
    assert len(al.source_pieces) == len(tr._encode_source([best.source])[0])  # the pieces and EOS
    assert len(al.weights) == len(best.tokens) + 1 == len(al.target_pieces)
    assert all(len(row) == len(al.source_pieces) and abs(sum(row) - 1) < 1e-3 for row in al.weights)
