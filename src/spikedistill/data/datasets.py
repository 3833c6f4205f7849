"""``load_dataset``: one entry point over the readers, with the decode cache and subsets.

Names (:data:`DATASETS`):

- ``digits``: scikit-learn's embedded 8x8 digits (1 channel), no root needed.
- ``cifar10``: ``root`` is the canonical pickle folder (``cifar-10-batches-py`` or its parent), or
  an ImageFolder tree as a folder or a ``.tar``/``.tar.gz``/``.tgz``/``.zip`` archive (e.g. the
  JPEG copy ``../shared/data/cifar10-jpeg.tar.gz``), or a folder holding such an archive.
- ``cifar100``: the canonical pickle folder (``cifar-100-python`` or its parent) or an ImageFolder.
- ``imagefolder``: any ImageFolder tree (folder or archive).

ImageFolder sources are decoded once and cached as ``.npz`` (see :mod:`spikedistill.data.cache`).
``train_subset``/``test_subset`` pick a class-balanced subset (N // K images of every class, the
first N % K classes one more), chosen deterministically from ``subset_seed``; when the full
decode is not cached yet only the chosen images are decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spikedistill.data import cache as _cache
from spikedistill.data import readers
from spikedistill.errors import DataError

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR10_ARCHIVE_NAMES = ("cifar10-jpeg.tar.gz",)


@dataclass
class Split:
    """One split on the CPU: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DatasetSplits:
    """A loaded dataset: train/test splits plus what models and augmentation need to know.

    ``mean``/``std`` are per-channel normalisation constants for images scaled to [0, 1].
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


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``[N, C, H, W]`` to ``size x size`` (bilinear, antialiased), rounded to uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for start in range(0, len(images), 4096):
        x = torch.from_numpy(images[start:start + 4096]).float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        out.append(y.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, images.shape[1], size, size), np.uint8)


def _detect_cifar_source(name: str, root: Path) -> tuple[str, Path]:
    """Decide whether a cifar10/cifar100 root is a pickle folder or an ImageFolder (dir/archive)."""
    folder = readers.CIFAR10_FOLDER if name == "cifar10" else readers.CIFAR100_FOLDER
    if not root.exists():
        archive_hint = " or the archive cifar10-jpeg.tar.gz" if name == "cifar10" else ""
        raise DataError(f"{name} root {root} does not exist (expected a folder holding {folder}/{archive_hint}, "
                        f"or an ImageFolder tree/archive with train/ and test/)")
    if root.is_file():
        return "imagefolder", root
    found = readers.find_cifar_folder(root, folder)
    if found is not None:
        return "pickle", found
    if any((root / s).is_dir() for s in ("train",)):
        return "imagefolder", root
    if name == "cifar10":
        for archive in CIFAR10_ARCHIVE_NAMES:
            if (root / archive).is_file():
                return "imagefolder", root / archive
    archives = sorted(p.name for p in root.iterdir() if readers.is_archive(p))
    archive_hint = " or the archive cifar10-jpeg.tar.gz" if name == "cifar10" else ""
    raise DataError(f"{name} root {root} holds neither {folder}/{archive_hint} nor an ImageFolder train/ "
                    f"folder (expected a folder holding {folder}/, that folder itself, or an ImageFolder "
                    f"folder/.tar/.tar.gz/.zip){'; archives here: ' + ', '.join(archives) if archives else ''}")


def _load_image_folder(root: Path, *, image_size, cache_dir, use_cache, train_subset, test_subset,
                       subset_seed) -> tuple[readers.RawDataset, dict]:
    """Read an ImageFolder source through the cache; returns the (already subsetted) data + info."""
    readers.check_image_folder_root(root)
    info: dict = {"cache": "off"}
    key = entry = None
    if use_cache:
        cache_dir = Path(cache_dir) if cache_dir else _cache.default_cache_dir()
        key = _cache.fingerprint(root, image_size=image_size, reader="imagefolder")
        tag = root.name.split(".")[0] or "imagefolder"
        entry = _cache.cache_path(cache_dir, tag, key)
        info["cache_file"] = str(entry)
        data = _cache.load_cached(entry, key)
        if data is not None:
            info["cache"] = "hit"
            return _subset(data, train_subset, test_subset, subset_seed), info
    if train_subset > 0 or test_subset > 0:
        # decode only the chosen images; the full decode is cached by the first full load
        def choose(index: readers.FolderIndex) -> dict[str, np.ndarray]:
            k = len(index.class_names)
            return {"train": class_balanced_indices(index.labels("train"), train_subset, k, subset_seed,
                                                    what="train_subset"),
                    "test": class_balanced_indices(index.labels("test"), test_subset, k, subset_seed + 1,
                                                   what="test_subset")}

        info["cache"] = "partial-decode"
        return readers.read_image_folder(root, image_size=image_size, select=choose), info
    data = readers.read_image_folder(root, image_size=image_size)
    if entry is not None:
        _cache.save_cached(entry, key, data)
        info["cache"] = "written"
    return data, info


def _subset(data: readers.RawDataset, train_subset: int, test_subset: int, seed: int) -> readers.RawDataset:
    """Class-balanced train/test subsets of decoded data (same choice as the partial decode)."""
    k = len(data.class_names)
    tr = class_balanced_indices(data.train_labels, train_subset, k, seed, what="train_subset")
    te = class_balanced_indices(data.test_labels, test_subset, k, seed + 1, what="test_subset")
    return readers.RawDataset(data.train_images[tr], data.train_labels[tr], data.test_images[te],
                              data.test_labels[te], data.class_names, source=data.source)


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
) -> DatasetSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`) into CPU uint8 tensors.

    ``train_subset``/``test_subset``: class-balanced subset sizes (0 = all), chosen by
    ``subset_seed``. ``image_size``: resize every image to a square of that side. ``cache_dir``:
    where decoded ImageFolder data is cached (default ``$SPIKEDISTILL_CACHE`` or
    ``~/.cache/spikedistill``); ``use_cache=False`` never reads or writes the cache.
    Normalisation constants: CIFAR's for cifar10/cifar100/imagefolder, the train split's own
    per-channel mean/std for digits.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (data.name); known datasets: {', '.join(DATASETS)}")
    for what, value in (("train_subset", train_subset), ("test_subset", test_subset)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(f"{what} must be an integer >= 0 (0 = all), got {value!r}")
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 1):
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
    info: dict = {}
    if name == "digits":
        data = _subset(readers.read_digits(), train_subset, test_subset, subset_seed)
        source = data.source
    else:
        if root is None or str(root) == "":
            hint = (f"a folder holding {readers.CIFAR10_FOLDER}/ or the archive cifar10-jpeg.tar.gz"
                    if name == "cifar10" else f"a folder holding {readers.CIFAR100_FOLDER}/"
                    if name == "cifar100" else "an ImageFolder folder or archive")
            raise DataError(f"dataset '{name}' needs a root (data.root): {hint}")
        root = Path(root).expanduser()
        kind, path = ("imagefolder", root) if name == "imagefolder" else _detect_cifar_source(name, root)
        if kind == "pickle":
            reader = readers.read_cifar10_pickles if name == "cifar10" else readers.read_cifar100_pickles
            data = _subset(reader(path), train_subset, test_subset, subset_seed)
            info["format"] = "cifar-pickle"
        else:
            data, info = _load_image_folder(path, image_size=image_size, cache_dir=cache_dir, use_cache=use_cache,
                                            train_subset=train_subset, test_subset=test_subset,
                                            subset_seed=subset_seed)
            info["format"] = "imagefolder"
        source = str(path)
        expected = {"cifar10": 10, "cifar100": 100}.get(name)
        if expected is not None and len(data.class_names) != expected:
            raise DataError(f"{source} has {len(data.class_names)} classes but {name} has {expected}")
    train_images, test_images = data.train_images, data.test_images
    if image_size is not None:
        train_images, test_images = _resize(train_images, image_size), _resize(test_images, image_size)
    channels = int(train_images.shape[1])
    if name == "digits":
        pixels = train_images.astype(np.float64) / 255.0
        mean = tuple(float(v) for v in pixels.mean(axis=(0, 2, 3)))
        std = tuple(float(v) for v in pixels.std(axis=(0, 2, 3)))
    else:
        mean, std = CIFAR_MEAN[:channels], CIFAR_STD[:channels]
    return DatasetSplits(
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
    )
