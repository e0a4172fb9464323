"""Where and how models run: the device (auto-detected or asked for) and the CPU threads.

Both training and inference use these, so they live here rather than in either path.
"""
from __future__ import annotations

import os

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """cuda, then mps, then cpu, unless the user asked for one."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_count() -> int:
    """Cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_threads(device: torch.device, threads: int | None) -> None:
    """On CPU, one intra-op thread per core (the default can oversubscribe shared machines)."""
    if device.type == "cpu":
        torch.set_num_threads(threads or cpu_count())
