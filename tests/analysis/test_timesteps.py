"""Accuracy at every T' <= T from one run (spikedistill.analysis.timesteps)."""

from __future__ import annotations

import pytest
import torch

from spikedistill.analysis.timesteps import (accuracy_by_timestep, plot_accuracy_by_timestep,
                                             prefix_correct, prefix_mean_logits, timestep_table)
from spikedistill.errors import ConfigError
from spikedistill.models import create_model

from _analysis_helpers import check_png, randomize_bn  # noqa: E402


def test_prefix_mean_logits_golden():
    z = torch.tensor([[[1.0, 0.0]], [[0.0, 3.0]], [[2.0, 0.0]]])     # T 3, B 1, K 2
    want = torch.tensor([[[1.0, 0.0]], [[0.5, 1.5]], [[1.0, 1.0]]])
    assert torch.allclose(prefix_mean_logits(z), want)
    # T' = 1: class 0 right; T' = 2: class 1; T' = 3: a tie -> argmax 0
    assert prefix_correct(z, torch.tensor([0])).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match=r"\[T, B, K\]"):
        prefix_mean_logits(torch.zeros(2, 3))


def test_one_run_equals_separate_runs_at_every_t():
    # the neurons are causal: the first T' timesteps of a T-run give a T'-run's logits
    torch.manual_seed(0)
    model = randomize_bn(create_model("spiking_resnet20", num_classes=5, T=4, width_mult=1))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 3, 8, 8, generator=g) * 2, torch.randint(0, 5, (16,), generator=g))
               for _ in range(2)]
    rows = accuracy_by_timestep(model, batches)
    assert [r["T"] for r in rows] == [1, 2, 3, 4]
    with torch.no_grad():
        z = model(batches[0][0], timestep_logits=True)
        assert not torch.allclose(z[0], z[-1], atol=1e-3)          # the timesteps differ
        zbar = prefix_mean_logits(z)
        for r in rows:
            model.T = r["T"]
            assert torch.allclose(model(batches[0][0]), zbar[r["T"] - 1], atol=1e-5)
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
            assert r["top1"] == pytest.approx(100.0 * correct / 32)
    model.T = 4


def test_ann_is_refused_and_table_and_plot(tmp_path):
    ann = create_model("resnet20", num_classes=5, width_mult=1)
    with pytest.raises(ConfigError, match="spiking model"):
        accuracy_by_timestep(ann, [(torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))])
    rows = [{"T": 1, "top1": 50.0}, {"T": 2, "top1": 75.0}]
    assert timestep_table(rows).splitlines()[2:] == ["| 1 | 50.00 |", "| 2 | 75.00 |"]
    check_png(plot_accuracy_by_timestep(rows, tmp_path / "acc.png"))
