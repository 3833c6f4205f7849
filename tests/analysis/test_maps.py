"""SAMD map pictures: the maps equal what the distillation loss uses; the PNG grid."""

import pytest
import torch

from spikedistill.analysis.maps import compute_maps, denormalize, plot_maps, samd_settings, visualize
from spikedistill.distill import build_method
from spikedistill.distill import functional as Fn
from spikedistill.distill.config import DistillConfig
from spikedistill.errors import ConfigError
from spikedistill.models import create_model

from _analysis_helpers import check_png, randomize_bn


def _pair():
    torch.manual_seed(0)
    s = randomize_bn(create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1,
                                  last_activation="lif",
                                  neuron={"threshold": 0.5, "backend": "torch"}), seed=1)
    t = randomize_bn(create_model("resnet20", num_classes=10, in_channels=1), seed=2)
    return s, t


@pytest.mark.parametrize("method", ["ckd-released", "ckd-paper"])
def test_maps_match_the_samd_loss(method):
    student, teacher = _pair()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    cfg = DistillConfig(method=method)
    settings = samd_settings(cfg)
    maps = compute_maps(student, teacher, x, y, settings)
    # the distiller's own SAMD term on the same batch (student in eval mode, beta = 1)
    distiller = build_method(method, student, teacher, cfg)
    distiller.train(False)
    with torch.no_grad():
        _, losses = distiller.forward_train(x, y)
    mine = Fn.samd_loss(maps["student_map"], maps["teacher_map"], tau=settings.tau,
                        normalize=settings.normalize, scaling=settings.scaling,
                        tau_squared=settings.tau_squared, log_eps=settings.log_eps)
    assert float(losses["samd"]) == pytest.approx(float(mine), rel=1e-5, abs=1e-7)
    # student SAM = sum over t and c of the last stage's output
    with torch.no_grad():
        _, feats = student(x, return_features=True)
    assert torch.allclose(maps["student_map"], feats[-1].sum(dim=(0, 2)))
    assert maps["student_map"].shape == (6, 2, 2) and maps["stage"] == 3
    # distributions over H*W
    assert torch.allclose(maps["student_p"].sum(dim=(1, 2)), torch.ones(6), atol=1e-5)
    if settings.teacher_map == "cam":
        assert torch.equal(maps["classes"], maps["teacher_pred"])
    else:
        assert torch.equal(maps["classes"], y)


def test_cam_only_at_last_stage():
    student, teacher = _pair()
    with pytest.raises(ConfigError, match="only at the last stage"):
        compute_maps(student, teacher, torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long),
                     samd_settings(DistillConfig(method="ckd-released")), stage=1)
    with pytest.raises(ConfigError, match="stage 5 does not exist"):
        compute_maps(student, teacher, torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long),
                     stage=5)


def test_visualize_png(tmp_path):
    student, teacher = _pair()
    data = [(torch.randn(3, 1, 8, 8), torch.randint(0, 10, (3,))) for _ in range(2)]
    path = visualize(student, teacher, data, tmp_path / "maps.png", n=5, mean=(0.3,), std=(0.4,),
                     distill_cfg=DistillConfig(method="ckd-paper"))
    w, h = check_png(path, (700, 600))
    assert h > w * 0.6                       # 5 rows of 7 panels
    x = torch.full((1, 3, 2, 2), 10.0)
    assert denormalize(x, (0.5, 0.5, 0.5), (0.1, 0.1, 0.1)).max() == 1.0


def test_plot_maps_rgb(tmp_path):
    maps = {k: torch.rand(2, 4, 4) for k in ("teacher_map", "student_map", "teacher_p", "student_p")}
    maps.update(labels=torch.tensor([0, 1]), teacher_pred=torch.tensor([0, 1]),
                student_pred=torch.tensor([1, 1]))
    check_png(plot_maps(torch.rand(2, 3, 16, 16), maps, tmp_path / "g.png",
                        class_names=["cat", "dog"]), (600, 200))


def test_plot_maps_colour_bars_shared_scales_and_titles(tmp_path, monkeypatch):
    """A colour bar under each map column; P_t and P_s on one scale, each raw map column on
    one scale over its rows; the title does not overlap the column headers."""
    from spikedistill.analysis import maps as M

    torch.manual_seed(0)
    maps = {"teacher_map": torch.rand(3, 4, 4) * 5, "student_map": torch.rand(3, 4, 4) * 2,
            "teacher_p": torch.rand(3, 4, 4) * 0.2, "student_p": torch.rand(3, 4, 4) * 0.1,
            "labels": torch.tensor([0, 1, 0]), "teacher_pred": torch.tensor([0, 1, 1]),
            "student_pred": torch.tensor([1, 1, 0])}
    figs = []
    real = M._save_constrained
    monkeypatch.setattr(M, "_save_constrained", lambda fig, path: figs.append(fig) or
                        real(fig, path))
    check_png(plot_maps(torch.rand(3, 1, 16, 16), maps, tmp_path / "g.png",
                        title="stage 3: a long title " * 3), (600, 300))
    fig = figs[0]
    grid = [ax for ax in fig.axes if ax.get_images() and ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(grid) == 21 and len(bars) == 4
    limits = {j: {grid[7 * i + j].get_images()[-1].get_clim() for i in range(3)}
              for j in (1, 2, 3, 4)}
    def one(j):
        assert len(limits[j]) == 1           # the same scale in every row
        return next(iter(limits[j]))

    assert one(1) == (0.0, pytest.approx(float(maps["teacher_map"].max())))
    assert one(2) == (0.0, pytest.approx(float(maps["student_map"].max())))
    assert one(3) == one(4) == (0.0, pytest.approx(float(maps["teacher_p"].max())))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    title_box = fig._suptitle.get_window_extent(renderer)
    for ax in grid[:7]:
        assert not title_box.overlaps(ax.title.get_window_extent(renderer))


def test_maps_of_tapped_models_and_frames():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from _tap_nets import resnet18_taps, tiny_snn_taps

    student = tiny_snn_taps(T=2, num_classes=10, strides=(2, 2, 2, 2))   # 16/8/4/2 px at 32
    teacher = resnet18_taps(num_classes=10, size=64)                      # 16/8/4/2 px at 64
    settings = samd_settings(DistillConfig(method="ckd-paper"))           # Grad-CAM, label
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 9])
    with pytest.raises(ConfigError, match="student map is .*teacher map"):
        compute_maps(student, teacher, x, y, settings)                    # 2x2 vs 1x1
    teacher = resnet18_taps(num_classes=10, size=32)
    student = tiny_snn_taps(T=2, num_classes=10)                          # 8/4/2/1 px
    maps = compute_maps(student, teacher, x, y, settings, stage=3)
    assert maps["student_map"].shape == maps["teacher_map"].shape == (3, 2, 2)
    with torch.no_grad():
        _, feats = student.eval()(x, return_features=True)
    assert torch.allclose(maps["student_map"], feats[2].sum(dim=(0, 2)))
    # frames: the student takes them, the teacher sees the mean frame
    frames = torch.randn(2, 3, 3, 32, 32)
    cam = samd_settings(DistillConfig(method="ckd-released"))             # CAM, last stage
    maps = compute_maps(student, teacher, frames, y, cam)
    with torch.no_grad():
        t_logits, t_feats = teacher.eval()(frames.mean(0), return_features=True)
    want = Fn.class_activation_map(t_feats[-1], teacher.net.fc.weight, t_logits.argmax(1))
    assert torch.allclose(maps["teacher_map"], want, atol=1e-6)


def test_gradcam_label_maps_under_mixup_are_the_samd_losss():
    """Soft (Mixup) targets: the picture's gradcam_label class is ``hard_labels(y)``, the
    dominant label, as in the SAMD loss (both call ``ckd.gradcam_teacher_maps``); the maps equal
    the ones the distiller computes on the same batch."""
    from spikedistill.distill.base import hard_labels

    student, teacher = _pair()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 8, 8, generator=g)
    a, b = torch.tensor([1, 4, 7, 2]), torch.tensor([3, 4, 0, 9])
    lam = torch.tensor([0.7, 0.5, 0.2, 0.9]).unsqueeze(1)
    y = lam * torch.nn.functional.one_hot(a, 10).float() + \
        (1 - lam) * torch.nn.functional.one_hot(b, 10).float()
    cfg = DistillConfig(method="ckd-paper")            # paper preset: gradcam_label
    settings = samd_settings(cfg)
    assert settings.teacher_map == "gradcam_label"
    maps = compute_maps(student, teacher, x, y, settings)
    assert torch.equal(maps["classes"], hard_labels(y))
    assert maps["classes"].tolist() == [1, 4, 0, 2]
    distiller = build_method("ckd-paper", student, teacher, cfg)
    distiller.train(False)
    _, _, t_maps, classes = distiller._teacher(x, y)
    idx = distiller.stages[0]
    assert torch.equal(classes, maps["classes"])
    assert torch.allclose(t_maps[idx].float(), maps["teacher_map"], atol=0, rtol=0)
