"""One process or many: the torch.distributed world a run is part of, for training
(``restore train``) and many-image restoration (``restore batch``) alike.

Under ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) the
process group is initialised with gloo on CPU and nccl on CUDA; run directly, the
world is one process and nothing is initialised.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, exports and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (e.g. one rank hit the time box)."""
        if self.size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, value: float) -> float:
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.size


def resolve_device(request: Optional[str]) -> torch.device:
    """``auto``/None: cuda when available, else cpu; otherwise the named device (checked)."""
    if request in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(request)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {request!r} requested but CUDA is not available here; use --device cpu")
    return device


def init_world(device: Optional[str] = None) -> World:
    """The world of this process (initialising torch.distributed under torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = resolve_device(device)
    if size == 1:
        return World(0, 1, chosen)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return World(rank, size, chosen)


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
