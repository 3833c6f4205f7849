"""``cifar10dvs``: CIFAR10-DVS (Li et al. 2017, Front. Neurosci. 11:309) as ``[T, 2, S, S]`` frames.

``data.root``: the release's 10 class folders of AEDAT 2.0 recordings, SpikingJelly's
``events_np/`` or ``frames_number_<T>_split_by_<how>/`` folders, or any of them as a
zip/tar (:mod:`spikedistill.data.events.layout`); also what ``spikedistill events emulate``
writes ("emulated events"). The recordings become ``T`` frames of 2 polarity channels
(``split_by``: equal event counts, SpikingJelly's ``number``, or equal durations ``time``),
resized from the 128x128 sensor to ``data.image_size`` (default 48) and cached once on disk
(:mod:`spikedistill.data.events.convert`). ``T``: ``data.kwargs.T``, else the student's
``model.T`` (the engine passes it), else 10.

Split (``data.kwargs.split``): ``first90`` (default; SpikingJelly's
``split_to_train_test_set(0.9, ..., random_split=False)``, ``train_fraction``), ``random``
(seeded by ``split_seed``), ``file`` (``split_file``, e.g. the list a previous run or
``events emulate`` wrote). The list used is written next to the cache (its path is in the
dataset info and printed); the standard release under the default split is checked against the
list shipped with the package. Normalisation: the training split's own statistics.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from spikedistill.data import readers
from spikedistill.data.cache import default_cache_dir
from spikedistill.data.events import convert as conv
from spikedistill.data.events.frames import SPLIT_BY
from spikedistill.data.events.layout import discover
from spikedistill.data.events.split import (CIFAR10DVS_CLASSES, SHIPPED, read_split_file,
                                            split_keys, standard_release_keys, write_split_file)
from spikedistill.data.registry import ReadRequest, register_dataset
from spikedistill.errors import DataError

DEFAULT_T = 10
DEFAULT_SIZE = 48
OPTIONS = ("T", "split_by", "split", "split_seed", "train_fraction", "split_file", "workers")


def _int_option(options, key, default, low=1):
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"data.kwargs.{key}: expected an integer >= {low}, got {value!r}")
    return int(value)


def load_event_frames(request: ReadRequest, *, expected_classes: int | None = 10):
    """``(RawDataset, info)`` of an event dataset below ``request.root`` (module docstring)."""
    opts = dict(request.options)
    T = _int_option(opts, "T", DEFAULT_T)
    split_by = opts.get("split_by", "number")
    if split_by not in SPLIT_BY:
        raise DataError(f"data.kwargs.split_by: expected one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    size = int(request.image_size or DEFAULT_SIZE)
    workers = _int_option(opts, "workers", 1)
    root = Path(request.root).expanduser()
    recs, layout = discover(root, T=T, split_by=split_by)
    classes = sorted({r.cls for r in recs})
    if expected_classes is not None and len(classes) != expected_classes:
        raise DataError(f"data.root {root} ({layout['layout']}): expected {expected_classes} class folders "
                        f"(e.g. {', '.join(CIFAR10DVS_CLASSES[:3])}, ...), found {len(classes)}: "
                        f"{', '.join(classes[:12])}")
    cached = None
    key = conv.cache_key(root, T, split_by, size, layout)
    path = conv.frames_cache_path(request.cache_dir or default_cache_dir(), key)
    if request.use_cache:
        cached = conv.load_frames_cache(path, key)
    if cached is None:
        frames, stats = conv.convert(recs, T, split_by, size, workers=workers)
        keys = [r.key for r in recs]
        labels = np.array([classes.index(r.cls) for r in recs], np.int64)
        stats.update(recordings=len(recs), **layout)
        if request.use_cache:
            conv.save_frames_cache(path, key, frames, keys, labels, classes, stats)
        cache_state = "built"
    else:
        frames, keys, labels, classes, stats = cached
        cache_state = "reused"
    split = opts.get("split", "first90")
    fraction = opts.get("train_fraction", 0.9)
    seed = _int_option(opts, "split_seed", 0, low=0)
    train, test = split_keys(keys, split=split, train_fraction=fraction, seed=seed,
                             split_file=opts.get("split_file"))
    if not train or not test:
        raise DataError(f"data.kwargs: the {split} split of the {len(keys)} recordings under {root} leaves "
                        f"{len(train)} train / {len(test)} test recordings; both must be non-empty "
                        "(change data.kwargs.train_fraction or the split)")
    info = {"format": layout["format"], "layout": layout["layout"], "T": T, "split_by": split_by,
            "frame_cache": str(path) if request.use_cache else None, "frame_cache_state": cache_state,
            "events": stats.get("events"), "events_per_s": stats.get("events_per_s"),
            "clipped_pixels": stats.get("clipped_pixels"), "split": split}
    if split == "first90" and float(fraction) == 0.9 and sorted(keys) == sorted(standard_release_keys()):
        shipped = read_split_file(SHIPPED)
        if (train, test) != shipped:
            raise DataError(f"the first90 split of {root} differs from the list shipped in {SHIPPED}")
        info["split_list"] = f"shipped: {SHIPPED}"
    digest = hashlib.sha256(("\n".join(train) + "|" + "\n".join(test)).encode()).hexdigest()[:16]
    split_path = Path(request.cache_dir or default_cache_dir()).expanduser() / "event-splits" / f"{request.name}-{digest}.txt"
    write_split_file(split_path, train, test, comment=f"source {root}; split {split}, "
                     f"train_fraction {fraction}, split_seed {seed}")
    info["split_file"] = str(split_path)
    print(f"{request.name}: {len(train)} train / {len(test)} test recordings, split list {split_path}; "
          f"frames T={T} split_by={split_by} {size}x{size} ({cache_state} cache {path})",
          file=sys.stderr, flush=True)
    index = {k: i for i, k in enumerate(keys)}
    tr = np.array([index[k] for k in train], np.int64)
    te = np.array([index[k] for k in test], np.int64)
    data = readers.RawDataset(frames[tr], labels[tr], frames[te], labels[te], classes, source=str(root))
    info["source"] = str(root)
    return data, info

#: TET's CIFAR10-DVS augmentation (configs/cifar10dvs): horizontal flip and a random roll of up
#: to 5 pixels (wrapping), the same for every frame; no crop, AutoAugment or erasing
TET_AUGMENT = {"random_crop": False, "hflip": True, "autoaugment": False, "random_erasing": 0.0,
               "translate": 5, "translate_fill": "wrap"}


@register_dataset("cifar10dvs", num_classes=10, in_channels=2, image_size=DEFAULT_SIZE,
                  class_names=CIFAR10DVS_CLASSES, frames=True, T=DEFAULT_T, options=OPTIONS,
                  root_hint="the CIFAR10-DVS class folders (AEDAT), SpikingJelly's events_np/ or "
                  "frames_number_<T>_split_by_<how>/, or such a folder as .zip/.tar",
                  description="CIFAR10-DVS event recordings as frames [T, 2, 48, 48]",
                  augment=TET_AUGMENT)
def read(request: ReadRequest):
    """CIFAR10-DVS: 10 x 1,000 DVS128 recordings of moving CIFAR-10 images, as frames."""
    return load_event_frames(request)
