"""Students on event frames ``[T, B, 2, 48, 48]``: VGGSNN (TET's layer list, parameter count by
hand, taps, both heads) and spiking ResNet-19/20 with 2 polarity channels, each timestep its own
input (the network is causal in time: a change at frame t leaves every earlier timestep alone)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedistill.config import load_config
from spikedistill.models import build_model, create_model
from spikedistill.models.contract import contract_problems
from spikedistill.neurons import LIF

from model_helpers import calibrate_bn

T, B, K = 3, 2, 10


def _frames(t=T, b=B, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (t, b, 2, size, size), generator=g).float()


def test_vggsnn_parameter_count_written_out():
    # TET VGGSNN: (cin, cout) of its eight 3x3 convs (with bias), each followed by BN (2 C)
    convs = [(2, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512),
             (512, 512)]
    trunk = sum(9 * ci * co + co + 2 * co for ci, co in convs)
    assert trunk == 9_225_408
    gap = create_model("vggsnn", num_classes=K, T=T, in_channels=2)
    tet = create_model("vggsnn", num_classes=K, T=T, in_channels=2, head="flatten")
    assert sum(p.numel() for p in gap.parameters()) == trunk + 512 * K + K == 9_230_538
    assert sum(p.numel() for p in tet.parameters()) == trunk + 512 * 3 * 3 * K + K == 9_271_498
    convs_built = [(m.in_channels, m.out_channels) for m in gap.modules()
                   if isinstance(m, torch.nn.Conv2d)]
    assert convs_built == convs
    assert len(gap.spiking_modules()) == 8 and gap.feature_channels == (128, 256, 512, 512)


def test_vggsnn_taps_logits_and_contract_at_48px():
    x = _frames()
    for head in ("gap", "flatten"):
        torch.manual_seed(0)
        model = calibrate_bn(create_model("vggsnn", num_classes=K, T=T, in_channels=2, head=head), x)
        assert contract_problems(model, x) == []
        with torch.no_grad():
            z, feats = model(x, return_features=True)
        assert [tuple(f.shape) for f in feats] == [(T, B, 128, 48, 48), (T, B, 256, 24, 24),
                                                  (T, B, 512, 12, 12), (T, B, 512, 6, 6)]
        assert all(set(torch.unique(f).tolist()) <= {0.0, 1.0} for f in feats)   # spike maps
        assert any(f.sum() > 0 for f in feats)
        f4 = feats[-1].flatten(0, 1)
        if head == "flatten":
            # TET: AvgPool2 -> flatten the 512 x 3 x 3 grid -> Linear, per timestep, mean over T
            per_t = model.head(F.avg_pool2d(f4, 2).flatten(1)).view(T, B, K)
        else:
            per_t = model.head(f4.mean(dim=(2, 3))).view(T, B, K)
        assert torch.allclose(z, per_t.mean(0), atol=1e-5)


@pytest.mark.parametrize("name", ["vggsnn", "spiking_resnet20", "spiking_resnet19"])
def test_each_timestep_is_its_own_input(name):
    kw = {"width_mult": 1} if name == "spiking_resnet19" else {}
    torch.manual_seed(1)
    model = create_model(name, num_classes=K, T=T, in_channels=2, **kw)
    x = _frames(seed=2)
    model = calibrate_bn(model, x)
    changed = x.clone()
    changed[2] = _frames(seed=9)[2]            # only the last frame differs
    with torch.no_grad():
        za, fa = model(x, return_features=True)
        zb, fb = model(changed, return_features=True)
        ta, tb = model(x, timestep_logits=True), model(changed, timestep_logits=True)
    assert fa[0].shape[:3] == (T, B, fa[0].shape[2]) and fa[0].shape[-2:] == (48, 48)
    for a, b in zip(fa, fb):                   # causal: timesteps 0 and 1 are untouched
        assert torch.equal(a[:2], b[:2])
    assert torch.equal(ta[:2], tb[:2])
    assert not torch.equal(fa[0][2], fb[0][2])  # the first layer sees the new frame
    assert not torch.allclose(za, zb)


def test_spiking_resnet20_takes_two_polarity_frames_at_48px():
    model = create_model("spiking_resnet20", num_classes=K, T=T, in_channels=2)
    assert model.stem.in_channels == 2
    x = _frames()
    calibrate_bn(model, x)
    assert contract_problems(model, x) == []
    with torch.no_grad():
        _, feats = model(x, return_features=True)
    assert [tuple(f.shape) for f in feats] == [(T, B, 16, 48, 48), (T, B, 32, 24, 24),
                                              (T, B, 64, 12, 12)]


def test_vggsnn_from_config_uses_the_neuron_section():
    cfg = load_config(None, ["model.name=vggsnn", "model.T=4", "model.last_activation=lif",
                             "model.neuron.surrogate=atan", "model.neuron.decay=0.25"])
    model = build_model(cfg.model, 10, 2, input_shape=(2, 48, 48))
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert model.T == 4 and len(lifs) == 8
    assert all(m.surrogate == "atan" and m.decay == 0.25 for m in lifs)
    relu_last = create_model("vggsnn", T=2, in_channels=2, last_activation="relu")
    assert isinstance(relu_last.stage4[-1].lif, torch.nn.ReLU) and len(relu_last.spiking_modules()) == 7
    with pytest.raises(ValueError, match="set model.T"):
        model(_frames(t=3))


def test_ann_twin_has_the_students_stages():
    x = _frames()
    student = calibrate_bn(create_model("vggsnn", num_classes=K, T=T, in_channels=2), x)
    twin = create_model("vgg_dvs", num_classes=K, in_channels=2).eval()
    with torch.no_grad():
        _, fs = student(x, return_features=True)
        zt, ft = twin(x.mean(0), return_features=True)
    assert [f.shape[2:] for f in fs] == [f.shape[1:] for f in ft]
    assert twin.feature_channels == student.feature_channels
    assert contract_problems(twin, x.mean(0)) == []
    convs = [(m.in_channels, m.out_channels) for m in twin.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(m.in_channels, m.out_channels) for m in student.modules()
                     if isinstance(m, torch.nn.Conv2d)]
