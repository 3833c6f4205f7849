"""Registered methods: one distillation step for every method x student, teacher freezing,
Grad-CAM / CAM maps of real teachers, stage and resolution checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from spikedistill.distill import (DistillConfig, build_method, class_activation_map, grad_cam,
                                  list_methods, method_requires_teacher)
from spikedistill.distill.functional import kd_loss
from spikedistill.errors import ConfigError
from spikedistill.models import create_model, list_models
from spikedistill.models.contract import DistillModel, linear_chain_weight

K = 5
SIZE = 8


def _teacher_for(student_name: str) -> str:
    teachers = list_models("teacher")
    plain = {"vggsnn": "vgg_dvs"}.get(student_name, student_name.replace("spiking_", ""))  # ANN twins
    return plain if plain in teachers else teachers[0]


def _pair(student_name="spiking_resnet20", seed=0, T=2):
    torch.manual_seed(seed)
    student = create_model(student_name, num_classes=K, T=T, width_mult=1)
    if student_name.startswith("sew_"):     # 4 stages at H/4..H/32: torchvision's ResNet taps
        teacher = create_model("torchvision/resnet18", num_classes=K, input_shape=(3, SIZE, SIZE))
        return student, teacher
    teacher = create_model(_teacher_for(student_name), num_classes=K, width_mult=1)
    return student, teacher


def _batch(seed=0, B=4):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, SIZE, SIZE, generator=gen) * 2
    y = torch.randint(0, K, (B,), generator=gen)
    return x, y


def _cfg(method, *overrides):
    from spikedistill.config import build_config
    return build_config({}, [f"distill.method={method}", *overrides]).distill


def _for(method, student):
    """The student as ``method`` needs it: ``deit`` trains a second head (model.distill_head)."""
    if method == "deit":
        from spikedistill.models.contract import add_distillation_head
        add_distillation_head(student)
    return student


def _bn_stats(model):
    return [m.running_mean.clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("student_name", list_models("student"))
@pytest.mark.parametrize("method", list_methods())
def test_every_method_one_step(method, student_name):
    student, teacher = _pair(student_name)
    _for(method, student)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller = build_method(method, student, teacher if method_requires_teacher(method) else None,
                             _cfg(method))
    distiller.train()
    params = list(distiller.trainable_parameters())
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.1)
    x, y = _batch()
    logits, losses = distiller(x, y)
    assert logits.shape == (4, K)
    assert "ce" in losses and len(losses) >= (1 if method == "ce" else 2)
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), (name, value)
    total = sum(losses.values())
    opt.zero_grad()
    total.backward()
    opt.step()
    student_changed = [not torch.equal(p.detach(), b) for p, b in zip(student.parameters(), before)]
    assert any(student_changed)
    if len(distiller.extras):
        extra_params = list(distiller.extras.parameters())
        extra_before = before[len(list(student.parameters())):]
        assert any(not torch.equal(p.detach(), b) for p, b in zip(extra_params, extra_before))
    if method_requires_teacher(method):
        # a frozen teacher: no gradient, no parameter or BN-statistics change
        assert all(p.grad is None for p in teacher.parameters())
        for k, v in teacher.state_dict().items():
            assert torch.equal(v, teacher_before[k]), k
    distiller.eval()
    assert distiller(x).shape == (4, K)


@pytest.mark.parametrize("method", ["kd", "enof", "ckd-released", "ckd-paper", "bkdsnn"])
def test_released_teacher_mode_updates_bn_stats_but_not_weights(method):
    student, teacher = _pair()
    w_before = [p.detach().clone() for p in teacher.parameters()]
    bn_before = _bn_stats(teacher)
    distiller = build_method(method, student, teacher, _cfg(method), teacher_mode="released")
    distiller.train()
    assert teacher.training
    opt = torch.optim.SGD(distiller.trainable_parameters(), lr=0.1)
    x, y = _batch()
    _, losses = distiller(x, y)
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(_bn_stats(teacher), bn_before))
    assert all(torch.equal(p.detach(), b) for p, b in zip(teacher.parameters(), w_before))
    # teacher outputs are targets: no loss gradient reaches the teacher's weights
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in teacher.parameters())


@pytest.mark.parametrize("method", ["ckd-paper", "ckd-released", "kd"])
def test_frozen_teacher_untouched_including_gradcam_path(method):
    student, teacher = _pair()
    bn_before = _bn_stats(teacher)
    distiller = build_method(method, student, teacher, _cfg(method))
    distiller.train()
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    x, y = _batch()
    _, losses = distiller(x, y)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(_bn_stats(teacher), bn_before))


def test_grad_cam_of_real_teacher_last_stage_equals_cam_over_hw():
    _, teacher = _pair()
    teacher.eval().requires_grad_(False)
    x, _ = _batch()
    with torch.enable_grad():
        logits, feats = teacher(x.requires_grad_(True), return_features=True)
        classes = logits.detach().argmax(1)
        gc = grad_cam(logits, feats[-1], classes)
    cam = class_activation_map(feats[-1].detach(), teacher.classifier.weight, classes)
    hw = feats[-1].shape[2] * feats[-1].shape[3]
    assert cam.abs().sum() > 0
    assert torch.allclose(gc, cam / hw, atol=1e-5, rtol=1e-4)


def test_ckd_teacher_maps_follow_the_switches():
    student, teacher = _pair()
    x, y = _batch()
    d_cam = build_method("ckd", student, teacher, _cfg("ckd", "distill.ckd.samd.teacher_map=cam"))
    d_lab = build_method("ckd", student, teacher, _cfg("ckd", "distill.ckd.samd.teacher_map=gradcam_label",
                                                       "distill.ckd.samd.stages=[1, 3]"))
    t_logits, t_feats, maps_cam, classes_cam = d_cam._teacher(x, y)
    assert torch.equal(classes_cam, t_logits.argmax(1))
    want = class_activation_map(t_feats[-1], teacher.classifier.weight, t_logits.argmax(1))
    assert torch.allclose(maps_cam[2], want)
    _, feats2, maps_lab, classes_lab = d_lab._teacher(x, y)
    assert torch.equal(classes_lab, y)
    assert sorted(maps_lab) == [0, 2]
    assert maps_lab[0].shape == feats2[0].shape[:1] + feats2[0].shape[2:]
    hw = feats2[2].shape[2] * feats2[2].shape[3]
    cam_label = class_activation_map(feats2[2], teacher.classifier.weight, y)
    assert torch.allclose(maps_lab[2], cam_label / hw, atol=1e-5, rtol=1e-4)
    # two-stage SAMD trains
    d_lab.train()
    _, losses = d_lab(x, y)
    assert torch.isfinite(losses["samd"])


def test_student_cam_map_uses_the_effective_head():
    student, teacher = _pair()
    w = student.classifier_weight()
    assert w.shape == (K, student.feature_dim)
    assert torch.allclose(w, student.head[1].weight @ student.head[0].weight)
    d = build_method("ckd", student, teacher, _cfg("ckd", "distill.ckd.samd.student_map=cam"))
    d.train()
    x, y = _batch()
    _, losses = d(x, y)
    assert torch.isfinite(losses["samd"])


def test_cam_at_non_last_stage_is_a_config_error():
    student, teacher = _pair()
    with pytest.raises(ConfigError, match="distill.ckd.samd.teacher_map"):
        build_method("ckd-released", student, teacher, _cfg("ckd-released", "distill.ckd.samd.stages=[1]"))
    with pytest.raises(ConfigError, match="distill.ckd.samd.student_map"):
        build_method("ckd-paper", student, teacher,
                     _cfg("ckd-paper", "distill.ckd.samd.stages=[2]", "distill.ckd.samd.student_map=cam"))
    with pytest.raises(ConfigError, match=r"distill.ckd.samd.stages\[0\].*3 stages"):
        build_method("ckd-paper", student, teacher, _cfg("ckd-paper", "distill.ckd.samd.stages=[4]"))
    with pytest.raises(ConfigError, match="distill.kdsnn.stage"):
        build_method("kdsnn", student, teacher, _cfg("kdsnn", "distill.kdsnn.stage=-4"))
    # a last stage given by number is accepted with the CAM
    build_method("ckd-released", student, teacher, _cfg("ckd-released", "distill.ckd.samd.stages=[3]"))


class _ToyStudent(DistillModel):
    """Follows the student contract; its stages have a spatial size of its own choosing."""

    is_spiking = True

    def __init__(self, hw, channels=(4, 6, 8), T=2):
        super().__init__()
        self.T, self.hw, self.feature_channels = T, hw, channels
        self.num_classes = K
        self.convs = nn.ModuleList(nn.Conv2d(3, c, 1) for c in channels)
        self.head = nn.Sequential(nn.Linear(channels[-1], 7), nn.Linear(7, K))

    @property
    def classifier(self):
        return self.head[1]

    def classifier_weight(self):
        return linear_chain_weight(self.head)

    @staticmethod
    def pool(last):
        return last.mean(dim=(3, 4)).mean(dim=0)

    def forward(self, x, return_features=False):
        x = nn.functional.adaptive_avg_pool2d(x, self.hw)
        feats = [torch.relu(c(x)).unsqueeze(0).expand(self.T, -1, -1, -1, -1) for c in self.convs]
        logits = self.head(self.pool(feats[-1]))
        return (logits, feats) if return_features else logits


def test_resolution_mismatch_is_a_clear_error():
    _, teacher = _pair()
    student = _ToyStudent(hw=3)        # teacher's last stage is 2x2 at 8x8 input
    d = build_method("ckd-released", student, teacher, _cfg("ckd-released"))
    d.train()
    with pytest.raises(ConfigError, match="spatial resolution"):
        d(*_batch())


def test_toy_student_with_other_channels_gets_adapters():
    _, teacher = _pair()
    student = _ToyStudent(hw=2, channels=(4, 6, 8))    # teacher: 16 / 32 / 64 channels
    for method in ("kdsnn", "enof"):
        d = build_method(method, student, teacher, _cfg(method))
        assert "adapter" in d.extras
        d.train()
        _, losses = d(*_batch())
        assert all(torch.isfinite(v) for v in losses.values())


def test_teacher_required():
    student, _ = _pair()
    with pytest.raises(ConfigError, match="needs a teacher"):
        build_method("ckd", student, None, _cfg("ckd"))


def test_ckd_nld_noise_is_fresh_each_step():
    """Two steps on the same batch differ only by the NLD noise: the CE term is equal, the NLD
    term is not (a fresh draw of ``n`` each step), a reseeded step repeats the first exactly,
    and with the noise switched off (``mode=none``) both steps are equal."""
    student, teacher = _pair()
    x, y = _batch()
    for method in ("nld", "ckd"):
        d = build_method(method, student, teacher, _cfg(method))
        d.train()
        torch.manual_seed(1)
        _, first = d(x, y)
        _, second = d(x, y)
        torch.manual_seed(1)
        _, again = d(x, y)
        assert set(first) == ({"ce", "nld"} if method == "nld" else {"ce", "samd", "nld"})
        assert torch.equal(first["ce"], second["ce"])         # same student, same batch
        assert torch.isfinite(first["nld"]) and torch.isfinite(second["nld"])
        assert not torch.allclose(first["nld"], second["nld"], rtol=1e-4, atol=0.0)
        assert torch.equal(again["nld"], first["nld"])        # the noise is torch's RNG's
    quiet = build_method("nld", student, teacher, _cfg("nld", "distill.ckd.nld.mode=none"))
    quiet.train()
    _, first = quiet(x, y)
    _, second = quiet(x, y)
    assert torch.equal(first["nld"], second["nld"])
    d_samd = build_method("samd", student, teacher, _cfg("samd"))
    assert set(d_samd.train()(x, y)[1]) == {"ce", "samd"}


def test_weights_scale_the_terms():
    student, teacher = _pair()
    x, y = _batch()
    base = build_method("ckd", student, teacher, _cfg("ckd", "distill.ckd.nld.mode=none"))
    double = build_method("ckd", student, teacher, _cfg("ckd", "distill.ckd.nld.mode=none",
                                                        "distill.ckd.beta=2", "distill.ckd.gamma=3",
                                                        "distill.ce_weight=0.5"))
    base.train(), double.train()
    _, l1 = base(x, y)
    _, l2 = double(x, y)
    assert torch.allclose(l2["samd"], 2 * l1["samd"], rtol=1e-5)
    assert torch.allclose(l2["nld"], 3 * l1["nld"], rtol=1e-5)
    assert torch.allclose(l2["ce"], 0.5 * l1["ce"], rtol=1e-5)


def test_bf16_autocast_step():
    student, teacher = _pair()
    d = build_method("ckd-paper", student, teacher, _cfg("ckd-paper"))
    d.train()
    x, y = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = d(x, y)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_build_without_cfg_uses_defaults():
    student, teacher = _pair()
    d = build_method("ckd-paper", student, teacher)
    assert d.settings.preset == "paper" and d.settings.samd.teacher_map == "gradcam_label"
    assert isinstance(DistillConfig().ckd.samd.stages, list)


# --------------------------------------------------------------------------------------------
# frames [T, B, C, H, W] and the teacher (teacher.frames)
# --------------------------------------------------------------------------------------------

def _frames(T=2, B=4, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, 3, SIZE, SIZE, generator=gen) * 2


def test_run_teacher_mean_frame_and_per_step_by_hand():
    student, teacher = _pair()
    d = build_method("kd", student, teacher, _cfg("kd"))
    x = _frames(T=3)
    assert d.teacher_frames == "mean"
    teacher.eval()
    with torch.no_grad():
        z_mean, f_mean = teacher((x[0] + x[1] + x[2]) / 3, return_features=True)
        per = [teacher(x[t], return_features=True) for t in range(3)]
    z, feats = d.run_teacher(x)
    assert torch.allclose(z, z_mean, atol=1e-6) and len(feats) == 3
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(feats, f_mean))
    d = build_method("kd", student, teacher, _cfg("kd"), teacher_frames="per_step")
    z, feats = d.run_teacher(x)
    assert torch.allclose(z, sum(p[0] for p in per) / 3, atol=1e-5)
    for i, f in enumerate(feats):
        assert f.shape == f_mean[i].shape
        assert torch.allclose(f, sum(p[1][i] for p in per) / 3, atol=1e-5)
    assert not torch.allclose(z, z_mean, atol=1e-3)        # the two modes really differ
    # images are unaffected by the switch
    xi, _ = _batch()
    with torch.no_grad():
        assert torch.allclose(d.run_teacher(xi, return_features=False), teacher(xi), atol=1e-6)
    with pytest.raises(ConfigError, match="teacher.frames"):       # checked at construction
        build_method("kd", student, teacher, _cfg("kd"), teacher_frames="median")


@pytest.mark.parametrize("frames", ["mean", "per_step"])
@pytest.mark.parametrize("method", ["kd", "ckd", "ckd-paper"])
def test_one_step_on_frames(method, frames):
    student, teacher = _pair(T=2)
    d = build_method(method, student, teacher, _cfg(method), teacher_frames=frames)
    d.train()
    x, (_, y) = _frames(T=2), _batch()
    before = [p.detach().clone() for p in student.parameters()]
    logits, losses = d(x, y)
    assert logits.shape == (4, K)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    if method == "kd":
        with torch.no_grad():
            t = d.run_teacher(x, return_features=False)
        assert torch.allclose(losses["kd"], d.section.weight * kd_loss(logits, t, tau=d.section.tau))
    sum(losses.values()).backward()
    torch.optim.SGD(student.parameters(), lr=0.1).step()
    assert any(not torch.equal(p.detach(), b) for p, b in zip(student.parameters(), before))
    assert all(p.grad is None for p in teacher.parameters())


def test_gradcam_per_step_is_the_mean_of_the_per_frame_maps():
    student, teacher = _pair()
    d = build_method("ckd-paper", student, teacher, _cfg("ckd-paper"),   # gradcam_label
                     teacher_frames="per_step")
    x, (_, y) = _frames(T=2), _batch()
    t_logits, _, maps, classes = d._teacher(x, y)
    want = []
    for t in range(2):
        with torch.enable_grad():
            z, f = teacher(x[t].clone().requires_grad_(True), return_features=True)
            want.append(grad_cam(z, f[-1], y))
    assert torch.equal(classes, y)
    assert torch.allclose(maps[2], (want[0] + want[1]) / 2, atol=1e-6)


# --------------------------------------------------------------------------------------------
# every method on FeatureTapModel students and teachers
# --------------------------------------------------------------------------------------------

def _tap_pair(**kw):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from _tap_nets import resnet18_taps, tiny_snn_taps
    return tiny_snn_taps(T=2, num_classes=K, **kw), resnet18_taps(num_classes=K)


@pytest.mark.parametrize("method", list_methods())
def test_every_method_one_step_on_tapped_models(method):
    student, teacher = _tap_pair()
    _for(method, student)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    d = build_method(method, student, teacher if method_requires_teacher(method) else None,
                     _cfg(method))
    d.train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 32, generator=gen)
    y = torch.randint(0, K, (4,), generator=gen)
    params = list(d.trainable_parameters())
    before = [p.detach().clone() for p in params]
    logits, losses = d(x, y)
    assert logits.shape == (4, K) and "ce" in losses
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    torch.optim.SGD(params, lr=0.1).step()
    assert any(not torch.equal(p.detach(), b) for p, b in zip(student.parameters(), before))
    if method in ("kdsnn", "enof"):      # channels differ: adapters were built
        assert len(d.extras) == 1
    if method == "bkdsnn":               # align (1x1 conv) and generator at teacher width
        assert set(d.extras) == {"align", "generator"}
    if method_requires_teacher(method):
        assert all(p.grad is None for p in teacher.parameters())
        assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())


@pytest.mark.parametrize("method, key", [("ckd-released", "distill.ckd.samd.stages"),
                                         ("samd", "distill.ckd.samd.stages"),
                                         ("kdsnn", "distill.kdsnn.stage"),
                                         ("bkdsnn", "model.features")])
def test_tapped_models_of_other_spatial_size_are_a_clear_error(method, key):
    student, teacher = _tap_pair(strides=(2, 2, 2, 2))     # 16 / 8 / 4 / 2 px vs 8 / 4 / 2 / 1
    d = build_method(method, student, teacher, _cfg(method))
    d.train()
    with pytest.raises(ConfigError, match=rf"{key}.*(spatial|resolution)"):
        d(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


def test_tapped_models_with_other_stage_counts_are_a_clear_error():
    student, teacher = _tap_pair(widths=(8, 12, 16), strides=(4, 2, 2))   # 3 taps vs 4
    with pytest.raises(ConfigError, match=r"model.features.*3 stages.*teacher 4"):
        build_method("kdsnn", student, teacher, _cfg("kdsnn"))
    with pytest.raises(ConfigError, match=r"model.features.*3 stages.*teacher 4"):
        build_method("ckd", student, teacher, _cfg("ckd"))
    build_method("nld", student, teacher, _cfg("nld"))        # NLD needs no stages


def test_every_method_takes_the_step_context_and_forward_passes_it():
    import inspect
    from types import SimpleNamespace

    student, teacher = _pair()
    for method in list_methods():
        d = build_method(method, _for(method, student), teacher if method_requires_teacher(method) else None,
                         _cfg(method))
        p = inspect.signature(d.forward_train).parameters
        assert "ctx" in p and p["ctx"].default is None, method
    seen = []
    orig = d.forward_train
    d.forward_train = lambda x, y, ctx=None: (seen.append(ctx), orig(x, y, ctx))[1]
    ctx = SimpleNamespace(epoch=0, epochs=1, step=3, step_in_epoch=3, steps_per_epoch=10,
                          total_steps=10, progress=0.3)
    d.train()
    _, losses = d(*_batch(), ctx)
    assert seen == [ctx] and torch.isfinite(sum(losses.values()))
