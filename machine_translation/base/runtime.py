"""Where models run: the device (auto-detected or asked for), the CPU threads, the memory
this process may still use, and handing freed memory back to the OS. (In which precision and
with which kernels is `inference.precision`'s.)

Both training and inference use these, so they live here rather than in either path.
"""
from __future__ import annotations

import ctypes
import os
import sys

import torch

from machine_translation.base.errors import ConfigError


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


def prepare(device: str | None, threads: int | None) -> torch.device:
    """The device to run on (`pick_device`), with the CPU threads set for it: what every
    command does first."""
    chosen = pick_device(device)
    set_threads(chosen, threads)
    return chosen
