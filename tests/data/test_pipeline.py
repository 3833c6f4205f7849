"""The data pipeline (``data/pipeline.py``): one object for memory and streamed data.

The references are the loaders built by hand the way the engine built them before the pipeline
existed (``DeviceLoader`` / ``stream_loader`` with the same arguments): the pipeline's batches
must be those, bit for bit, so no run changes. Shapes and channels are checked on tiny generated
data: images, frames ``[N, T, C, H, W]`` and a streamed ImageFolder tree in a temp folder.
"""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import pytest
import torch

from fake_imagenet import make_tree
from spikedistill.config import build_config
from spikedistill.data import DeviceLoader, build_augment
from spikedistill.data.datasets import DatasetSplits, Split
from spikedistill.data.mix import BatchMixer
from spikedistill.data.pipeline import (DATA_SPLIT_RECORD, MemoryPipeline, StreamPipeline,
                                        open_pipeline)
from spikedistill.data.stream import stream_loader
from spikedistill.errors import ConfigError

CPU = torch.device("cpu")


def _switches(cfg, **update):
    """The ``data.augment`` keyword arguments of the train transform, as the engine made them."""
    s = asdict(cfg.data.augment)
    s["erasing_scale"] = tuple(s["erasing_scale"])
    s.update(update)
    for key in ("mixup", "cutmix", "mix_prob", "switch_prob", "mix_off_epoch"):
        s.pop(key)
    return s


def _epochs(loader, epochs=(0, 1)):
    out = []
    for e in epochs:
        loader.set_epoch(e)
        out.append([(x.clone(), y.clone()) for x, y in loader])
    return out


def _same(a, b):
    assert len(a) == len(b)
    for ea, eb in zip(a, b):
        assert len(ea) == len(eb) and len(ea) > 0
        for (xa, ya), (xb, yb) in zip(ea, eb):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_memory_pipeline_gives_the_engine_s_loaders():
    cfg = build_config({}, ["data.name=digits", "data.train_subset=40", "data.test_subset=20",
                            "data.augment.mixup=0.5", "train.seed=3"])
    pipe = open_pipeline(cfg.data)
    splits = pipe.splits
    assert isinstance(pipe, MemoryPipeline) and pipe.kind == "memory"
    assert pipe.input_shape == (1, 8, 8) and pipe.frames_per_sample is None
    assert pipe.num_classes == 10 and pipe.image_size == 8
    assert pipe.in_channels_for(True, "stack") == pipe.in_channels_for(False, "stack") == 1
    train, test = pipe.loaders(8, 6, CPU, seed=3)
    mix = BatchMixer(cfg.data.augment, 10)
    ref_train = DeviceLoader(splits.train.images, splits.train.labels, 8, shuffle=True,
                             drop_last=True, augment=build_augment(True, splits.mean, splits.std,
                                                                   **_switches(cfg)),
                             device=CPU, seed=3, mix=mix)
    ref_test = DeviceLoader(splits.test.images, splits.test.labels, 6, shuffle=False,
                            drop_last=False, augment=build_augment(False, splits.mean, splits.std),
                            device=CPU, seed=0)
    assert isinstance(train.mix, BatchMixer) and test.mix is None
    _same(_epochs(train), _epochs(ref_train))
    _same(_epochs(test), _epochs(ref_test))
    assert len(train) == 40 // 8 and sum(len(y) for _, y in test) == 20
    # an eval loader without a transform normalises: (x / 255 - mean) / std
    x, _ = next(iter(pipe.eval_loader(20, CPU)))
    mean, std = splits.mean[0], splits.std[0]
    assert torch.allclose(x, (splits.test.images.float() / 255 - mean) / std, atol=1e-6)
    # one fixed shuffled permutation of the test set, sharded over ranks without overlap
    shuffled = [y for _, y in pipe.eval_loader(7, CPU, shuffle=True)]
    assert sorted(torch.cat(shuffled).tolist()) == sorted(splits.test.labels.tolist())
    halves = [torch.cat([y for _, y in pipe.eval_loader(5, CPU, r, 2)]) for r in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == 10


def _frames(T=3, C=2, size=6, n=8, K=2):
    g = torch.Generator().manual_seed(0)

    def split(k):
        return Split(torch.randint(0, 4, (k, T, C, size, size), generator=g, dtype=torch.uint8),
                     torch.arange(k) % K)

    return DatasetSplits(name="toy", train=split(n), test=split(4), num_classes=K,
                         class_names=["a", "b"], in_channels=C, image_size=size,
                         mean=(0.5,) * C, std=(0.5,) * C, frames=True, T=T)


def test_frames_give_the_stacked_channels_to_an_ann_only():
    cfg = build_config({}, ["data.augment.autoaugment=false"])
    pipe = MemoryPipeline(_frames(), cfg.data)
    assert pipe.input_shape == (2, 6, 6) and pipe.frames_per_sample == 3
    assert pipe.ann_in_channels("stack") == 6                 # T * C
    assert pipe.ann_in_channels("mean") == pipe.ann_in_channels("per_step") == 2
    assert pipe.in_channels_for(True, "stack") == 6           # train-teacher on stacked frames
    assert pipe.in_channels_for(False, "stack") == 2          # a student sees one frame a step
    x, _ = next(iter(pipe.eval_loader(4, CPU)))
    assert x.shape == (3, 4, 2, 6, 6)                         # time-major [T, B, C, H, W]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    make_tree(root, per_class=4, val_per_class=2)
    return root


def _stream_cfg(tree, *extra):
    return build_config({}, ["data.name=imagefolder", f"data.root={tree}", "data.image_size=16",
                             "data.pipeline=stream", "data.workers=0", "train.seed=5",
                             "data.augment.autoaugment=false", *extra])


def test_stream_pipeline_gives_the_engine_s_loaders(tree):
    cfg = _stream_cfg(tree)
    pipe = open_pipeline(cfg.data)
    splits = pipe.splits
    assert isinstance(pipe, StreamPipeline) and pipe.kind == "stream"
    assert pipe.input_shape == (3, 16, 16) and pipe.frames_per_sample is None
    assert pipe.ann_in_channels("stack") == 3                 # streamed samples are never frames
    # crop and flip are per-sample worker transforms, not part of the batch transform
    switches = pipe.augment_switches()
    assert switches["random_crop"] is False and switches["hflip"] is False
    assert MemoryPipeline(splits, cfg.data).augment_switches()["hflip"] is cfg.data.augment.hflip
    train, test = pipe.loaders(4, 5, CPU, seed=5)
    aug = build_augment(True, splits.mean, splits.std,
                        **_switches(cfg, random_crop=False, hflip=False))
    ref_train = stream_loader(splits, "train", cfg.data, 4, augment=aug, device=CPU, seed=5,
                              rank=0, world_size=1)
    ref_test = stream_loader(splits, "test", cfg.data, 5,
                             augment=build_augment(False, splits.mean, splits.std), device=CPU,
                             seed=0, rank=0, world_size=1)
    _same(_epochs(train), _epochs(ref_train))
    _same(_epochs(test, (0,)), _epochs(ref_test, (0,)))
    assert train.mix is None and len(train) == 12 // 4
    assert sum(len(y) for _, y in pipe.eval_loader(4, CPU)) == len(splits.test) == 6
    with pytest.raises(ConfigError, match="no 'val' split"):
        pipe.eval_loader(4, CPU, split="val")


def test_stream_refuses_a_validation_split_and_auto_picks_by_size(tree):
    with pytest.raises(ConfigError, match="data.val_fraction"):
        open_pipeline(_stream_cfg(tree, "data.val_fraction=0.25").data)
    # 18 images * 3 * 16 * 16 bytes decoded: auto streams under a smaller limit only
    base = ["data.name=imagefolder", f"data.root={tree}", "data.image_size=16",
            f"data.cache_dir={tree.parent / 'cache'}"]
    limit = 18 * 3 * 16 * 16 / 2 ** 30
    small = open_pipeline(build_config({}, base + [f"data.memory_limit_gib={limit * 0.99}"]).data)
    large = open_pipeline(build_config({}, base + [f"data.memory_limit_gib={limit * 1.01}"]).data)
    assert (small.kind, large.kind) == ("stream", "memory")
    assert small.input_shape == large.input_shape == (3, 16, 16)
    assert torch.equal(small.splits.test.labels, large.splits.test.labels)


def test_the_split_record_goes_into_the_run_directory(tmp_path):
    source = tmp_path / "split.txt"
    source.write_text("train\ta/rec_0\ntest\tb/rec_1\n", encoding="utf-8")
    splits = SimpleNamespace(name="fake", info={"split_file": str(source)})
    pipe = MemoryPipeline(splits, None)
    run = tmp_path / "run"
    run.mkdir()
    assert pipe.write_split_record(run) == run / DATA_SPLIT_RECORD
    assert (run / DATA_SPLIT_RECORD).read_text(encoding="utf-8") == source.read_text(encoding="utf-8")
    assert MemoryPipeline(SimpleNamespace(name="d", info={}), None).write_split_record(run) is None


@pytest.mark.parametrize("normalize", [True, False])
def test_every_evaluation_loader_sees_the_test_transform(normalize):
    # data.augment.normalize=false: training tests on x / 255; analyze, visualize, compare's
    # energy and accuracy-by-timestep (analysis.loading.eval_loader: the loader's default)
    # must see the same inputs, not normalised ones
    from spikedistill.analysis.loading import eval_loader

    cfg = build_config({}, ["data.name=digits", "data.test_subset=20", "model.name=resnet20",
                            f"data.augment.normalize={str(normalize).lower()}"])
    loader, pipe = eval_loader(cfg, CPU, 20)
    x, _ = next(iter(loader))
    raw = pipe.splits.test.images[:20].float() / 255
    mean = torch.tensor(pipe.splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(pipe.splits.std).view(1, -1, 1, 1)
    want = (raw - mean) / std if normalize else raw
    assert torch.allclose(x, want, atol=1e-6)
    _, test_aug = pipe.augmentations()
    x2, _ = next(iter(pipe.eval_loader(20, CPU, augment=test_aug)))
    assert torch.equal(x, x2)
