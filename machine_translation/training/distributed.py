"""Multi-process training with torch.distributed (launched by torchrun): which rank this
is, the backend for the device (nccl on CUDA, gloo on CPU), and the few collectives the
trainer needs. A single process (no WORLD_SIZE) uses the same code with world_size 1."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up; on CUDA each process takes GPU LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True if the flag is set on any rank (e.g. a stop request), so all ranks decide alike."""
    return all_reduce_sum([float(flag)], info, device)[0] > 0 if info.enabled else flag


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo, finished: bool) -> None:
    """Leave the process group. After a run that finished, every rank first waits for the others
    (rank 0 still saves and validates the average after the last step): a rank that tore its
    gloo connections down while another was still working was seen to abort (SIGABRT) in CI.
    After an error no barrier: the other ranks may never reach it."""
    if info.enabled and dist.is_initialized():
        if finished:
            barrier(info)
        dist.destroy_process_group()
