"""The first layer on event frames ``[T, B, 2, H, W]`` is spike-driven: golden SOP counts on a
tiny conv net for binary, count-valued and loader-normalised count frames, and the stem of a
2-channel spiking ResNet-20 / VGGSNN at 48 px."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from spikedistill.analysis.counting import count_model, event_counts, loader_affine
from spikedistill.models import create_model
from spikedistill.models.contract import DistillModel
from spikedistill.neurons import LIF

T, B, C, H, W = 2, 2, 2, 3, 3


class TinyEventNet(DistillModel):
    """``conv 2->1 (3x3, pad 1) on every frame -> LIF -> GAP -> Linear(1, 2)``."""

    is_spiking = True
    feature_names = ("lif",)
    feature_channels = (1,)
    num_classes = 2

    def __init__(self):
        super().__init__()
        self.T = T
        self.conv = nn.Conv2d(C, 1, 3, padding=1, bias=False)
        self.lif = LIF(backend="torch")
        self.fc = nn.Linear(1, 2)

    @property
    def classifier(self):
        return self.fc

    def forward(self, x, return_features=False, timestep_logits=False):
        y = self.conv(x.flatten(0, 1))
        s = self.lif(y.view(T, x.shape[1], *y.shape[1:]))
        z = self.fc(s.mean(dim=(3, 4)).mean(0).flatten(1))
        return (z, [s]) if return_features else z


def _counts():
    """Event counts ``[T, B, 2, 3, 3]``: 17 non-zero entries (1+1+1+1+1+9+2+1) summing to 29 (3+1+2+4+1+9+5+4) over 72 elements."""
    x = torch.zeros(T, B, C, H, W)
    x[0, 0, 0, 0, 0], x[0, 0, 1, 1, 1], x[0, 1, 0, 2, 2] = 3, 1, 2
    x[1, 0, 0, 0, 1], x[1, 1, 1, 2, 0] = 4, 1
    x[1, 1, 0] = 1.0                       # nine ones
    x[0, 1, 1, 0] = torch.tensor([2.0, 3.0, 0.0])
    x[1, 0, 1, 2, 2] = 4.0
    return x


def _conv(summary):
    return next(r for r in summary["layers"] if r["name"] == "conv")


def test_golden_sops_for_binary_counts_and_normalised_counts():
    x = _counts()
    nnz, total = int((x != 0).sum()), float(x.sum())
    assert (nnz, total, x.numel()) == (17, 29.0, 72)
    flops = 1 * 2 * 9 * (3 * 3)            # C_out * C_in * k^2 * output positions = 162
    # event counts: a count k is k events -> SOPs = mean(k) * T * FLOPs = 29/72 * 2 * 162
    conv = _conv(count_model(TinyEventNet(), x))
    assert conv["input_kind"] == "events" and conv["flops"] == flops
    assert conv["calls_per_image"] == T and conv["macs"] == 0
    assert conv["sops"] == pytest.approx(29 / 72 * 2 * 162) == pytest.approx(130.5)
    # binary frames: SOPs = rate * T * FLOPs = 17/72 * 2 * 162 = 76.5
    conv = _conv(count_model(TinyEventNet(), (x > 0).float()))
    assert conv["input_kind"] == "spike" and conv["sops"] == pytest.approx(76.5)
    # what the loader feeds: (k / 255 - mean_c) / std_c; without the affine map it is real (MACs)
    mean, std = (0.01, 0.02), (0.03, 0.05)
    m = torch.tensor(mean).view(1, 1, 2, 1, 1)
    s = torch.tensor(std).view(1, 1, 2, 1, 1)
    normed = (x / 255 - m) / s
    conv = _conv(count_model(TinyEventNet(), normed))
    assert conv["input_kind"] == "real" and conv["macs"] == T * flops and conv["sops"] == 0
    # with it the counts are recovered and the first layer counts the same SOPs as on the counts
    conv = _conv(count_model(TinyEventNet(), normed, input_affine=loader_affine(mean, std)))
    assert conv["input_kind"] == "events" and conv["macs"] == 0
    assert conv["sops"] == pytest.approx(130.5, rel=1e-6)
    assert conv["input_mean"] == pytest.approx(29 / 72, rel=1e-6)


def test_event_counts_recovers_or_refuses():
    x = _counts()
    mean, std = (0.2, 0.1), (0.3, 0.4)
    normed = (x / 255 - torch.tensor(mean).view(1, 1, 2, 1, 1)) / torch.tensor(std).view(1, 1, 2, 1, 1)
    assert torch.equal(event_counts(normed, *loader_affine(mean, std)), x)
    assert event_counts(torch.randn(T, B, C, H, W), *loader_affine(mean, std)) is None
    assert event_counts(normed, *loader_affine((0.2,), (0.3,))) is None       # channel mismatch
    assert event_counts(normed[0], *loader_affine(mean, std)) is None         # not frames


@pytest.mark.parametrize("name", ["spiking_resnet20", "vggsnn"])
def test_stem_of_a_two_channel_student_at_48px_counts_sops(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, T=2, in_channels=2, neuron={"backend": "torch"})
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (2, 2, 2, 48, 48), generator=g).float() * \
        (torch.rand(2, 2, 2, 48, 48, generator=g) < 0.1)
    s = count_model(model, x)
    first = s["layers"][0]
    conv = model.stem if name == "spiking_resnet20" else model.stage1[0].conv
    assert first["flops"] == conv.out_channels * 2 * 9 * 48 * 48
    assert first["input_kind"] == "events" and first["macs"] == 0 and first["calls_per_image"] == 2
    assert first["sops"] == pytest.approx(float(x.mean()) * 2 * first["flops"], rel=1e-6)
    assert s["images"] == 2


@pytest.mark.parametrize("frames", ["mean", "per_step", "stack"])
def test_analyze_counts_the_teacher_as_teacher_frames_shows_it_frames(frames):
    from spikedistill.analysis.report import analyze
    from spikedistill.distill.base import teacher_input, time_mean

    torch.manual_seed(0)
    student = create_model("spiking_resnet20", num_classes=4, T=T, in_channels=C,
                           neuron={"backend": "torch"})
    teacher = create_model("resnet20", num_classes=4, in_channels=T * C if frames == "stack" else C)
    x = torch.randint(0, 3, (T, 4, C, 8, 8)).float()
    y = torch.tensor([0, 1, 2, 3])
    out = analyze(student, [(x, y)], teacher=teacher, teacher_frames=frames)
    with torch.no_grad():
        xin, steps = teacher_input(x, frames)
        z = time_mean(teacher.eval()(xin), steps)
    flops = out["teacher"]["flops"]
    calls = T if frames == "per_step" else 1          # per_step: the ANN runs on every frame
    assert out["teacher"]["macs"] == pytest.approx(calls * flops)
    assert out["teacher"]["energy_mj"] == pytest.approx(4.6 * calls * flops * 1e-9)
    assert out["teacher"]["top1"] == pytest.approx(100.0 * float((z.argmax(1) == y).float().mean()))
