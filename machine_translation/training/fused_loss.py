"""Label-smoothed cross-entropy in one autograd node: CPU speed code standing in for
`F.cross_entropy(logits, labels, ignore_index=pad, label_smoothing=eps)`, with the same loss
and gradient (tests/test_loss.py), measured 1.04x the training tokens/s of the small preset
on a CPU (docs/benchmarks-log.md, Two passes made cheaper). Read it as that one call.

`F.cross_entropy(..., label_smoothing=eps)` computes a log-softmax, then the NLL of the target
and the mean log-probability as separate nodes; its backward zero-fills an (N, V) gradient
for the NLL, adds the smoothing term's, and runs the log-softmax backward: about ten passes
over the (N, V) logits, the largest tensor of a translation step (2,500 x 8,000 floats on the
default batches). Here the forward pass needs each row's logsumexp, target logit and mean
logit, and the backward pass writes the gradient directly,

    d loss / d logit_v = w * (softmax_v - eps / V - (1 - eps) [v == target]),

with w the row's weight (0 on PAD rows): four passes. The loss equals `F.cross_entropy`'s
with `ignore_index` and `label_smoothing` (tests/test_loss.py holds both to it).

No (N, V) tensor is allocated but the gradient, and with `reuse_logits` not even that: on the
CPU every block over 32 MB is a fresh `mmap` that is page-faulted in on first touch (glibc),
which cost more than the arithmetic on it. The logsumexp runs over blocks of `ROWS` rows (its
temporaries stay in the heap and are reused), and the gradient may be written over the
logits, which nothing needs after this node: three (N, V) allocations a step become one
(docs/benchmarks-log.md, The loss's (N, V) tensors).
"""
from __future__ import annotations

import torch
from torch import Tensor

ROWS = 256  # rows per logsumexp block: an (N, V) temporary becomes (ROWS, V), 8 MB at V = 8,000


class _LabelSmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, ignore_index: int, eps: float, mean: bool,
                reuse_logits: bool) -> Tensor:
        # logits (N, V) float; labels (N,)
        valid = labels != ignore_index  # (N,)
        target = torch.where(valid, labels, 0)  # (N,): any index on ignored rows
        lse = logits.new_empty(logits.size(0))  # (N,)
        for start in range(0, logits.size(0), ROWS):
            torch.logsumexp(logits[start : start + ROWS], dim=-1, out=lse[start : start + ROWS])
        row = lse - logits.gather(1, target[:, None]).squeeze(1)  # (N,) -log p(target)
        if eps:
            row = row * (1 - eps) + (lse - logits.mean(dim=-1)) * eps  # mean over v of -log p(v)
        count = valid.sum()
        loss = torch.where(valid, row, 0).sum()
        if mean:
            loss = loss / count
        ctx.save_for_backward(logits, lse, target, valid, count)
        ctx.eps, ctx.mean, ctx.reuse_logits = eps, mean, reuse_logits
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        logits, lse, target, valid, count = ctx.saved_tensors
        eps, V = ctx.eps, logits.size(-1)
        w = valid.to(logits.dtype) * (grad_loss / count if ctx.mean else grad_loss)  # (N,)
        # (N, V) softmax, in the logits' memory when allowed (a second backward through this node
        # then fails on autograd's version check instead of reading the overwritten logits)
        grad = (logits.sub_(lse[:, None]) if ctx.reuse_logits else torch.sub(logits, lse[:, None])).exp_()
        if eps:
            grad.sub_(eps / V)
        grad.mul_(w[:, None])
        grad.scatter_add_(1, target[:, None], (-(1 - eps) * w)[:, None])
        return grad, None, None, None, None, None


def label_smoothed_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int, label_smoothing: float = 0.0,
                                 reduction: str = "mean", reuse_logits: bool = False) -> Tensor:
    """`F.cross_entropy(logits, labels, ignore_index=, label_smoothing=, reduction=)` for
    logits (N, V) and labels (N,), with `reduction` "mean" (over the rows not ignored) or "sum".
    `reuse_logits`: the backward pass writes the gradient over `logits` (read nothing from
    them after `backward()`)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction {reduction!r}: mean or sum")
    return _LabelSmoothedCrossEntropy.apply(logits, labels, ignore_index, float(label_smoothing), reduction == "mean",
                                            reuse_logits)
