"""An independent check of greedy and beam search: every hypothesis's score is the model's
teacher-forced log-probability of that hypothesis, a batch gives the same n-best lists and
scores as one sentence at a time, and the best hypothesis equals an exhaustive search.

The model is a tiny translator trained for a few seconds on a toy task (reverse a string
of tokens), so different sources get different, non-degenerate outputs with real
uncertainty between them: a search that reads the wrong encoder rows or forgets to reorder
its cache by parent shows up here, where a random model's repeated tokens would hide it.
"""
import itertools

import pytest
import torch

from machine_translation.data.sources import collate_pairs, pad_batch
from machine_translation.model.transformer import build_model
from machine_translation.inference.search import beam_search, greedy_search
from machine_translation.training.tasks import sequence_loss
from tests.conftest import tiny_config

BOS, EOS, V = 2, 3, 10  # tokens 4..9 are the toy alphabet
SOURCES = [[4, 5, 6], [7, 8, 9, 4, 5], [9, 9], [6, 4, 8, 7], [5]]


@pytest.fixture(scope="module")
def toy_model():
    g = torch.Generator().manual_seed(0)
    src = [torch.randint(4, V, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
           for _ in range(64)]
    tgt = [list(reversed(s)) for s in src]
    torch.manual_seed(0)
    model = build_model(tiny_config(vocab_size=V, max_positions=16))
    src_ids, tgt_in, labels = collate_pairs(src, tgt, 0, BOS, EOS)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):  # learned enough to be source-dependent, not enough to be certain
        loss = sequence_loss(model(src_ids, tgt_in), labels, pad_id=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def encode(sources):
    return pad_batch([s + [EOS] for s in sources], 0)  # (B, S)


@torch.no_grad()
def teacher_forced_log_prob(model, source, tokens):
    """log p(tokens + EOS | source), computed with one full forward pass (no cache, no search)."""
    labels = torch.tensor([tokens + [EOS]])
    logits = model(encode([source]), torch.tensor([[BOS] + tokens]))  # (1, T, V)
    return torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None]).sum().item()


def search(model, sources, beam, n_best=1, max_len=8, length_penalty=1.0):
    src = encode(sources)
    limit = torch.full((len(sources),), max_len)
    if beam == 1:
        return [[h] for h in greedy_search(model, model.start_cache(src), limit, BOS, EOS)]
    return beam_search(model, model.start_cache(src), limit, BOS, EOS, beam, length_penalty, n_best)


def test_outputs_differ_between_sources(toy_model):
    best = [hyps[0].tokens for hyps in search(toy_model, SOURCES, beam=4)]
    assert len({tuple(t) for t in best}) == len(SOURCES)  # the fixture is not degenerate
    assert all(len(set(t)) > 1 for t in best if len(t) > 1)


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_scores_are_teacher_forced_log_probabilities(toy_model, beam):
    for source, hyps in zip(SOURCES, search(toy_model, SOURCES, beam, n_best=beam, length_penalty=0.7)):
        assert len(hyps) == beam
        for h in hyps:
            expected = teacher_forced_log_prob(toy_model, source, h.tokens)
            assert h.log_prob == pytest.approx(expected, abs=1e-4), (source, h.tokens)
            assert h.score == pytest.approx(h.log_prob / (len(h.tokens) + 1) ** (0.7 if beam > 1 else 1.0), abs=1e-5)


@pytest.mark.parametrize("beam", [1, 4])
def test_batch_equals_one_sentence_at_a_time(toy_model, beam):
    batch = search(toy_model, SOURCES, beam, n_best=beam)
    for source, hyps in zip(SOURCES, batch):
        alone = search(toy_model, [source], beam, n_best=beam)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in hyps]
        assert [h.score for h in alone] == pytest.approx([h.score for h in hyps], abs=1e-5)


def exhaustive(model, source, max_len):
    """Every output of up to max_len - 1 tokens (then EOS), scored by teacher forcing; best first."""
    scored = []
    for length in range(max_len):
        for tokens in itertools.product([t for t in range(V) if t != EOS], repeat=length):
            lp = teacher_forced_log_prob(model, source, list(tokens))
            scored.append((lp / (length + 1), list(tokens)))
    return sorted(scored, key=lambda x: -x[0])


def test_beam_search_equals_exhaustive_search(toy_model):
    max_len = 4  # up to 3 tokens and EOS: 1 + 9 + 81 + 729 outputs
    for source in ([4, 5, 6], [9, 7]):
        truth = exhaustive(toy_model, source, max_len)
        # a beam as wide as every prefix prunes nothing: its n-best list is the true one
        wide = search(toy_model, [source], beam=729, n_best=5, max_len=max_len)[0]
        assert [h.tokens for h in wide] == [t for _, t in truth[:5]]
        assert [h.score for h in wide] == pytest.approx([s for s, _ in truth[:5]], abs=1e-4)
        # and a small beam finds the same best output on this model
        assert search(toy_model, [source], beam=3, max_len=max_len)[0][0].tokens == truth[0][1]


def test_with_the_repetition_guard_scores_stay_log_probabilities_and_batch_equals_single(toy_model):
    from machine_translation.inference.repetition import PieceTable, RepeatGuard
    pieces = ["<pad>", "<unk>", "<bos>", "<eos>"] + list("abcdef")  # toy tokens 4..9 as letters
    table = PieceTable.from_pieces(pieces)
    sources = SOURCES + [[9, 9, 9, 9, 9]]  # its reverse repeats a piece 5 times: the source allows it

    def guarded(batch, beam):
        guard = RepeatGuard.start(table, [[pieces[i] for i in s] for s in batch], torch.device("cpu"))
        src, limit = encode(batch), torch.full((len(batch),), 8)
        if beam == 1:
            return [[h] for h in greedy_search(toy_model, toy_model.start_cache(src), limit, BOS, EOS, guard)]
        return beam_search(toy_model, toy_model.start_cache(src), limit, BOS, EOS, beam, 1.0, beam, guard)

    for beam in (1, 4):
        batch = guarded(sources, beam)
        for source, hyps in zip(sources, batch):
            alone = guarded([source], beam)[0]
            assert [h.tokens for h in alone] == [h.tokens for h in hyps]
            assert [h.score for h in alone] == pytest.approx([h.score for h in hyps], abs=1e-5)
            for h in hyps:
                assert h.log_prob == pytest.approx(teacher_forced_log_prob(toy_model, source, h.tokens), abs=1e-4)
