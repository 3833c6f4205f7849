"""Distributed helpers: torchrun detection, process group, device per rank, reductions.

Launch multi-GPU (and multi-node) runs with ``torchrun``; it sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, from which :func:`init_distributed` builds
the process group (NCCL on CUDA, gloo on CPU) and picks ``cuda:LOCAL_RANK``. Without these
variables (or with ``WORLD_SIZE=1``) everything runs as a single process and the collectives
below are no-ops.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List, Optional

import torch
import torch.distributed as dist

from spikedistill.errors import ConfigError


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None
    owns_group: bool = False   # True when init_distributed created the process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple:
    """``(rank, local_rank, world_size)`` from the torchrun environment (``(0, 0, 1)`` if unset)."""
    def _int(name: str, default: int) -> int:
        raw = os.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"environment variable {name}={raw!r}: expected an integer "
                              "(set by torchrun)") from None

    world = _int("WORLD_SIZE", 1)
    rank = _int("RANK", 0)
    local = _int("LOCAL_RANK", rank)
    return rank, local, world


def resolve_device(spec: str = "auto", local_rank: int = 0,
                   key: str = "config key 'train.device'") -> torch.device:
    """``auto``: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; ``cuda`` picks the local
    rank's GPU; ``cuda:N`` and ``cpu`` are taken as given. ``key`` names the setting in the
    error (``config key 'train.device'``, or a command's ``--device``)."""
    spec = (spec or "auto").strip()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: {spec!r} requested but CUDA is not "
                              "available on this machine (use auto or cpu)")
        if spec == "cuda":
            index = local_rank % max(1, torch.cuda.device_count())
            return torch.device("cuda", index)
        try:
            dev = torch.device(spec)
        except RuntimeError:
            dev = None
        if dev is None or dev.type != "cuda":
            raise ConfigError(f"{key}: expected auto, cpu, cuda or cuda:N, got {spec!r}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}: {spec!r} but only "
                              f"{torch.cuda.device_count()} CUDA device(s) are visible")
        return dev
    raise ConfigError(f"{key}: expected auto, cpu, cuda or cuda:N, got {spec!r}")


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Detect torchrun, pick this rank's device and join (or create) the process group.

    An already initialised default group (e.g. created by a test harness) is reused and left
    alone by :func:`cleanup`.
    """
    rank, local, world = env_world()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        dev = resolve_device(device, local)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(rank, local, world, dev, dist.get_backend(), owns_group=False)
    dev = resolve_device(device, local)
    if world <= 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(0, 0, 1, dev, None, owns_group=False)
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    kwargs: dict = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
    if dev.type == "cuda":
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    return DistInfo(dist.get_rank(), local, dist.get_world_size(), dev, backend, owns_group=True)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_dist():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (and return it); a no-op in a single process."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small things such as a run name)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not is_dist():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank, so that all
    replicas evaluate and checkpoint the same model."""
    if not is_dist():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def print_main(*args: Any, file=None, **kwargs: Any) -> None:
    """``print`` on rank 0 only."""
    if is_main_process():
        print(*args, file=file if file is not None else sys.stdout, flush=True, **kwargs)


def warn(msg: str) -> None:
    """A warning on stderr, rank 0 only."""
    if is_main_process():
        print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def cleanup(info: Optional[DistInfo] = None) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info is not None and info.owns_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
