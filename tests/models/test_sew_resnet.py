"""SEW-ResNet-18/34/50: the connect functions by hand, geometry, model.connect, peer checks
against SpikingJelly 2.0's sew_resnet (parameter counts, logits and gradients with copied
weights), and torchvision ResNet teachers from tiny random-weight files distilling into it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedistill.config import build_config
from spikedistill.errors import ConfigError
from spikedistill.models import build_model, create_model
from spikedistill.models.contract import contract_problems
from spikedistill.models.zoo.sew_resnet import (connect_function, load_spikingjelly_state_dict,
                                                spikingjelly_key)


def _sew(arch="sew_resnet18", **kw):
    torch.manual_seed(0)
    kw.setdefault("num_classes", 5)
    kw.setdefault("T", 2)
    kw.setdefault("width_mult", 1)
    return create_model(arch, **kw)


def test_connect_functions_by_hand():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])   # residual-branch spikes A
    s = torch.tensor([0.0, 1.0, 0.0, 1.0])   # shortcut spikes S
    assert connect_function(a, s, "ADD").tolist() == [0, 1, 1, 2]
    assert connect_function(a, s, "AND").tolist() == [0, 0, 0, 1]
    assert connect_function(a, s, "IAND").tolist() == [0, 1, 0, 0]   # (not A) and S
    with pytest.raises(ConfigError, match="model.connect"):
        connect_function(a, s, "OR")


@pytest.mark.parametrize("arch, channels", [("sew_resnet18", (16, 32, 64, 128)),
                                            ("sew_resnet34", (16, 32, 64, 128)),
                                            ("sew_resnet50", (64, 128, 256, 512))])
def test_taps_follow_torchvision_geometry(arch, channels):
    m = _sew(arch).eval()
    x = torch.randn(3, 3, 64, 64)
    assert contract_problems(m, x) == []
    _, feats = m(x, return_features=True)
    assert m.feature_channels == channels
    assert [tuple(f.shape) for f in feats] == [(2, 3, c, 64 // s, 64 // s)
                                              for c, s in zip(channels, (4, 8, 16, 32))]
    # and the CIFAR stem: no stride, no pool
    m = _sew(arch, stem="cifar").eval()
    _, feats = m(torch.randn(3, 3, 32, 32), return_features=True)
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]


def test_stage_outputs_are_spikes_or_counts():
    # AND / IAND keep binary spikes; ADD sums spikes along the identity path: a stage of n
    # blocks (first with a spiking downsample) outputs integers in 0..n+1 ... at most n + 1
    x = torch.randn(4, 3, 32, 32) * 3
    for connect in ("ADD", "AND", "IAND"):
        m = _sew(connect=connect).train()
        _, feats = m(x, return_features=True)
        for f, stage in zip(feats, (m.layer1, m.layer2, m.layer3, m.layer4)):
            vals = torch.unique(f.detach())
            assert torch.equal(vals, vals.round()) and float(vals.min()) >= 0
            top = len(stage) + 1 if connect == "ADD" else 1
            assert float(vals.max()) <= top, (connect, vals)
    _, feats = _sew(connect="ADD").train()(x, return_features=True)
    assert any(bool((f >= 2).any()) for f in feats)


def test_static_image_stem_runs_once_and_equals_repeated_frames():
    m = _sew().eval()
    x = torch.randn(2, 3, 32, 32)
    calls = []
    m.conv1.register_forward_hook(lambda mod, a, out: calls.append(tuple(out.shape)))
    z_img = m(x)
    assert calls == [(2, 16, 16, 16)]          # B, not T*B: the stem conv ran once
    z_frames = m(x.unsqueeze(0).expand(2, *x.shape))
    assert torch.allclose(z_img, z_frames, atol=1e-6)


def test_model_connect_config_key():
    cfg = build_config({"model": {"name": "sew_resnet18", "T": 2, "width_mult": 1,
                                  "connect": "IAND"}})
    m = build_model(cfg.model, 5, 3)
    assert {b.connect for layer in (m.layer1, m.layer4) for b in layer} == {"IAND"}
    assert m.model_kwargs["connect"] == "IAND"
    assert create_model(m.model_name, **m.model_kwargs).connect == "IAND"   # checkpoint rebuild
    assert build_model(build_config({"model": {"name": "sew_resnet18"}}).model, 5, 3).connect == "ADD"
    with pytest.raises(ConfigError, match="model.connect.*ADD, IAND, AND"):
        build_config({"model": {"name": "sew_resnet18", "connect": "OR"}})
    with pytest.raises(ConfigError, match="model.connect.*spiking_resnet20"):
        build_model(build_config({"model": {"name": "spiking_resnet20", "connect": "ADD"}}).model, 5, 3)
    with pytest.raises(ConfigError, match="model.kwargs.stem"):
        build_model(build_config({"model": {"name": "sew_resnet18",
                                            "kwargs": {"stem": "tiny"}}}).model, 5, 3)


# --------------------------------------------------------------------------------------------
# peer: SpikingJelly 2.0
# --------------------------------------------------------------------------------------------

sj = pytest.importorskip("spikingjelly.activation_based.model.sew_resnet")
from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402

#: torchvision's ResNet parameter counts at K = 1000 (the SEW nets add no parameters)
TORCHVISION_PARAMS = {"sew_resnet18": 11_689_512, "sew_resnet34": 21_797_672,
                      "sew_resnet50": 25_557_032}


@pytest.mark.parametrize("arch", ["sew_resnet18", "sew_resnet34", "sew_resnet50"])
def test_parameter_counts_equal_spikingjelly(arch):
    ours = create_model(arch, num_classes=1000, T=4)
    ref = getattr(sj, arch)(cnf="ADD", spiking_neuron=neuron.IFNode)
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in ref.parameters()) == TORCHVISION_PARAMS[arch]
    # every tensor maps one to one onto SpikingJelly's, with the same shape
    ref_sd = ref.state_dict()
    assert sorted(spikingjelly_key(k) for k in ours.state_dict()) == sorted(ref_sd)
    assert all(v.shape == ref_sd[spikingjelly_key(k)].shape for k, v in ours.state_dict().items())


def _sj_pair(arch, connect, kind, T, surrogate_name="sigmoid"):
    """Our model and SpikingJelly's with the same neuron: IF (decay 1) or LIF with
    decay_input=False, tau = 1 / (1 - decay) (SJ: h = v - v / tau + x = (1 - 1/tau) v + x)."""
    sj_sur = {"sigmoid": surrogate.Sigmoid(alpha=4.0), "atan": surrogate.ATan(alpha=2.0)}
    alpha = {"sigmoid": 4.0, "atan": 2.0}[surrogate_name]
    common = dict(v_threshold=1.0, v_reset=0.0, detach_reset=False,
                  surrogate_function=sj_sur[surrogate_name])
    if kind == "IF":
        decay, ref_neuron, extra = 1.0, neuron.IFNode, {}
    else:
        decay, ref_neuron, extra = 0.75, neuron.LIFNode, {"tau": 4.0, "decay_input": False}
    torch.manual_seed(0)
    ref = getattr(sj, arch)(cnf=connect, spiking_neuron=ref_neuron, num_classes=7,
                            **common, **extra)
    functional.set_step_mode(ref, "m")
    ours = create_model(arch, num_classes=7, T=T, connect=connect,
                        neuron=dict(decay=decay, threshold=1.0, surrogate=surrogate_name,
                                    alpha=alpha, backend="torch"))
    with torch.no_grad():                      # BN statistics away from 0 / 1
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.6)
                m.bias.uniform_(-0.1, 0.3)
    load_spikingjelly_state_dict(ours, ref.state_dict())
    return ours, ref


def _sj_logits(ref, x, T):
    """SpikingJelly's multi-step SEW takes the sequence [T, B, C, H, W] (it does not repeat a
    static image itself): the image repeated T times; logits = mean over T."""
    out = ref(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
    functional.reset_net(ref)
    return out


@pytest.mark.parametrize("arch, connect, kind, T", [
    ("sew_resnet18", "ADD", "IF", 2), ("sew_resnet18", "IAND", "LIF", 3),
    ("sew_resnet18", "AND", "IF", 4), ("sew_resnet34", "ADD", "LIF", 2),
    ("sew_resnet50", "AND", "LIF", 3)])
def test_logits_equal_spikingjelly_multistep(arch, connect, kind, T):
    ours, ref = _sj_pair(arch, connect, kind, T)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2
    for mode in ("eval", "train"):           # running statistics, then batch statistics
        ours.train(mode == "train")
        ref.train(mode == "train")
        with torch.no_grad():
            z, feats = ours(x, return_features=True)
            z_ref = _sj_logits(ref, x, T)
        assert torch.allclose(z, z_ref, atol=1e-5, rtol=1e-5), mode
        assert float(z.std()) > 1e-3 and sum(float(f.sum()) for f in feats) > 0   # spikes flowed


def test_gradients_equal_spikingjelly():
    ours, ref = _sj_pair("sew_resnet18", "ADD", "LIF", 2, "atan")
    ours.train()
    ref.train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2
    y = torch.tensor([1, 4])
    F.cross_entropy(ours(x), y).backward()
    F.cross_entropy(_sj_logits(ref, x, 2), y).backward()
    ref_params = dict(ref.named_parameters())
    checked = 0
    for k, p in ours.named_parameters():
        g_ref = ref_params[spikingjelly_key(k)].grad
        assert torch.allclose(p.grad, g_ref, atol=1e-5, rtol=1e-4), k
        checked += int(p.grad.abs().sum() > 0)
    assert checked > 10


def test_sew_resnet50_iand_operand_order_differs_from_spikingjelly_bottleneck(monkeypatch):
    # the paper and the authors' code: IAND = (1 - A) * S in both blocks. SpikingJelly 2.0's
    # Bottleneck calls sew_function(out, identity) -> A * (1 - S); swapping its operands back
    # (only bottlenecks exist in a SEW-ResNet-50) reproduces our logits exactly.
    ours, ref = _sj_pair("sew_resnet50", "IAND", "IF", 2)
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        z = ours(x)
        assert not torch.allclose(z, _sj_logits(ref, x, 2), atol=1e-3)
        original = sj.sew_function
        monkeypatch.setattr(sj, "sew_function", lambda a, b, cnf: original(b, a, cnf))
        assert torch.allclose(z, _sj_logits(ref, x, 2), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# torchvision ResNet teachers from tiny random-weight files
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, student, method", [("resnet34", "sew_resnet34", "kd"),
                                                   ("resnet50", "sew_resnet18", "ckd")])
def test_torchvision_teacher_file_distils_into_sew(tmp_path, arch, student, method):
    import torchvision

    from spikedistill.distill import build_method

    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=5)
    path = tmp_path / f"{arch}-tiny.pth"
    torch.save(net.state_dict(), path)
    cfg = build_config({"teacher": {"source": "torchvision", "arch": arch, "weights": str(path)},
                        "distill": {"method": method, "ckd": {"samd": {"stages": [2, 3, 4],
                                                                     "teacher_map": "gradcam_label"}}}})
    from spikedistill.models.external import build_external_teacher

    size = 32
    teacher, prov = build_external_teacher(cfg.teacher, 5, (3, size, size))
    assert prov["sha256"] and teacher.feature_names == ("layer1", "layer2", "layer3", "layer4")
    s = _sew(student)
    x = torch.randn(4, 3, size, size)
    y = torch.tensor([0, 1, 2, 3])
    # the taps pair stage by stage: same H, W at layer1..4 (H/4 .. H/32)
    with torch.no_grad():
        _, ft = teacher(x, return_features=True)
        _, fs = s(x, return_features=True)
    assert [f.shape[-2:] for f in ft] == [f.shape[-2:] for f in fs]
    assert torch.allclose(teacher(x), net.eval()(x))             # the file's weights, exactly
    d = build_method(method, s, teacher, cfg.distill)
    d.train()
    params = list(d.trainable_parameters())
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.1)
    _, losses = d(x, y)
    assert set(losses) >= ({"ce", "kd"} if method == "kd" else {"ce", "samd"})
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    opt.step()
    assert any(not torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert all(p.grad is None for p in teacher.parameters())
