"""Data room: dataset readers, decode cache, batched on-device augmentation and DeviceLoader.

    load_dataset(name, root=None, *, train_subset=0, test_subset=0, subset_seed=0,
                 image_size=None, cache_dir=None, use_cache=True) -> DatasetSplits
    BatchAugment(mean, std, random_crop=..., hflip=..., autoaugment=..., random_erasing=...,
                 normalize=True)(x_uint8, generator, return_record=False) -> float32
    build_augment(train, mean, std, **switches) -> BatchAugment
    DeviceLoader(images, labels, batch_size, *, shuffle, drop_last, augment, device, seed,
                 rank, world_size, channels_last)
"""

from spikedistill.data.augment import CIFAR10_POLICY, OPS, BatchAugment, build_augment
from spikedistill.data.datasets import (CIFAR_MEAN, CIFAR_STD, DATASETS, DatasetSplits, Split,
                                        class_balanced_indices, load_dataset)
from spikedistill.data.loader import DeviceLoader, derive_seed, epoch_indices, shard_indices

__all__ = [
    "BatchAugment", "build_augment", "CIFAR10_POLICY", "OPS",
    "CIFAR_MEAN", "CIFAR_STD", "DATASETS", "DatasetSplits", "Split", "class_balanced_indices", "load_dataset",
    "DeviceLoader", "derive_seed", "epoch_indices", "shard_indices",
]
