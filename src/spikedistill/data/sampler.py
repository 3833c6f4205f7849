"""``EpochShardSampler``: the in-memory loader's epoch order, for DataLoader-based pipelines.

Every epoch ``e`` has one permutation ``pi_e`` of ``range(N)`` drawn from ``derive_seed(seed,
e)`` (the same on every rank and node), padded by wrapping around to ``P = ceil(N / W) * W``
positions for ``W`` ranks; rank ``r`` (the *global* rank, over all nodes) takes the positions
``p = r, r + W, r + 2W, ...``, i.e. ``pi_e[p]``. This is exactly
:func:`spikedistill.data.loader.epoch_indices`, so the streaming and the in-memory pipeline visit
the samples in the same order, every rank gets ``ceil(N / W)`` samples (hence, with
``drop_last``, the same number of steps), and the shards of one epoch cover every sample, each
once plus at most ``W - 1`` wrap-around repeats (as ``torch.utils.data.DistributedSampler``).

Each element is ``(index, draw_seed)`` with ``draw_seed = derive_seed(seed, e, p, 2)``: the
seed of that sample's augmentation draws (RandomResizedCrop, flip), a function of the global
position ``p`` alone. The worker that decodes the sample seeds its draws with it, so the batches
do not depend on the number of DataLoader workers nor on which worker gets which sample (nor on
the world size, given the global batch), and a wrap-around repeat gets fresh draws. Because the
order is a pure function of ``(seed, epoch)``, a resumed run that calls :meth:`set_epoch` with
the epoch it restarts at sees exactly the batches of the uninterrupted run (resume is at epoch
boundaries). With ``shuffle=False`` (evaluation) rank ``r`` takes ``r, r + W, ...`` unpadded
(:func:`~spikedistill.data.loader.shard_indices`): disjoint shards whose union is the split.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import torch
from torch.utils.data import Sampler

from spikedistill.data.loader import derive_seed, epoch_indices

#: the salt of the per-sample augmentation seed (the device draws of DeviceLoader use 1)
DRAW_SALT = 2


class EpochShardSampler(Sampler):
    """Yields ``(dataset index, draw seed)`` for rank ``rank`` of ``world_size`` (see the module
    docstring). Call :meth:`set_epoch` before each epoch."""

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = int(n)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and draw seeds the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.shuffle:
            return -(-self.n // self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def positions(self) -> torch.Tensor:
        """The global positions ``p`` this rank visits in the current epoch."""
        return torch.arange(self.rank, self.rank + self.world_size * len(self), self.world_size)

    def indices(self) -> torch.Tensor:
        """This rank's dataset indices for the current epoch (CPU int64)."""
        return epoch_indices(self.n, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                             rank=self.rank, world_size=self.world_size)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        order = self.indices().tolist()
        seed, epoch = self.seed, self.epoch
        for idx, p in zip(order, self.positions().tolist()):
            yield idx, derive_seed(seed, epoch, p, DRAW_SALT)
