"""``teacher.frames: stack`` (and mean / per_step) for an ANN on frames ``[T, B, C, H, W]``:
golden layouts, the CE path that trains the teacher, the 2T-channel first conv built by the
engine, and a teacher trained on stacked frames teaching a spiking student."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikedistill.config import TEACHER_FRAMES, build_config
from spikedistill.distill import build_method
from spikedistill.distill.base import teacher_input
from spikedistill.errors import ConfigError
from spikedistill.models import create_model

T, B, C, H, W = 3, 2, 2, 8, 8


def _x(seed=0):
    return torch.randn(T, B, C, H, W, generator=torch.Generator().manual_seed(seed))


def test_stack_layout_is_frame_major_channels():
    x = _x()
    out, steps = teacher_input(x, "stack")
    assert steps is None and out.shape == (B, T * C, H, W)
    expect = torch.empty(B, T * C, H, W)
    for b in range(B):
        for t in range(T):
            for c in range(C):
                expect[b, t * C + c] = x[t, b, c]          # channel t*C + c holds frame t, polarity c
    assert torch.equal(out, expect)
    assert torch.equal(out, x.permute(1, 0, 2, 3, 4).reshape(B, T * C, H, W))
    assert "stack" in TEACHER_FRAMES
    images = torch.randn(B, C, H, W)                       # images pass unchanged
    assert teacher_input(images, "stack")[0] is images


def test_the_three_views_of_an_ann_teacher():
    torch.manual_seed(0)
    x = _x(1)
    student = create_model("spiking_resnet20", num_classes=4, T=T, in_channels=C)
    plain = create_model("resnet20", num_classes=4, in_channels=C).eval()
    stacked = create_model("resnet20", num_classes=4, in_channels=T * C).eval()
    cfg = build_config({}, ["distill.method=kd"]).distill
    with torch.no_grad():
        for frames, teacher, expect in (
                ("mean", plain, lambda: plain(x.mean(0))),
                ("per_step", plain, lambda: plain(x.flatten(0, 1)).view(T, B, 4).mean(0)),
                ("stack", stacked, lambda: stacked(x.transpose(0, 1).reshape(B, T * C, H, W)))):
            d = build_method("kd", student, teacher, cfg, teacher_frames=frames)
            z_t = d.run_teacher(x, return_features=False)
            assert torch.allclose(z_t, expect(), atol=1e-5), frames


@pytest.mark.parametrize("frames", ["mean", "per_step", "stack"])
def test_cross_entropy_trains_an_ann_on_frames_as_it_will_teach(frames):
    torch.manual_seed(0)
    x, y = _x(2), torch.tensor([0, 3])
    cin = T * C if frames == "stack" else C
    ann = create_model("resnet20", num_classes=4, in_channels=cin)
    d = build_method("ce", ann, None, build_config({}, ["distill.method=ce"]).distill,
                     teacher_frames=frames)
    d.train()
    logits, losses = d(x, y)
    xin, steps = teacher_input(x, frames)
    ann.train()
    ref = ann(xin)
    if steps is not None:
        ref = ref.view(steps, B, 4).mean(0)
    assert torch.allclose(logits, ref, atol=1e-5)
    assert torch.allclose(losses["ce"], torch.nn.functional.cross_entropy(ref, y), atol=1e-5)
    losses["ce"].backward()
    assert ann.stem.weight.grad is not None


@pytest.fixture
def frames_dataset():
    """A registered synthetic frames dataset (4 classes, [N, T=3, 2, 8, 8]): class k lights a
    2 x 2 patch in row band k that moves one pixel per frame."""
    from spikedistill.data import register_dataset
    from spikedistill.data.readers import RawDataset
    from spikedistill.plugins import DATASETS

    @register_dataset("a2_test_frames", num_classes=4, in_channels=2, image_size=8, frames=True,
                      T=T, needs_root=False, class_names=["a", "b", "c", "d"])
    def read(request):
        rng = np.random.default_rng(0)

        def split(n):
            labels = np.arange(n) % 4
            x = rng.integers(0, 2, size=(n, T, 2, 8, 8)).astype(np.uint8)
            for i, k in enumerate(labels):
                for t in range(T):
                    x[i, t, t % 2, 2 * k:2 * k + 2, t:t + 2] = 6
            return x, labels.astype(np.int64)

        tr, ytr = split(32)
        te, yte = split(16)
        return RawDataset(tr, ytr, te, yte, ["a", "b", "c", "d"], source="a2 test frames")

    yield "a2_test_frames"
    DATASETS.unregister("a2_test_frames")


def _run_settings(dataset, out_dir, *extra):
    """Overrides of a one-epoch CPU run on the synthetic frames dataset (no crop, erasing or
    AutoAugment), with ``extra`` after them."""
    return [f"data.name={dataset}", "data.augment.autoaugment=false",
            "data.augment.random_crop=false", "data.augment.random_erasing=0", "train.epochs=1",
            "train.batch_size=8", "train.eval_batch_size=16", "train.threads=1",
            "train.device=cpu", "run.progress=false", "run.tensorboard=false", "run.plots=false",
            f"run.out_dir={out_dir}", *extra]


def test_engine_trains_a_stacked_teacher_then_distils_from_it(frames_dataset, tmp_path):
    from spikedistill.engine.trainer import run_training
    from spikedistill.engine.checkpoint import load_model_from_checkpoint

    common = _run_settings(frames_dataset, tmp_path, "data.augment.translate=2",
                           "teacher.frames=stack", "train.max_steps_per_epoch=2")
    teacher_cfg = build_config({}, common + ["model.name=resnet20", "model.width_mult=1",
                                             "run.name=teacher"])
    res = run_training(teacher_cfg)
    ckpt = f"{res.run_dir}/best.pt"
    teacher, meta = load_model_from_checkpoint(ckpt, "cpu")
    assert teacher.stem.in_channels == 2 * T and meta["model_kwargs"]["in_channels"] == 2 * T
    student_cfg = build_config({}, common + ["model.name=spiking_resnet20", "model.T=3",
                                             "distill.method=kd", "run.name=student"])
    res_s = run_training(student_cfg, teacher_checkpoint=ckpt)
    assert res_s.teacher is not None and 0.0 <= res_s.last_acc <= 1.0
    assert np.isfinite(res_s.history[-1]["train_loss"] if "train_loss" in res_s.history[-1]
                       else 0.0)
    # the stacked teacher seen as one mean frame (teacher.frames=mean: 2 channels, it takes 6):
    # one line naming teacher.frames, before any step
    mean_cfg = build_config({}, [c for c in common if c != "teacher.frames=stack"]
                            + ["model.name=spiking_resnet20", "model.T=3", "distill.method=kd",
                               "run.name=student_mean"])
    with pytest.raises(ConfigError, match=r"teacher.frames.*2 channels.*first convolution takes 6"):
        run_training(mean_cfg, teacher_checkpoint=ckpt)


def test_a_mean_teacher_asked_to_stack_is_one_line(frames_dataset, tmp_path):
    # an ANN trained on mean frames (2 channels) given the stacked frames (2 T = 6 channels)
    from spikedistill.engine.trainer import run_training

    common = _run_settings(frames_dataset, tmp_path, "train.max_steps_per_epoch=1")
    res = run_training(build_config({}, common + ["model.name=resnet20", "model.width_mult=1",
                                                  "run.name=teacher"]))
    cfg = build_config({}, common + ["teacher.frames=stack", "model.name=spiking_resnet20",
                                     "model.T=3", "distill.method=kd", "run.name=student"])
    with pytest.raises(ConfigError, match=r"teacher.frames=stack gives it the T frames as 6 "
                                          r"channels.*first convolution takes 2.*train-teacher"):
        run_training(cfg, teacher_checkpoint=f"{res.run_dir}/best.pt")
