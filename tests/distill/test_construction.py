"""Every method is configured completely by its constructor (issue 21 part 8): its section is
read one way (``read_section``, a private copy in ``self.section``), ``train.label_smoothing``,
``teacher.frames`` and ``teacher.mode`` are constructor arguments and read-only afterwards, and
changing the run's config after construction does not change a method's losses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spikedistill.config import build_config
from spikedistill.distill import build_method, list_methods, method_requires_teacher
from spikedistill.distill.registry import method_section, read_section
from spikedistill.errors import ConfigError
from spikedistill.models import create_model

K, T, B, SIZE = 5, 2, 4, 8


def _pair(method):
    torch.manual_seed(0)
    student = create_model("spiking_resnet20", num_classes=K, T=T, width_mult=1,
                           distill_head=method == "deit")
    teacher = create_model("resnet20", num_classes=K, width_mult=1)
    return student, teacher if method_requires_teacher(method) else None


def _frames_batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(T, B, 3, SIZE, SIZE, generator=gen) * 2, torch.tensor([0, 1, 2, 4])


def _losses(d, x, y):
    torch.manual_seed(5)              # BKDSNN's mask, NLD's noise: the same draws every call
    with torch.no_grad():
        _, losses = d(x, y)
    return {k: float(v) for k, v in losses.items()}


def _bump(section) -> int:
    """Change every float (x 3 + 0.25) and bool (negated) of a section dataclass in place,
    nested sections included; returns how many fields changed."""
    n = 0
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if dataclasses.is_dataclass(v):
            n += _bump(v)
        elif isinstance(v, bool):
            setattr(section, f.name, not v)
            n += 1
        elif isinstance(v, float):
            setattr(section, f.name, v * 3 + 0.25)
            n += 1
    return n


@pytest.mark.parametrize("method", list_methods())
def test_changing_the_config_after_construction_does_not_change_the_losses(method):
    student, teacher = _pair(method)
    cfg = build_config({}, [f"distill.method={method}"]).distill
    d = build_method(method, student, teacher, cfg, label_smoothing=0.1,
                     teacher_frames="per_step").train()
    x, y = _frames_batch()
    before = _losses(d, x, y)
    section = method_section(method)
    if section is not None:
        assert _bump(getattr(cfg, section)) > 0, method
    cfg.ce_weight = 2.5
    assert _losses(d, x, y) == before
    # ... while the same changes given at construction do change them (the test can fail)
    fresh = build_method(method, student, teacher, cfg, label_smoothing=0.1,
                         teacher_frames="per_step").train()
    assert _losses(fresh, x, y) != before


@pytest.mark.parametrize("method", list_methods())
def test_settings_are_read_only_after_construction(method):
    student, teacher = _pair(method)
    d = build_method(method, student, teacher, None, label_smoothing=0.2, teacher_frames="stack"
                     if method == "ce" else "per_step")
    assert d.label_smoothing == 0.2 and d.teacher_mode == "frozen"
    assert d.teacher_frames == ("stack" if method == "ce" else "per_step")
    for name, value in (("label_smoothing", 0.0), ("teacher_frames", "mean"),
                        ("teacher_mode", "released"), ("ce_weight", 3.0)):
        with pytest.raises(AttributeError):
            setattr(d, name, value)


def test_label_smoothing_given_at_construction_reaches_the_cross_entropy():
    student, teacher = _pair("kd")
    x, y = _frames_batch()
    plain = build_method("kd", student, teacher).train()
    smooth = build_method("kd", student, teacher, label_smoothing=0.3).train()
    with torch.no_grad():
        z = student(x)
    assert _losses(plain, x, y)["ce"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(z, y)), abs=1e-6)
    assert _losses(smooth, x, y)["ce"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(z, y, label_smoothing=0.3)), abs=1e-6)


def test_bad_settings_name_their_config_key():
    student, teacher = _pair("kd")
    with pytest.raises(ConfigError, match="'teacher.frames'"):
        build_method("kd", student, teacher, teacher_frames="median")
    with pytest.raises(ConfigError, match="'train.label_smoothing'"):
        build_method("kd", student, teacher, label_smoothing=1.0)
    with pytest.raises(ConfigError, match="'teacher.mode'"):
        build_method("kd", student, teacher, teacher_mode="thawed")


def test_read_section_is_the_one_way_a_method_reads_its_section():
    cfg = build_config({}, ["distill.method=tser-kd", "distill.tser_kd.tau=3",
                            "distill.kd.tau=7"]).distill
    assert read_section(cfg, "tser-kd") is cfg.tser_kd and cfg.tser_kd.tau == 3.0
    assert read_section(cfg, "kd").tau == 7.0
    assert read_section(None, "kd") == type(cfg.kd)()                 # the defaults
    assert read_section(cfg, "ckd-paper") is cfg.ckd                   # a shared section
    assert read_section(cfg, "ce") is None                             # no section
    assert read_section(cfg, "no-such-method") is None
    student, teacher = _pair("tser-kd")
    d = build_method("tser-kd", student, teacher, cfg)
    assert d.section == cfg.tser_kd and d.section is not cfg.tser_kd   # a private copy
    paper = build_method("ckd-paper", *_pair("ckd-paper"), cfg)
    assert paper.section.preset == "paper" and cfg.ckd.preset is None  # resolved, cfg untouched
    assert paper.section.samd.teacher_map == "gradcam_label" and paper.settings is paper.section


def test_a_builtin_registered_again_under_a_new_name_reads_its_base_section():
    """``register_method("mykd")(type("MyKD", (KD,), {}))`` (no config of its own, as a plugin
    registers a variant) trains with ``distill.kd`` as KD does, and a subclass registered with
    its own config reads that one."""
    from spikedistill.distill.methods.kd import KD
    from spikedistill.distill.registry import register_method
    from spikedistill.plugins import METHODS

    @dataclasses.dataclass
    class OwnConfig:
        tau: float = 7.0
        weight: float = 0.5

    register_method("test_kd_again")(type("KDAgain", (KD,), {}))
    register_method("test_kd_own", config=OwnConfig)(type("KDOwn", (KD,), {}))
    try:
        cfg = build_config({}, ["distill.kd.tau=3.0"]).distill
        student, teacher = _pair("kd")
        again = build_method("test_kd_again", student, teacher, cfg)
        assert again.section_method() == "kd" and again.section.tau == 3.0
        x, y = _frames_batch()
        assert _losses(again, x, y) == _losses(build_method("kd", student, teacher, cfg), x, y)
        own = build_method("test_kd_own", student, teacher, cfg)
        assert own.section_method() == "test_kd_own" and own.section == OwnConfig()
    finally:
        METHODS.unregister("test_kd_again")
        METHODS.unregister("test_kd_own")
