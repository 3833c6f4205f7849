"""DeviceLoader: epoch permutations, rank shards, determinism for resume."""

from __future__ import annotations

import pytest
import torch

from spikedistill.data import BatchAugment, DeviceLoader, derive_seed, epoch_indices, shard_indices

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_data(n=103, c=1, h=4, w=4):
    """Images whose first pixel encodes the sample id (id % 256) so batches can be traced."""
    ids = torch.arange(n)
    images = torch.zeros(n, c, h, w, dtype=torch.uint8)
    images[:, 0, 0, 0] = (ids % 256).to(torch.uint8)
    images[:, 0, 0, 1] = (ids // 256).to(torch.uint8)
    return images, ids.clone()


def batch_ids(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0, 0, 0] * 255).round().long() + 256 * (x[:, 0, 0, 1] * 255).round().long()


@pytest.mark.parametrize("device", DEVICES)
def test_single_rank_epoch_is_a_permutation(device):
    images, labels = make_data()
    loader = DeviceLoader(images, labels, 10, shuffle=True, device=device, seed=3)
    assert len(loader) == 11
    for epoch in range(3):
        loader.set_epoch(epoch)
        seen, sizes = [], []
        for x, y in loader:
            assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.device.type == device
            assert torch.equal(batch_ids(x), y)  # images and labels stay paired
            seen.append(y.cpu())
            sizes.append(len(y))
        seen = torch.cat(seen)
        assert sorted(seen.tolist()) == list(range(103))
        assert sizes == [10] * 10 + [3]
        assert seen.tolist() != list(range(103))  # actually shuffled
    loader.drop_last = True
    assert len(loader) == 10 and sum(len(y) for _, y in loader) == 100


def test_same_seed_epoch_identical_batches_and_epochs_differ():
    images, labels = make_data(n=64, c=3, h=8, w=8)
    images = images + torch.randint(0, 200, images.shape, generator=torch.Generator().manual_seed(0),
                                    dtype=torch.uint8)
    aug = BatchAugment(mean=(0.5,) * 3, std=(0.2,) * 3, random_crop=True, crop_padding=2, hflip=True,
                       autoaugment=True, random_erasing=0.5)

    def run(seed, epoch):
        loader = DeviceLoader(images, labels, 16, shuffle=True, augment=aug, seed=seed)
        loader.set_epoch(epoch)
        return [(x.clone(), y.clone()) for x, y in loader]

    a, b = run(5, 2), run(5, 2)  # a resumed run rebuilds the loader and calls set_epoch
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    c = run(5, 3)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in c]))
    d = run(6, 2)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in d]))


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shards_disjoint_cover_and_equal_length(world):
    n = 101
    images, labels = make_data(n)
    shards = []
    for rank in range(world):
        loader = DeviceLoader(images, labels, 8, shuffle=True, seed=1, rank=rank, world_size=world)
        loader.set_epoch(4)
        shards.append(torch.cat([y for _, y in loader]))
    lengths = {len(s) for s in shards}
    assert lengths == {-(-n // world)}  # padded by wrapping: same number of samples and batches
    union = torch.cat(shards)
    assert set(union.tolist()) == set(range(n))
    assert len(union) - n == -(-n // world) * world - n  # only the wrap-around padding repeats
    # the permutation is the same on all ranks: shards are its strided slices
    perm = epoch_indices(n, shuffle=True, seed=1, epoch=4, rank=0, world_size=1)
    for rank, shard in enumerate(shards):
        padded = torch.cat([perm, perm])[: len(shards[0]) * world]
        assert torch.equal(shard, padded[rank::world])


def test_eval_shards_exact_union_no_padding():
    n = 23
    images, labels = make_data(n)
    parts = []
    for rank in range(3):
        loader = DeviceLoader(images, labels, 4, shuffle=False, rank=rank, world_size=3)
        got = torch.cat([y for _, y in loader])
        assert torch.equal(got, shard_indices(n, rank, 3))
        assert loader.num_samples == len(got)
        parts.append(got)
    union = torch.cat(parts)
    assert sorted(union.tolist()) == list(range(n)) and len(union) == n
    single = DeviceLoader(images, labels, 5, shuffle=False)
    assert torch.cat([y for _, y in single]).tolist() == list(range(n))


def test_no_augment_gives_scaled_pixels_and_channels_last():
    images = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    labels = torch.arange(6)
    loader = DeviceLoader(images, labels, 6, shuffle=False, channels_last=True)
    x, y = next(iter(loader))
    assert torch.equal(x, images.float() / 255) and x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(images.float(), labels, 2, shuffle=False)
    with pytest.raises(ValueError, match="rank"):
        DeviceLoader(images, labels, 2, shuffle=True, rank=2, world_size=2)


def test_derive_seed_is_pure_and_spreads():
    assert derive_seed(1, 2) == derive_seed(1, 2)
    seeds = {derive_seed(s, e) for s in range(10) for e in range(10)}
    assert len(seeds) == 100 and all(0 <= v < 2**63 for v in seeds)
    assert derive_seed(1, 2) != derive_seed(2, 1)
