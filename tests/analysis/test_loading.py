"""The analysis loader: a limited number of batches must be a representative sample, also of a
class-sorted test split (an ImageFolder tree is read class by class, as CIFAR's JPEG copy is)."""

import numpy as np
import pytest
import torch
from PIL import Image

from spikedistill.analysis.loading import eval_loader, load_teacher
from spikedistill.config import load_config

CLASSES = 10
PER_CLASS = 5


def _sorted_tree(root):
    """An ImageFolder tree whose test image ``i`` (class ``i // PER_CLASS``) is a constant 8x8
    grey image of value ``4 * i``: its first pixel identifies it after any normalisation."""
    for split, n in (("train", 2), ("test", PER_CLASS)):
        for c in range(CLASSES):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for j in range(n):
                value = 4 * (c * n + j) + (0 if split == "test" else 1)
                Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / f"{j}.png")


def _ids(loader):
    """``(image ids, labels)`` in the order ``loader`` yields them."""
    xs, ys = zip(*[(x[:, 0, 0, 0], y) for x, y in loader])
    first = torch.cat(xs)
    ids = torch.argsort(torch.argsort(first))       # rank of the first pixel = image id
    return ids.tolist(), torch.cat(ys).tolist()


def test_sampled_loader_mixes_classes_and_covers_the_test_set_once(tmp_path):
    _sorted_tree(tmp_path / "tree")
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path / 'tree'}",
                             f"data.cache_dir={tmp_path / 'cache'}"])
    batch = 2 * PER_CLASS
    in_order, pipe = eval_loader(cfg, "cpu", batch)
    sampled, _ = eval_loader(cfg, "cpu", batch, sample=True)
    n = CLASSES * PER_CLASS
    assert len(pipe.splits.test) == n
    # in order, the first batch of the class-sorted split holds two classes only
    ids, labels = _ids(in_order)
    assert ids == list(range(n)) and labels == [i // PER_CLASS for i in range(n)]
    assert sorted(set(next(iter(in_order))[1].tolist())) == [0, 1]
    # sampled: every image exactly once, with its own label, in a mixed order
    ids, labels = _ids(sampled)
    assert sorted(ids) == list(range(n)) and ids != list(range(n))
    assert labels == [i // PER_CLASS for i in ids]
    assert len(set(labels[:batch])) >= 6
    # the sample is fixed: a second pass and a second loader give the same order
    assert _ids(sampled)[0] == ids
    assert _ids(eval_loader(cfg, "cpu", batch, sample=True)[0])[0] == ids


# --- the run's teacher: one builder (spikedistill.engine.build.build_teacher) for all ----------

def _teacher_checkpoint(path, num_classes: int):
    """A ResNet-20 teacher (1 input channel) saved at ``path``; returns the network."""
    from spikedistill.engine.checkpoint import make_checkpoint, save_checkpoint
    from spikedistill.models import create_model

    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=num_classes, in_channels=1, width_mult=1)
    save_checkpoint(make_checkpoint(model=net, config={}, epoch=1), path)
    return net.eval()


def _digits():
    from spikedistill.analysis.loading import open_data

    cfg = load_config(overrides=["data.name=digits", "model.T=1", "train.device=cpu"])
    return cfg, open_data(cfg)


def test_load_teacher_builds_the_runs_teacher_from_a_run_directory(tmp_path):
    cfg, splits = _digits()
    run = tmp_path / "teacher"
    run.mkdir()
    net = _teacher_checkpoint(run / "best.pt", 10)
    teacher = load_teacher(cfg, splits, "cpu", run)
    assert cfg.teacher.checkpoint == str(run / "best.pt")   # the directory stands for best.pt
    assert not teacher.training
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(teacher(x), net(x))
    cfg2, _ = _digits()
    assert load_teacher(cfg2, splits, "cpu") is None          # the run names no teacher


def test_load_teacher_refuses_what_training_refuses(tmp_path):
    """The analysis commands' teacher goes through the training builder, so a teacher of
    another dataset (5 classes for the 10 digits) is refused naming the file, as ``distill``
    refuses it."""
    from spikedistill.errors import CheckpointError

    cfg, splits = _digits()
    _teacher_checkpoint(tmp_path / "t5.pt", 5)
    with pytest.raises(CheckpointError, match=r"t5.pt' predicts 5 classes but dataset 'digits' "
                                              r"has 10"):
        load_teacher(cfg, splits, "cpu", tmp_path / "t5.pt")


def test_one_function_builds_a_teacher():
    """``build_teacher`` is defined once in the package (engine/build.py); the external-source
    builder has its own name and the commands keep no teacher builder of their own."""
    import ast
    from pathlib import Path

    import spikedistill

    root = Path(spikedistill.__file__).parent
    defs = [(str(p.relative_to(root)), node.name) for p in sorted(root.rglob("*.py"))
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef) and "teacher" in node.name
            and node.name.startswith(("build", "load"))]
    assert [d for d in defs if d[1] == "build_teacher"] == [("engine/build.py", "build_teacher")]
    assert not [d for d in defs if d[0].startswith("commands/")], defs
