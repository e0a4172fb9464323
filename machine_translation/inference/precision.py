"""Precision, one home: which precision and which kernels run a model, decided once per path
for (what was asked, what the directory stores, the device), and applied once.

    plan = resolve("int8", device, stored="fp32")   # checks, picks the kernels for this CPU
    model = apply_plan(model, plan)                   # converts the float32 model, in place

Names, the same in every command: inference takes `PRECISIONS` (fp32, bf16, int8), training
`TRAIN_PRECISIONS` (auto, fp32, bf16, fp16). A model directory stores fp32, or int8 when
`mt quantize` wrote it (`quantize_directory`, here); `stored_layers` gives the model the int8
layers such a file holds before its weights load. What the CPU can do is read at run time
(`cpu_flags`): bf16 is native with AMX or AVX-512 BF16, int8 products use VNNI/AMX through
`torch._int_mm` or oneDNN's u8 kernel without them, and float32 multiplies in oneDNN on AMD
CPUs. The kernels themselves are in `kernels`.
"""
from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from machine_translation.base.errors import ConfigError, ModelDirError
from machine_translation.base.files import atomic_directory
from machine_translation.inference.kernels import Int8Linear, quantize_int8, use_onednn
from machine_translation.model.directory import LoadedModel, load_pretrained, save_pretrained
from machine_translation.model.outputs import check_out_dir

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")  # inference: `mt translate/evaluate/serve --precision`
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # `mt train --precision`: autocast over float32 weights
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot products summed in int32


@dataclass(frozen=True)
class Plan:
    """What runs: `precision` (of the weights at inference, of autocast in training), whether
    the stored weights are int8, and the faster-than-default kernels this machine gets."""

    precision: str
    stored: str = "fp32"
    onednn_fp32: bool = False  # float32 products in oneDNN (`kernels.OneDnnLinear`)
    onednn_u8: bool = False  # int8 products in oneDNN's u8 kernel (`kernels.Int8Linear.use_u8_kernel`)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """Training's autocast type (None: float32 throughout)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)


def resolve(requested: str | None, device: torch.device, stored: str = "fp32", training: bool = False,
            warn: bool = True, model: str = "this model") -> Plan:
    """The plan for running `model` (named in refusals) in `requested` (None: the stored
    precision; training: "auto") on `device`, or a ConfigError naming the flag and the fix.
    `warn=False`: an early check before the one that runs it (no warning twice)."""
    choices = TRAIN_PRECISIONS if training else PRECISIONS
    precision = requested or ("auto" if training else stored)
    if precision not in choices:
        raise ConfigError(f"--precision {precision!r}: choose one of {', '.join(choices)}")
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    if stored == "int8" and device.type != "cpu":
        raise ConfigError(f"{model} is an int8 model (made by `mt quantize`), which runs on CPU only, not "
                          f"{device.type}: use --device cpu, or the float32 model it was made from")
    if stored == "int8" and precision != "int8":
        raise ConfigError(f"{model} is an int8 model (made by `mt quantize`): translate it with --precision int8, or "
                          f"translate the float32 model it was made from in {precision}")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(f"--precision int8 runs on CPU only, not {device.type}: use --device cpu, "
                          "or --precision bf16 on this device")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"--precision fp16 needs CUDA, not {device.type}: use bf16 or fp32")
    if precision == "bf16" and warn and not native_bf16(device):
        logger.warning("this %s has no native bfloat16 (AVX-512 BF16 or AMX): bf16 will run, slowly; fp32 is "
                       "faster here", device.type.upper())
    inference = not training
    return Plan(precision, stored, onednn_fp32=inference and precision == "fp32" and onednn_fp32_is_faster(device),
                onednn_u8=inference and precision == "int8" and onednn_u8_int8(device))


def apply_plan(model: nn.Module, plan: Plan) -> nn.Module:
    """An inference model in the plan's precision and kernels (converted in place; bf16 by
    `model.to`, which returns the same module)."""
    if plan.precision == "bf16":
        model = model.to(torch.bfloat16)
    if plan.precision == "int8" and plan.stored != "int8":
        quantize_int8(model)
    if plan.onednn_fp32:
        use_onednn(model)
    if plan.onednn_u8:
        for m in model.modules():
            if isinstance(m, Int8Linear):
                m.use_u8_kernel()
    return model


def stored_layers(model: nn.Module, stored: str) -> None:
    """Give a freshly built model the layers its stored weights have (`load_pretrained`'s
    `layers`): the int8 layers of a directory written by `mt quantize`."""
    if stored == "int8":
        quantize_int8(model)


def quantize_directory(model_dir: Path, out: Path, precision: str = "int8", overwrite: bool = False) -> LoadedModel:
    """Write the translation model of `model_dir` as a new int8 model directory `out`
    (tokenizers, config and search settings copied), whole or not at all, with `--overwrite`
    only over a directory mt wrote (`outputs`). Returns the loaded source model."""
    model_dir, out = Path(model_dir), Path(out)
    if precision != "int8":
        raise ConfigError(f"--precision {precision!r}: mt quantize writes int8 (bf16 needs no new directory: "
                          "translate with --precision bf16)")
    replace = check_out_dir(out, overwrite, [model_dir])
    loaded = load_pretrained(model_dir, layers=stored_layers)
    if loaded.config.task != "mt":
        raise ModelDirError(f"{model_dir} holds a language model: int8 is for translation models "
                            "(`mt generate` runs language models in float32)")
    if loaded.precision == "int8":
        raise ModelDirError(f"{model_dir} is already int8: quantize the float32 model it was made from")
    int8 = quantize_int8(copy.deepcopy(loaded.model))
    with atomic_directory(out, replace) as tmp:
        save_pretrained(tmp, int8, loaded.config, loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.pair,
                        loaded.generation, precision="int8")
    return loaded


# -- what this machine can do (read at run time, never assumed) --------------------------------

@functools.cache  # the CPU does not change while we run
def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields as the OS reports them (Linux /proc/cpuinfo; empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first CPU's block
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`; empty where the OS does not say)."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_vendor() -> str:
    """`GenuineIntel`, `AuthenticAMD`, ... (empty where the OS does not say)."""
    return _cpuinfo().get("vendor_id", "")


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix multiplies run natively: AMX or AVX-512 BF16 on x86 CPUs, bf16
    support on CUDA; Apple mps supports bf16 from macOS 14 (untested here). `auto` (training)
    is bf16 where this holds: on an AVX-512 BF16 CPU it trained 1.5x as many tokens per second
    as fp32 and scored higher at 30 minutes (docs/benchmarks.md, Training speed)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "mps":
        return True
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def onednn_fp32_is_faster(device: torch.device) -> bool:
    """Whether float32 inference should multiply with oneDNN rather than PyTorch's default
    BLAS (Intel MKL): on an AMD EPYC, oneDNN with prepacked weights was 1.00-1.49x MKL's speed
    per call at translation's sizes, and beam search 13-15% faster (docs/benchmarks-log.md,
    Float32 through oneDNN on AMD CPUs). CTranslate2 makes the same choice: MKL on Intel CPUs
    only. Elsewhere (Intel, Arm, GPUs) the default stays."""
    return (device.type == "cpu" and cpu_vendor() == "AuthenticAMD" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))  # the private op `OneDnnLinear` uses


def onednn_u8_int8(device: torch.device) -> bool:
    """Whether int8 products should run in oneDNN's u8 x s8 kernel on 7-bit activations
    rather than `torch._int_mm`'s s8 x s8: on x86 CPUs without VNNI or AMX (AVX2 alone, or
    AVX-512 without VNNI). There `torch._int_mm` falls back to a reference loop, 27x slower
    than float32 on an AVX2 AMD EPYC (docs/benchmarks-log.md, 1c. Translation speed and
    precision), while oneDNN's u8 x s8 kernel is faster than float32. The op's signature has
    been this one since torch 2.2."""
    if device.type != "cpu" or not {"avx2", "avx512f"} & cpu_flags() or INT8_DOT_FLAGS & cpu_flags():
        return False
    op = getattr(torch.ops.onednn, "qlinear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    return op is not None and "output_dtype" in str(op.default._schema)
