"""`FastDropout`: CPU speed code standing in for `nn.Dropout` (and `fast_dropout` for
`F.dropout`), with the same result in distribution and a cheaper random mask: measured 1.13x
the training tokens/s of the small preset on a CPU (docs/benchmarks-log.md, Two passes made
cheaper). A reader of the model can read it as plain dropout.

PyTorch's CPU dropout draws one Bernoulli variable per element (`bernoulli_`): on the small
preset that was 11% of a training step (docs/benchmarks-log.md, Two passes made cheaper), more than the layer's
arithmetic. Here one 64-bit draw from the same generator (`random_` over the full int64 range)
gives four 16-bit uniform numbers, so a mask costs a quarter of the draws, and an element is
dropped when its number falls under round(p * 65536): the probability is p to within 1/131,072
(0.1 drops 6,554 in 65,536), and the kept elements are scaled by the exact inverse of the
probability kept, so the expectation is unchanged. The backward pass multiplies by the same
mask, kept as a bool tensor (one byte an element, as PyTorch keeps its own).

The draws come from the default CPU generator, which checkpoints save and restore, so a
resumed run draws the same masks. On other devices (CUDA, mps) this is `F.dropout`, whose
Philox generator is already fast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 65536  # 16-bit uniform numbers: the resolution of p


class _MaskScale(torch.autograd.Function):
    """y = x * scale where `keep`, 0 elsewhere; the gradient is masked and scaled the same way."""

    @staticmethod
    def forward(ctx, x: Tensor, drop: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return x.masked_fill(drop, 0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (drop,) = ctx.saved_tensors
        return grad.masked_fill(drop, 0).mul_(ctx.scale), None, None


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """`F.dropout(x, p, training)`, with the mask drawn as described above on CPU."""
    if not training or p == 0.0:
        return x
    threshold = round(p * _LEVELS)  # elements whose number (0 .. 65,535) is below it are dropped
    if x.device.type != "cpu" or not 0 < threshold < _LEVELS:
        return F.dropout(x, p, training)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # 64 uniform bits each
    numbers = bits.view(torch.int16)[:n].view(x.shape)  # (x.shape) uniform in -32,768 .. 32,767
    drop = numbers < threshold - _LEVELS // 2
    return _MaskScale.apply(x, drop, _LEVELS / (_LEVELS - threshold))


class FastDropout(nn.Module):
    """`nn.Dropout` with the cheap CPU mask (no parameters, so state dicts are unchanged)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
