"""``load_dataset``: one entry point over the registered datasets, with subsets and resizing.

A dataset is registered in its own module (:mod:`spikedistill.data.sets`: ``digits``,
``cifar10``/``cifar100``, ``imagefolder``; plugins add more) with its reader, sizes, class
names and normalisation constants (:mod:`spikedistill.data.registry`). ``load_dataset`` looks the
name up, asks the reader for the data, checks it against what the dataset declared, cuts the
class-balanced subsets (N // K samples of every class, the first N % K classes one more, chosen
deterministically from ``subset_seed``), resizes, and fixes the per-channel mean/std: the
config's (``data.mean``/``data.std``), else the dataset's registered constants, else those of the
training split itself. Frame datasets give ``[N, T, C, H, W]`` uint8 samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from spikedistill.data import readers
from spikedistill.data.registry import ReadRequest
from spikedistill.errors import DataError
from spikedistill.plugins import DATASETS


@dataclass
class Split:
    """One split on the CPU: ``images`` uint8 ``[N, C, H, W]`` (frames: ``[N, T, C, H, W]``),
    ``labels`` int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DatasetSplits:
    """A loaded dataset: train/test splits plus what models and augmentation need to know.

    ``mean``/``std`` are per-channel normalisation constants for images scaled to [0, 1].
    ``frames``: the samples are ``[T, C, H, W]`` sequences of ``T`` frames (else ``T`` is None).
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    class_names: list[str]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    info: dict = field(default_factory=dict)
    frames: bool = False
    T: int | None = None
    val: Split | None = None      # held out of the training split (``data.val_fraction``)


def class_balanced_indices(labels: np.ndarray, n: int, num_classes: int, seed: int, *, what: str = "subset") -> np.ndarray:
    """Positions of a class-balanced subset of ``n`` samples, chosen deterministically by ``seed``.

    Every class gets ``n // K`` samples and the classes ``0 .. n % K - 1`` one more (K =
    ``num_classes``); within a class the samples are the first of a seeded random permutation.
    ``n <= 0`` means everything. Returned sorted ascending. DataError if a class has too few.
    """
    labels = np.asarray(labels)
    if n <= 0 or n == len(labels):
        return np.arange(len(labels))
    if n > len(labels):
        raise DataError(f"{what}={n} is larger than the split ({len(labels)} images)")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x5EED])))
    chosen = []
    for c in range(num_classes):
        quota = n // num_classes + (1 if c < n % num_classes else 0)
        members = np.flatnonzero(labels == c)
        if quota > len(members):
            raise DataError(f"{what}={n} asks for {quota} images of class {c} (class-balanced) "
                            f"but the split holds only {len(members)}")
        chosen.append(members[rng.permutation(len(members))[:quota]])
    return np.sort(np.concatenate(chosen))


def left_out_of_subset(data: readers.RawDataset, train_subset: int, seed: int) -> Split:
    """The training images that the class-balanced ``train_subset`` (seed ``seed``, as in
    :func:`subset_raw`) leaves out, in their order."""
    k = len(data.class_names)
    keep = class_balanced_indices(data.train_labels, train_subset, k, seed, what="train_subset")
    rest = np.setdiff1d(np.arange(len(data.train_labels)), keep)
    return Split(torch.from_numpy(np.ascontiguousarray(data.train_images[rest])),
                 torch.from_numpy(data.train_labels[rest].copy()))


def hold_out_validation(splits: DatasetSplits, fraction: float, seed: int, *,
                        pool: Split | None = None) -> DatasetSplits:
    """``splits`` with a validation split of ``n_val = round(fraction * N)`` samples (``N``:
    the training samples): a class-balanced set (:func:`class_balanced_indices`, seed ``seed``)
    moved out of ``train``, whose other ``N - n_val`` samples keep their order; with ``pool``
    (the images a training subset left out, when it holds ``n_val``) it is drawn from ``pool``
    instead and ``train`` is untouched. ``fraction = 0`` returns ``splits`` unchanged.
    DataError if ``n_val`` is 0 or leaves no training sample, or a class has too few.
    """
    if not fraction:
        return splits
    n = len(splits.train)
    n_val = int(round(float(fraction) * n))
    if pool is not None and 1 <= n_val <= len(pool):
        idx = torch.from_numpy(class_balanced_indices(pool.labels.numpy(), n_val,
                                                      splits.num_classes, seed,
                                                      what="val_fraction"))
        info = dict(splits.info, val_fraction=float(fraction), val_images=n_val,
                    val_from="left out of train_subset")
        return replace(splits, val=Split(pool.images[idx], pool.labels[idx]), info=info)
    if n_val < 1 or n_val >= n:
        raise DataError(f"data.val_fraction={fraction} holds out {n_val} of the {n} training "
                        "images; expected at least 1 and fewer than all of them")
    labels = splits.train.labels.numpy()
    val_idx = class_balanced_indices(labels, n_val, splits.num_classes, seed, what="val_fraction")
    keep = np.ones(n, dtype=bool)
    keep[val_idx] = False
    train_idx = torch.from_numpy(np.flatnonzero(keep))
    val_t = torch.from_numpy(val_idx)
    info = dict(splits.info, val_fraction=float(fraction), val_images=n_val)
    return replace(splits, train=Split(splits.train.images[train_idx], splits.train.labels[train_idx]),
                   val=Split(splits.train.images[val_t], splits.train.labels[val_t]), info=info)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``[N, C, H, W]`` (or ``[N, T, C, H, W]``, every frame alike) to ``size x
    size`` (bilinear, antialiased), rounded to uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.ndim == 5:
        n, t = images.shape[:2]
        flat = _resize(images.reshape(n * t, *images.shape[2:]), size)
        return flat.reshape(n, t, *flat.shape[1:])
    out = []
    for start in range(0, len(images), 4096):
        x = torch.from_numpy(images[start:start + 4096]).float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        out.append(y.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, images.shape[1], size, size), np.uint8)


def subset_raw(data: readers.RawDataset, train_subset: int, test_subset: int, seed: int) -> readers.RawDataset:
    """Class-balanced train/test subsets of decoded data (the test subset uses ``seed + 1``)."""
    k = len(data.class_names)
    tr = class_balanced_indices(data.train_labels, train_subset, k, seed, what="train_subset")
    te = class_balanced_indices(data.test_labels, test_subset, k, seed + 1, what="test_subset")
    return readers.RawDataset(data.train_images[tr], data.train_labels[tr], data.test_images[te],
                              data.test_labels[te], data.class_names, source=data.source)


_ONE_PASS_ELEMENTS = 1 << 26


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``mean_c = E[x/255]`` and ``std_c = sqrt(E[(x/255 - mean_c)^2])`` (population
    std) over every sample, frame and pixel of uint8 ``[N, C, H, W]`` / ``[N, T, C, H, W]``."""
    axes = tuple(i for i in range(images.ndim) if i != images.ndim - 3)
    if images.size <= _ONE_PASS_ELEMENTS:
        pixels = images.astype(np.float64) / 255.0
        return (tuple(float(v) for v in pixels.mean(axis=axes)),
                tuple(float(v) for v in pixels.std(axis=axes)))
    channels = images.shape[-3]
    count = images.size // channels
    step = max(1, _ONE_PASS_ELEMENTS // max(1, images[0].size))
    total = np.zeros(channels)
    for start in range(0, len(images), step):
        total += (images[start:start + step].astype(np.float64) / 255.0).sum(axis=axes)
    mean = total / count
    shape = [1] * images.ndim
    shape[-3] = channels
    sq = np.zeros(channels)
    for start in range(0, len(images), step):
        d = images[start:start + step].astype(np.float64) / 255.0 - mean.reshape(shape)
        sq += (d * d).sum(axis=axes)
    return tuple(float(v) for v in mean), tuple(float(v) for v in np.sqrt(sq / count))


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    train_subset: int = 0,
    test_subset: int = 0,
    subset_seed: int = 0,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    options: dict | None = None,
    T: int | None = None,
    val_fraction: float = 0.0,
) -> DatasetSplits:
    """Load the registered dataset ``name`` into CPU uint8 tensors.

    ``train_subset``/``test_subset``: class-balanced subset sizes (0 = all), chosen by
    ``subset_seed``. ``image_size``: resize every image (frame) to a square of that side.
    ``cache_dir``: where decoded ImageFolder data is cached (default ``$SPIKEDISTILL_CACHE`` or
    ``~/.cache/spikedistill``); ``use_cache=False`` never reads or writes the cache.
    ``mean``/``std``: normalisation constants (None: the dataset's registered ones, else the
    training split's own, see :func:`channel_stats`). ``options``: the reader's own options
    (``data.kwargs``). ``T``: the number of frames the model runs (its ``model.T``): a frame
    dataset that takes the option ``T`` gets it unless ``options`` sets ``T`` itself.
    ``val_fraction``: :func:`hold_out_validation` of the training split; with a
    ``train_subset`` the validation images come from the training images the subset left out
    (so the training images are the same with or without a validation split).
    """
    registry = DATASETS
    if name not in registry:
        names = [n for n, _ in registry.items()]
        raise DataError(f"unknown dataset '{name}' (data.name); registered datasets: {', '.join(names)}")
    spec = registry.get(name)
    for what, value in (("train_subset", train_subset), ("test_subset", test_subset)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(f"{what} must be an integer >= 0 (0 = all), got {value!r}")
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 1):
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
    options = dict(options or {})
    if T is not None and spec.frames and "T" in spec.options and "T" not in options:
        options["T"] = int(T)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise DataError(f"data.kwargs: dataset '{name}' does not take {', '.join(unknown)}"
                        f"{'; it takes: ' + ', '.join(spec.options) if spec.options else ' (it takes none)'}")
    if spec.needs_root and (root is None or str(root) == ""):
        raise DataError(f"dataset '{name}' needs a root (data.root): {spec.root_hint}")
    request = ReadRequest(name=name, root=Path(root).expanduser() if root not in (None, "") else None,
                          image_size=image_size, cache_dir=cache_dir, use_cache=use_cache,
                          train_subset=int(train_subset), test_subset=int(test_subset),
                          subset_seed=int(subset_seed), options=options)
    out = spec.reader(request)
    data, info = out if isinstance(out, tuple) else (out, {})
    info = dict(info)
    pool = None
    if info.pop("subset", None) != "applied":
        if val_fraction and train_subset:
            pool = left_out_of_subset(data, train_subset, subset_seed)
        data = subset_raw(data, train_subset, test_subset, subset_seed)
    source = info.pop("source", None) or data.source
    _check_declared(spec, data, source, options.get("T") if "T" in spec.options else None)
    train_images, test_images = data.train_images, data.test_images
    if image_size is not None:
        train_images, test_images = _resize(train_images, image_size), _resize(test_images, image_size)
    channels = int(train_images.shape[-3])
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != channels or len(std) != channels:
            raise DataError(f"data.mean/data.std: expected {channels} values each for the "
                            f"{channels} channels of '{name}', got {mean!r} / {std!r}")
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        info["normalization"] = "config"
    elif spec.mean is not None:
        mean, std = spec.mean[:channels], spec.std[:channels]
        info["normalization"] = "registered"
    else:
        mean, std = channel_stats(train_images)
        info["normalization"] = "train-split"
    if pool is not None and image_size is not None:
        pool = Split(torch.from_numpy(_resize(pool.images.numpy(), image_size)), pool.labels)
    return hold_out_validation(DatasetSplits(
        name=name,
        train=Split(torch.from_numpy(np.ascontiguousarray(train_images)), torch.from_numpy(data.train_labels.copy())),
        test=Split(torch.from_numpy(np.ascontiguousarray(test_images)), torch.from_numpy(data.test_labels.copy())),
        num_classes=len(data.class_names),
        class_names=list(data.class_names),
        in_channels=channels,
        image_size=int(train_images.shape[-2]),
        mean=tuple(mean),
        std=tuple(std),
        source=source,
        info=info,
        frames=train_images.ndim == 5,
        T=int(train_images.shape[1]) if train_images.ndim == 5 else None,
    ), val_fraction, subset_seed, pool=pool)


def _check_declared(spec, data: readers.RawDataset, source: str, T: int | None = None) -> None:
    """The data a reader returned must match what its dataset declared (``T``: the frames the
    request asked for, else the declared ``spec.T``)."""
    want_T = spec.T if T is None else int(T)
    if spec.num_classes is not None and len(data.class_names) != spec.num_classes:
        raise DataError(f"{source} has {len(data.class_names)} classes but {spec.name} has {spec.num_classes}")
    ndim = 5 if spec.frames else 4
    for split, images in (("train", data.train_images), ("test", data.test_images)):
        if images.ndim != ndim:
            shape = "[N, T, C, H, W]" if spec.frames else "[N, C, H, W]"
            raise DataError(f"dataset '{spec.name}' ({source}): {split} images must be {shape}, "
                            f"got shape {tuple(images.shape)}")
        if spec.frames and images.shape[1] != want_T:
            raise DataError(f"dataset '{spec.name}' ({source}): {split} has {images.shape[1]} "
                            f"frames per sample but the dataset declares T={want_T}")
        if spec.in_channels is not None and images.shape[-3] != spec.in_channels:
            raise DataError(f"dataset '{spec.name}' ({source}): {split} images have "
                            f"{images.shape[-3]} channels but the dataset declares {spec.in_channels}")


def load_from_config(data_cfg, *, use_cache: bool = True, T: int | None = None) -> DatasetSplits:
    """:func:`load_dataset` with the arguments of a ``data`` config section
    (:class:`spikedistill.config.DataConfig`) with the validation split of
    ``data.val_fraction`` (seed ``data.subset_seed``); ``T``: the student's ``model.T``."""
    d = data_cfg
    return load_dataset(d.name, d.root, train_subset=d.train_subset, test_subset=d.test_subset,
                        subset_seed=d.subset_seed, image_size=d.image_size, cache_dir=d.cache_dir,
                        use_cache=use_cache, mean=d.mean, std=d.std, options=d.kwargs, T=T,
                        val_fraction=getattr(d, "val_fraction", 0.0))
