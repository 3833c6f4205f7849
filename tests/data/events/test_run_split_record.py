"""The split a run trained on is written into its run directory (``RUN_DIR/data_split.txt``), and an
ANN teacher trains on event frames through ``teacher.frames``."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spikedistill.data import load_dataset
from spikedistill.data.events import write_events
from spikedistill.data.events.split import read_split_file
from spikedistill.data.pipeline import DATA_SPLIT_RECORD, write_data_split
from spikedistill.errors import DataError


def _fake_release(root, per_class=12):
    """Two-class fake recordings ``<class>/rec_<i>.aedat`` (AEDAT 2.0), 12 per class."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(per_class):
            n = 300
            write_events(root / cls / f"rec_{i}.aedat",
                         {"t": np.sort(rng.integers(0, 10_000, n)), "x": rng.integers(0, 128, n),
                          "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n)})
    return root


@pytest.mark.slow
def test_a_run_on_emulated_digits_events_writes_the_split_it_used(tmp_path):
    from spikedistill.config import load_config
    from spikedistill.data.events.emulate import EmulateParams, emulate_dataset
    from spikedistill.engine.trainer import run_training

    digits = load_dataset("digits", train_subset=20, test_subset=10)
    out = tmp_path / "emu"
    emulate_dataset(digits.train.images.numpy(), digits.train.labels.numpy(), digits.test.images.numpy(),
                    digits.test.labels.numpy(), digits.class_names, out, prefix="digits",
                    params=EmulateParams(steps=6, duration_us=6_000), progress=False)
    common = ["data.name=cifar10dvs", f"data.root={out}", "data.image_size=8",
              f"data.cache_dir={tmp_path / 'cache'}", "model.name=spiking_resnet20", "model.T=2",
              "distill.method=ce", "train.epochs=1", "train.batch_size=8", "train.max_steps_per_epoch=1",
              "train.device=cpu", "run.plots=false", "data.augment.autoaugment=false",
              "data.augment.random_erasing=0.0"]
    # the first-fraction split: per class, the first ceil(f n) names in string order (f = 0.5:
    # 3 recordings per class leave no test recording at SpikingJelly's 0.9)
    cfg = load_config(None, common + [f"run.out_dir={tmp_path / 'run90'}", "run.name=r",
                                      "data.kwargs={train_fraction: 0.5}"])
    result = run_training(cfg)
    record = Path(result.run_dir) / DATA_SPLIT_RECORD
    assert record.is_file()
    train, test = read_split_file(record)
    want_train, want_test = [], []
    for cls in sorted(p.name for p in out.iterdir() if p.is_dir()):
        names = sorted(f"{cls}/{p.stem}" for p in (out / cls).glob("*.aedat"))
        cut = math.ceil(0.5 * len(names))
        want_train += names[:cut]
        want_test += names[cut:]
    assert (train, test) == (want_train, want_test)
    assert len(train) + len(test) == 30 and not set(train) & set(test)

    # a split file (the images' own train/test split): the record lists exactly that split
    cfg = load_config(None, common + [f"run.out_dir={tmp_path / 'runfile'}", "run.name=r",
                                      f"data.kwargs={{split: file, split_file: '{out / 'split.txt'}'}}"])
    result = run_training(cfg)
    assert read_split_file(Path(result.run_dir) / DATA_SPLIT_RECORD) == read_split_file(out / "split.txt")
    splits = load_dataset("cifar10dvs", out, image_size=8, cache_dir=tmp_path / "cache",
                          options={"T": 2, "split": "file",
                                   "split_file": str(Path(result.run_dir) / DATA_SPLIT_RECORD)})
    assert len(splits.train) == 20 and len(splits.test) == 10
    assert np.array_equal(np.sort(splits.train.labels.numpy()), np.sort(digits.train.labels.numpy()))


def test_write_data_split_copies_the_list_and_refuses_another_split_on_resume(tmp_path):
    root = _fake_release(tmp_path / "rec")
    opts = {"T": 2, "split": "random", "split_seed": 3}
    # cifar10dvs expects 10 classes; its reader takes any class count with expected_classes=None
    from spikedistill.data.registry import ReadRequest
    from spikedistill.data.sets.cifar10dvs import load_event_frames

    def read(options):
        req = ReadRequest(name="fake", root=root, image_size=8, cache_dir=tmp_path / "cache", use_cache=True,
                          train_subset=0, test_subset=0, subset_seed=0, options=options)
        data, info = load_event_frames(req, expected_classes=None)
        return data, SimpleNamespace(name="fake", info=info)

    data, splits = read(opts)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = write_data_split(run_dir, splits)
    assert path == run_dir / DATA_SPLIT_RECORD
    train, test = read_split_file(path)
    # the record is the split the reader returned: 11 train / 1 test per class, labels alike
    assert len(train) == 22 and len(test) == 2 and len(data.train_labels) == 22
    assert sorted(k.split("/")[0] for k in test) == ["a", "b"]
    assert np.array_equal(np.bincount(data.train_labels), [11, 11])
    # resume with the same split: rewritten; with another seed: refused, the record kept
    assert write_data_split(run_dir, splits, resume=True) == path
    _, other = read({**opts, "split_seed": 4})
    assert read_split_file(other.info["split_file"]) != (train, test)
    with pytest.raises(DataError, match="another train/test split"):
        write_data_split(run_dir, other, resume=True)
    assert read_split_file(path) == (train, test)
    # a fresh run (no resume) in that directory writes its own split
    write_data_split(run_dir, other)
    assert read_split_file(path) == read_split_file(other.info["split_file"])
    # a dataset that does not split recordings itself: no record
    assert write_data_split(tmp_path / "run", SimpleNamespace(name="digits", info={})) is None


@pytest.mark.parametrize("frames", ["mean", "per_step"])
def test_an_ann_trained_with_ce_sees_frames_as_teacher_frames_says(frames):
    from spikedistill.distill.base import CrossEntropy

    torch.manual_seed(0)
    ann = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
    ann.is_spiking = False
    ce = CrossEntropy(ann, teacher_frames=frames)
    x = torch.rand(5, 6, 2, 4, 4)            # [T, B, C, H, W]
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    logits, losses = ce.forward_train(x, y)
    if frames == "mean":
        want = ann(x.mean(dim=0))           # the mean frame 1/T sum_t x[t]
    else:
        want = torch.stack([ann(x[t]) for t in range(5)]).mean(dim=0)   # 1/T sum_t f(x[t])
    torch.testing.assert_close(logits, want)
    torch.testing.assert_close(losses["ce"], torch.nn.functional.cross_entropy(want, y))


def test_a_split_that_leaves_no_test_recording_is_refused(tmp_path):
    root = _fake_release(tmp_path / "rec")
    from spikedistill.data.registry import ReadRequest
    from spikedistill.data.sets.cifar10dvs import load_event_frames

    req = ReadRequest(name="fake", root=root, image_size=8, cache_dir=tmp_path / "cache",
                      options={"T": 2, "train_fraction": 0.95})     # ceil(0.95 * 12) = 12 of 12
    with pytest.raises(DataError, match="0 test recordings"):
        load_event_frames(req, expected_classes=None)
