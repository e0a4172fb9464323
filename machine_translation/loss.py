"""Label-smoothed cross-entropy in one autograd node.

`F.cross_entropy(..., label_smoothing=eps)` computes a log-softmax, then the NLL of the target
and the mean log-probability as separate nodes; its backward zero-fills an (N, V) gradient
for the NLL, adds the smoothing term's, and runs the log-softmax backward: about ten passes
over the (N, V) logits, the largest tensor of a translation step (2,500 x 8,000 floats on the
default batches). Here the forward pass needs each row's logsumexp, target logit and mean
logit, and the backward pass writes the gradient directly,

    d loss / d logit_v = w * (softmax_v - eps / V - (1 - eps) [v == target]),

with w the row's weight (0 on PAD rows): four passes. The loss equals `F.cross_entropy`'s
with `ignore_index` and `label_smoothing` (tests/test_loss.py holds both to it).
"""
from __future__ import annotations

import torch
from torch import Tensor


class _LabelSmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, ignore_index: int, eps: float, mean: bool) -> Tensor:
        # logits (N, V) float; labels (N,)
        valid = labels != ignore_index  # (N,)
        target = torch.where(valid, labels, 0)  # (N,): any index on ignored rows
        lse = torch.logsumexp(logits, dim=-1)  # (N,)
        row = lse - logits.gather(1, target[:, None]).squeeze(1)  # (N,) -log p(target)
        if eps:
            row = row * (1 - eps) + (lse - logits.mean(dim=-1)) * eps  # mean over v of -log p(v)
        count = valid.sum()
        loss = torch.where(valid, row, 0).sum()
        if mean:
            loss = loss / count
        ctx.save_for_backward(logits, lse, target, valid, count)
        ctx.eps, ctx.mean = eps, mean
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        logits, lse, target, valid, count = ctx.saved_tensors
        eps, V = ctx.eps, logits.size(-1)
        w = valid.to(logits.dtype) * (grad_loss / count if ctx.mean else grad_loss)  # (N,)
        grad = torch.sub(logits, lse[:, None]).exp_()  # (N, V) softmax
        if eps:
            grad.sub_(eps / V)
        grad.mul_(w[:, None])
        grad.scatter_add_(1, target[:, None], (-(1 - eps) * w)[:, None])
        return grad, None, None, None, None


def label_smoothed_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int, label_smoothing: float = 0.0,
                                 reduction: str = "mean") -> Tensor:
    """`F.cross_entropy(logits, labels, ignore_index=, label_smoothing=, reduction=)` for
    logits (N, V) and labels (N,), with `reduction` "mean" (over the rows not ignored) or "sum"."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction {reduction!r}: mean or sum")
    return _LabelSmoothedCrossEntropy.apply(logits, labels, ignore_index, float(label_smoothing), reduction == "mean")
