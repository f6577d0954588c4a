"""Data-parallel training across processes (`torchrun --nproc_per_node=N -m gantlitz train ...`).

Every process holds full copies of G, G_ema and D, reads its own batches (the sampler is seeded per
rank) and, after each backward pass, the gradients are averaged across processes with one bucketed
all-reduce, so the optimisers take identical steps and the weights stay bit-identical on every rank.
This is what `DistributedDataParallel` does, written out (as StyleGAN2-ADA does) because a GAN step
needs what DDP's reducer does not support: R1 uses `torch.autograd.grad(create_graph=True)`, D is
frozen during the generator step and G during the discriminator step, and modality dropout leaves
parameters unused. Rank 0 writes checkpoints, logs and previews.

Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op: single GPU and CPU need
no launcher. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from ..device import resolve_device

__all__ = ["DistInfo", "setup", "cleanup", "is_distributed", "all_reduce_grads", "all_reduce_sum",
           "all_reduce_mean_", "broadcast_module", "any_flag", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None, timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else return a single-process info."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    created = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world,
            timeout=datetime.timedelta(minutes=timeout_minutes),
            **({"device_id": dev} if dev.type == "cuda" else {}),
        )
        created = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, created)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if `setup` created it."""
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_grads(params: Iterable[torch.nn.Parameter], bucket_elements: int = 1 << 25) -> None:
    """Average `.grad` of `params` across processes, flattening into buckets (few large all-reduces).
    Parameters without a gradient contribute zeros (every rank must call this with the same list)."""
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    world = dist.get_world_size()
    bucket: list[torch.nn.Parameter] = []
    size = 0

    def flush() -> None:
        if not bucket:
            return
        flat = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in bucket
        ])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for p in bucket:
            n = p.numel()
            chunk = flat[offset : offset + n].view_as(p)
            if p.grad is None:
                p.grad = chunk.clone()
            else:
                p.grad.copy_(chunk)
            offset += n

    for p in params:
        bucket.append(p)
        size += p.numel()
        if size >= bucket_elements:
            flush()
            bucket, size = [], 0
    flush()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum across processes (the `reduce` hook of `AdaptiveP`)."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place mean across processes."""
    if is_distributed():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank `src` to every process."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src)


def any_flag(flag: bool, device: torch.device) -> bool:
    """True on every process when `flag` is True on any (stop requests, time limits)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0], device=device, dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()
