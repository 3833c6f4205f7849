"""``DeviceLoader``: batches from a uint8 tensor kept on the training device.

No DataLoader workers: the whole split lives on the device as uint8 (CIFAR-10 train is 150 MiB),
each batch is gathered with ``index_select`` and augmented on the device.

Determinism (for resume): the epoch's permutation comes from a CPU generator seeded with
``derive_seed(seed, epoch)`` (the same on every rank), and the augmentation generator on the
device from ``derive_seed(seed, epoch, rank, 1)``. Re-creating a loader and calling
``set_epoch(e)`` reproduces epoch ``e``'s batches exactly.

Sharding: with ``shuffle=True`` rank r takes ``perm[r::world_size]`` of the permutation padded by
wrapping around to a multiple of ``world_size``, so every rank has the same number of samples
and batches (a few samples are seen twice per epoch, as with ``DistributedSampler``). With
``shuffle=False`` (evaluation) nothing is padded: rank r takes :func:`shard_indices` (``r,
r + world_size, ...``), so the ranks' shards are disjoint and their union is exactly the split;
shards may differ in length by one sample and the batch counts by one, so evaluation must sum
correct counts and sample counts over ranks (all-reduce of sums), not average per-rank means.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from spikedistill.errors import ConfigError

_MASK64 = (1 << 64) - 1


def derive_seed(*values: int) -> int:
    """A 63-bit seed that is a pure function of the integers ``values`` (splitmix64 mixing)."""
    state = 0x9E3779B97F4A7C15
    for v in values:
        state = (state ^ (int(v) & _MASK64)) & _MASK64
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state & ((1 << 63) - 1)


def shard_indices(n: int, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s evaluation shard of ``range(n)``: ``rank, rank + world_size, ...``.

    The shards of ranks ``0 .. world_size - 1`` are disjoint and their union is ``range(n)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return torch.arange(rank, n, world_size, dtype=torch.long)


def epoch_indices(n: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The sample order of rank ``rank`` in epoch ``epoch`` (CPU int64); see the module docstring."""
    if not shuffle:
        return shard_indices(n, rank, world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derive_seed(seed, epoch))
    perm = torch.randperm(n, generator=gen)
    total = -(-n // world_size) * world_size
    if total > n and n > 0:
        perm = torch.cat([perm, perm.repeat(-(-(total - n) // n))[: total - n]])
    return perm[rank::world_size]


class DeviceLoader:
    """Iterate ``(x float32 [B, C, H, W], y int64 [B] or soft float32 [B, K] with mix)`` batches on ``device``; for frame data
    (uint8 ``[N, T, C, H, W]``) ``x`` is time-major ``[T, B, C, H, W]``.

    ``images`` (uint8 ``[N, C, H, W]`` or ``[N, T, C, H, W]``) and ``labels`` are moved to
    ``device`` once. The augmentation sees the gathered batch in the stored layout (``[B, C, H,
    W]`` / ``[B, T, C, H, W]``) and must return the same layout; the loader then moves the time
    axis first.
    ``batch_size`` is per process. ``augment`` is a callable ``(x_uint8, generator) -> float32``
    (e.g. :class:`spikedistill.data.BatchAugment`); None gives ``x / 255``. ``drop_last`` drops
    the final short batch. ``channels_last`` returns batches in channels-last memory format.
    ``mix`` (e.g. :class:`spikedistill.data.mix.BatchMixer`) is called as ``mix(x, y, generator,
    epoch=epoch)`` on the augmented float batch (stored layout, same generator after the
    augmentation's draws) and returns ``(x~, y~ [B, K])``: the loader then yields soft targets.
    Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool,
                 drop_last: bool = False, augment: Callable | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, rank: int = 0, world_size: int = 1, channels_last: bool = False,
                 mix: Callable | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim not in (4, 5):
            raise ValueError(f"images must be uint8 [N, C, H, W] or frames [N, T, C, H, W], got "
                             f"{images.dtype} {tuple(images.shape)}")
        if images.ndim == 5 and channels_last:
            raise ConfigError("config key 'train.channels_last': frame batches [T, B, C, H, W] have "
                              "no channels-last layout; set train.channels_last=false")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.long)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.channels_last = bool(channels_last)
        self.mix = mix
        self.frames = images.ndim == 5
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Samples this rank visits per epoch (including wrap-around padding when shuffling)."""
        n = self.images.shape[0]
        if self.shuffle:
            return -(-n // self.world_size)
        return len(range(self.rank, n, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentation draws the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self) -> torch.Tensor:
        """This rank's sample order for the current epoch (CPU int64)."""
        return epoch_indices(self.images.shape[0], shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                             rank=self.rank, world_size=self.world_size)

    def augment_generator(self) -> torch.Generator:
        """The device generator for this (seed, epoch, rank)'s augmentation draws."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, self.epoch, self.rank, 1))
        return gen

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices().to(self.device)
        gen = self.augment_generator()
        count = len(self) * self.batch_size if self.drop_last else len(order)
        for start in range(0, count, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.images.index_select(0, idx)
            y = self.labels.index_select(0, idx)
            x = self.augment(x, gen) if self.augment is not None else x.to(torch.float32) / 255.0
            if self.mix is not None:                      # mixup / cutmix: y becomes [B, K]
                x, y = self.mix(x, y, gen, epoch=self.epoch)
            if self.frames:
                x = x.transpose(0, 1).contiguous()        # [B, T, C, H, W] -> [T, B, C, H, W]
            elif self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
