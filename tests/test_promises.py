"""The values users rely on, asserted as values: a search option changes the search as
documented on every path that accepts it (Python API, CLI, both server endpoints), held-out
data stays held out, validation is never sampled, "better" points the right way for both
tasks, metrics equal hand-computed references, and the server answers lines in their order.
Each test here catches a mutant of `make mutants` that passed every other test."""
import json
import math
from dataclasses import replace

import pytest
import torch
from starlette.testclient import TestClient
from typer.testing import CliRunner

from machine_translation.cli import app
from machine_translation.base.options import SearchOptions, ServeOptions
from machine_translation.inference.translate import Translator
from tests.conftest import multi30k_lines, write_lines

runner = CliRunner()
VAL = [s for s in multi30k_lines("en", 200, start=28000) if len(s.split()) <= 12][:40]


@pytest.fixture(scope="module")
def translator(learned):
    return Translator.from_pretrained(learned[0], "cpu")


# -- search options: each changes the search as documented ------------------------------------
def test_the_length_penalty_divides_the_log_prob_and_changes_the_best(translator):
    best = {}
    for alpha in (0.0, 1.0, 2.5):
        n_best = translator._search(VAL, SearchOptions(beam=5, n_best=5, length_penalty=alpha))
        for hyps in n_best:
            for h in hyps:  # the documented score: log-prob / (length + 1) ** alpha
                assert h.score == pytest.approx(h.log_prob / (len(h.tokens) + 1) ** alpha, rel=1e-5, abs=1e-6)
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        best[alpha] = [hyps[0].tokens for hyps in n_best]
    # the penalty is not decoration: it picks other translations for some sentences
    assert best[0.0] != best[2.5]
    assert sum(len(t) for t in best[2.5]) > sum(len(t) for t in best[0.0])  # a larger penalty favours longer ones


def test_the_output_length_limit_is_a_times_source_plus_b(translator):
    free = translator._search(VAL, SearchOptions(beam=1))
    for a, b in ((0.0, 4), (0.5, 1)):
        limited = translator._search(VAL, SearchOptions(beam=1, max_len_a=a, max_len_b=b))
        sources = translator._encode_source(VAL)
        for src, hyps in zip(sources, limited):  # the limit counts the EOS, which is forced at it
            assert len(hyps[0].tokens) <= int(len(src) * a + b) - 1
        assert any(len(h[0].tokens) < len(f[0].tokens) for h, f in zip(limited, free))


def test_n_best_and_beam_give_what_they_promise(translator):
    n_best = translator._search(VAL[:5], SearchOptions(beam=6, n_best=4))
    assert all(len(hyps) == 4 and len({tuple(h.tokens) for h in hyps}) == 4 for hyps in n_best)
    greedy = translator.translate(VAL, SearchOptions(beam=1))
    assert greedy != translator.translate(VAL, SearchOptions(beam=6))  # beam search finds other translations


class Recorder:
    """Records the SearchOptions every search receives, and searches."""

    def __init__(self, monkeypatch):
        self.seen = []
        real = Translator._search

        def search(tr, sentences, options=None, progress=None, on_end=None):
            self.seen.append(options or tr.defaults)
            return real(tr, sentences, options, progress, on_end)

        monkeypatch.setattr(Translator, "_search", search)


def test_every_cli_search_flag_reaches_the_search(learned, monkeypatch, tmp_path):
    model = learned[0]
    defaults = Translator.from_pretrained(model, "cpu").defaults
    recorder = Recorder(monkeypatch)
    flags = ["--beam", 3, "--length-penalty", 0.3, "--max-len-a", 0.5, "--max-len-b", 3, "--n-best", 2,
             "--batch-size", 7, "--no-repeat-guard", "--keep-case"]
    r = runner.invoke(app, ["translate", "--model", str(model), *map(str, flags), "a man"])
    assert r.exit_code == 0, r.output
    assert recorder.seen[-1] == SearchOptions(beam=3, length_penalty=0.3, max_len_a=0.5, max_len_b=3, n_best=2,
                                              batch_size=7, repeat_guard=False, normalize_case=False)
    ref = write_lines(tmp_path / "r.fr", ["un homme"])
    src = write_lines(tmp_path / "s.en", ["a man"])
    r = runner.invoke(app, ["evaluate", "--model", str(model), "--src", str(src), "--ref", str(ref), "--beam", "3",
                            "--length-penalty", "0.3", "--batch-size", "7", "--no-repeat-guard", "--keep-case",
                            "--save-dir", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    assert recorder.seen[-1] == replace(defaults, beam=3, length_penalty=0.3, batch_size=7, repeat_guard=False,
                                        normalize_case=False)
    r = runner.invoke(app, ["translate", "--model", str(model), "a man"])  # no flag: the model's own settings
    assert r.exit_code == 0 and recorder.seen[-1] == replace(defaults, n_best=1)


def test_the_model_settings_and_request_options_reach_the_server_search(learned, monkeypatch, tmp_path):
    import shutil

    from machine_translation.serve.api import Access
    from machine_translation.serve.app import build_app
    from machine_translation.serve.server import load_models
    model = tmp_path / "m"
    shutil.copytree(learned[0], model)
    settings = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**settings, "length_penalty": 0.4, "max_len_b": 7}))
    recorder = Recorder(monkeypatch)
    options = ServeOptions()
    with TestClient(build_app(load_models([model], "cpu", None, 1, options), options, Access(None, 0))) as client:
        r = client.post("/v1/translate", json={"src": ["a man"], "beam": 3, "n_best": 2})
        assert r.status_code == 200, r.text
        assert (recorder.seen[-1].beam, recorder.seen[-1].n_best, recorder.seen[-1].length_penalty,
                recorder.seen[-1].max_len_b) == (3, 2, 0.4, 7)
        r = client.post("/translate", json={"q": "a dog", "source": "en", "target": "fr", "alternatives": 4})
        assert r.status_code == 200, r.text
        assert (recorder.seen[-1].beam, recorder.seen[-1].n_best, recorder.seen[-1].length_penalty) == (5, 5, 0.4)


# -- held out stays held out; validation is never sampled -------------------------------------
@pytest.mark.parametrize("kind", ["files", "tsv"])
def test_the_validation_pairs_of_a_corpus_are_never_trained_on(tmp_path, kind):
    from machine_translation.base.options import DataSpec
    from machine_translation.data.sources import iter_split
    src = [f"source sentence {i}" for i in range(400)]
    tgt = [f"phrase cible {i}" for i in range(400)]
    if kind == "files":
        spec = DataSpec("files", src_file=write_lines(tmp_path / "s.en", src), tgt_file=write_lines(tmp_path / "t.fr",
                                                                                                    tgt))
    else:
        spec = DataSpec("tsv", str(write_lines(tmp_path / "p.tsv", [f"{s}\t{t}" for s, t in zip(src, tgt)])))
    train, val = (list(iter_split(spec, split, "en-fr")) for split in ("train", "val"))
    assert len(val) == 20 and not set(train) & set(val)  # 5%, disjoint by content
    assert sorted(train + val) == sorted(zip(src, tgt))  # and nothing lost


def test_validation_is_never_sampled_whatever_the_subword_alpha(model_dir):
    from machine_translation.model.directory import load_pretrained
    from machine_translation.data.store import PairStore
    from machine_translation.training.tasks import TranslationTask
    loaded = load_pretrained(model_dir)
    tok = loaded.tgt_tokenizer
    pairs = list(zip(multi30k_lines("en", 240), multi30k_lines("fr", 240)))
    train = PairStore.from_pairs(pairs[:200], tok, 30, "train")
    val = PairStore.from_pairs(pairs[200:], tok, 30, "val")
    val_texts = ([s for s, _ in pairs[200:]], [t for _, t in pairs[200:]])

    def task(alpha):
        return TranslationTask(loaded, train, val, val_texts, 600, 1, 0.1, torch.device("cpu"), subword_alpha=alpha)

    plain, sampled = task(0.0), task(0.3)
    assert plain.validate(loaded.model) == sampled.validate(loaded.model)  # loss and BLEU: the same batches
    first = [b.src_ids.tolist() for b in plain.batches(0, 0)]
    assert first != [b.src_ids.tolist() for b in sampled.batches(0, 0)]  # while training batches are sampled


# -- "better" points the right way -----------------------------------------------------------
class ScriptedTask:
    """A task whose validation history is known: scores 1, 5, 3 (higher is better)."""

    def __init__(self, scores):
        self.scores = iter(scores)

    def steps_per_epoch(self):
        return 100

    def batches(self, epoch, start):
        for _ in range(start, 100):
            yield type("B", (), {"n_tokens": 1, "n_targets": 1})()

    def loss_sum(self, model, batch):
        return (model.weight ** 2).sum()

    def validate(self, model):
        score = next(self.scores)
        return {"score": score, "val_loss": -score}

    def batching(self):
        return {}


def test_the_trainer_keeps_the_checkpoint_with_the_highest_score(tmp_path):
    from machine_translation.base.options import TrainConfig
    from machine_translation.training.trainer import Trainer
    kept = []
    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(max_steps=3, eval_every=1, save_every=100, average_last=0, warmup_steps=1)
    trainer = Trainer(ScriptedTask([1.0, 5.0, 3.0]), model, cfg, tmp_path, torch.device("cpu"), {},
                      on_best=lambda m, metrics, state: kept.append((state.step, metrics["score"])))
    state = trainer.run()
    assert kept == [(1, 1.0), (2, 5.0)] and state.best_score == 5.0


def test_each_task_scores_higher_for_the_better_model(model_dir, learned):
    """Translation: the score is validation BLEU; language model: minus the validation loss."""
    import numpy as np

    from machine_translation.model.directory import load_pretrained
    from machine_translation.model.transformer import build_model
    from machine_translation.data.store import PairStore
    from machine_translation.training.tasks import LanguageModelTask, TranslationTask
    from tests.conftest import tiny_config
    ids = np.tile(np.arange(20, dtype=np.uint16), 50)  # a text that repeats: a model that learned it is better
    lm_task = LanguageModelTask(ids, ids, block_size=16, batch_size=8, seed=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    lm = build_model(tiny_config(task="lm", vocab_size=20, max_positions=16))
    before = lm_task.validate(lm)
    opt = torch.optim.Adam(lm.parameters(), 3e-3)
    for batch in list(lm_task.batches(0, 0))[:60] * 2:
        lm.train()
        opt.zero_grad()
        (lm_task.loss_sum(lm, batch) / batch.n_targets).backward()
        opt.step()
    after = lm_task.validate(lm)
    assert after["val_loss"] < before["val_loss"] and after["score"] > before["score"]
    assert after["score"] == -after["val_loss"]

    pairs = list(zip(multi30k_lines("en", 60, start=28000), multi30k_lines("fr", 60, start=28000)))
    scores = []
    for directory in (model_dir, learned[0]):  # a random model, and one that learned something
        loaded = load_pretrained(directory)
        store = PairStore.from_pairs(pairs, loaded.tgt_tokenizer, 30, "val")
        task = TranslationTask(loaded, store, store, ([s for s, _ in pairs], [t for _, t in pairs]), 600, 1, 0.1,
                               torch.device("cpu"), subword_alpha=0.0)
        metrics = task.validate(loaded.model)
        assert metrics["score"] == metrics["val_bleu"]
        scores.append(metrics["score"])
    assert scores[1] > scores[0] + 1


# -- metrics against hand-computed references ------------------------------------------------
def test_metrics_equal_hand_computed_values():
    from machine_translation.inference.evaluate import corpus_bleu, score_translations
    ref = ["the cat sat on the mat today"]
    short = ["the cat sat on the mat"]  # every n-gram right, one word short: only the brevity penalty
    assert corpus_bleu(short, ref) == pytest.approx(100 * math.exp(1 - 7 / 6), abs=0.01)  # 84.65
    # hypotheses and references the other way round: no brevity penalty, precisions 6/7, 5/6, 4/5, 3/4
    assert corpus_bleu(ref, short) == pytest.approx(100 * (3 / 7) ** 0.25, abs=0.01)  # 80.91
    scores = score_translations(["The dog sat on the mat today"], ref)
    assert scores["ter"] == pytest.approx(100 / 7, abs=0.01)  # one substitution over 7 reference words
    assert scores["bleu_lc"] > scores["bleu"]  # lowercased BLEU forgives "The"
    exact = score_translations(ref, ref)
    assert (exact["bleu"], exact["chrf"], exact["ter"]) == (100.0, 100.0, 0.0)


# -- the server answers each line in its order -----------------------------------------------
def test_the_server_answers_each_line_in_its_order(learned, translator):
    from machine_translation.serve.api import Access
    from machine_translation.serve.app import build_app
    from machine_translation.serve.server import load_models
    lines = sorted(VAL[:6], reverse=True) + [VAL[0]]  # not in sorted order, one repeated
    alone = {s: translator.translate([s])[0] for s in lines}
    options = ServeOptions()
    with TestClient(build_app(load_models([learned[0]], "cpu", None, 1, options), options, Access(None, 0))) as client:
        native = client.post("/v1/translate", json={"src": lines}).json()["translations"]
        assert [t["text"] for t in native] == [alone[s] for s in lines]
        libre = client.post("/translate", json={"q": lines, "source": "en", "target": "fr"}).json()
        assert libre["translatedText"] == [alone[s] for s in lines]
