"""The analysis loader: a limited number of batches must be a representative sample, also of a
class-sorted test split (an ImageFolder tree is read class by class, as CIFAR's JPEG copy is)."""

import numpy as np
import torch
from PIL import Image

from spikedistill.analysis.loading import eval_loader
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
