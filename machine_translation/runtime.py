"""Where and how models run: the device (auto-detected or asked for) and the CPU threads.

Both training and inference use these, so they live here rather than in either path.
"""
from __future__ import annotations

import os

import torch

from machine_translation.errors import ConfigError


def pick_device(requested: str | None = None) -> torch.device:
    """cuda, then mps, then cpu, unless the user asked for one (checked to exist here)."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ConfigError(f"--device {requested!r}: choose cpu, cuda, cuda:N or mps") from None
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


def cpu_count() -> int:
    """Cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_threads(device: torch.device, threads: int | None) -> None:
    """On CPU, one intra-op thread per core (the default can oversubscribe shared machines)."""
    if device.type == "cpu":
        torch.set_num_threads(threads or cpu_count())
