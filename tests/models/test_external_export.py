"""Train an external ANN with our engine, export its weights, use them as a teacher.

checkpoint (``train-teacher``, ``model.source=torchvision``) -> ``export_state_dict`` -> plain
torchvision ``.pth`` (loads into ``torchvision.models.resnet18`` itself) -> ``teacher.source=
torchvision``.
"""

import pytest
import torch
import torchvision

from spikedistill.config import load_config
from spikedistill.errors import CheckpointError
from spikedistill.models import build_model, export_state_dict
from spikedistill.models.external import build_external_teacher


def _adapt_stem(net, in_channels):
    """What ``build_model`` does for grey images: a fresh stem conv with C_in channels."""
    old = net.conv1
    net.conv1 = torch.nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size,
                                stride=old.stride, padding=old.padding, bias=False)
    return net


def test_checkpoint_to_pth_to_teacher(tmp_path):
    from spikedistill.engine.checkpoint import make_checkpoint, save_checkpoint
    cfg = load_config(overrides=["model.source=torchvision", "model.arch=resnet18"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 10, 1, (1, 8, 8))
    assert model.model_name == "torchvision/resnet18" and not model.is_spiking
    ckpt = save_checkpoint(make_checkpoint(model=model, config={}, epoch=0), tmp_path / "best.pt")

    out = export_state_dict(ckpt, tmp_path / "resnet18-digits.pth")
    state = torch.load(out, weights_only=True)
    assert set(state) == {k[len("net."):] for k in model.state_dict()}
    # the file is a plain torchvision state dict: torchvision's own class takes it strictly
    ref = _adapt_stem(torchvision.models.resnet18(num_classes=10), 1)
    ref.load_state_dict(state, strict=True)

    tcfg = load_config(overrides=["teacher.source=torchvision", "teacher.arch=resnet18",
                                  f"teacher.weights={out}"]).teacher
    teacher, prov = build_external_teacher(tcfg, 10, (1, 8, 8))
    model.eval(), ref.eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(teacher(x), model(x))
        assert torch.equal(teacher(x), ref(x))
    # the checkpoint itself also loads as teacher.weights (its net. prefix is stripped)
    tcfg.weights = str(ckpt)
    from_ckpt, _ = build_external_teacher(tcfg, 10, (1, 8, 8))
    with torch.no_grad():
        assert torch.equal(from_ckpt(x), model(x))


def test_export_refuses_non_checkpoints(tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save({"w": torch.zeros(1)}, bare)
    with pytest.raises(CheckpointError, match="not a spikedistill checkpoint"):
        export_state_dict(bare, tmp_path / "out.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        export_state_dict(tmp_path / "missing.pt", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.slow
def test_train_teacher_with_the_engine_then_distil_from_it(tmp_path):
    """A torchvision ResNet-18 trained from scratch by our engine (2 steps on digits), its
    exported weights as teacher.weights."""
    from spikedistill.engine import run_training
    cfg = load_config(overrides=[
        "model.source=torchvision", "model.arch=resnet18", "distill.method=ce",
        "data.name=digits", "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=32",
        "train.device=cpu", "train.amp=fp32", f"run.out_dir={tmp_path}", "run.name=tv",
        "run.tensorboard=false", "run.progress=false", "run.plots=false",
        "data.augment.autoaugment=false", "data.augment.random_erasing=0"])
    result = run_training(cfg)
    from spikedistill.engine.checkpoint import load_model_from_checkpoint
    trained, meta = load_model_from_checkpoint(f"{result.run_dir}/last.pt")
    assert meta["model_name"] == "torchvision/resnet18"
    pth = export_state_dict(f"{result.run_dir}/last.pt", tmp_path / "teacher.pth")
    tcfg = load_config(overrides=["teacher.source=torchvision", "teacher.arch=resnet18",
                                  f"teacher.weights={pth}"]).teacher
    teacher, prov = build_external_teacher(tcfg, 10, (1, 8, 8))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(teacher(x), trained(x))
    assert prov["weights"] == str(pth.resolve())
