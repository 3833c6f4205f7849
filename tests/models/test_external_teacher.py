"""Teachers from torchvision and timm, built offline from a local weights file.

Peers: the torchvision / timm module itself (same weights, same outputs), torchvision's
feature extractor (same taps), timm's ``feature_info`` (same channels), hashlib (provenance).
"""

import hashlib

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from spikedistill.config import load_config
from spikedistill.distill import build_method
from spikedistill.errors import ConfigError
from spikedistill.models import create_model
from spikedistill.models.external import build_external_teacher
from spikedistill.models.contract import contract_problems

K = 10
SHAPE = (3, 32, 32)


def _randomise_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN running statistics, so that an eval-mode output depends on the buffers."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def tv_resnet18(tmp_path_factory):
    torch.manual_seed(0)
    net = _randomise_bn(torchvision.models.resnet18(num_classes=K))
    path = tmp_path_factory.mktemp("w") / "resnet18-test.pth"
    torch.save(net.state_dict(), path)
    return net, path


def _teacher_cfg(*overrides):
    return load_config(overrides=list(overrides)).teacher


def test_torchvision_teacher_matches_torchvision(tv_resnet18):
    net, path = tv_resnet18
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet18", f"teacher.weights={path}")
    teacher, prov = build_external_teacher(cfg, K, SHAPE)
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        logits, feats = teacher(x, return_features=True)
        ref = create_feature_extractor(net, return_nodes=["layer1", "layer2", "layer3", "layer4", "fc"])(x)
    assert not teacher.training
    assert torch.equal(logits, ref["fc"])
    assert teacher.feature_names == ("layer1", "layer2", "layer3", "layer4")
    for f, name in zip(feats, teacher.feature_names):
        assert torch.equal(f, ref[name])
    assert teacher.feature_channels == (64, 128, 256, 512)
    assert teacher.classifier is teacher.net.fc and teacher.num_classes == K
    assert contract_problems(teacher, x) == []
    assert prov["source"] == "torchvision" and prov["arch"] == "resnet18"
    assert prov["weights"] == str(path.resolve()) and prov["num_classes"] == K
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_teacher_features_override_and_wrapper(tv_resnet18, tmp_path):
    net, _ = tv_resnet18
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
                "epoch": 3}, path)
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet18",
                       f"teacher.weights={path}", "teacher.features=[layer2, layer4.1.conv2]")
    teacher, _ = build_external_teacher(cfg, K, SHAPE)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        _, feats = teacher(x, return_features=True)
        ref = create_feature_extractor(net, return_nodes=["layer2", "layer4.1.conv2"])(x)
        assert torch.equal(teacher(x), net(x))
    assert torch.equal(feats[1], ref["layer4.1.conv2"]) and torch.equal(feats[0], ref["layer2"])
    assert teacher.feature_channels == (128, 512)


def test_timm_teacher_from_safetensors():
    timm = pytest.importorskip("timm")
    st = pytest.importorskip("safetensors.torch")
    import tempfile
    from pathlib import Path
    torch.manual_seed(1)
    net = _randomise_bn(timm.create_model("test_resnet", pretrained=False, num_classes=K), 1)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "test_resnet.safetensors"
        st.save_file(net.state_dict(), str(path))
        cfg = _teacher_cfg("teacher.source=timm", "teacher.arch=test_resnet", f"teacher.weights={path}")
        teacher, prov = build_external_teacher(cfg, K, SHAPE)
        assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert torch.equal(teacher(x), net(x))
    assert teacher.feature_names == ("layer1", "layer2", "layer3", "layer4")
    # timm's own declaration of the stages' channels
    assert list(teacher.feature_channels) == [f["num_chs"] for f in net.feature_info][1:]
    assert contract_problems(teacher, x) == []


def test_timm_default_taps_from_feature_info(tmp_path):
    timm = pytest.importorskip("timm")
    net = timm.create_model("test_convnext", pretrained=False, num_classes=K).eval()
    path = tmp_path / "convnext.pth"
    torch.save({"model": net.state_dict()}, path)
    cfg = _teacher_cfg("teacher.source=timm", "teacher.arch=test_convnext", f"teacher.weights={path}")
    teacher, _ = build_external_teacher(cfg, K, SHAPE)
    assert teacher.feature_names == tuple(f["module"] for f in net.feature_info)
    assert list(teacher.feature_channels) == [f["num_chs"] for f in net.feature_info]
    assert net.pretrained_cfg["classifier"] == "head.fc"
    assert teacher.classifier is teacher.net.get_submodule("head.fc")
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert torch.equal(teacher(x), net(x))


@pytest.mark.parametrize("features", [[], ["layer2", "layer3", "layer4"]])
def test_one_distillation_step_with_external_teacher(tv_resnet18, features):
    """KD from a torchvision teacher into a built-in spiking ResNet-20 (CKD, whose SAMD needs
    maps of equal resolution, is exercised with a SpikingJelly student of the same layout)."""
    _, path = tv_resnet18
    over = ["teacher.source=torchvision", "teacher.arch=resnet18", f"teacher.weights={path}",
            "distill.method=kd"]
    if features:
        over.append(f"teacher.features=[{', '.join(features)}]")
    cfg = load_config(overrides=over)
    teacher, _ = build_external_teacher(cfg.teacher, K, SHAPE)
    torch.manual_seed(0)
    student = create_model("spiking_resnet20", num_classes=K, in_channels=3, T=2, width_mult=1)
    distiller = build_method("kd", student, teacher, cfg.distill)
    x, y = torch.randn(4, *SHAPE), torch.randint(0, K, (4,))
    logits, losses = distiller.forward_train(x, y)
    assert logits.shape == (4, K) and set(losses) == {"ce", "kd"}
    assert losses["kd"] > 0
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_missing_weights_file_names_key_and_path(tmp_path):
    missing = tmp_path / "nope" / "resnet34.pth"
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet34", f"teacher.weights={missing}")
    with pytest.raises(ConfigError, match=r"teacher\.weights.*nope/resnet34\.pth.*does not exist"):
        build_external_teacher(cfg, K, SHAPE)
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet34")
    with pytest.raises(ConfigError, match=r"teacher\.weights"):
        build_external_teacher(cfg, K, SHAPE)


def test_weights_with_another_k_say_so(tmp_path):
    path = tmp_path / "resnet18-k5.pth"
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), path)
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet18", f"teacher.weights={path}")
    with pytest.raises(ConfigError) as err:
        build_external_teacher(cfg, K, SHAPE)
    msg = str(err.value)
    assert "\n" not in msg
    assert "5-class classifier" in msg and "K=10" in msg and "fc.weight [5, 512]" in msg


def test_state_dict_that_does_not_fit_lists_keys(tv_resnet18):
    _, path = tv_resnet18
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet34", f"teacher.weights={path}")
    with pytest.raises(ConfigError) as err:
        build_external_teacher(cfg, K, SHAPE)
    msg = str(err.value)
    assert "\n" not in msg and "teacher.weights" in msg and "resnet34" in msg
    assert "missing keys" in msg and "layer1.2.conv1.weight" in msg


def test_no_download_kwargs_and_bad_files(tmp_path, tv_resnet18, monkeypatch):
    _, path = tv_resnet18
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet18",
                       f"teacher.weights={path}", "teacher.kwargs={weights: DEFAULT}")
    with pytest.raises(ConfigError, match=r"teacher\.kwargs\.weights.*nothing is downloaded"):
        build_external_teacher(cfg, K, SHAPE)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet18", f"teacher.weights={junk}")
    with pytest.raises(ConfigError, match=r"teacher\.weights.*cannot read"):
        build_external_teacher(cfg, K, SHAPE)
    st = tmp_path / "w.safetensors"
    st.write_bytes(b"x")
    monkeypatch.setitem(__import__("sys").modules, "safetensors.torch", None)
    cfg = _teacher_cfg("teacher.source=timm", "teacher.arch=test_resnet", f"teacher.weights={st}")
    with pytest.raises(ConfigError, match=r"needs the safetensors package"):
        build_external_teacher(cfg, K, SHAPE)
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet_nope", f"teacher.weights={path}")
    with pytest.raises(ConfigError, match=r"teacher\.arch.*torchvision has no"):
        build_external_teacher(cfg, K, SHAPE)


def test_pickled_module_weights_are_refused_in_one_complete_line(tmp_path):
    """A .pth holding a pickled nn.Module (torch.save(model)) needs pickle to rebuild; the error
    says it was refused as unsafe and how to save weights instead, in one whole sentence (it
    was torch's message cut mid-sentence at 200 characters)."""
    whole = tmp_path / "whole_model.pth"
    torch.save(torchvision.models.resnet18(num_classes=K), whole)
    cfg = _teacher_cfg("teacher.source=torchvision", "teacher.arch=resnet18",
                       f"teacher.weights={whole}")
    with pytest.raises(ConfigError) as err:
        build_external_teacher(cfg, K, SHAPE)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"config key 'teacher.weights': '{whole}' was refused as unsafe" in msg
    assert "Unsupported global: GLOBAL torchvision.models.resnet.ResNet" in msg
    assert msg.endswith("torch.save(model.state_dict(), path), or as .safetensors")
