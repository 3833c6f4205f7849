"""Data room: registered datasets, decode cache, batched on-device augmentation, DeviceLoader.

    load_dataset(name, root=None, *, train_subset=0, test_subset=0, subset_seed=0,
                 image_size=None, cache_dir=None, use_cache=True, mean=None, std=None,
                 options=None) -> DatasetSplits
    register_dataset(name, num_classes=..., in_channels=..., ...)(reader)   # data/sets/*.py
    BatchAugment(mean, std, random_crop=..., hflip=..., autoaugment=..., random_erasing=...,
                 normalize=True)(x_uint8, generator, return_record=False) -> float32
    build_augment(train, mean, std, **switches) -> BatchAugment
    DeviceLoader(images, labels, batch_size, *, shuffle, drop_last, augment, device, seed,
                 rank, world_size, channels_last)
    open_pipeline(data_cfg, T=None) -> DataPipeline   # memory or stream: loaders, input shape,
                                                      # channels, augmentations, split record

Images are ``[N, C, H, W]`` uint8 and batches ``[B, C, H, W]``; frame datasets are
``[N, T, C, H, W]`` uint8 and their batches time-major ``[T, B, C, H, W]``.
"""

from spikedistill.data.augment import CIFAR10_POLICY, OPS, BatchAugment, build_augment
from spikedistill.data.datasets import (DatasetSplits, Split, channel_stats,
                                        class_balanced_indices, hold_out_validation, load_dataset,
                                        load_from_config)
from spikedistill.data.loader import DeviceLoader, derive_seed, epoch_indices, shard_indices
from spikedistill.data.pipeline import DataPipeline, MemoryPipeline, StreamPipeline, open_pipeline
from spikedistill.data.registry import (DatasetSpec, ReadRequest, get_dataset, list_datasets,
                                        register_dataset)
from spikedistill.data.sets.cifar import CIFAR_MEAN, CIFAR_STD
from spikedistill.plugins import DATASETS

__all__ = [
    "BatchAugment", "build_augment", "DataPipeline", "MemoryPipeline", "StreamPipeline",
    "open_pipeline", "CIFAR10_POLICY", "OPS",
    "CIFAR_MEAN", "CIFAR_STD", "DATASETS", "DatasetSpec", "DatasetSplits", "ReadRequest", "Split",
    "channel_stats", "class_balanced_indices", "hold_out_validation", "get_dataset", "list_datasets", "load_dataset",
    "load_from_config",     "register_dataset", "DeviceLoader", "derive_seed", "epoch_indices", "shard_indices",
]
