"""Per-image energy distributions (analysis/energy.py) and per-timestep counts."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from spikedistill.analysis.counting import count_model
from spikedistill.analysis.energy import (COST_MODELS, distribution, energy_distribution,
                                          per_image_counts, summarize_images, to_markdown)
from spikedistill.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_helpers import calibrate_bn  # noqa: E402


def _calibrated(name, x, **kw):
    torch.manual_seed(0)
    return calibrate_bn(create_model(name, num_classes=10, T=2, in_channels=x.shape[-3], **kw), x)


def test_distribution_golden():
    d = distribution([1.0, 2.0, 3.0, 4.0, 5.0])
    sd = math.sqrt(2.5)
    half = 2.7764451051977987 * sd / math.sqrt(5)          # t_{0.975, 4}
    assert d["n"] == 5 and d["mean"] == 3.0 and d["sd"] == pytest.approx(sd)
    assert d["ci95"] == pytest.approx((3 - half, 3 + half), rel=1e-9)
    assert (d["p2.5"], d["p25"], d["p50"], d["p97.5"]) == pytest.approx((1.1, 2.0, 3.0, 4.9))
    one = distribution([7.0])
    assert one["ci95"] == (7.0, 7.0) and one["sd"] == 0.0 and one["p50"] == 7.0


def test_cost_models_are_horowitz_45nm():
    fp32 = COST_MODELS["45nm_fp32"]
    assert (fp32.e_mac, fp32.e_ac) == (4.6, 0.9)
    assert fp32.e_mac == pytest.approx(3.7 + 0.9)          # multiply + add
    assert (COST_MODELS["45nm_int32"].e_mac, COST_MODELS["45nm_int32"].e_ac) == (3.2, 0.1)


@pytest.mark.parametrize("name, make", [
    ("spiking_resnet20", lambda g: torch.randn(5, 3, 16, 16, generator=g) * 2),
    ("vggsnn", lambda g: torch.randint(0, 3, (2, 5, 2, 16, 16), generator=g).float()),
])
def test_per_image_mean_is_the_batch_count_and_steps_add_up(name, make):
    x = make(torch.Generator().manual_seed(0))
    m = _calibrated(name, x)
    batch = count_model(m, x)["totals"]
    counts = per_image_counts(m, [(x, None)])
    assert len(counts) == 5
    res = summarize_images(counts)
    for k in ("sops", "macs"):
        assert res["totals"][k]["mean"] == pytest.approx(batch[k], rel=1e-9)
    assert res["totals"]["energy_mj"]["mean"] == pytest.approx(batch["energy_mj"], rel=1e-9)
    assert res["totals"]["sops"]["sd"] > 0                  # images differ
    lo, hi = res["totals"]["energy_mj"]["ci95"]
    assert lo < res["totals"]["energy_mj"]["mean"] < hi
    # per timestep + static = the image's energy; per layer sums to the total
    for c in counts:
        ps = c["per_step"]
        assert len(ps["sops"]) == 2
        assert sum(ps["energy_mj"]) + ps["static"]["energy_mj"] == \
            pytest.approx(c["totals"]["energy_mj"], rel=1e-12)
    e_steps = sum(r["energy_mj"]["mean"] for r in res["per_step"]) + \
        res["static"]["energy_mj"]["mean"]
    assert e_steps == pytest.approx(res["totals"]["energy_mj"]["mean"], rel=1e-9)
    assert sum(r["energy_mj"]["mean"] for r in res["layers"]) == \
        pytest.approx(res["totals"]["energy_mj"]["mean"], rel=1e-9)


def test_per_step_sops_golden_for_a_folded_conv():
    """A conv on folded spike frames: SOPs at t = nnz(x[t]) * C_out * 9 (no padding reached)."""
    class Net(nn.Module):
        T = 2

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(x.flatten(0, 1))

    x = torch.zeros(2, 1, 1, 6, 6)
    x[0, 0, 0, 2, 2] = 1
    x[1, 0, 0, 2, 3] = x[1, 0, 0, 3, 3] = x[1, 0, 0, 4, 2] = 1
    row = count_model(Net(), x)["layers"][0]
    assert row["sops_per_step"] == pytest.approx([1 * 2 * 9, 3 * 2 * 9])
    assert row["sops"] == pytest.approx(4 * 2 * 9)


def test_cost_model_changes_only_the_energy():
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2
    m = _calibrated("spiking_resnet20", x)
    counts = per_image_counts(m, [x], max_images=2)
    assert len(counts) == 2
    a, b = summarize_images(counts, "45nm_fp32"), summarize_images(counts, "45nm_int8")
    assert a["totals"]["sops"] == b["totals"]["sops"]
    e = [0.23 * c["totals"]["macs"] * 1e-9 + 0.03 * c["totals"]["sops"] * 1e-9 for c in counts]
    assert b["totals"]["energy_mj"]["mean"] == pytest.approx(sum(e) / 2, rel=1e-12)
    md = to_markdown(b)
    assert "45nm_int8" in md and "t = 1" in md
    with pytest.raises(ValueError, match="45nm_fp32"):
        summarize_images(counts, "7nm")
    assert energy_distribution(m, [x], max_images=1)["images"] == 1
