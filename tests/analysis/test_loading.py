"""The analysis loader: a limited number of batches must be a representative sample."""

import torch

from spikedistill.analysis.loading import eval_loader
from spikedistill.config import load_config


def test_sampled_loader_mixes_classes_and_covers_the_test_set_once():
    cfg = load_config(None, ["data.name=digits"])
    in_order, splits = eval_loader(cfg, "cpu", 30)
    sampled, _ = eval_loader(cfg, "cpu", 30, sample=True)
    # sort the in-order split by label: the first batch would then hold one or two classes
    labels = splits.test.labels
    first_sorted = torch.sort(labels).values[:30]
    assert len(first_sorted.unique()) <= 2
    x0, y0 = next(iter(sampled))
    assert len(y0.unique()) >= 6
    ys = torch.cat([y for _, y in sampled])
    assert torch.equal(torch.sort(ys).values, torch.sort(labels).values)
    # the sample is fixed: two passes give the same first batch
    assert torch.equal(next(iter(sampled))[1], y0)
    assert torch.equal(torch.cat([y for _, y in in_order]), labels)
