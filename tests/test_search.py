"""Search: cached greedy decoding equals uncached decoding, beam 1 equals greedy, beams are sane."""
import pytest
import torch

from machine_translation.inference.search import beam_search, blocked_topk, filter_logits, greedy_search

SRC = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0], [11, 3, 0, 0, 0]])


def uncached_greedy(model, src, steps, bos=2):
    """Recompute the whole prefix at every step; return tokens (B, steps) and step logits (B, steps, V)."""
    tokens = torch.full((src.size(0), 1), bos)
    hidden, mask = model.encode(src)
    logits_per_step = []
    for _ in range(steps):
        logits = model.decode(tokens, hidden, mask)[:, -1]  # (B, V)
        logits_per_step.append(logits)
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens[:, 1:], torch.stack(logits_per_step, 1)


@torch.inference_mode()
def test_cached_greedy_equals_uncached(seq2seq):
    steps = 12
    ref_tokens, ref_logits = uncached_greedy(seq2seq, SRC, steps)
    cache = seq2seq.start_cache(SRC)
    tokens = torch.full((3, 1), 2)
    for t in range(steps):
        logits, cache = seq2seq.decode_step(tokens[:, -1:], cache)
        torch.testing.assert_close(logits[:, -1], ref_logits[:, t], atol=1e-5, rtol=1e-5)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(tokens[:, 1:], ref_tokens)
    # and the library's greedy search (which drops finished rows) yields the same tokens
    # (max_len counts the EOS, which is forced at the limit: steps + 1 allows `steps` tokens)
    hyps = greedy_search(seq2seq, seq2seq.start_cache(SRC), torch.full((3,), steps + 1), 2, eos_id=39)
    for row, h in enumerate(hyps):
        expected = ref_tokens[row].tolist()
        expected = expected[: expected.index(39)] if 39 in expected else expected
        assert h.tokens == expected


def test_beam_one_equals_greedy(seq2seq):
    max_len = torch.full((3,), 15)
    greedy = greedy_search(seq2seq, seq2seq.start_cache(SRC), max_len, 2, 3)
    beam = beam_search(seq2seq, seq2seq.start_cache(SRC), max_len, 2, 3, beam=1)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]


def test_beam_finds_at_least_greedy_log_prob(seq2seq):
    max_len = torch.full((3,), 10)
    greedy = greedy_search(seq2seq, seq2seq.start_cache(SRC), max_len, 2, 3)
    beams = beam_search(seq2seq, seq2seq.start_cache(SRC), max_len, 2, 3, beam=5, n_best=5, length_penalty=0.0)
    for g, nbest in zip(greedy, beams):
        assert len(nbest) == 5
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        assert nbest[0].log_prob >= g.log_prob - 1e-4
        assert all(len(h.tokens) < 10 for h in nbest)


def test_beam_of_a_batch_equals_one_by_one(seq2seq):
    max_len = torch.full((3,), 12)
    batch = beam_search(seq2seq, seq2seq.start_cache(SRC), max_len, 2, 3, beam=3)
    for row in range(3):
        src = SRC[row : row + 1, : int((SRC[row] != 0).sum())]
        alone = beam_search(seq2seq, seq2seq.start_cache(src), max_len[:1], 2, 3, beam=3)
        assert alone[0][0].tokens == batch[row][0].tokens


def test_filter_logits():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[True, False, False, True]]
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert torch.isinf(filter_logits(probs, top_p=0.7)).tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("length", [9, 63, 100, 8000, 8001])
@pytest.mark.parametrize("k", [1, 8])
def test_blocked_topk_finds_what_topk_finds(length, k):
    """The blocked top-k behind both searches: torch.topk's values, at columns holding them,
    with rows of -inf (banned tokens), ties and a last block shorter than the others."""
    x = torch.randn(4, length, generator=torch.Generator().manual_seed(length))
    x[1] = float("-inf")
    x[2, ::3] = float("-inf")
    x[3] = x[3].mul(2).round()  # many equal values
    x[0, -1] = 10.0  # the largest in the last, partial block
    values, cols = blocked_topk(x, k)
    assert torch.equal(values, x.topk(k, dim=-1).values)
    assert torch.equal(x.gather(1, cols), values)
    assert all(len(set(row)) == k for row in cols.tolist())  # k different columns


class _Counting:
    """The model, counting its decoding steps."""

    def __init__(self, model):
        self.model, self.steps = model, 0

    def decode_step(self, tokens, cache):
        self.steps += 1
        return self.model.decode_step(tokens, cache)


@pytest.mark.parametrize("beam", [1, 3])
def test_each_sentence_is_told_the_step_it_ends_with_its_final_n_best(seq2seq, beam):
    """`mt serve` answers a sentence as soon as its search ends (`on_end`), not when the longest
    sentence of its batch does: told once, while the batch decodes on, what the search returns."""
    model, told = _Counting(seq2seq), {}
    max_len = torch.tensor([12, 3, 7])  # the sentences end at different steps (at their limits at the latest)
    on_end = lambda s, hyps: told.setdefault(s, []).append((model.steps, hyps))  # noqa: E731
    if beam == 1:
        result = [[h] for h in greedy_search(model, seq2seq.start_cache(SRC), max_len, 2, 3, on_end=on_end)]
    else:
        result = beam_search(model, seq2seq.start_cache(SRC), max_len, 2, 3, beam=beam, n_best=2, on_end=on_end)
    assert sorted(told) == [0, 1, 2] and all(len(t) == 1 for t in told.values())
    for s, [(step, hyps)] in told.items():
        assert [(h.tokens, h.score) for h in hyps] == [(h.tokens, h.score) for h in result[s]]
        assert step <= int(max_len[s])  # told the step it ended, not after the batch's last
    assert told[1][0][0] < model.steps
