"""Helpers of the analysis tests: non-trivial BatchNorm, PNG checks, and real short runs on the
embedded digits (teacher and CKD student) made by the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.6 - 0.2)
    return model.eval()


def check_png(path, min_size=(100, 100)):
    """The file is a PNG of at least ``min_size`` pixels whose pixels are not all equal."""
    from PIL import Image

    path = Path(path)
    assert path.is_file(), path
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert w >= min_size[0] and h >= min_size[1], im.size
        arr = np.asarray(im.convert("RGB"))
    assert arr.std() > 1.0, "PNG is (nearly) constant"
    return (w, h)


def make_digits_runs(out):
    """``(student_run_dir, teacher_run_dir)``: a teacher (resnet20) and a CKD student
    (spiking_resnet20, T = 2, last_activation lif) trained for one short epoch on digits by
    :func:`spikedistill.engine.run_training`."""
    from spikedistill.config import build_config
    from spikedistill.engine import run_training

    common = ["data.name=digits", "data.test_subset=64", "train.epochs=1",
              "train.max_steps_per_epoch=2", "train.batch_size=32", "train.eval_batch_size=64",
              "train.device=cpu", "run.tensorboard=false", "run.progress=false",
              f"run.out_dir={out}"]
    teacher = run_training(build_config({}, common + ["model.name=resnet20", "run.name=teacher"]))
    t_ckpt = Path(teacher.run_dir) / "best.pt"
    student = run_training(build_config({}, common + [
        "model.name=spiking_resnet20", "model.T=2", "model.last_activation=lif",
        "model.neuron.backend=torch", "distill.method=ckd", f"teacher.checkpoint={t_ckpt}",
        "run.name=student"]))
    return Path(student.run_dir), Path(teacher.run_dir)
