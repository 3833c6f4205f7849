"""Readers and load_dataset on tiny fake files in every supported format."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikedistill.data import (CIFAR_MEAN, DATASETS, channel_stats, class_balanced_indices,
                               load_dataset)
from spikedistill.data import datasets as datasets_module
from spikedistill.data import readers
from spikedistill.errors import DataError

CLASSES = ("cat", "ant", "bee")  # sorted order: ant, bee, cat
N_TRAIN, N_TEST = 4, 2           # images per class
H, W = 5, 6


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_tree_files(seed: int = 0, test_split: str = "test") -> dict[str, np.ndarray]:
    """relative path -> HWC pixels of a small ImageFolder tree."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", N_TRAIN), (test_split, N_TEST)):
        for cls in CLASSES:
            for i in range(n):
                files[f"{split}/{cls}/{i:03d}.png"] = _image(rng)
    return files


def expected_arrays(files: dict[str, np.ndarray], split: str):
    """Images in the documented order (class id by sorted name, then path) + labels."""
    order = sorted(CLASSES)
    keys = sorted((k for k in files if k.startswith(split + "/")), key=lambda k: (order.index(k.split("/")[1]), k))
    images = np.stack([files[k].transpose(2, 0, 1) for k in keys])
    labels = np.array([order.index(k.split("/")[1]) for k in keys])
    return images, labels


def write_dir(root: Path, files: dict[str, np.ndarray], prefix: str = "") -> Path:
    for rel, arr in files.items():
        path = root / prefix / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(arr))
    return root


def write_archive(path: Path, files: dict[str, np.ndarray], prefix: str = "") -> Path:
    name = str(path)
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            for rel, arr in files.items():
                zf.writestr(prefix + rel, _png(arr))
    else:
        mode = "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w"
        with tarfile.open(path, mode) as tf:
            for rel, arr in files.items():
                data = _png(arr)
                info = tarfile.TarInfo(prefix + rel)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.mark.parametrize("form", ["dir", "tar", "tar.gz", "tgz", "zip", "dir-top", "tar.gz-top", "zip-top"])
def test_image_folder_round_trip(tmp_path, cache, form):
    files = make_tree_files()
    top = form.endswith("-top")
    kind = form.removesuffix("-top")
    prefix = "cifar_tree/" if top else ""
    if kind == "dir":
        root = write_dir(tmp_path / "tree", files, prefix)
    else:
        root = write_archive(tmp_path / f"tree.{kind}", files, prefix)
    ds = load_dataset("imagefolder", root, cache_dir=cache)
    assert ds.class_names == sorted(CLASSES)
    assert ds.num_classes == 3 and ds.in_channels == 3 and ds.image_size == H
    for split, part in (("train", ds.train), ("test", ds.test)):
        images, labels = expected_arrays(files, split)
        assert part.images.dtype == torch.uint8 and part.labels.dtype == torch.int64
        assert np.array_equal(part.images.numpy(), images), f"{form}: {split} pixels differ"
        assert np.array_equal(part.labels.numpy(), labels)
    # no registered constants: the training split's own per-channel mean / population std
    pixels = ds.train.images.double() / 255
    assert ds.info["normalization"] == "train-split"
    assert np.allclose(ds.mean, pixels.mean(dim=(0, 2, 3)).numpy(), atol=1e-12)
    assert np.allclose(ds.std, pixels.std(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-12)
    assert ds.mean != CIFAR_MEAN


def test_normalisation_from_config_wins_and_is_checked(tmp_path, cache):
    root = write_dir(tmp_path / "tree", make_tree_files())
    ds = load_dataset("imagefolder", root, cache_dir=cache, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.1])
    assert (ds.mean, ds.std, ds.info["normalization"]) == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.1), "config")
    with pytest.raises(DataError, match="expected 3 values each"):
        load_dataset("imagefolder", root, cache_dir=cache, mean=[0.5], std=[0.2])


def test_channel_stats_chunked_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(37, 3, 2, 5, 4), dtype=np.uint8)   # [N, T, C, H, W]
    one = channel_stats(frames)
    monkeypatch.setattr(datasets_module, "_ONE_PASS_ELEMENTS", 100)      # force many chunks
    chunked = channel_stats(frames)
    x = frames.astype(np.float64).transpose(2, 0, 1, 3, 4).reshape(2, -1) / 255
    assert np.allclose(one[0], x.mean(1), atol=1e-13) and np.allclose(one[1], x.std(1), atol=1e-13)
    assert np.allclose(chunked[0], one[0], atol=1e-13) and np.allclose(chunked[1], one[1], atol=1e-13)


def test_val_split_and_grayscale_to_rgb(tmp_path, cache):
    files = make_tree_files(test_split="val")
    grey = np.full((H, W), 77, np.uint8)
    root = write_dir(tmp_path / "tree", files)
    Image.fromarray(grey, mode="L").save(root / "val" / "ant" / "000.png")
    ds = load_dataset("imagefolder", root, cache_dir=cache)
    assert len(ds.test) == 3 * N_TEST
    assert torch.all(ds.test.images[0] == 77) and ds.test.images.shape[1] == 3


def test_image_size_resizes_mixed_sizes_and_mismatch_names_file(tmp_path, cache):
    files = make_tree_files()
    root = write_dir(tmp_path / "tree", files)
    odd = root / "train" / "bee" / "002.png"
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(odd)
    with pytest.raises(DataError, match=r"002\.png.*one size"):
        load_dataset("imagefolder", root, cache_dir=cache)
    ds = load_dataset("imagefolder", root, image_size=4, cache_dir=cache)
    assert ds.train.images.shape[1:] == (3, 4, 4) and ds.image_size == 4


def test_cache_hit_skips_decoding_and_corrupt_cache_is_rebuilt(tmp_path, cache, monkeypatch):
    files = make_tree_files()
    root = write_archive(tmp_path / "tree.tar.gz", files)
    first = load_dataset("imagefolder", root, cache_dir=cache)
    assert first.info["cache"] == "written"
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1 and not list(cache.glob("*.tmp"))

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as m:
        m.setattr(readers, "decode_image", no_decode)
        second = load_dataset("imagefolder", root, cache_dir=cache)
        # subsets of a cached source come from the cache too
        sub = load_dataset("imagefolder", root, cache_dir=cache, train_subset=6)
    assert second.info["cache"] == "hit" and sub.info["cache"] == "hit"
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)

    entries[0].write_bytes(b"this is not an npz file")
    with pytest.warns(UserWarning, match="ignoring unreadable dataset cache"):
        third = load_dataset("imagefolder", root, cache_dir=cache)
    assert third.info["cache"] == "written"
    assert torch.equal(first.train.images, third.train.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset("imagefolder", root, cache_dir=cache).info["cache"] == "hit"


def test_cache_key_follows_source_and_env(tmp_path, monkeypatch):
    files = make_tree_files()
    root = write_dir(tmp_path / "tree", files)
    monkeypatch.setenv("SPIKEDISTILL_CACHE", str(tmp_path / "envcache"))
    assert load_dataset("imagefolder", root).info["cache"] == "written"
    assert list((tmp_path / "envcache").glob("*.npz"))
    assert load_dataset("imagefolder", root).info["cache"] == "hit"
    # replacing an image changes the folder fingerprint: the cache is not used
    new = np.zeros((H, W, 3), np.uint8)
    path = root / "train" / "ant" / "000.png"
    path.write_bytes(_png(new))
    os.utime(path, ns=(1, 1))
    ds = load_dataset("imagefolder", root)
    assert ds.info["cache"] == "written"
    assert torch.all(ds.train.images[0] == 0)
    assert load_dataset("imagefolder", root, use_cache=False).info["cache"] == "off"


def test_subsets_class_balanced_deterministic_and_same_with_or_without_cache(tmp_path, cache):
    files = make_tree_files()
    root = write_archive(tmp_path / "tree.zip", files)
    partial = load_dataset("imagefolder", root, cache_dir=cache, train_subset=6, test_subset=3, subset_seed=5)
    assert partial.info["cache"] == "partial-decode" and not list(cache.glob("*.npz"))
    assert np.bincount(partial.train.labels.numpy()).tolist() == [2, 2, 2]
    assert np.bincount(partial.test.labels.numpy()).tolist() == [1, 1, 1]
    load_dataset("imagefolder", root, cache_dir=cache)  # full decode -> cache
    cached = load_dataset("imagefolder", root, cache_dir=cache, train_subset=6, test_subset=3, subset_seed=5)
    assert cached.info["cache"] == "hit"
    assert torch.equal(partial.train.images, cached.train.images)
    assert torch.equal(partial.test.images, cached.test.images)
    other = load_dataset("imagefolder", root, cache_dir=cache, train_subset=6, subset_seed=6)
    assert not torch.equal(other.train.images, cached.train.images)
    with pytest.raises(DataError, match="train_subset=30 is larger"):
        load_dataset("imagefolder", root, cache_dir=cache, train_subset=30)


def test_class_balanced_indices_properties():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    idx = class_balanced_indices(labels, 22, 4, seed=3)
    assert np.bincount(labels[idx], minlength=4).tolist() == [6, 6, 5, 5]
    assert np.array_equal(idx, class_balanced_indices(labels, 22, 4, seed=3))
    assert not np.array_equal(idx, class_balanced_indices(labels, 22, 4, seed=4))
    assert len(np.unique(idx)) == 22
    assert np.array_equal(class_balanced_indices(labels, 0, 4, seed=3), np.arange(100))
    with pytest.raises(DataError, match="class 0"):
        class_balanced_indices(labels, 60, 4, seed=0)


# ---------------------------------------------------------------------------------- CIFAR pickles


def _batch(rng, n, label_key, k):
    return {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            label_key: rng.integers(0, k, size=n).tolist(), b"filenames": [b"x.png"] * n}


def make_cifar10(parent: Path, n: int = 6) -> tuple[Path, dict]:
    rng = np.random.default_rng(1)
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = _batch(rng, n, b"labels", 10)
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}))
    return folder, batches


def make_cifar100(parent: Path, n: int = 8) -> tuple[Path, dict]:
    rng = np.random.default_rng(2)
    folder = parent / "cifar-100-python"
    folder.mkdir(parents=True)
    batches = {}
    for name in ("train", "test"):
        batches[name] = _batch(rng, n, b"fine_labels", 100)
        batches[name][b"coarse_labels"] = [0] * n
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    meta = {b"fine_label_names": [f"c{i:03d}".encode() for i in range(100)],
            b"coarse_label_names": [b"x"] * 20}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return folder, batches


@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar10_pickles(tmp_path, point_at):
    folder, batches = make_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path if point_at == "parent" else folder)
    train = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal(ds.train.images.numpy(), train)
    assert ds.train.labels.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert np.array_equal(ds.test.images.numpy(), batches["test_batch"][b"data"].reshape(-1, 3, 32, 32))
    # pixel (c, y, x) of image 0 is byte c*1024 + y*32 + x of its row
    assert ds.test.images[0, 2, 1, 3] == batches["test_batch"][b"data"][0, 2 * 1024 + 32 + 3]
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert ds.num_classes == 10 and ds.image_size == 32 and ds.info["format"] == "cifar-pickle"


def test_cifar100_pickles_fine_labels(tmp_path):
    folder, batches = make_cifar100(tmp_path)
    for root in (tmp_path, folder):
        ds = load_dataset("cifar100", root)
        assert ds.num_classes == 100 and ds.class_names[5] == "c005"
        assert ds.train.labels.tolist() == batches["train"][b"fine_labels"]
        assert np.array_equal(ds.test.images.numpy().reshape(-1, 3072), batches["test"][b"data"])


def test_cifar_pickle_errors_name_file_and_field(tmp_path):
    folder, _ = make_cifar10(tmp_path / "a")
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"data_batch_3"):
        load_dataset("cifar10", folder)
    folder, _ = make_cifar10(tmp_path / "b")
    (folder / "data_batch_2").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR file .*data_batch_2"):
        load_dataset("cifar10", folder)
    folder, batches = make_cifar100(tmp_path / "c")
    del batches["train"][b"fine_labels"]
    (folder / "train").write_bytes(pickle.dumps(batches["train"]))
    with pytest.raises(DataError, match=r"train has no field 'fine_labels'"):
        load_dataset("cifar100", folder)
    folder, batches = make_cifar100(tmp_path / "d")
    batches["test"][b"data"] = batches["test"][b"data"][:, :100]
    (folder / "test").write_bytes(pickle.dumps(batches["test"]))
    with pytest.raises(DataError, match=r"test: field 'data' must be \[N, 3072\]"):
        load_dataset("cifar100", folder)


class _Payload:
    """Unpickling this calls ``func(*args)``: what a crafted CIFAR file does to ``pickle.load``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker: Path):
    return {"exec": _Payload(exec, f"open({str(marker)!r}, 'w').write('ran')"),
            "os.system": _Payload(os.system, f"touch '{marker}'"),
            "getattr": _Payload(getattr, "abc", "upper")}   # a builtin that is not a container


@pytest.mark.parametrize("payload", ["exec", "os.system", "getattr"])
@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("where", ["batches.meta", "data_batch_4"])
def test_cifar_pickle_that_runs_code_is_refused(tmp_path, payload, protocol, where):
    folder, batches = make_cifar10(tmp_path)
    marker = tmp_path / "ran"
    obj = ({b"label_names": [b"a"] * 10} if where == "batches.meta" else dict(batches[where]))
    obj[b"x"] = [1, {"k": _payloads(marker)[payload]}]
    (folder / where).write_bytes(pickle.dumps(obj, protocol=protocol))
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", folder)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"CIFAR pickle {folder / where} was refused as unsafe: it "
                              "references global ")
    assert not marker.exists()
    if payload != "getattr":   # the crafted file is real: plain pickle.load runs its code
        pickle.loads((folder / where).read_bytes())
        assert marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_restricted_unpickler_reads_plain_data_of_every_protocol(protocol):
    from spikedistill.data.readers import RestrictedUnpickler

    obj = {b"data": np.arange(24, dtype=np.uint8).reshape(2, 12), b"labels": [3, 1],
           b"names": [b"a", "b"], b"f": np.float32(0.5), b"i": np.int64(7), b"s": {1, 2},
           b"fs": frozenset({b"x"}), b"ba": bytearray(b"xy"), b"c": 1 + 2j, b"t": (None, True),
           b"obj": np.array([1, "two"], dtype=object), b"f64": np.linspace(0, 1, 5)}
    out = RestrictedUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol)),
                              encoding="bytes").load()
    assert out.keys() == obj.keys()
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            assert out[k].dtype == v.dtype and np.array_equal(out[k], v)
        else:
            assert out[k] == v and type(out[k]) is type(v)


def test_restricted_unpickler_reads_numpy1_and_python2_names():
    """The released CIFAR files were written by Python 2 and numpy 1: ``__builtin__`` and
    ``numpy.core.multiarray`` (here rewritten into a protocol-2 pickle, whose GLOBAL opcode
    names them as text)."""
    from spikedistill.data.readers import RestrictedUnpickler

    obj = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"s": {1}, b"n": np.int64(4)}
    raw = pickle.dumps(obj, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n" in raw and b"__builtin__\nset" in raw
    out = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    assert np.array_equal(out[b"data"], obj[b"data"]) and out[b"s"] == {1} and out[b"n"] == 4
    # the latin1 decoder of protocol-2 bytes takes no other codec
    bad = raw.replace(b"latin1", b"rot_13")
    with pytest.raises(pickle.UnpicklingError, match="only latin1"):
        RestrictedUnpickler(io.BytesIO(bad), encoding="bytes").load()


def test_cifar10_root_detects_image_folder_archive(tmp_path, cache):
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    files = {f"{s}/{c}/{i}.png": _image(rng) for s in ("train", "test") for c in names for i in range(2)}
    archive = write_archive(tmp_path / "cifar10-jpeg.tar.gz", files)
    for root in (archive, tmp_path):  # the archive itself, or a folder holding it
        ds = load_dataset("cifar10", root, cache_dir=cache)
        assert ds.class_names == names and ds.info["format"] == "imagefolder"
        assert len(ds.train) == 20 and ds.train.labels.tolist() == [i // 2 for i in range(20)]
    bad = write_archive(tmp_path / "three.zip", make_tree_files())
    with pytest.raises(DataError, match="has 3 classes but cifar10 has 10"):
        load_dataset("cifar10", bad, cache_dir=cache)


# ---------------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_known():
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*cifar10, cifar100, cifar10dvs, digits, imagefolder, imagenet"):
        load_dataset("mnist")
    assert set(DATASETS) == {"digits", "cifar10", "cifar100", "cifar10dvs", "imagefolder", "imagenet"}


def test_missing_roots_name_path_and_expectation(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"nowhere does not exist.*cifar-10-batches-py/ or the archive"):
        load_dataset("cifar10", missing)
    with pytest.raises(DataError, match=r"nowhere does not exist.*cifar-100-python/"):
        load_dataset("cifar100", missing)
    with pytest.raises(DataError, match=r"nowhere does not exist.*train/ and test/"):
        load_dataset("imagefolder", missing)
    with pytest.raises(DataError, match=r"needs a root \(data.root\).*cifar-10-batches-py"):
        load_dataset("cifar10")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty holds neither cifar-10-batches-py/"):
        load_dataset("cifar10", tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"notes.txt is a file but not a .tar"):
        load_dataset("imagefolder", tmp_path / "notes.txt")


def test_archive_without_test_split_and_differing_classes(tmp_path, cache):
    files = {k: v for k, v in make_tree_files().items() if k.startswith("train/")}
    archive = write_archive(tmp_path / "only_train.tar", files)
    with pytest.raises(DataError, match=r"only_train.tar is not an ImageFolder tree.*missing test/"):
        load_dataset("imagefolder", archive, cache_dir=cache)
    files = {k: v for k, v in make_tree_files().items() if not k.startswith("test/bee/")}
    archive = write_archive(tmp_path / "uneven.zip", files)
    with pytest.raises(DataError, match=r"uneven.zip: class folders differ.*only in train: \['bee'\]"):
        load_dataset("imagefolder", archive, cache_dir=cache)


def test_corrupt_archive_and_corrupt_image_named(tmp_path, cache):
    archive = write_archive(tmp_path / "tree.tar.gz", make_tree_files())
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot read archive .*broken.tar.gz"):
        load_dataset("imagefolder", broken, cache_dir=cache)
    files = make_tree_files()
    root = write_dir(tmp_path / "tree", files)
    (root / "test" / "cat" / "001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot decode image .*test/cat/001.png"):
        load_dataset("imagefolder", root, cache_dir=cache)


# ---------------------------------------------------------------------------------- digits


def test_digits_split_values_and_determinism():
    ds = load_dataset("digits")
    assert len(ds.train) + len(ds.test) == 1797
    assert (len(ds.train), len(ds.test)) == (1347, 450)
    assert ds.train.images.shape[1:] == (1, 8, 8) and ds.in_channels == 1 and ds.image_size == 8
    assert ds.train.images.dtype == torch.uint8 and int(ds.train.images.max()) == 255
    assert ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    # stratified: every class has ~25 % of its images in test
    tr, te = np.bincount(ds.train.labels.numpy()), np.bincount(ds.test.labels.numpy())
    assert np.all(np.abs(te / (tr + te) - 0.25) < 0.02)
    again = load_dataset("digits")
    assert torch.equal(again.train.images, ds.train.images) and torch.equal(again.test.labels, ds.test.labels)
    pixels = ds.train.images.double() / 255
    assert ds.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-9)
    assert ds.std[0] == pytest.approx(float(pixels.std(unbiased=False)), abs=1e-9)
    from sklearn.datasets import load_digits

    raw = load_digits()
    # train + test are exactly sklearn's images scaled by 255/16, with their labels
    scaled = np.rint(raw.images * 255 / 16).astype(np.uint8)
    ours = np.concatenate([ds.train.images[:, 0].numpy(), ds.test.images[:, 0].numpy()])
    ours_labels = np.concatenate([ds.train.labels.numpy(), ds.test.labels.numpy()])

    def key(imgs, labs):
        return sorted(zip(labs.tolist(), (i.tobytes() for i in imgs)))

    assert key(ours, ours_labels) == key(scaled, raw.target)
    sub = load_dataset("digits", train_subset=100, test_subset=50)
    assert np.bincount(sub.train.labels.numpy()).tolist() == [10] * 10 and len(sub.test) == 50


# ---------------------------------------------------------------------------------- tar scanning


@pytest.mark.parametrize("suffix", ["tar", "tar.gz"])
def test_fast_tar_scan_agrees_with_tarfile(tmp_path, suffix):
    archive = write_archive(tmp_path / f"tree.{suffix}", make_tree_files(), prefix="./top/")
    entries = readers.scan_tar(archive)
    with tarfile.open(archive) as tf:
        expected = {m.name: (m.offset_data, m.size) for m in tf.getmembers() if m.isfile()}
    assert entries == expected and len(entries) == 3 * (N_TRAIN + N_TEST)


def test_pax_long_names_fall_back_to_tarfile(tmp_path, cache):
    long_cls = "c" * 120  # member paths over 100 characters need pax headers
    files = {k.replace("/ant/", f"/{long_cls}/"): v for k, v in make_tree_files().items()}
    archive = write_archive(tmp_path / "long.tar.gz", files)
    assert readers.scan_tar(archive) is None
    ds = load_dataset("imagefolder", archive, cache_dir=cache)
    assert ds.class_names == sorted(["bee", "cat", long_cls])
    assert len(ds.train) == 3 * N_TRAIN
