"""The dataset registry: each dataset registers its reader and what it knows about itself.

    @register_dataset("digits", num_classes=10, in_channels=1, image_size=8,
                      class_names=[str(i) for i in range(10)], needs_root=False)
    def read(request: ReadRequest) -> RawDataset: ...

A reader gets a :class:`ReadRequest` (root, image size, cache folder, subsets, the dataset's
own options ``data.kwargs``) and returns a :class:`~spikedistill.data.readers.RawDataset` with
uint8 images ``[N, C, H, W]`` (``frames=False``) or ``[N, T, C, H, W]`` (``frames=True``), or
``(RawDataset, info)``; a reader that already cut the subsets (the ImageFolder partial decode)
says so with ``info["subset"] = "applied"``.

``stream``: for a dataset that can also stream from disk (``data.pipeline: stream``,
:mod:`spikedistill.data.stream`), ``stream(request) -> StreamIndex`` lists its files without
decoding them; it lives in the dataset's own module, beside the reader.

``mean``/``std``: per-channel normalisation constants for pixels in [0, 1]; None means
:func:`~spikedistill.data.datasets.load_dataset` computes them from the training split (after
subsetting and resizing). ``data.mean`` / ``data.std`` in the config win over both.

The entries live in :data:`spikedistill.plugins.DATASETS`; the built-ins are the modules of
:mod:`spikedistill.data.sets`, one file per dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from spikedistill.plugins import DATASETS


@dataclass(frozen=True)
class ReadRequest:
    """What :func:`~spikedistill.data.datasets.load_dataset` asks of a reader."""

    name: str
    root: Optional[os.PathLike]
    image_size: Optional[int] = None
    cache_dir: Optional[os.PathLike] = None
    use_cache: bool = True
    train_subset: int = 0
    test_subset: int = 0
    subset_seed: int = 0
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    ``num_classes`` / ``in_channels`` / ``image_size`` / ``class_names``: what the dataset
    always has (None: read from the data, e.g. an ImageFolder). ``frames``: samples are frame
    sequences ``[T, C, H, W]`` with ``T`` frames. ``needs_root``: ``data.root`` is required
    (``root_hint`` says what it should point at). ``options``: the keys ``data.kwargs`` may hold.
    ``stream``: the stream source (``request -> StreamIndex``), None for a dataset that is only
    read into memory.
    """

    name: str
    reader: Callable[[ReadRequest], Any]
    num_classes: Optional[int] = None
    in_channels: Optional[int] = None
    image_size: Optional[int] = None
    class_names: Optional[Tuple[str, ...]] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    frames: bool = False
    T: Optional[int] = None
    needs_root: bool = True
    root_hint: str = "a folder or archive"
    options: Tuple[str, ...] = ()
    description: str = ""
    #: this dataset's default ``data.augment`` keys: they replace the global defaults (the
    #: CIFAR recipe) for every key a config does not set (:func:`spikedistill.config.build_config`)
    augment: Dict[str, Any] = field(default_factory=dict)
    stream: Optional[Callable[[ReadRequest], Any]] = None


def register_dataset(name: str, *, num_classes: Optional[int] = None,
                     in_channels: Optional[int] = None, image_size: Optional[int] = None,
                     class_names: Optional[Sequence[str]] = None,
                     mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                     frames: bool = False, T: Optional[int] = None, needs_root: bool = True,
                     root_hint: str = "a folder or archive", options: Sequence[str] = (),
                     description: str = "", augment: Optional[Dict[str, Any]] = None,
                     stream: Optional[Callable[[ReadRequest], Any]] = None):
    """Decorator registering ``reader(request) -> RawDataset`` as dataset ``name`` (and
    ``stream(request) -> StreamIndex`` as its stream source, if it can stream)."""
    if (mean is None) != (std is None):
        raise ValueError(f"dataset {name!r}: give mean and std together")
    if frames and (T is None or T < 1):
        raise ValueError(f"dataset {name!r}: a frames dataset needs its number of frames T >= 1")

    def deco(reader):
        spec = DatasetSpec(
            name=name, reader=reader, num_classes=num_classes, in_channels=in_channels,
            image_size=image_size, class_names=tuple(class_names) if class_names else None,
            mean=tuple(float(v) for v in mean) if mean is not None else None,
            std=tuple(float(v) for v in std) if std is not None else None,
            frames=bool(frames), T=T, needs_root=needs_root, root_hint=root_hint,
            options=tuple(options), description=description or (reader.__doc__ or "").strip(),
            augment=dict(augment or {}), stream=stream)
        DATASETS.register(name, spec)
        return reader

    return deco


def get_dataset(name: str) -> DatasetSpec:
    """The spec of ``name``; ConfigError on ``data.name`` listing the registered ones."""
    return DATASETS.get(name)


def list_datasets() -> List[str]:
    """Registered dataset names in registration order (built-ins first, then plugins)."""
    return [name for name, _ in DATASETS.items()]
