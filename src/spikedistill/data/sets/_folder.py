"""Reading an ImageFolder source through the decode cache (shared by imagefolder and cifar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikedistill.data import cache as _cache
from spikedistill.data import readers
from spikedistill.data.datasets import class_balanced_indices, subset_raw
from spikedistill.data.registry import ReadRequest


def read_cached_folder(request: ReadRequest, root: Path) -> tuple[readers.RawDataset, dict]:
    """Read the ImageFolder source ``root`` for dataset ``request.name`` through the cache;
    returns the data (already subsetted: ``info["subset"] = "applied"``) and info."""
    readers.check_image_folder_root(root)
    info: dict = {"cache": "off", "subset": "applied"}
    key = entry = None
    train_subset, test_subset, seed = request.train_subset, request.test_subset, request.subset_seed
    if request.use_cache:
        cache_dir = Path(request.cache_dir) if request.cache_dir else _cache.default_cache_dir()
        key = _cache.fingerprint(root, dataset=request.name, image_size=request.image_size,
                                 reader="imagefolder")
        entry = _cache.cache_path(cache_dir, request.name, key)
        info["cache_file"] = str(entry)
        data = _cache.load_cached(entry, key)
        if data is not None:
            info["cache"] = "hit"
            return subset_raw(data, train_subset, test_subset, seed), info
    if train_subset > 0 or test_subset > 0:
        # decode only the chosen images; the full decode is cached by the first full load
        def choose(index: readers.FolderIndex) -> dict[str, np.ndarray]:
            k = len(index.class_names)
            return {"train": class_balanced_indices(index.labels("train"), train_subset, k, seed,
                                                    what="train_subset"),
                    "test": class_balanced_indices(index.labels("test"), test_subset, k, seed + 1,
                                                   what="test_subset")}

        info["cache"] = "partial-decode"
        return readers.read_image_folder(root, image_size=request.image_size, select=choose), info
    data = readers.read_image_folder(root, image_size=request.image_size)
    if entry is not None:
        _cache.save_cached(entry, key, data)
        info["cache"] = "written"
    return data, info
