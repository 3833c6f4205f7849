"""A dataset that streams is still one file: its stream source is part of its one registry entry
(``register_dataset(..., stream=fn)``), written in its own module under ``data/sets/``; the
streaming machinery (``data/stream.py``) names no dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fake_imagenet import make_tree
from spikedistill.config import build_config
from spikedistill.data.registry import register_dataset
from spikedistill.data.stream import (can_stream, folder_index, load_stream, resolve_pipeline,
                                      streaming_datasets)
from spikedistill.errors import ConfigError
from spikedistill.plugins import DATASETS

SRC = Path(__file__).resolve().parents[2] / "src" / "spikedistill"


def test_every_stream_source_lives_in_its_dataset_module():
    owners = {"cifar10": "cifar", "cifar100": "cifar", "imagefolder": "imagefolder",
              "imagenet": "imagenet"}
    assert streaming_datasets() == sorted(owners)
    for name, module in owners.items():
        assert DATASETS.get(name).stream.__module__ == f"spikedistill.data.sets.{module}"
        assert can_stream(name)
    for name in ("digits", "cifar10dvs", "no_such_set"):
        assert not can_stream(name)
    # the generic machinery imports no dataset module and keeps no registry of its own
    text = (SRC / "data" / "stream.py").read_text(encoding="utf-8")
    assert "data.sets" not in text and "STREAM_SOURCES" not in text


def test_a_dataset_streams_from_its_one_registry_entry(tmp_path):
    root = tmp_path / "tree"
    make_tree(root, per_class=3, val_per_class=2)
    seen = []

    def stream(request):
        seen.append(request.root)
        return folder_index(Path(request.root))

    @register_dataset("onefile_stream", in_channels=3, image_size=16, stream=stream)
    def read(request):                               # the memory reader, unused when streaming
        raise AssertionError("read into memory")

    try:
        base = ["data.name=onefile_stream", f"data.root={root}"]
        splits = load_stream(build_config({}, base + ["data.pipeline=stream"]).data)
        ref = folder_index(root)
        assert seen == [str(root)]
        assert splits.train.files.paths == ref.train.paths
        assert np.array_equal(splits.test.files.labels, ref.test.labels)
        assert splits.input_shape == (3, 16, 16) and splits.num_classes == 3
        # auto streams it above the memory limit (3 classes * 5 images * 3 * 16 * 16 bytes)
        auto = build_config({}, base + ["data.memory_limit_gib=1e-9"]).data
        assert resolve_pipeline(auto) == "stream"
    finally:
        DATASETS.unregister("onefile_stream")
    with pytest.raises(ConfigError, match="'digits' cannot stream.*cifar10, cifar100, imagefolder"):
        load_stream(build_config({}, ["data.name=digits", "data.pipeline=stream"]).data)
