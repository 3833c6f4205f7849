"""The model contract over every registered model and over FeatureTapModel adapters (a
torchvision ResNet-18 ANN, a hand-made multi-step spiking net); feature taps; frame inputs."""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import pytest
import torch

from spikedistill.errors import ConfigError
from spikedistill.models import create_model, list_models, model_role
from spikedistill.models.contract import contract_problems
from spikedistill.models.taps import FeatureTapModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tap_nets import RESNET18_TAPS, resnet18_taps, tiny_snn_taps  # noqa: E402
from model_helpers import calibrate_bn  # noqa: E402

T = 2
B = 3


def _registered(name, in_channels=3):
    torch.manual_seed(0)
    kw = {"num_classes": 5, "width_mult": 1, "in_channels": in_channels}
    if model_role(name) == "student":
        kw["T"] = T
    return create_model(name, **kw)


def _images(C=3, size=32, seed=0):
    return torch.randn(B, C, size, size, generator=torch.Generator().manual_seed(seed))


def _frames(C=3, size=32, seed=1):
    return torch.randn(T, B, C, size, size, generator=torch.Generator().manual_seed(seed))


ADAPTERS = {"torchvision_resnet18": resnet18_taps, "tiny_snn": tiny_snn_taps}
ALL = [f"registered:{n}" for n in list_models()] + [f"adapter:{n}" for n in ADAPTERS]


def _build(which):
    kind, name = which.split(":")
    return _registered(name) if kind == "registered" else ADAPTERS[name]()


@pytest.mark.parametrize("which", ALL)
def test_contract_holds_for_images_and_student_frames(which):
    model = _build(which)
    assert contract_problems(model, _images()) == []
    if model.is_spiking:
        assert contract_problems(model, _frames()) == []
    # tapped channels agree with what the forward returns, in order
    _, feats = model.eval()(_images(), return_features=True)
    assert len(feats) == len(model.feature_names) == len(model.feature_channels)


def test_contract_problems_can_fail():
    model = tiny_snn_taps()
    model.feature_channels = (1, 2, 3, 4)           # wrong channel counts
    problems = contract_problems(model, _images())
    assert problems and all("channels" in p for p in problems)
    assert "missing attribute classifier" in contract_problems(torch.nn.Linear(3, 3), _images())


def test_resnet18_adapter_matches_torchvision_and_known_channels():
    import torchvision

    m = resnet18_taps()
    assert m.feature_channels == (64, 128, 256, 512) and m.num_classes == 5
    assert m.feature_dim == 512 and not m.is_spiking
    ref = torchvision.models.resnet18(weights=None, num_classes=5)
    ref.load_state_dict(m.net.state_dict())
    x = _images()
    with torch.no_grad():
        assert torch.equal(m.eval()(x), ref.eval()(x))


# --------------------------------------------------------------------------------------------
# taps
# --------------------------------------------------------------------------------------------

def test_wrong_tap_path_names_the_key_and_lists_modules():
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    with pytest.raises(ConfigError, match=r"model\.features\[1\].*'layer9'.*conv1, bn1.*layer4"):
        FeatureTapModel(net, features=["layer1", "layer9"], classifier="fc")
    with pytest.raises(ConfigError, match=r"teacher\.classifier.*'head'"):
        FeatureTapModel(net, features=["layer1"], classifier="head", key="teacher")


def test_taps_equal_the_submodule_outputs_computed_by_hand():
    m = resnet18_taps().eval()
    net = m.net
    x = _images(seed=3)
    with torch.no_grad():
        logits, feats = m(x, return_features=True)
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        want = []
        for name in RESNET18_TAPS:
            h = getattr(net, name)(h)
            want.append(h)
        z = net.fc(torch.flatten(net.avgpool(h), 1))
    assert len(feats) == 4
    for f, w in zip(feats, want):
        assert torch.equal(f, w)
    assert torch.equal(logits, z)
    # spiking adapter: the taps are the LIF outputs of each block on the folded batch
    s = tiny_snn_taps().eval()
    xs = _images(seed=4)
    with torch.no_grad():
        _, sfeats = s(xs, return_features=True)
        h = xs.unsqueeze(0).expand(T, *xs.shape)
        for blk, f in zip(s.net.blocks, sfeats):
            h = blk.lif(blk.bn(blk.conv(h.flatten(0, 1))).unflatten(0, (T, B)) * 2.0)
            assert torch.equal(f, h)
            assert set(torch.unique(f).tolist()) <= {0.0, 1.0}


def test_wrapped_state_dict_is_the_networks_own_under_net():
    m = resnet18_taps()
    own = m.net.state_dict()
    wrapped = m.state_dict()
    assert set(wrapped) == {f"net.{k}" for k in own}
    assert all(torch.equal(wrapped[f"net.{k}"], v) for k, v in own.items())
    # and it loads back into a fresh wrapper
    other = resnet18_taps()
    torch.nn.init.constant_(other.net.fc.weight, 0.0)
    other.load_state_dict(wrapped)
    assert torch.equal(other.net.fc.weight, m.net.fc.weight)


def test_no_tensor_stays_referenced_after_a_forward():
    for m in (resnet18_taps().eval(), tiny_snn_taps().eval()):
        with torch.no_grad():
            logits, feats = m(_images(), return_features=True)
        refs = [weakref.ref(f) for f in feats] + [weakref.ref(logits)]
        del logits, feats
        gc.collect()
        assert m._captured is None
        assert all(r() is None for r in refs)
        # a plain forward captures nothing either
        with torch.no_grad():
            m(_images())
        assert m._captured is None


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------

STUDENTS = [f"registered:{n}" for n in list_models("student")] + ["adapter:tiny_snn"]


@pytest.mark.parametrize("which", STUDENTS)
def test_students_take_frames_repeated_frames_equal_the_static_input(which):
    x = _images(seed=5)
    model = calibrate_bn(_build(which), x)
    repeated = x.unsqueeze(0).expand(T, *x.shape).contiguous()
    with torch.no_grad():
        z, f = model(x, return_features=True)
        zr, fr = model(repeated, return_features=True)
        zt = model(repeated, timestep_logits=True)
        different = _frames(seed=6)
        different[0] = x                   # first frame the image, the second another one
        zd, fd = model(different, return_features=True)
    assert zr.shape == (B, 5) and zt.shape == (T, B, 5)
    assert torch.equal(zr, z)
    for a, b in zip(f, fr):
        assert a.shape == b.shape and torch.equal(a, b)
    assert not torch.allclose(zd, z)
    assert any(not torch.allclose(a, b) for a, b in zip(fd, f))


@pytest.mark.parametrize("which", STUDENTS)
def test_frames_with_the_wrong_T_are_refused(which):
    model = _build(which)
    with pytest.raises(ValueError, match="set model.T"):
        model(torch.randn(T + 1, B, 3, 32, 32))


def test_ann_refuses_frames():
    for m in (_registered("resnet20"), resnet18_taps()):
        with pytest.raises(ValueError, match="teacher.frames"):
            m(_frames())
