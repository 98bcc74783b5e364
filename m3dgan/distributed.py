"""Multi-process training on PyTorch's own engine: ``torch.distributed`` + DistributedDataParallel.

``torchrun --nproc_per_node N -m m3dgan train ...`` starts N copies of the command and sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` for each; this
module reads them, joins the process group (NCCL on CUDA, gloo on CPU) and gives the trainer the
few collective operations it needs. Without those variables (or with ``WORLD_SIZE=1``) nothing
here is active and training runs in one process, unchanged.

Why the trainer needs more than "wrap the model in DDP": a training step of M3D-GAN runs two
optimizers (D, then G) and several forward passes over shared modules; see
:class:`m3dgan.core.step.TrainStep` for which parts DDP wraps and why. What lives here:

- :func:`session`: join and leave the process group, pick this process's device;
- :class:`Distributed`: rank / world size, ``wrap`` (DDP or identity), and agreement helpers —
  a non-finite loss, a stop request (SIGTERM) or the logged losses must be the same on every
  rank, or the ranks would leave the loop at different steps and wait on each other forever.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from m3dgan.errors import ConfigError


@dataclass
class Distributed:
    """This process's place in the job. ``world == 1`` means single-process: every collective
    below is then a no-op that returns its input."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files (config, logs, samples, TensorBoard, checkpoints)."""
        return self.rank == 0

    def wrap(self, module: nn.Module, find_unused: bool = False) -> nn.Module:
        """DDP around ``module`` (its gradients are averaged over ranks in backward);
        ``find_unused``: some forwards leave parameters out (DDP's
        ``find_unused_parameters``, which costs a graph walk per step)."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            module, device_ids=ids, output_device=None, find_unused_parameters=find_unused
        )

    def _reduce(self, values: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
        values = values.to(self.device)
        dist.all_reduce(values, op=op)
        return values

    def all_true(self, flag: bool | torch.Tensor) -> bool:
        """True where ``flag`` holds on every rank."""
        if not self.enabled:
            return bool(flag)
        t = torch.as_tensor(flag, dtype=torch.int32).reshape(1)
        return bool(self._reduce(t, dist.ReduceOp.MIN).item())

    def any_true(self, flag: bool) -> bool:
        """True where ``flag`` holds on at least one rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32)
        return bool(self._reduce(t, dist.ReduceOp.MAX).item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average of each value over ranks. Every rank's loss is a mean over its equal share
        of the global batch, so this is the loss of the global batch."""
        if not self.enabled or not values:
            return values
        keys = list(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        t = self._reduce(t, dist.ReduceOp.SUM) / self.world
        return dict(zip(keys, t.tolist(), strict=True))

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from exc


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun (or any env:// launcher) sets them."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process group")
    return rank, world, local


@contextmanager
def session(device: torch.device) -> Iterator[Distributed]:
    """Join the process group described by the environment (if any) for the block.

    ``device`` is the device the config asks for; under torchrun a CUDA device becomes
    ``cuda:LOCAL_RANK`` (one GPU per process), which also picks NCCL; CPU processes use gloo.
    A process group that the caller initialised already is used as it is and left open.
    """
    rank, world, local = world_from_env()
    if world == 1:
        yield Distributed(device=device)
        return
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} GPU(s); "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield Distributed(rank=rank, world=world, local_rank=local, device=device)
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()
