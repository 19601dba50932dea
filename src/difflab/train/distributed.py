"""Data parallel training on torch.distributed: one process per device, launched by torchrun (or alone).

Every rank draws the same global batch (indices, t, eps) from the step's seed and trains on its own contiguous
slice of it; DDP averages the gradients. So W ranks on a global batch B take the same step as one process on B.
"""
from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from difflab.errors import UserError


@dataclass(frozen=True)
class World:
    """Where this process sits: rank r of `size`, training on `device`."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0 logs and writes; the others only train."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous slice of a global batch of n (n divisible by size)."""
        k = n // self.size
        return slice(self.rank * k, (self.rank + 1) * k)

    def sum(self, x: Tensor) -> Tensor:
        """Sum over ranks (identity alone)."""
        if self.distributed:
            x = x.clone()
            dist.all_reduce(x)
        return x

    def gather(self, x: Tensor) -> list[Tensor]:
        """Every rank's copy of an equally shaped tensor, in rank order."""
        if not self.distributed:
            return [x]
        out = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(out, x.contiguous())
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 under torchrun, or a process on its own: the one that writes plots and samples."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' is a GPU when there is one (this rank's under torchrun), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device is {name} but no CUDA GPU is visible: use train.device=cpu or auto")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def init_world(device_name: str, timeout_minutes: float = 10.0) -> World:
    """Join the process group torchrun describes (env://): NCCL on GPUs, gloo on CPUs; alone without torchrun."""
    if not launched_by_torchrun():
        return World(device=resolve_device(device_name))
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UserError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): lower "
                            "--nproc_per_node to the number of GPUs")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return World(rank, size, local, device)


def close_world(world: World) -> None:
    """Leave the group together: a rank that tears its gloo connections down while another still writes its
    checkpoint can abort in gloo's threads ("terminate called without an active exception")."""
    if world.distributed and dist.is_initialized():
        gc.collect()  # DDP's reducer sits in reference cycles: free it while its group still exists
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def standard_grad_layout(net: torch.nn.Module) -> None:
    """Give every gradient its parameter's strides before DDP buckets it. A 1x1 convolution's weight gradient comes
    back from the CPU kernels with other strides on its size-1 dims than the parameter has (the same memory order),
    which DDP warns about once per rank and copies; re-striding it here is a copy of a few kilobytes."""
    for p in net.parameters():
        if p.dim() == 4 and p.shape[-2:] == (1, 1):
            p.register_hook(lambda g, s=p.stride(): g if g.stride() == s else
                            torch.empty_strided(g.shape, s, dtype=g.dtype, device=g.device).copy_(g))
