"""The maps picture on event frames: the teacher seen through ``teacher.frames`` (mean / stack /
per_step) and the input pictured as the event image (counts summed over time and polarity)."""

from __future__ import annotations

import pytest
import torch

from spikedistill.analysis import maps as M
from spikedistill.distill import functional as Fn
from spikedistill.distill.config import DistillConfig
from spikedistill.models import create_model

T, B, C, S = 2, 3, 2, 16
MEAN, STD = (0.01, 0.02), (0.04, 0.05)


def _counts(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (T, B, C, S, S), generator=g).float() * \
        (torch.rand(T, B, C, S, S, generator=g) < 0.2)


def _normalised(k):
    return (k / 255 - torch.tensor(MEAN).view(1, 1, 2, 1, 1)) / torch.tensor(STD).view(1, 1, 2, 1, 1)


def test_event_image_sums_time_and_polarity():
    k = torch.zeros(T, 2, C, 2, 2)
    k[0, 0, 0, 0, 0], k[1, 0, 1, 0, 0], k[1, 0, 0, 1, 1] = 3, 1, 2    # sample 0: 4 at (0,0), 2 at (1,1)
    img = M.event_image(_normalised(k), MEAN, STD)
    assert img.shape == (2, 1, 2, 2)
    assert torch.allclose(img[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.5]]), atol=1e-6)
    assert torch.equal(img[1], torch.zeros(1, 2, 2))                   # no events: all 0


def _pair(teacher_channels):
    torch.manual_seed(0)
    student = create_model("spiking_resnet20", num_classes=10, T=T, in_channels=C).eval()
    teacher = create_model("resnet20", num_classes=10, in_channels=teacher_channels).eval()
    with torch.no_grad():                 # positive CAM weights: the maps are not all zero
        teacher.fc.weight.abs_()
    return student, teacher


@pytest.mark.parametrize("frames", ["mean", "per_step", "stack"])
def test_teacher_cam_follows_teacher_frames(frames):
    student, teacher = _pair(T * C if frames == "stack" else C)
    x, y = _normalised(_counts()), torch.tensor([1, 2, 3])
    cam = M.samd_settings(DistillConfig(method="ckd-released"))        # CAM at the last stage
    maps = M.compute_maps(student, teacher, x, y, cam, teacher_frames=frames)
    with torch.no_grad():
        if frames == "per_step":
            z, f = teacher(x.flatten(0, 1), return_features=True)
            z, f3 = z.view(T, B, -1).mean(0), f[-1].view(T, B, *f[-1].shape[1:]).mean(0)
        else:
            xin = x.mean(0) if frames == "mean" else x.permute(1, 0, 2, 3, 4).reshape(B, T * C, S, S)
            z, f = teacher(xin, return_features=True)
            f3 = f[-1]
    want = Fn.class_activation_map(f3, teacher.fc.weight.detach(), z.argmax(1))
    assert maps["teacher_map"].shape == (B, 4, 4) and float(want.amax()) > 0
    assert torch.allclose(maps["teacher_map"], want, atol=1e-5)
    assert torch.equal(maps["teacher_pred"], z.argmax(1))


def test_gradcam_per_step_is_the_mean_of_the_frames_gradcams():
    student, teacher = _pair(C)
    x, y = _normalised(_counts(1)), torch.tensor([0, 5, 9])
    settings = M.samd_settings(DistillConfig(method="ckd-paper"))      # Grad-CAM of the label
    maps = M.compute_maps(student, teacher, x, y, settings, stage=2, teacher_frames="per_step")
    per_frame = []
    for t in range(T):
        xin = x[t].clone().requires_grad_(True)
        z, f = teacher(xin, return_features=True)
        per_frame.append(Fn.grad_cam(z, f[1], y).detach())
    assert torch.allclose(maps["teacher_map"], torch.stack(per_frame).mean(0), atol=1e-5)


def test_visualize_pictures_the_event_image_under_the_maps(tmp_path, monkeypatch):
    student, teacher = _pair(C)
    k = _counts(2)
    x, y = _normalised(k), torch.tensor([0, 1, 2])
    seen = {}
    real_plot = M.plot_maps

    def spy(images, maps, path, **kw):
        seen["images"] = images
        return real_plot(images, maps, path, **kw)

    monkeypatch.setattr(M, "plot_maps", spy)
    out = M.visualize(student, teacher, [(x, y)], tmp_path / "maps.png", n=3, mean=MEAN, std=STD,
                      distill_cfg=DistillConfig(method="ckd-released"), teacher_frames="per_step")
    assert out.exists() and out.stat().st_size > 0
    e = k.sum(dim=(0, 2))
    want = (e / e.flatten(1).amax(1).view(-1, 1, 1)).unsqueeze(1)
    assert torch.allclose(seen["images"], want, atol=1e-5)
