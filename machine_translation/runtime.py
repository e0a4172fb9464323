"""Where and how models run: the device (auto-detected or asked for), the CPU threads, and
handing freed memory back to the OS.

Both training and inference use these, so they live here rather than in either path.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys

import torch

from machine_translation.errors import ConfigError


def pick_device(requested: str | None = None) -> torch.device:
    """cuda, then mps, then cpu, unless the user asked for one (checked to exist here)."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ConfigError(f"--device {requested!r}: choose cpu, cuda, cuda:N or mps") from None
        if device.type == "cpu" and device.index not in (None, 0):
            raise ConfigError(f"--device {requested}: the CPU has no device {device.index}; use --device cpu "
                              "(--threads sets how many cores it uses)")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA devices")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"--device {requested}: Apple mps is not available on this machine; use --device cpu")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"--device {requested!r}: choose cpu, cuda, cuda:N or mps")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def release_freed_memory() -> None:
    """Return the C heap's free pages to the OS (glibc's `malloc_trim`). Training a tokenizer
    on a sample of up to 200,000 pairs frees its memory afterwards, but glibc keeps it in the
    process, and a run of millions of pairs would carry ~100 MiB of it to the end (measured in
    docs/benchmarks-log.md, After issue 12). Elsewhere (macOS, Windows, musl) this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def memory_available() -> int:
    """Bytes this process may still allocate: the least of its cgroup's limit less its usage,
    the system's available memory, and the address-space limit (RLIMIT_AS) less what is mapped."""
    import resource
    from pathlib import Path

    def number(path: str) -> int | None:
        try:
            return int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):  # absent, or "max"
            return None

    found = []
    try:
        group = Path("/proc/self/cgroup").read_text().splitlines()[0].split(":", 2)[2]  # cgroup v2: "0::/path"
    except (OSError, IndexError):
        group = "/"
    for root in {f"/sys/fs/cgroup{group.rstrip('/')}", "/sys/fs/cgroup"}:
        limit, used = number(f"{root}/memory.max"), number(f"{root}/memory.current")
        if limit is not None and used is not None:
            found.append(limit - used)
    limit, used = number("/sys/fs/cgroup/memory/memory.limit_in_bytes"), number("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    if limit is not None and used is not None and limit < 2**60:  # cgroup v1 ("no limit" is a huge number)
        found.append(limit - used)
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        found.append(int(meminfo["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        pages = getattr(os, "sysconf", lambda name: -1)("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else -1
        if pages > 0:
            found.append(pages * os.sysconf("SC_PAGE_SIZE"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        mapped = 0
        try:
            status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
            mapped = int(status["VmSize"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            pass
        found.append(soft - mapped)
    return max(0, min(found)) if found else 2**62


def cpu_count() -> int:
    """Cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_threads(device: torch.device, threads: int | None) -> None:
    """On CPU, one intra-op thread per core (the default can oversubscribe shared machines)."""
    if device.type == "cpu":
        torch.set_num_threads(threads or cpu_count())


# -- precision -----------------------------------------------------------------------------
# One set of names for every command: `mt translate/evaluate --precision` takes PRECISIONS,
# `mt train --precision` takes TRAIN_PRECISIONS; both are checked and resolved here.
PRECISIONS = ("fp32", "bf16", "int8")  # inference
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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


def onednn_fp32_is_faster(device: torch.device) -> bool:
    """Whether float32 inference should multiply with oneDNN rather than PyTorch's default
    BLAS (Intel MKL): on an AMD EPYC, oneDNN with prepacked weights was 1.00-1.49x MKL's speed
    per call at translation's sizes, and beam search 13-15% faster (docs/benchmarks-log.md,
    Float32 through oneDNN on AMD CPUs). CTranslate2 makes the same choice: MKL on Intel CPUs only. Elsewhere (Intel, Arm,
    GPUs) the default stays."""
    return (device.type == "cpu" and cpu_vendor() == "AuthenticAMD" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))  # the private op `precision.OneDnnLinear` uses


INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot products summed in int32


def onednn_u8_int8(device: torch.device) -> bool:
    """Whether int8 products should run in oneDNN's u8 x s8 kernel on 7-bit activations
    (`precision.Int8Linear.use_u8_kernel`) rather than `torch._int_mm`'s s8 x s8: on x86 CPUs
    without VNNI or AMX (AVX2 alone, or AVX-512 without VNNI). There `torch._int_mm` falls
    back to a reference loop, 27x slower than float32 on an AVX2 AMD EPYC (docs/benchmarks-log.md,
    1c. Translation speed and precision), while oneDNN's u8 x s8 kernel is faster than float32. The CPU's flags are
    read at run time; the op's signature has been this one since torch 2.2."""
    if device.type != "cpu" or not {"avx2", "avx512f"} & cpu_flags() or INT8_DOT_FLAGS & cpu_flags():
        return False
    op = getattr(torch.ops.onednn, "qlinear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    return op is not None and "output_dtype" in str(op.default._schema)


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix multiplies run natively: AMX or AVX-512 BF16 on x86 CPUs, bf16
    support on CUDA; Apple mps supports bf16 from macOS 14 (untested here)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "mps":
        return True
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def check_precision(precision: str, device: torch.device, choices: tuple[str, ...] = PRECISIONS,
                    warn: bool = True) -> str:
    """The precision to run in, or a ConfigError naming the flag: int8 is CPU only (PyTorch's
    x86 int8 kernels), fp16 CUDA only; bf16 without native support runs, with a warning that
    it will be slow (`warn=False`: an early check before the one that runs it). `auto`
    (training): bf16 where it is native (AMX or AVX-512 BF16 CPUs, CUDA with bf16, mps), fp32
    elsewhere; on an AVX-512 BF16 CPU (docs/benchmarks.md, Training speed) it trained 1.5x as
    many tokens per second as fp32 and scored higher at 30 minutes."""
    if precision not in choices:
        raise ConfigError(f"--precision {precision!r}: choose one of {', '.join(choices)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(f"--precision int8 runs on CPU only, not {device.type}: use --device cpu, "
                          "or --precision bf16 on this device")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"--precision fp16 needs CUDA, not {device.type}: use bf16 or fp32")
    if precision == "bf16" and warn and not native_bf16(device):
        logging.getLogger(__name__).warning(
            "this %s has no native bfloat16 (AVX-512 BF16 or AMX): bf16 will run, slowly; fp32 is faster here",
            device.type.upper())
    return precision
