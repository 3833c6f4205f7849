"""CAM-CAM baselines: e2KD's explanation loss and CAT-KD's class attention transfer, golden
values written out by hand, and the two registered methods against the same quantities
computed here with plain torch ops."""

from __future__ import annotations

import math

import pytest
import torch

from spikedistill.distill import build_method
from spikedistill.distill import functional as Fn
from spikedistill.errors import ConfigError

from method_helpers import batch as _batch, method_cfg as _cfg, pair as _pair  # noqa: E402


# -- e2KD ------------------------------------------------------------------------------------

def test_explanation_cosine_loss_golden():
    # sample 0: s = (1, 0, 0, 1), t = (1, 1, 0, 0): cos = 1 / (sqrt 2 sqrt 2) = 1/2 -> 1/2
    # sample 1: the same map (up to the scale 3): cos = 1 -> 0; mean = 1/4
    s = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [1.0, 0.0]]])
    t = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 6.0], [3.0, 0.0]]])
    assert Fn.explanation_cosine_loss(s, t).item() == pytest.approx(0.25, abs=1e-7)
    # opposite-sign maps: cos = -1 -> loss 2
    assert Fn.explanation_cosine_loss(s[:1], -s[:1]).item() == pytest.approx(2.0, abs=1e-7)
    with pytest.raises(ValueError, match="differ in shape"):
        Fn.explanation_cosine_loss(s, t[:, :1])


def test_explanation_loss_is_scale_invariant_and_grads_only_reach_the_student():
    s = torch.rand(3, 4, 4, requires_grad=True)
    t = torch.rand(3, 4, 4, requires_grad=True)
    a = Fn.explanation_cosine_loss(s, t)
    b = Fn.explanation_cosine_loss(7.0 * s, t / 16.0)
    assert torch.allclose(a, b, atol=1e-6)
    a.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_e2kd_terms_equal_gradcam_and_cam_computed_here():
    student, teacher = _pair()
    d = build_method("e2kd", student, teacher, _cfg("e2kd", "distill.e2kd.weight=2.0", "distill.e2kd.map_size=feature", "distill.e2kd.tau=4",
                                                    "distill.e2kd.kd_weight=0.5"))
    d.train()
    x, y = _batch()
    logits, losses = d(x, y)
    assert set(losses) == {"ce", "kd", "exp"}
    # the teacher's Grad-CAM of its predicted class, by hand: for its GAP + Linear head it is
    # ReLU(W[c] . F) / (H W); the cosine ignores the 1 / (H W)
    with torch.no_grad():
        t_logits, t_feats = teacher(x, return_features=True)
        c = t_logits.argmax(1)
        w_t = teacher.classifier.weight[c]                              # (B, C)
        e_t = torch.relu((w_t[:, :, None, None] * t_feats[-1]).sum(1))
        _, s_feats = student(x, return_features=True)
        w_s = student.classifier_weight()[c]
        e_s = torch.relu((w_s[:, :, None, None] * s_feats[-1].mean(0)).sum(1))
    cos = (e_s.flatten(1) * e_t.flatten(1)).sum(1) / (e_s.flatten(1).norm(dim=1)
                                                       * e_t.flatten(1).norm(dim=1))
    assert losses["exp"].item() == pytest.approx(2.0 * (1 - cos).mean().item(), rel=1e-4, abs=1e-6)
    p_t = torch.softmax(t_logits / 4, 1)
    kl = (p_t * (torch.log_softmax(t_logits / 4, 1) - torch.log_softmax(logits.detach() / 4, 1))).sum(1).mean()
    assert losses["kd"].item() == pytest.approx(0.5 * 16 * kl.item(), rel=1e-4)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())


# -- CAT-KD ----------------------------------------------------------------------------------

def test_class_activation_maps_golden():
    # F: 2 channels on a 1 x 2 grid; W: 2 classes
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])          # [1, 2, 1, 2]
    w = torch.tensor([[1.0, 0.0], [2.0, -1.0]])                # [K=2, C=2]
    # class 0: 1*F0 = (1, 2); class 1: 2*F0 - F1 = (2 - 3, 4 + 1) = (-1, 5): no ReLU
    want = torch.tensor([[[[1.0, 2.0]], [[-1.0, 5.0]]]])
    assert torch.equal(Fn.class_activation_maps(f, w), want)


def test_cat_loss_golden_pooling_and_normalisation():
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])             # [B=1, K=1, 2, 2]
    t = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]]]])
    # pooled to 1 x 1: 2.5 vs 1.0 -> (1.5)^2
    assert Fn.cat_loss(s, t, resolution=1).item() == pytest.approx(2.25)
    # at 2 x 2 with L2 normalisation: s / sqrt(30) against (0, 0, 0, 1)
    r = math.sqrt(30.0)
    want = ((1 / r) ** 2 + (2 / r) ** 2 + (3 / r) ** 2 + (4 / r - 1) ** 2) / 4
    assert Fn.cat_loss(s, t, resolution=2, normalize=True).item() == pytest.approx(want, rel=1e-6)
    # student 4 x 4, teacher 2 x 2: pooling brings both to the same size
    s4 = torch.arange(16.0).view(1, 1, 4, 4)
    # 2 x 2 average blocks of 0..15: 2.5, 4.5, 10.5, 12.5
    pooled = torch.tensor([2.5, 4.5, 10.5, 12.5])
    t2 = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    assert Fn.cat_loss(s4, t2, resolution=2).item() == pytest.approx(0.0, abs=1e-12)
    assert Fn.cat_loss(s4, torch.zeros(1, 1, 2, 2), resolution=2).item() == pytest.approx(
        (pooled ** 2).mean().item())


def test_catkd_defaults_follow_the_released_config_and_loss_matches_by_hand():
    student, teacher = _pair()
    d = build_method("catkd", student, teacher, _cfg("catkd"))
    assert (d.section.weight, d.section.resolution, d.section.normalize, d.section.kd_weight) == (15.0, 2, False, 0.0)
    d.train()
    x, y = _batch()
    _, losses = d(x, y)
    assert set(losses) == {"ce", "cat"}                        # CAT-KD has no logit KD
    with torch.no_grad():
        _, t_feats = teacher(x, return_features=True)
        _, s_feats = student(x, return_features=True)
        a_t = torch.einsum("kc,bchw->bkhw", teacher.classifier.weight, t_feats[-1])
        a_s = torch.einsum("kc,bchw->bkhw", student.classifier_weight(), s_feats[-1].mean(0))
        h = a_t.shape[-1] // 2                                 # 2 x 2 blocks by hand
        def pool(a):
            return torch.stack([torch.stack([a[..., i * h:(i + 1) * h, j * h:(j + 1) * h].mean((-1, -2))
                                             for j in range(2)], -1) for i in range(2)], -2)
        want = 15.0 * ((pool(a_s) - pool(a_t)) ** 2).mean()
    assert losses["cat"].item() == pytest.approx(want.item(), rel=1e-4)
    d_kd = build_method("catkd", student, teacher, _cfg("catkd", "distill.catkd.kd_weight=1"))
    d_kd.train()
    assert set(d_kd(x, y)[1]) == {"ce", "cat", "kd"}


def test_catkd_rejects_a_bad_resolution():
    with pytest.raises(ConfigError, match="distill.catkd.resolution"):
        _cfg("catkd", "distill.catkd.resolution=0")
