"""Inference in reduced precision (bfloat16 weights, or int8 linear layers), and float32
linear layers multiplied by oneDNN where that is the faster library.

- fp32: unchanged, except on CPUs where PyTorch's default BLAS (MKL) is the slower one
  (`runtime.onednn_fp32_is_faster`): there every `nn.Linear` becomes a `OneDnnLinear`.
- bf16: the whole model in bfloat16 (`model.to`), fast where the CPU has AVX-512 BF16 or AMX.
- int8: every `nn.Linear` becomes an `Int8Linear`: int8 weights with one scale per output
  channel (symmetric), and each input row quantized to int8 with its own scale when called
  (dynamic quantization, as CTranslate2 does); the int8 x int8 -> int32 product is PyTorch's
  `torch._int_mm` (oneDNN, VNNI/AMX where the CPU has them). Embeddings and LayerNorms stay
  float32; the output projection, tied to the embedding in float32, gets its own int8 copy.
  Because every row has its own scale and integer products are exact, a sentence translates
  the same in any batch.

PyTorch's `torch.ao.quantization.quantize_dynamic` was measured too: as fast, but it gives
the whole batch one activation scale (a sentence's translation depends on its batch mates),
and torch.ao is deprecated. `Int8Linear` holds plain tensors, so an int8 model directory
(`mt quantize`) is an ordinary safetensors file that loads without running code.
Which precision a device supports is decided in `runtime.check_precision`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Int8Linear(nn.Module):
    """y = x W^T + b with W in int8 (per output channel scales) and x quantized per row."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))  # (out, in)
        self.register_buffer("weight_scale", torch.ones(out_features))  # (out,)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        layer.weight.copy_(torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        layer.weight_scale.copy_(scale)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        return layer.to(linear.weight.device)

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        shape = x.shape
        x = x.reshape(-1, self.in_features).float()  # (M, in)
        x_scale = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # (M, 1)
        xq = torch.round(x / x_scale).to(torch.int8)
        y = torch._int_mm(xq, self.weight.t()).float()  # (M, out), exact int32 sums
        y.mul_(x_scale).mul_(self.weight_scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class OneDnnLinear(nn.Module):
    """An `nn.Linear` whose float32 product runs in oneDNN instead of the default BLAS, for
    inference on CPUs where that is faster (`runtime.onednn_fp32_is_faster`), with the
    weight reordered once into oneDNN's blocked layout (`packed`, as `torch.compile`'s
    freezing does; not saved). The weights are frozen: the layer holds the same `weight` and
    `bias` Parameters as the one it replaces, so the state dict and the tied output projection
    are unchanged, but `packed` is not updated if they change. With gradients wanted, or off
    the CPU, it is `F.linear` of the Parameters."""

    ROWS_HINT = 64  # the rows oneDNN's layout is chosen for (any number runs): a batch of 64 sentences

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), self.ROWS_HINT)  # (out, in)

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
    """Replace every nn.Linear of `model` (in place) by make(linear)."""
    for name, child in model.named_children():
        if isinstance(child, nn.Linear):
            setattr(model, name, make(child))
        else:
            _replace_linears(child, make)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by its `Int8Linear`."""
    return _replace_linears(model, Int8Linear.from_float)


def use_onednn(model: nn.Module) -> nn.Module:
    """Multiply every nn.Linear of a float32 inference model (in place) with oneDNN (`OneDnnLinear`)."""
    return _replace_linears(model, OneDnnLinear)


def to_precision(model: nn.Module, precision: str) -> nn.Module:
    """A float32 model in the inference precision asked for ("fp32", "bf16" or "int8")."""
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        return quantize_int8(model)
    return model
