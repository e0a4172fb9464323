"""Decoding: greedy and beam search for translation (split into expand / finalize / select
helpers) and sampling for the decoder-only language model.

Greedy and beam search take any model offering `decode_step(tokens, cache) -> (logits,
cache)`; they own the `KVCache` and keep it aligned with their hypotheses through
`cache.reorder`. Sampling takes a `GPT`, whose window of `max_positions` it slides.

The settings of each (`SearchOptions`, `SamplingOptions`) and their defaults are in `options`.

Both pick their candidates with `blocked_topk`: on a CPU, `torch.topk` and
`torch.max` over a row of 8,000 log-probabilities cost several times a vectorised `amax`
pass over the same row (docs/benchmarks-log.md, 1c. Translation speed and precision).
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from decoder import KVCache
from machine_translation.base.options import SamplingOptions
from machine_translation.inference.repetition import RepeatGuard


class StepModel(Protocol):
    def decode_step(self, tokens: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]: ...


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # log-probability normalised by length ** length_penalty
    log_prob: float


Ended = Callable[[int, list[Hypothesis]], None]  # (sentence's row in the batch, its n-best): told as it ends


@torch.inference_mode()
def greedy_search(model: StepModel, cache: KVCache, max_len: Tensor, bos_id: int, eos_id: int,
                  guard: RepeatGuard | None = None, banned: int | None = None,
                  on_end: Ended | None = None) -> list[Hypothesis]:
    """Decode each row of the batch by taking the most likely token until EOS or max_len[b] tokens.

    max_len: (B,) the most tokens (EOS included) each row may produce. Finished rows
    leave the batch, so long sentences do not make short ones pay. With a `guard`,
    degenerate repetitions are never chosen; the `banned` token never is (its probability
    goes to the others). `on_end(b, [hypothesis])` is called the step row b ends.
    """
    B = max_len.size(0)
    device = max_len.device
    tokens = torch.full((B, 1), bos_id, dtype=torch.long, device=device)  # (B, 1): the last token per row
    alive = torch.arange(B, device=device)  # original row of each row still decoding
    out: list[list[int]] = [[] for _ in range(B)]
    log_probs = [0.0] * B
    step = 0
    while alive.numel() > 0:
        logits, cache = model.decode_step(tokens, cache)  # (N, 1, V)
        logp = _log_probs(logits[:, -1], banned)  # (N, V)
        best_logp, best = blocked_topk(logp if guard is None else guard.ban(logp), 1)  # (N, 1) each
        best_logp, best = best_logp[:, 0], best[:, 0]  # (N,)
        step += 1
        force_end = max_len[alive] <= step
        best = torch.where(force_end, torch.full_like(best, eos_id), best)
        best_logp = torch.where(force_end, logp[:, eos_id], best_logp)
        for row, token, lp in zip(alive.tolist(), best.tolist(), best_logp.tolist()):
            log_probs[row] += lp
            if token != eos_id:
                out[row].append(token)
        keep = (best != eos_id).nonzero().squeeze(1)  # (N',)
        if on_end is not None:
            for row in alive[best == eos_id].tolist():
                on_end(row, [_greedy_hypothesis(out[row], log_probs[row])])
        guard = None if guard is None else guard.advance(best)
        if keep.numel() < alive.numel():
            cache = cache.reorder(keep, keep)  # one row per sentence: hypotheses and sources alike
            guard = None if guard is None else guard.select(keep)
        alive, tokens = alive[keep], best[keep, None]
    return [_greedy_hypothesis(t, lp) for t, lp in zip(out, log_probs)]


def _greedy_hypothesis(tokens: list[int], log_prob: float) -> Hypothesis:
    return Hypothesis(tokens, log_prob / (len(tokens) + 1), log_prob)


def _log_probs(logits: Tensor, banned: int | None) -> Tensor:
    """(N, V) logits -> log-probabilities in float32, renormalised without the banned token."""
    logits = logits.float()
    if banned is not None:
        logits = logits.index_fill(1, torch.tensor([banned], device=logits.device), float("-inf"))
    return torch.log_softmax(logits, dim=-1)


@dataclass
class _Beams:
    """Alive hypotheses of the sentences still being decoded: N = n sentences x R rows, where
    R is 1 at the first step (every hypothesis is BOS alone) and K after it."""

    tokens: Tensor  # (N, t) including BOS
    scores: Tensor  # (N,) summed log-probabilities
    sentence: Tensor  # (n,) original index of each sentence still decoding
    cache: KVCache  # self-attention (N rows), encoder keys/values (n rows)
    guard: RepeatGuard | None = None  # (N rows) the runs each hypothesis ends with

    @property
    def rows_per_sentence(self) -> int:
        return self.tokens.size(0) // self.sentence.numel()


def _expand(beams: _Beams, logp: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top 2K continuations of each sentence: scores, parent rows (into N), tokens; each (n, 2K).
    A sentence's best 2K lie among the best 2K of each of its rows, so those are found first
    (N, 2K), then the sentence's among its R x 2K."""
    n, r = beams.sentence.numel(), beams.rows_per_sentence
    m = min(2 * k, logp.size(-1))
    row_logp, row_token = blocked_topk(logp, m)  # (N, m) each
    total = (beams.scores[:, None] + row_logp).view(n, r * m)  # (n, R*m)
    if r * m < 2 * k:  # a vocabulary smaller than the candidates: pad with impossible ones
        total = torch.nn.functional.pad(total, (0, 2 * k - r * m), value=float("-inf"))
    cand_scores, flat = total.topk(2 * k, dim=-1)  # (n, 2K)
    flat = flat.clamp(max=r * m - 1)  # the padding's candidates (-inf) stand for any real one
    parent = flat // m + torch.arange(n, device=flat.device)[:, None] * r  # row in N
    return cand_scores, parent, row_token.view(n, r * m).gather(1, flat)


def _finalize(
    finished: list[list[Hypothesis]], beams: _Beams, cand_scores: Tensor, parent: Tensor, token: Tensor,
    eos_id: int, k: int, length_penalty: float, keep_best: bool,
) -> None:
    """Move candidates ending in EOS among the K best of each sentence into `finished`: the
    first K to end (`keep_best` False), or the K best so far (True: a better one replaces the
    worst)."""
    is_final = (token[:, :k] == eos_id) & torch.isfinite(cand_scores[:, :k])  # (n, K)
    for i, j in is_final.nonzero().tolist():
        s = int(beams.sentence[i])
        toks = beams.tokens[parent[i, j], 1:].tolist()
        lp = float(cand_scores[i, j])
        hyp = Hypothesis(toks, lp / (len(toks) + 1) ** length_penalty, lp)
        if len(finished[s]) < k:
            finished[s].append(hyp)
        elif keep_best:
            worst = min(range(k), key=lambda h: finished[s][h].score)
            if hyp.score > finished[s][worst].score:
                finished[s][worst] = hyp


def _cannot_improve(finished: list[list[Hypothesis]], beams: _Beams, cand_scores: Tensor, token: Tensor,
                    eos_id: int, k: int, step: int, length_penalty: float) -> Tensor:
    """(n,) True where a sentence has K finished hypotheses and its best running one, scored
    at its current length, is no better than the worst of them: Hugging Face's stopping rule
    (its `early_stopping=False`), so imported models search as their reference does."""
    running = cand_scores.masked_fill(token == eos_id, float("-inf")).amax(dim=1)  # (n,) best non-EOS
    best_possible = (running / step**length_penalty).tolist()
    return torch.tensor([len(finished[s]) >= k and best_possible[i] <= min(h.score for h in finished[s])
                         for i, s in enumerate(beams.sentence.tolist())], device=token.device)


def _select(beams: _Beams, cand_scores: Tensor, parent: Tensor, token: Tensor, eos_id: int, k: int,
            done: Tensor) -> _Beams:
    """The K best non-EOS candidates become the new beams; finished sentences leave the batch."""
    n2k = cand_scores.size(1)
    rank = torch.arange(n2k, device=token.device)
    order = ((token == eos_id).long() * n2k + rank).argsort(dim=-1)[:, :k]  # non-EOS first, by rank
    keep = (~done).nonzero().squeeze(1)  # (n',) sentences still decoding
    parent = parent.gather(1, order)[keep].reshape(-1)  # (n'K,)
    token = token.gather(1, order)[keep].reshape(-1, 1)  # (n'K, 1)
    scores = cand_scores.gather(1, order)[keep].reshape(-1)
    tokens = torch.cat([beams.tokens[parent], token], dim=1)
    # parents lie within their own sentence's rows: the encoder keys/values (one row per
    # sentence) only change when a sentence leaves the batch
    cache = beams.cache.reorder(parent, None if keep.numel() == done.numel() else keep)
    guard = None if beams.guard is None else beams.guard.select(parent).advance(token[:, 0])
    return _Beams(tokens, scores, beams.sentence[keep], cache, guard)


@torch.inference_mode()
def beam_search(
    model: StepModel, cache: KVCache, max_len: Tensor, bos_id: int, eos_id: int,
    beam: int = 4, length_penalty: float = 1.0, n_best: int = 1, guard: RepeatGuard | None = None,
    banned: int | None = None, stopping: str = "mt", on_end: Ended | None = None,
) -> list[list[Hypothesis]]:
    """Beam search with K hypotheses per sentence, ranked by log-probability / (length + 1)
    ** length_penalty; returns the n_best per sentence, best first. The `banned` token is never
    chosen. A sentence ends at max_len[b], where EOS is forced, and before that by `stopping`:
    "mt": when K hypotheses have ended in EOS; "transformers" (Hugging Face's default, for
    imported models): once none of its running hypotheses could beat the worst of its K best
    ended ones (`_cannot_improve`), and the EOS forced at the limit costs nothing.
    `on_end(b, n_best)` is called the step sentence b ends, while the others go on."""
    B, K = max_len.size(0), beam
    device = max_len.device
    # The first step decodes one row per sentence (BOS alone); its 2K best continuations make the K beams.
    beams = _Beams(torch.full((B, 1), bos_id, dtype=torch.long, device=device),
                   torch.zeros(B, device=device), torch.arange(B, device=device), cache, guard)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    step = 0
    while beams.sentence.numel() > 0:
        logits, cache = model.decode_step(beams.tokens[:, -1:], beams.cache)  # (N, 1, V)
        beams.cache = cache
        logp = _log_probs(logits[:, -1], banned)  # (N, V)
        if beams.guard is not None:
            logp = beams.guard.ban(logp)
        step += 1
        at_limit = (max_len[beams.sentence] <= step).repeat_interleave(beams.rows_per_sentence)  # (N,)
        forced = logp[at_limit] if stopping == "mt" else torch.zeros_like(logp[at_limit])
        logp[at_limit] = torch.where(torch.arange(logp.size(1), device=device) == eos_id, forced, float("-inf"))
        cand_scores, parent, token = _expand(beams, logp, K)
        _finalize(finished, beams, cand_scores, parent, token, eos_id, K, length_penalty, stopping != "mt")
        # A sentence ends with K finished hypotheses (or when they cannot be improved on), or at
        # its length limit (EOS was forced, so the limit always finalizes at least its best beam).
        if stopping == "mt":
            done = torch.tensor([len(finished[s]) >= K for s in beams.sentence.tolist()], device=device)
        else:
            done = _cannot_improve(finished, beams, cand_scores, token, eos_id, K, step, length_penalty)
        done |= max_len[beams.sentence] <= step
        if on_end is not None:
            for s in beams.sentence[done].tolist():
                on_end(s, _n_best(finished[s], n_best))
        if done.all():
            break
        beams = _select(beams, cand_scores, parent, token, eos_id, K, done)
    return [_n_best(h, n_best) for h in finished]


def _n_best(finished: list[Hypothesis], n: int) -> list[Hypothesis]:
    return sorted(finished, key=lambda x: -x.score)[:n]


_BLOCK = 64  # the columns of one block in `blocked_topk` (the fastest of 16-128 on 8,000-way rows)


def blocked_topk(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """torch.topk(x, k, dim=-1) of a (N, L) tensor: the k largest values of each row, largest
    first, and their columns (equal values may come in another order). The row is cut into
    blocks of C columns: the k largest lie in the k blocks with the largest maxima (or in
    the last L mod C columns), so one `amax` pass over the row and a top-k over the few
    candidates replace a top-k over all of it."""
    N, L = x.shape
    C = max(1, min(_BLOCK, L // (4 * k)))  # columns per block: at least 4k blocks
    nb = L // C
    if nb < k:
        return x.topk(k, dim=-1)
    blocks = x[:, : nb * C].reshape(N, nb, C)  # (N, nb, C)
    best = blocks.amax(dim=-1).topk(k, dim=-1).indices  # (N, k) the blocks holding the k largest
    cand = blocks.gather(1, best[:, :, None].expand(N, k, C)).view(N, k * C)  # (N, kC)
    cols = (best[:, :, None] * C + torch.arange(C, device=x.device)).view(N, k * C)  # (N, kC)
    if nb * C < L:  # the last L mod C columns are candidates too
        cand = torch.cat([cand, x[:, nb * C :]], dim=1)
        cols = torch.cat([cols, torch.arange(nb * C, L, device=x.device).expand(N, -1)], dim=1)
    values, i = cand.topk(k, dim=-1)  # (N, k)
    return values, cols.gather(1, i)


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Keep the top_k most likely tokens (0 or None: all) and/or the smallest set whose
    probability reaches top_p (None or 1: all): (N, V) -> (N, V) with the rest at -inf."""
    if top_k and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already reaches top_p
        drop[:, 0] = False  # the most likely token always stays: top_p 0 is greedy
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def sample(model, prompt: list[int], generator: torch.Generator, options: SamplingOptions,
           eos_id: int | None = None, use_cache: bool = True):
    """Yield up to options.max_new_tokens tokens continuing `prompt` from a decoder-only model
    (temperature 0 = greedy), stopping after EOS. The context is the last `max_positions`
    tokens: once the window is full it slides, and the cache is rebuilt from the cropped
    window, so cached and uncached sampling give the same tokens."""
    tokens, cache = list(prompt), None
    device = next(model.parameters()).device
    with torch.inference_mode():
        for _ in range(options.max_new_tokens):
            logits, cache = _next_logits(model, tokens, cache, use_cache, device)
            token = _pick(logits.float(), generator, options)
            yield token
            if token == eos_id:
                return
            tokens.append(token)


def _next_logits(model, tokens: list[int], cache: KVCache | None, use_cache: bool,
                 device: torch.device) -> tuple[Tensor, KVCache | None]:
    """Logits (1, V) for the token after `tokens`; with a cache covering all but the newest
    token, only that one is computed."""
    window = model.config.max_positions
    if not use_cache:
        return model(torch.tensor([tokens[-window:]], device=device))[:, -1], None
    if cache is not None and cache.length < window:
        logits, cache = model.decode_step(torch.tensor([tokens[-1:]], device=device), cache)
    else:  # first step, or the window is full: (re)build the cache from the last `window` tokens
        logits, cache = model.decode_step(torch.tensor([tokens[-window:]], device=device), model.start_cache())
    return logits[:, -1], cache


def _pick(logits: Tensor, generator: torch.Generator, options: SamplingOptions) -> int:
    """logits (1, V) -> one token id."""
    if options.temperature <= 0:
        return int(logits.argmax(-1))
    probs = torch.softmax(filter_logits(logits / options.temperature, options.top_k, options.top_p), dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
