"""CPU speed code for inference, under names that say so: each class replaces one
`nn.Linear` and says which vanilla PyTorch it stands for and what it gains.

- `Int8Linear` (for `nn.Linear` in float32): int8 weights with one scale per output channel
  (symmetric), each input row quantized with its own scale when called (dynamic quantization,
  as CTranslate2 does). The integer product is PyTorch's `torch._int_mm` on CPUs with VNNI or
  AMX, and oneDNN's u8 x s8 kernel on 7-bit activations on x86 CPUs without them. Because
  every row has its own scale and integer products are exact, a sentence translates the same
  in any batch. Measured: 1.2-1.3x float32's sentences/s with 2 workers on an AVX-512 EPYC
  (docs/benchmarks.md, Translation speed).
- `OneDnnLinear` (for `F.linear` through MKL): the float32 product in oneDNN with the weight
  prepacked once, faster on AMD CPUs (1.00-1.49x per call, beam search 13-15%;
  docs/benchmarks-log.md, Float32 through oneDNN on AMD CPUs).

PyTorch's `torch.ao.quantization.quantize_dynamic` was measured too: as fast, but it gives
the whole batch one activation scale (a sentence's translation depends on its batch mates),
and torch.ao is deprecated. `Int8Linear` holds plain tensors, so an int8 model directory
(`mt quantize`) is an ordinary safetensors file that loads without running code. Which of
these run, and when, is decided in `precision`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROWS_HINT = 64  # the rows oneDNN's weight layouts are chosen for (any number runs): a batch of 64 sentences


class Int8Linear(nn.Module):
    """y = x W^T + b with W in int8 (per output channel scales) and x quantized per row.

    The int32 sums are exact in both kernels, so each row's result depends on that row alone:
    - `torch._int_mm` of x in [-127, 127] (the default; fast on CPUs with VNNI or AMX);
    - after `use_u8_kernel`, oneDNN's u8 x s8 product on a prepacked weight (`packed`, not
      saved), for x86 CPUs without VNNI, where `_int_mm` is a reference loop. Their u8 x s8
      instruction (vpmaddubsw) adds two products in int16 and saturates, so x is quantized to
      0..127 (2 x 127 x 127 fits in int16), as fbgemm's `reduce_range` does: [-63, 63] stored
      plus 64, or, where the model says the input is never negative (`nonnegative_input`, a
      ReLU's output), 0..127 itself, which keeps 8-bit resolution on the widest input (d_ff).
      The weights keep their 8 bits.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, nonnegative_input: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.nonnegative_input = nonnegative_input  # the model's structure, not a weight: not saved
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))  # (out, in)
        self.register_buffer("weight_scale", torch.ones(out_features))  # (out,)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.packed: Tensor | None = None  # oneDNN's layout of `weight` for the u8 kernel
        self.packed_zero_points: Tensor | None = None  # (out,) the weight's zero points, all 0 (symmetric)

    @classmethod
    def from_float(cls, linear: nn.Linear, nonnegative_input: bool = False) -> Int8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, nonnegative_input)
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        layer.weight.copy_(torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        layer.weight_scale.copy_(scale)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        return layer.to(linear.weight.device)

    def use_u8_kernel(self) -> None:
        """Multiply with oneDNN's u8 x s8 kernel from now on (the weights are final: int8 is not trained)."""
        self.packed = torch.ops.onednn.qlinear_prepack(self.weight, [ROWS_HINT, self.in_features])
        self.packed_zero_points = torch.zeros(self.out_features, dtype=torch.long)

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        shape = x.shape
        x = x.reshape(-1, self.in_features).float()  # (M, in)
        if self.packed is None:
            x_scale = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # (M, 1)
            xq = torch.round(x / x_scale).to(torch.int8)
            y = torch._int_mm(xq, self.weight.t()).float()  # (M, out), exact int32 sums
            y.mul_(x_scale).mul_(self.weight_scale)
            if self.bias is not None:
                y.add_(self.bias)
        else:
            magnitude = x if self.nonnegative_input else x.abs()
            levels, zero_point = (127.0, 0) if self.nonnegative_input else (63.0, 64)
            peak = magnitude.amax(dim=1, keepdim=True).clamp_(min=1e-12)  # (M, 1)
            # through int8, whose conversion from float is vectorised (to uint8 it is 5x slower
            # here); 0..127 has the same bits in both
            xu = torch.round(x * (levels / peak)).to(torch.int8).add_(zero_point).view(torch.uint8)  # (M, in)
            x_scale = peak.div_(levels)  # (M, 1)
            y = torch.ops.onednn.qlinear_pointwise(  # (M, out): exact int32 sums (less the zero point) x weight_scale
                xu, 1.0, zero_point, self.packed, self.weight_scale, self.packed_zero_points, None, 1.0, 0,
                torch.float32, "none", [], "")
            y = y.mul_(x_scale) if self.bias is None else torch.addcmul(self.bias, y, x_scale)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kernel = "" if self.packed is None else ", kernel=onednn_u8"
        sign = ", nonnegative_input=True" if self.nonnegative_input else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
                f"{sign}{kernel}")


class OneDnnLinear(nn.Module):
    """An `nn.Linear` whose float32 product runs in oneDNN instead of the default BLAS, for
    inference on CPUs where that is faster (`precision.onednn_fp32_is_faster`), with the
    weight reordered once into oneDNN's blocked layout (`packed`, as `torch.compile`'s
    freezing does; not saved). The weights are frozen: the layer holds the same `weight` and
    `bias` Parameters as the one it replaces, so the state dict and the tied output projection
    are unchanged, but `packed` is not updated if they change. With gradients wanted, or off
    the CPU, it is `F.linear` of the Parameters."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), ROWS_HINT)  # (out, in)

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        if (x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32
                or (torch.is_grad_enabled() and self.weight.requires_grad)):
            return F.linear(x, self.weight, self.bias)
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self.packed, self.bias,
                                               "none", [], "")  # (M, out)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _replace_linears(model: nn.Module, make) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by make(linear, nonnegative_input), the
    second saying whether its parent declares that input never negative (`nonnegative_inputs`)."""
    for name, child in model.named_children():
        if isinstance(child, nn.Linear):
            setattr(model, name, make(child, name in getattr(model, "nonnegative_inputs", ())))
        else:
            _replace_linears(child, make)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by its `Int8Linear`."""
    return _replace_linears(model, Int8Linear.from_float)


def use_onednn(model: nn.Module) -> nn.Module:
    """Multiply every nn.Linear of a float32 inference model (in place) with oneDNN (`OneDnnLinear`)."""
    return _replace_linears(model, lambda linear, _: OneDnnLinear(linear))
