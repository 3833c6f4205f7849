"""Strong2Weak / Weak2Strong (Ding et al., NeurIPS 2025, arXiv:2510.07924; no public code, so
paper only). Golden values computed by hand with numpy (/work/scratch/16s/golden.py of the
issue-16 helper: softmax, batch-mean max-probability ranking, KL at tau 2), the invariants
the paper implies (T = 1 is plain CE, roles swap between s2w and w2s), and gradient flow."""

from __future__ import annotations

import pytest
import torch

from spikedistill.distill import build_method, method_requires_teacher
from spikedistill.distill import functional as Fn
from spikedistill.errors import ConfigError

from method_helpers import batch as _batch, method_cfg as _cfg, pair as _pair  # noqa: E402

Z = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                  [[0.0, 3.0, 0.0], [0.0, 2.0, 0.5]],
                  [[1.0, 1.0, 0.0], [0.5, 0.5, 0.5]]])      # [T=3, B=2, K=3]
Y = torch.tensor([0, 1])


def test_confidence_ranks_timesteps_by_batch_mean_max_probability():
    con = Fn.timestep_confidence(Z)
    assert con.tolist() == pytest.approx([0.6815514635, 0.8227838614, 0.3778260658], rel=1e-6)


@pytest.mark.parametrize("direction,scheme,reduction,want", [
    ("s2w", "one_to_one", "batchmean", 0.14981366215747083),   # KL(z[1] -> z[2])
    ("s2w", "one_to_one", "mean", 0.04993788738582361),        # ... / K
    ("w2s", "one_to_one", "batchmean", 0.1568777407764131),    # KL(z[2] -> z[1])
    ("s2w", "cascade", "batchmean", 0.17613060087635396),      # 1 -> 0 -> 2
    ("w2s", "cascade", "batchmean", 0.1798343399460501),       # 2 -> 0 -> 1
])
def test_strong_weak_loss_golden(direction, scheme, reduction, want):
    got = Fn.strong_weak_loss(Z, direction=direction, tau=2.0, scheme=scheme,
                              reduction=reduction)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_one_timestep_gives_zero_and_the_method_reduces_to_ce():
    z = torch.randn(1, 4, 5)
    for direction in ("s2w", "w2s"):
        for scheme in Fn.SD_SCHEMES:
            assert Fn.strong_weak_loss(z, direction=direction, scheme=scheme).item() == 0.0
    student, _ = _pair()
    student.T = 1
    d = build_method("s2w", student, None, _cfg("s2w"))
    d.train()
    x, y = _batch()
    logits, losses = d(x, y)
    assert losses["sd"].item() == 0.0
    assert losses["ce"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


def test_gradient_flows_into_both_submodels_unless_the_teacher_is_detached():
    z = Z.clone().requires_grad_(True)
    g = torch.autograd.grad(Fn.strong_weak_loss(z, direction="s2w"), z)[0]
    # one-to-one: teacher t=1 and student t=2 get gradient, the middle timestep none
    assert g[0].abs().sum() == 0 and g[1].abs().sum() > 0 and g[2].abs().sum() > 0
    g_det = torch.autograd.grad(Fn.strong_weak_loss(z, direction="s2w", detach_teacher=True),
                                z)[0]
    assert g_det[1].abs().sum() == 0 and torch.allclose(g_det[2], g[2])
    g_w2s = torch.autograd.grad(Fn.strong_weak_loss(z, direction="w2s", detach_teacher=True),
                                z)[0]
    assert g_w2s[2].abs().sum() == 0 and g_w2s[1].abs().sum() > 0


def test_registered_methods_no_teacher_and_weighted_terms():
    x, y = _batch()
    for name in ("s2w", "w2s"):
        assert not method_requires_teacher(name)
        student, _ = _pair()
        d = build_method(name, student, None, _cfg(name, f"distill.{name}.lam=0.5",
                                                   f"distill.{name}.scheme=cascade"))
        d.train()
        logits, losses = d(x, y)
        with torch.no_grad():
            z = student(x, timestep_logits=True)
        assert torch.allclose(logits, z.mean(0), atol=1e-6)
        want = Fn.strong_weak_loss(z, direction=name, tau=2.0, scheme="cascade")
        assert losses["sd"].item() == pytest.approx(0.5 * want.item(), rel=1e-5)
        assert losses["sd"].item() > 0
        (losses["ce"] + losses["sd"]).backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    with pytest.raises(ConfigError, match="distill.s2w.scheme"):
        _cfg("s2w", "distill.s2w.scheme=ensemble")
    with pytest.raises(ConfigError, match="distill.w2s.reduction"):
        _cfg("w2s", "distill.w2s.reduction=sum")
