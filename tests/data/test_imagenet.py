"""``data.name: imagenet``: every layout gives the same files with the sorted-wnid labels, tar
shards are read in place, a wrong tree is one clear DataError."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from fake_imagenet import WNIDS, make_tree
from spikedistill.config import build_config
from spikedistill.plugins import DATASETS

DATASETS.names()   # discovery first, so the datasets register in their usual order
from spikedistill.data.sets.imagenet import index_imagenet  # noqa: E402
from spikedistill.data.stream import decode_rgb, read_sample  # noqa: E402
from spikedistill.errors import DataError  # noqa: E402

LAYOUTS = [("folders", "folders"), ("folders", "txt"), ("folders", "csv"), ("folders", "devkit"),
           ("shards", "shards"), ("shards", "folders")]


def _truth_of(files, names, class_names):
    """``{stem: wnid}`` that the index assigns, by the file (or tar member) it points at."""
    out = {}
    for i in range(len(files)):
        out[names[i]] = class_names[int(files.labels[i])]
    return out


def _member_stems(files):
    """The file stem of every sample: from the path, or by finding the member in its shard."""
    stems = []
    cache = {}
    for path, off in zip(files.paths, files.offsets.tolist()):
        if off < 0:
            stems.append(Path(path).stem)
            continue
        if path not in cache:
            with tarfile.open(path) as tar:
                cache[path] = {m.offset_data: Path(m.name).stem for m in tar.getmembers()}
        stems.append(cache[path][off])
    return stems


@pytest.mark.parametrize("train,val", LAYOUTS)
def test_every_layout_gives_the_sorted_wnid_labels(tmp_path, train, val):
    truth = make_tree(tmp_path, train=train, val=val)
    idx = index_imagenet(tmp_path)
    # the class index is torchvision ImageFolder's: the sorted wnids
    assert idx.class_names == sorted(WNIDS) == truth["classes"]
    assert WNIDS[0] != idx.class_names[0]          # the fake tree's id order is not sorted
    for split, files in (("train", idx.train), ("val", idx.test)):
        got = _truth_of(files, _member_stems(files), idx.class_names)
        assert got == truth[split], split
    # the labels point at the right pixels: every listed image decodes
    img = decode_rgb(read_sample(idx.test, 0), idx.test.name(0))
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and min(img.shape[1:]) >= 20


def test_tar_members_are_read_in_place(tmp_path):
    make_tree(tmp_path, train="shards", val="shards")
    idx = index_imagenet(tmp_path)
    assert {Path(p).name for p in idx.train.paths} == {"train-000000.tar", "train-000001.tar"}
    assert (idx.train.offsets > 0).all()
    # bytes at (offset, size) are exactly the member's bytes (tarfile, the peer reader)
    with tarfile.open(idx.train.paths[3]) as tar:
        member = next(m for m in tar.getmembers() if m.offset_data == idx.train.offsets[3])
        assert tar.extractfile(member).read() == read_sample(idx.train, 3)


def test_the_devkit_ids_map_through_meta_mat(tmp_path):
    truth = make_tree(tmp_path, val="devkit")
    gt = (tmp_path / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt")
    ids = [int(v) for v in gt.read_text().split()]
    # by hand: id k (1-based) is WNIDS[k - 1]; its class is that wnid's sorted position
    expected = [sorted(WNIDS).index(WNIDS[k - 1]) for k in ids]
    idx = index_imagenet(tmp_path)
    stems = [Path(p).stem for p in idx.test.paths]
    by_stem = dict(zip(stems, idx.test.labels.tolist()))
    assert [by_stem[f"ILSVRC2012_val_{i + 1:08d}"] for i in range(len(ids))] == expected
    assert len(truth["val"]) == len(ids)


def test_memory_and_stream_read_the_same_images(tmp_path):
    from spikedistill.data.pipeline import open_pipeline

    make_tree(tmp_path, val="txt")
    common = ["data.name=imagenet", f"data.root={tmp_path}", "data.image_size=24"]
    mem = open_pipeline(build_config({}, common + ["data.pipeline=memory"]).data).splits
    st = open_pipeline(build_config({}, common + ["data.pipeline=stream"]).data).splits
    assert mem.num_classes == st.num_classes == 3
    assert torch.equal(mem.train.labels, st.train.labels) and torch.equal(mem.test.labels, st.test.labels)
    assert tuple(mem.train.images.shape[1:]) == st.input_shape == (3, 24, 24)
    assert mem.mean == st.mean == (0.485, 0.456, 0.406) and st.std == (0.229, 0.224, 0.225)
    # memory holds the evaluation view (Resize(round(24*8/7)=27) + CenterCrop(24)) of each file
    from torchvision.transforms.v2 import functional as F

    ref = F.center_crop(F.resize(decode_rgb(read_sample(st.test.files, 2), ""), 27, antialias=True), 24)
    assert torch.equal(mem.test.images[2], ref)


def test_wrong_trees_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"expected train/<wnid>/\*\.JPEG or train-NNNNNN\.tar"):
        index_imagenet(empty)
    with pytest.raises(DataError, match="is not a folder"):
        index_imagenet(tmp_path / "missing")

    flat = tmp_path / "flat"
    make_tree(flat, val="txt")
    (flat / "val_labels.txt").unlink()
    with pytest.raises(DataError, match=r"no labels file.*val_labels.txt, LOC_val_solution.csv"):
        index_imagenet(flat)

    (flat / "val_labels.txt").write_text("ILSVRC2012_val_00000001.JPEG n09999999\n")
    with pytest.raises(DataError, match="n09999999, which is not among the 3 training classes"):
        index_imagenet(flat)
    (flat / "val_labels.txt").write_text("ILSVRC2012_val_00000001.JPEG n01440764\n")
    with pytest.raises(DataError, match="has no label for"):
        index_imagenet(flat)

    dk = tmp_path / "dk"
    make_tree(dk, val="devkit")
    gt = dk / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    good = gt.read_text()
    gt.write_text("4\n" + good.split("\n", 1)[1])      # id 4 is the fake devkit's non-leaf synset
    with pytest.raises(DataError, match=r"line 1: expected an ILSVRC2012_ID .*\(1\.\.3\), got '4'"):
        index_imagenet(dk)
    gt.write_text(good)
    (dk / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    with pytest.raises(DataError, match="need the devkit's meta.mat.*data.kwargs.devkit"):
        index_imagenet(dk)

    gz = tmp_path / "gz"
    make_tree(gz, train="shards", val="shards")
    raw = (gz / "train-000000.tar").read_bytes()
    import gzip

    (gz / "train-000000.tar").write_bytes(gzip.compress(raw))
    with pytest.raises(DataError, match="is compressed; streaming .* needs uncompressed .tar"):
        index_imagenet(gz)

    deep = tmp_path / "deep"
    deep.mkdir()
    buf = io.BytesIO(b"x")
    with tarfile.open(deep / "train-000000.tar", "w") as tar:
        info = tarfile.TarInfo("a/n01440764/x.JPEG")
        info.size = 1
        tar.addfile(info, buf)
    with pytest.raises(DataError, match=r"is not <wnid>/<file>"):
        index_imagenet(deep)


def test_a_val_class_missing_from_train_is_refused(tmp_path):
    make_tree(tmp_path)
    shutil.copytree(tmp_path / "val" / "n01440764", tmp_path / "val" / "n07777777")
    with pytest.raises(DataError, match="class n07777777 is not among the 3 classes"):
        index_imagenet(tmp_path)



RECIPES = Path(__file__).resolve().parents[2] / "configs" / "imagenet"


@pytest.mark.parametrize("method", ["ce", "kd", "bkdsnn", "ckd"])
def test_imagenet_recipes_load_with_the_sew_schedule(method):
    from spikedistill.config import load_config
    from spikedistill.models.registry import list_models

    cfg = load_config(RECIPES / f"sew_resnet34_t4_{method}.yaml")
    assert cfg.distill.method == method and cfg.model.T == 4
    assert (cfg.data.name, cfg.data.pipeline, cfg.data.image_size) == ("imagenet", "stream", 224)
    t = cfg.train
    assert (t.optimizer, t.lr, t.momentum, t.scheduler, t.epochs) == ("sgd", 0.1, 0.9, "cosine", 320)
    assert (t.batch_size, t.batch_size_is) == (256, "global")
    if method != "ce":
        assert (cfg.teacher.source, cfg.teacher.arch) == ("torchvision", "resnet34")
    teacher = load_config(RECIPES / "resnet34_teacher.yaml")
    assert teacher.teacher.arch == teacher.model.arch == "resnet34"
    if "sew_resnet34" not in list_models():
        pytest.skip("sew_resnet34 is not registered yet (the SEW-ResNet students)")
    assert cfg.model.name == "sew_resnet34"
