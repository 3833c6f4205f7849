"""Soft (Mixup / CutMix) targets under distillation: the soft cross-entropy by hand and against
timm, label smoothing applied once, hard labels for methods that need class indices, every
registered method one step on a mixed batch, the teacher seeing the same mixed image, and the
train accuracy of soft targets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spikedistill.config import AugmentConfig, build_config
from spikedistill.data import DeviceLoader
from spikedistill.data.mix import BatchMixer, mix_targets
from spikedistill.distill import build_method, list_methods, method_requires_teacher
from spikedistill.distill.base import CrossEntropy, hard_labels, soft_cross_entropy
from spikedistill.models import create_model
from spikedistill.models.contract import distillation_head

K = 5


def _cfg(method, *overrides):
    return build_config({}, [f"distill.method={method}", *overrides]).distill


def _distiller(method="ce", smoothing=0.0, *overrides):
    torch.manual_seed(0)
    student = create_model("spiking_resnet20", num_classes=K, T=2, width_mult=1,
                           distill_head=method == "deit")
    teacher = create_model("resnet20", num_classes=K, width_mult=1)
    d = build_method(method, student, teacher if method_requires_teacher(method) else None,
                     _cfg(method, *overrides), label_smoothing=smoothing)
    return d


def test_soft_cross_entropy_golden_by_hand():
    z = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.5, 0.5]])
    lse0 = math.log(math.e + math.e ** 2 + 1.0)
    row0 = -(0.25 * (1.0 - lse0) + 0.75 * (2.0 - lse0))
    row1 = math.log(3.0)                       # uniform logits: -log(1/3) for any target
    assert float(soft_cross_entropy(z, y)) == pytest.approx((row0 + row1) / 2, abs=1e-6)
    # smoothing eps = 0.3 on K = 3: y' = 0.7 y + 0.1
    ys = 0.7 * y + 0.1
    row0s = -sum(float(ys[0, k]) * (float(z[0, k]) - lse0) for k in range(3))
    assert float(soft_cross_entropy(z, y, 0.3)) == pytest.approx((row0s + row1) / 2, abs=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_one_hot_soft_targets_equal_int_labels_and_int_path_is_unchanged(eps):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, K, generator=gen) * 3
    y = torch.randint(0, K, (6,), generator=gen)
    d = CrossEntropy(torch.nn.Identity(), label_smoothing=eps)
    hard = d.cross_entropy(z, y)
    assert torch.equal(hard, F.cross_entropy(z, y, label_smoothing=eps))   # numbers unchanged
    soft = d.cross_entropy(z, F.one_hot(y, K).float())
    torch.testing.assert_close(soft, hard, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lam", [0.3, 0.62])
def test_smoothing_once_equals_timm_soft_target_ce_of_mixup_target(lam):
    from timm.data.mixup import mixup_target
    from timm.loss import SoftTargetCrossEntropy

    eps = 0.1
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, K, generator=gen)
    y = torch.randint(0, K, (6,), generator=gen)
    d = CrossEntropy(torch.nn.Identity(), label_smoothing=eps)
    ours = d.cross_entropy(z, mix_targets(y, lam, K))            # the loader's unsmoothed target
    ref = SoftTargetCrossEntropy()(z, mixup_target(y, K, lam, smoothing=eps))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    twice = soft_cross_entropy(z, mix_targets(y, lam, K, smoothing=eps), eps)
    assert abs(float(twice) - float(ref)) > 1e-4                 # smoothing twice would differ


def test_hard_labels():
    y = torch.tensor([2, 0, 1])
    assert hard_labels(y) is y
    soft = mix_targets(y, 0.7, 3)                                 # y.flip = [1, 0, 2]
    assert hard_labels(soft).tolist() == [2, 0, 1]
    assert hard_labels(mix_targets(y, 0.2, 3)).tolist() == [1, 0, 2]


def _mixed_batch(seed=0, B=4, size=8):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, size, size, generator=gen) * 2
    y = torch.randint(0, K, (B,), generator=gen)
    mixer = BatchMixer(AugmentConfig(mixup=0.8, cutmix=1.0, mix_prob=1.0), K)
    return mixer(x, y, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", list_methods())
def test_every_method_one_step_with_mixup(method):
    d = _distiller(method, 0.1)
    d.train()
    x, y = _mixed_batch()
    assert y.shape == (4, K) and not torch.equal(y, y.round())    # really soft
    params = list(d.trainable_parameters())
    before = [p.detach().clone() for p in params]
    logits, losses = d(x, y)
    assert logits.shape == (4, K) and "ce" in losses
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), (name, value)
    if method in ("tser-kd", "tdd", "seal-kd"):  # CE on every timestep z_s[t] (tser-kd: / tau, times 1 - alpha)
        with torch.no_grad():
            z = d.student(x, timestep_logits=True)
            z = z / d.section.tau if method == "tser-kd" and d.section.tau_on_ce else z
        weight = 1 - d.section.alpha if method == "tser-kd" else 1.0          # tdd, seal-kd: 1
        want = weight * torch.stack([soft_cross_entropy(z[t], y, 0.1)
                                               for t in range(z.shape[0])]).mean()
        torch.testing.assert_close(losses["ce"], d.ce_weight * want)
    elif method == "deit":        # (1 - alpha) CE of the class head; logits average both heads
        with torch.no_grad():
            z = d.student(x)
            distillation_head(d.student).pop_kd()
        want = (1 - d.section.alpha) * soft_cross_entropy(z, y, 0.1)
        torch.testing.assert_close(losses["ce"], d.ce_weight * want)
    else:
        torch.testing.assert_close(losses["ce"], d.ce_weight * soft_cross_entropy(logits, y, 0.1))
    sum(losses.values()).backward()
    torch.optim.SGD(params, lr=0.1).step()
    assert any(not torch.equal(p.detach(), b) for p, b in zip(d.student.parameters(), before))


def test_ckd_label_gradcam_uses_the_dominant_label_of_a_soft_target():
    over = ["distill.ckd.samd.teacher_map=gradcam_label"]
    x, y = _mixed_batch(seed=3)
    soft = _distiller("ckd", 0.0, *over)
    soft.train()
    hard = _distiller("ckd", 0.0, *over)
    hard.train()
    torch.manual_seed(1)                       # NLD's noise draws the same in both
    _, ls = soft(x, y)
    torch.manual_seed(1)
    _, lh = hard(x, hard_labels(y))
    torch.testing.assert_close(ls["samd"], lh["samd"])            # same Grad-CAM classes
    torch.testing.assert_close(ls["nld"], lh["nld"])
    assert abs(float(ls["ce"].detach()) - float(lh["ce"].detach())) > 1e-4   # CE sees the soft target


def test_teacher_sees_the_same_mixed_image_as_the_student():
    from spikedistill.engine.loop import train_one_epoch

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.arange(16) % K
    mixer = BatchMixer(AugmentConfig(mixup=0.8, cutmix=1.0), K)

    def loader():
        return DeviceLoader(images, labels, 4, shuffle=True, drop_last=True, seed=5, mix=mixer)

    d = _distiller("kd")
    seen = {"teacher": [], "student": []}
    d.teacher.register_forward_pre_hook(lambda m, a: seen["teacher"].append(a[0].detach().clone()))
    d.student.register_forward_pre_hook(lambda m, a: seen["student"].append(a[0].detach().clone()))
    opt = torch.optim.SGD(d.trainable_parameters(), lr=0.0)
    train_one_epoch(d, loader(), opt, epoch=1, epochs=2, steps_per_epoch=3,
                    device=torch.device("cpu"))
    ref = loader()
    ref.set_epoch(1)
    expected = [x for x, _ in ref][:3]
    assert len(seen["teacher"]) == len(seen["student"]) == 3
    for xt, xs, xe in zip(seen["teacher"], seen["student"], expected):
        assert torch.equal(xt, xs) and torch.equal(xt, xe)
    raw = images[ref.indices()[:4]].float() / 255.0
    assert not torch.equal(expected[0], raw)                    # the batch really was mixed


def test_train_accuracy_counts_the_dominant_label():
    from spikedistill.engine.loop import EpochMeter

    meter = EpochMeter(torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([[0.7, 0.3, 0.0], [0.6, 0.4, 0.0], [0.0, 0.45, 0.55]])
    loss = {"ce": torch.tensor(1.0)}
    meter.add(logits, y, loss, torch.tensor(1.0))
    assert float(meter.correct) == 2.0 and meter.seen == 3
