"""No silent loss (issue 17, part 2): a tar cut inside a member header is an error naming it
(``tarfile`` stops its listing there without a word), and an empty class folder is refused as
torchvision's ImageFolder refuses it (skipping it would shift every later class id)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import pytest

from spikedistill.errors import DataError
from spikedistill.plugins import DATASETS


def _png(color=(10, 20, 30)):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def _tree():
    return {f"{s}/{c}/{i}.png": _png() for s in ("train", "test") for c in ("a", "b", "c") for i in range(4)}


def _tar_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, raw in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def _cut_in_header(data, member):
    """The tar bytes cut 100 bytes into the header of ``member``."""
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        offset = t.getmember(member).offset
    return data[:offset + 100]


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_tar_cut_inside_a_member_header_is_an_error_naming_it(tmp_path, suffix):
    from spikedistill.data.readers import read_image_folder

    files = _tree()
    names = list(files)
    cut = _cut_in_header(_tar_bytes(files), names[20])
    with tarfile.open(fileobj=io.BytesIO(cut)) as t:           # what tarfile alone does: 20 of 24
        assert len(t.getmembers()) == 20
    path = tmp_path / f"tree{suffix}"
    path.write_bytes(gzip.compress(cut) if suffix == ".tar.gz" else cut)
    with pytest.raises(DataError) as e:
        read_image_folder(path)
    text = str(e.value)
    assert "\n" not in text and str(path) in text and "truncated" in text and names[19] in text
    # the complete archive reads all 24
    path.write_bytes(_tar_bytes(files))
    data = read_image_folder(path)
    assert len(data.train_labels) + len(data.test_labels) == 24


def test_a_streamed_tar_shard_cut_inside_a_header_is_an_error(tmp_path):
    from spikedistill.data.stream import tar_members

    files = {f"n0000000{c}/{i}.png": _png() for c in range(3) for i in range(8)}
    path = tmp_path / "train-000000.tar"
    names = list(files)
    path.write_bytes(_cut_in_header(_tar_bytes(files), names[20]))
    with pytest.raises(DataError) as e:
        tar_members(path)
    assert str(path) in str(e.value) and names[19] in str(e.value)
    path.write_bytes(_tar_bytes(files))
    assert set(tar_members(path)) == set(names)


def test_an_event_archive_cut_inside_a_header_is_an_error(tmp_path):
    import numpy as np

    from spikedistill.data.events.aedat import encode_aedat2
    from spikedistill.data.events.layout import discover

    ev = {k: np.zeros(3, np.int64) for k in "txyp"}
    files = {f"{c}/{i}.aedat": encode_aedat2(ev) for c in ("cat", "dog") for i in range(3)}
    path = tmp_path / "dvs.tar"
    path.write_bytes(_cut_in_header(_tar_bytes(files), "dog/1.aedat"))
    with pytest.raises(DataError) as e:
        discover(path)
    assert "dog/0.aedat" in str(e.value) and "truncated" in str(e.value)


def _write_folder(root, files, empty=()):
    for name, raw in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(raw)
    for d in empty:
        (root / d).mkdir(parents=True)


def test_an_empty_class_folder_is_refused_as_torchvision_refuses_it(tmp_path):
    from torchvision.datasets import ImageFolder

    from spikedistill.data.readers import read_image_folder

    files = {k: v for k, v in _tree().items() if not k.startswith("train/b/")}
    _write_folder(tmp_path, files, empty=["train/b"])
    with pytest.raises(FileNotFoundError, match="b"):           # the peer's rule
        ImageFolder(str(tmp_path / "train"))
    with pytest.raises(DataError) as e:
        read_image_folder(tmp_path)
    assert "train/" in str(e.value) and ": b (" in str(e.value)
    (tmp_path / "train" / "b" / "notes.txt").write_text("not an image")   # still no image
    with pytest.raises(FileNotFoundError):
        ImageFolder(str(tmp_path / "train"))
    with pytest.raises(DataError):
        read_image_folder(tmp_path)
    (tmp_path / "train" / "b" / "0.png").write_bytes(_png())
    assert ImageFolder(str(tmp_path / "train")).class_to_idx == {"a": 0, "b": 1, "c": 2}
    assert read_image_folder(tmp_path).class_names == ["a", "b", "c"]


def test_an_empty_class_folder_listed_in_a_zip_is_refused(tmp_path):
    from spikedistill.data.readers import read_image_folder

    path = tmp_path / "tree.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in _tree().items():
            if not name.startswith("test/c/"):
                z.writestr(name, raw)
        z.writestr("test/c/", b"")
    with pytest.raises(DataError) as e:
        read_image_folder(path)
    assert "test/" in str(e.value) and ": c (" in str(e.value)


def test_an_empty_imagenet_class_folder_is_refused(tmp_path):
    DATASETS.names()   # built-ins registered in their own order before a set is imported
    from spikedistill.data.sets.imagenet import index_imagenet

    files = {f"{s}/n0000000{c}/{i}.png": _png() for s in ("train", "val") for c in range(3) for i in range(2)}
    _write_folder(tmp_path, {k: v for k, v in files.items() if "/n00000001/" not in k},
                  empty=["train/n00000001"])      # skipped, it would give 2 classes silently
    with pytest.raises(DataError) as e:
        index_imagenet(tmp_path)
    assert "n00000001" in str(e.value) and "\n" not in str(e.value)
