"""The repetition guard: a piece 4 times or a character 5 times in a row is never emitted,
unless the source has such a run itself; greedy and beam search, one sentence or a batch."""
import pytest
import torch

from decoder import KVCache
from machine_translation.inference.repetition import PieceTable, RepeatGuard, runs
from machine_translation.inference.search import beam_search, greedy_search

PIECES = ["<pad>", "<unk>", "<bos>", "<eos>", "\u2581a", "l", "ll", "\u2581b", "<0xE9>", "xxxxxx"]
EOS = 3


class Stubborn:
    """A 'model' whose next-token preferences are fixed: `favourite` first, then the others in
    id order, EOS last; it never wants to stop, as a model that loops."""

    def __init__(self, favourite: list[int]):
        self.logits = torch.zeros(len(PIECES))
        self.logits[favourite] = torch.arange(len(favourite), 0, -1, dtype=torch.float) * 5
        self.logits[EOS] = -20.0

    def decode_step(self, tokens, cache):
        return self.logits.expand(tokens.size(0), 1, -1).clone(), cache  # (N, 1, V)


def text(tokens):
    return "".join(PIECES[t].replace("\u2581", " ") for t in tokens)


def longest(items):
    return max((n for _, n in runs(items)), default=0)


def decode(favourite, sources, beam=1, guarded=True):
    table = PieceTable.from_pieces(PIECES)
    guard = RepeatGuard.start(table, sources, torch.device("cpu")) if guarded else None
    max_len = torch.full((len(sources),), 16)
    model, cache = Stubborn(favourite), KVCache.empty(0)
    if beam == 1:
        return [h.tokens for h in greedy_search(model, cache, max_len, 2, EOS, guard)]
    return [hyps[0].tokens for hyps in beam_search(model, cache, max_len, 2, EOS, beam, guard=guard)]


@pytest.mark.parametrize("beam", [1, 3])
def test_a_piece_is_never_repeated_four_times(beam):
    unguarded = decode([4], [["a"]], beam, guarded=False)[0]
    assert longest(unguarded) >= 4  # the stubborn model loops without the guard
    out = decode([4], [["a"]], beam)[0]
    assert len(out) == 15 and longest(out) == 3


@pytest.mark.parametrize("beam", [1, 3])
def test_a_character_is_never_repeated_five_times(beam):
    out = decode([6, 5], [["a"]], beam)[0]  # it wants "ll", then "l"
    assert longest(text(out)) <= 4 and "l" in text(out)
    assert 9 not in out  # "xxxxxx" holds a run of 6 itself


class Alternating:
    """Wants " b" after " a" and " a" after anything else: the loop " a b a b a b ..."."""

    def decode_step(self, tokens, cache):
        logits = torch.full((tokens.size(0), 1, len(PIECES)), -5.0)  # (N, 1, V)
        logits[torch.arange(tokens.size(0)), 0, torch.where(tokens[:, -1] == 4, 7, 4)] = 5.0
        logits[:, 0, EOS] = -20.0
        return logits, cache


def longest_loop(tokens, max_group=4):
    """The most consecutive copies of any group of 1..max_group tokens."""
    best = 0
    for n in range(1, max_group + 1):
        for offset in range(n):
            groups = [tuple(tokens[i : i + n]) for i in range(offset, len(tokens) - n + 1, n)]
            best = max(best, longest(groups))
    return best


@pytest.mark.parametrize("beam", [1, 3])
def test_a_group_of_pieces_is_never_repeated_four_times(beam):
    limit, cache = torch.full((1,), 16), KVCache.empty(0)

    def run(guard):
        if beam == 1:
            return greedy_search(Alternating(), cache, limit, 2, EOS, guard)[0].tokens
        return beam_search(Alternating(), cache, limit, 2, EOS, beam, guard=guard)[0][0].tokens

    assert longest_loop(run(None)) >= 4
    out = run(RepeatGuard.start(PieceTable.from_pieces(PIECES), [["a"]], torch.device("cpu")))
    assert len(out) == 15 and longest_loop(out) == 3


def test_runs_the_source_has_are_allowed():
    sources = [["a"], [" a", " a", " a", " a", "lllll"], ["xxxxxx"]]
    outs = decode([4], sources)
    assert longest(outs[0]) == 3 and longest(outs[1]) == 15  # the source repeats " a" 4 times
    assert longest(text(decode([6], sources)[1])) > 4  # and has "lllll"
    assert 9 in decode([9], sources)[2]  # and "xxxxxx"


def test_the_guard_follows_each_sentence_of_a_batch():
    sources = [["a"], [" a", " a", " a", " a"], ["b"]]
    for beam in (1, 3):
        batch = decode([4, 7], sources, beam)
        assert batch == [decode([4, 7], [s], beam)[0] for s in sources]
        assert longest(batch[0]) == 3 and longest(batch[1]) == 15 and longest(batch[2]) == 3


def test_piece_table():
    table = PieceTable.from_pieces(PIECES)
    ll, xs, byte = 6, 9, 8
    assert table.surfaces[4] == " a" and table.surfaces[byte] == "" and table.surfaces[0] == ""
    assert bool(table.uniform[ll]) and int(table.lead_len[ll]) == 2 and int(table.inner_len[xs]) == 6
    assert table.long_ids.tolist() == [xs]
