"""Distributed data-parallel training under ``torchrun`` (one process per device).

``torchrun --nproc_per_node=N -m step.train ...`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`setup` then joins the process group (``nccl`` on CUDA, ``gloo`` on CPU) and pins each rank
to ``cuda:LOCAL_RANK``. Without those variables the run is a single process and nothing changes.

Conventions every rank follows:

- ``trainer.batch_size`` is the GLOBAL batch; each rank loads ``batch_size / world_size`` samples,
  so a run's hyper-parameters do not depend on how many devices it uses.
- Gradients are averaged by DistributedDataParallel; losses are summed across ranks and divided by
  the global sample count; torchmetrics synchronises its states when ``compute()`` is called.
- Only rank 0 writes checkpoints, records, leaderboard rows and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from step.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """The rank layout ``torchrun`` put in the environment (a single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(os.environ.get("RANK", "0")), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def setup(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; return this rank's device."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int, info: DistInfo, what: str = "trainer.batch_size") -> int:
    """``global_batch / world_size``; a global batch that does not split evenly is a config error."""
    if global_batch % info.world_size:
        raise ConfigError(
            f"{what}={global_batch} is the global batch and must be divisible by the {info.world_size} "
            f"processes of this run; use a multiple of {info.world_size}."
        )
    return global_batch // info.world_size


def wrap(model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool) -> nn.Module:
    """DistributedDataParallel around ``model`` (SyncBatchNorm first when asked and on CUDA)."""
    if not info.enabled:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ConfigError("trainer.sync_bn=true needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                              "set trainer.sync_bn=false on CPU.")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or ``torch.compile`` wrappers (what checkpoints hold)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (so all ranks stop together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class ShardSampler(Sampler[int]):
    """Evaluation indices ``rank, rank + W, rank + 2W, ...`` in order: every sample exactly once.

    Unlike ``DistributedSampler`` it neither pads nor repeats samples, so metrics summed over ranks
    equal the single-process metrics (shards may differ in length by one sample).
    """

    def __init__(self, n: int, info: DistInfo):
        self.indices = list(range(info.rank, n, info.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
