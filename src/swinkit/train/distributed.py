"""Multi-process training with torch.distributed, started by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with ``WORLD_SIZE`` above
one, :func:`setup` joins the process group (nccl on GPUs, gloo on CPUs). Rank 0 alone
writes files and prints.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


@dataclasses.dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all processes (a no-op in one process); returns it."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order (any picklable object; ``[value]`` in one process)."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device: str | None = None) -> Distributed:
    """Read torchrun's environment, join the process group if there is one, pick the device.

    ``device`` forces ``cpu`` or ``cuda``; by default CUDA is used when available.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available; use --device cpu")
    if device is not None and not device.startswith(("cpu", "cuda")):
        raise ValueError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def teardown(context: Distributed) -> None:
    """Leave the process group, if this process joined one."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


class RepeatedSampler(DistributedSampler):
    """torch's ``DistributedSampler`` over ``count`` indices, shuffled, with ``repeats`` passes an epoch.

    Each pass is a new permutation drawn from the epoch's generator (``seed + epoch``, as
    ``DistributedSampler`` seeds it), so every index comes once a pass; with ``repeats`` 1 the
    order is exactly ``DistributedSampler``'s. The passes are padded to a multiple of the
    processes, and each process takes every ``num_replicas``-th index from its rank.
    ``repeats`` may be set after construction, before iterating.
    """

    def __init__(self, count: int, num_replicas: int, rank: int, seed: int, repeats: int = 1) -> None:
        super().__init__(range(count), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.count = count
        self.repeats = repeats

    def __len__(self) -> int:
        return math.ceil(self.count * self.repeats / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        indices = [i for _ in range(self.repeats) for i in torch.randperm(self.count, generator=generator).tolist()]
        total = len(self) * self.num_replicas
        indices += indices[: total - len(indices)]
        return iter(indices[self.rank : total : self.num_replicas])
