"""A few hundred real images from the shared CIFAR-10 JPEG archive (skipped when it is absent)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spikedistill.data import class_balanced_indices, load_dataset

ARCHIVE = Path(os.environ.get("SPIKEDISTILL_CIFAR10_ARCHIVE",
                              Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-jpeg.tar.gz"))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.real_data
def test_real_cifar10_archive_subset(tmp_path):
    if not ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 JPEG archive not found at {ARCHIVE} (set SPIKEDISTILL_CIFAR10_ARCHIVE)")
    ds = load_dataset("cifar10", ARCHIVE, train_subset=200, test_subset=100, subset_seed=0,
                      cache_dir=tmp_path / "cache")
    # only the chosen members were decoded; nothing was cached
    assert ds.info["cache"] == "partial-decode" and not (tmp_path / "cache").exists()
    assert ds.class_names == CLASSES and ds.num_classes == 10
    assert tuple(ds.train.images.shape) == (200, 3, 32, 32) and tuple(ds.test.images.shape) == (100, 3, 32, 32)
    assert np.bincount(ds.train.labels.numpy()).tolist() == [20] * 10
    assert np.bincount(ds.test.labels.numpy()).tolist() == [10] * 10
    mean = ds.train.images.float().mean(dim=(0, 2, 3)) / 255
    assert np.allclose(mean.numpy(), ds.mean, atol=0.06), mean  # near CIFAR-10's channel means
    # independent check: decode the chosen test members straight from the tar with Pillow
    positions = class_balanced_indices(np.repeat(np.arange(10), 1000), 100, 10, seed=1)
    wanted = {f"test/{CLASSES[p // 1000]}/{p % 1000:04d}.jpg": i for i, p in enumerate(positions[:: 25])}
    found = 0
    with tarfile.open(ARCHIVE, "r|gz") as tf:  # stream; the test/ members come first, stop early
        for member in tf:
            if member.name in wanted:
                i = wanted[member.name]
                pixels = np.asarray(Image.open(io.BytesIO(tf.extractfile(member).read())).convert("RGB"))
                assert np.array_equal(ds.test.images[i * 25].numpy(), pixels.transpose(2, 0, 1)), member.name
                found += 1
                if found == len(wanted):
                    break
    assert found == 4
