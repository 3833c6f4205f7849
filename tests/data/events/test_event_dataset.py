"""Layouts, split, frame cache and the emulate -> read -> frames -> load_dataset -> train path."""

from __future__ import annotations

import math
import tarfile
import zipfile

import numpy as np
import pytest

from spikedistill.data import load_dataset
from spikedistill.data.events import events_to_frames, read_events, write_events
from spikedistill.data.events.emulate import EmulateParams, emulate_dataset, emulate_recording
from spikedistill.data.events.npz import encode_frames_npz
from spikedistill.data.events.split import (SHIPPED, read_split_file, split_keys,
                                            standard_release_keys, write_split_file)
from spikedistill.errors import DataError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _ev(seed, n=200):
    rng = np.random.default_rng(seed)
    return {"t": np.sort(rng.integers(0, 10_000, n)), "x": rng.integers(0, 128, n),
            "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n)}


def _release(root, per_class=12, fmt="aedat", sub=""):
    for c, cls in enumerate(CLASSES):
        for i in range(per_class):
            write_events(root / sub / cls / f"cifar10_{cls}_{i}.{'aedat' if fmt != 'npz' else 'npz'}",
                         _ev(100 * c + i), format=fmt)
    return root


def test_split_is_first_90_percent_in_string_order_and_matches_the_shipped_list():
    keys = standard_release_keys()
    train, test = split_keys(keys)
    assert (train, test) == read_split_file(SHIPPED)
    assert len(train) == 9000 and len(test) == 1000 and not set(train) & set(test)
    per_class = {c: sum(k.startswith(c + "/") for k in test) for c in CLASSES}
    assert set(per_class.values()) == {100}
    # DatasetFolder's order is by name: 'cifar10_airplane_10' comes before '..._2'
    airplane = sorted(k for k in keys if k.startswith("airplane/"))
    assert airplane[:3] == ["airplane/cifar10_airplane_0", "airplane/cifar10_airplane_1",
                            "airplane/cifar10_airplane_10"]
    assert [k for k in test if k.startswith("airplane/")] == airplane[900:]
    # by hand: the 111 names starting with '9' ('9', '90', '900'..'909', '91', ...) sort last; the
    # test set is their last 100, so it starts at '909', holds '91' and '999', not '900'
    atest = [k.split("_")[-1] for k in test if k.startswith("airplane/")]
    assert atest[0] == "909" and "91" in atest and "999" in atest and "900" not in atest
    assert math.ceil(0.9 * 7) == 7 and split_keys([f"a/{i}" for i in range(7)])[1] == []


def test_random_split_is_seeded_and_per_class(tmp_path):
    keys = [f"{c}/r{i}" for c in CLASSES[:3] for i in range(10)]
    a, b = split_keys(keys, split="random", seed=1), split_keys(keys, split="random", seed=1)
    assert a == b and a != split_keys(keys, split="random", seed=2)
    assert all(sum(k.startswith(c) for k in a[0]) == 9 for c in CLASSES[:3])
    path = write_split_file(tmp_path / "s.txt", *a)
    assert read_split_file(path) == a
    (tmp_path / "bad.txt").write_text("train\tcat/x\ntest\tcat/x\n")
    with pytest.raises(DataError, match="in train and test"):
        read_split_file(tmp_path / "bad.txt")
    (tmp_path / "junk.txt").write_text("val\tcat/x\n")
    with pytest.raises(DataError, match="junk.txt:1"):
        read_split_file(tmp_path / "junk.txt")
    with pytest.raises(DataError, match="data.kwargs.split"):
        split_keys(keys, split="half")


@pytest.mark.parametrize("form", ["folder", "zip", "tar", "events_np", "frames"])
def test_layouts_read_the_same_frames(tmp_path, form):
    src = _release(tmp_path / "rel", per_class=10)
    if form == "folder":
        root = src
    elif form == "zip":
        root = tmp_path / "rel.zip"
        with zipfile.ZipFile(root, "w") as z:
            for f in sorted(src.rglob("*.aedat")):
                z.write(f, "CIFAR10DVS/" + f.relative_to(src).as_posix())
    elif form == "tar":
        root = tmp_path / "rel.tar.gz"
        with tarfile.open(root, "w:gz") as t:
            t.add(src, arcname="extract")
    elif form == "events_np":
        root = tmp_path / "sj"
        for f in src.rglob("*.aedat"):
            write_events(root / "events_np" / f.parent.name / (f.stem + ".npz"), read_events(f), format="npz")
    else:
        root = tmp_path / "sj"
        for f in src.rglob("*.aedat"):
            out = root / "frames_number_3_split_by_number" / f.parent.name / (f.stem + ".npz")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(encode_frames_npz(events_to_frames(read_events(f), 3).astype(float)))
    ds = load_dataset("cifar10dvs", root, image_size=128, cache_dir=tmp_path / "cache",
                      options={"T": 3})
    assert ds.train.images.shape == (90, 3, 2, 128, 128) and ds.test.images.shape == (10, 3, 2, 128, 128)
    assert ds.frames and ds.T == 3 and ds.class_names == CLASSES
    # the test recording of class 0 is 'cifar10_airplane_9' (string order of 0..9 is numeric)
    want = np.clip(events_to_frames(read_events(src / "airplane" / "cifar10_airplane_9.aedat"), 3), 0, 255)
    assert np.array_equal(ds.test.images[0].numpy(), want)
    split = read_split_file(ds.info["split_file"])
    assert split[1][0] == "airplane/cifar10_airplane_9" and len(split[0]) == 90


def test_cache_is_reused_atomic_and_keyed(tmp_path):
    src = _release(tmp_path / "rel", per_class=3)
    kw = dict(image_size=16, cache_dir=tmp_path / "cache", options={"T": 2, "train_fraction": 0.5})
    a = load_dataset("cifar10dvs", src, **kw)
    assert a.info["frame_cache_state"] == "built"
    files = sorted((tmp_path / "cache").glob("event-frames-*.npz"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob(".*.tmp"))
    b = load_dataset("cifar10dvs", src, **kw)
    assert b.info["frame_cache_state"] == "reused" and np.array_equal(a.train.images, b.train.images)
    c = load_dataset("cifar10dvs", src, **{**kw, "options": {"T": 3, "train_fraction": 0.5}})
    assert c.info["frame_cache_state"] == "built" and c.T == 3
    files[0].write_bytes(files[0].read_bytes()[:100])        # a truncated entry is rebuilt
    with pytest.warns(UserWarning, match="unreadable event-frame cache"):
        d = load_dataset("cifar10dvs", src, **kw)
    assert np.array_equal(a.test.images, d.test.images)
    # events per output pixel: a constant count c on 128x128 is 64 c on 16x16, clipped at 255
    from spikedistill.data.events.frames import resize_counts
    out, clipped = resize_counts(np.full((1, 2, 128, 128), 3), 16, return_clipped=True)
    assert out.dtype == np.uint8 and np.all(out == 192) and clipped == 0
    out, clipped = resize_counts(np.full((1, 2, 128, 128), 5), 16, return_clipped=True)
    assert np.all(out == 255) and clipped == 2 * 16 * 16


def test_dataset_bad_input(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10dvs", tmp_path / "nope")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="found no event recordings"):
        load_dataset("cifar10dvs", tmp_path / "empty")
    for i in range(2):
        write_events(tmp_path / "three" / f"c{i}" / "a.aedat", _ev(i))
    with pytest.raises(DataError, match="expected 10 class folders"):
        load_dataset("cifar10dvs", tmp_path / "three", cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="data.kwargs: dataset 'cifar10dvs' does not take frames"):
        load_dataset("cifar10dvs", tmp_path / "three", options={"frames": 3})
    with pytest.raises(DataError, match="data.kwargs.T"):
        load_dataset("cifar10dvs", tmp_path / "three", options={"T": 0})


def test_emulator_is_deterministic_and_follows_the_contrast_rule():
    img = np.zeros((1, 8, 8), np.uint8)
    img[:, :, 4:] = 255                                   # one vertical edge
    p = EmulateParams(sensor=32, fill=24, steps=20, duration_us=20_000, radius=2.0, threshold_sigma=0.0)
    a, b = emulate_recording(img, 0, p), emulate_recording(img, 0, p)
    assert all(np.array_equal(a[k], b[k]) for k in "txyp") and len(a["t"]) > 0
    assert np.all(np.diff(a["t"]) >= 0) and a["t"].max() <= 20_000
    assert set(np.unique(a["p"])) == {0, 1}
    flat = emulate_recording(np.full((1, 8, 8), 128, np.uint8), 0, p)
    assert len(flat["t"]) == 0                            # no contrast, no events
    # a pixel moving from log(0.5+.01) up to log(1+.01) crosses floor(0.683/0.2) = 3 ON levels
    assert np.bincount(a["p"] * 0 + ((a["x"] * 32 + a["y"]) == (a["x"][0] * 32 + a["y"][0]))).sum() == len(a["t"])


@pytest.mark.slow
def test_emulate_digits_end_to_end_trains_a_spiking_resnet20(tmp_path):
    digits = load_dataset("digits", train_subset=20, test_subset=10)
    out = tmp_path / "emu"
    p = EmulateParams(steps=10, duration_us=10_000)
    summary = emulate_dataset(digits.train.images.numpy(), digits.train.labels.numpy(), digits.test.images.numpy(),
                              digits.test.labels.numpy(), digits.class_names, out, prefix="digits", params=p,
                              progress=False)
    assert summary["recordings"] == 30 and summary["kind"] == "emulated events"
    ev = read_events(out / "3" / "digits_3_0.aedat")
    assert len(ev["t"]) > 0
    ds = load_dataset("cifar10dvs", out, image_size=16, cache_dir=tmp_path / "cache",
                      options={"T": 2, "split": "file", "split_file": str(out / "split.txt")})
    assert len(ds.train) == 20 and len(ds.test) == 10 and ds.train.images.shape[1:] == (2, 2, 16, 16)
    assert np.array_equal(np.sort(ds.train.labels.numpy()), np.sort(digits.train.labels.numpy()))

    from spikedistill.config import load_config
    from spikedistill.engine.trainer import run_training

    cfg = load_config(None, ["data.name=cifar10dvs", f"data.root={out}", "data.image_size=16",
                             f"data.cache_dir={tmp_path / 'cache'}",
                             f"data.kwargs={{split: file, split_file: '{out / 'split.txt'}'}}",
                             "model.name=spiking_resnet20", "model.T=2", "distill.method=ce",
                             "train.epochs=1", "train.batch_size=8", "train.max_steps_per_epoch=1",
                             "train.device=cpu", f"run.out_dir={tmp_path / 'run'}", "run.plots=false",
                             "data.augment.random_crop=false", "data.augment.autoaugment=false",
                             "data.augment.random_erasing=0.0"])
    result = run_training(cfg)
    assert result.T == 2 and 0.0 <= result.best_acc <= 100.0
