"""Students from SpikingJelly: our adapter against SpikingJelly's own multi-step forward.

Peer: ``spikingjelly.activation_based`` itself (its ResNet built directly, ``set_step_mode("m")``
on the repeated input, ``functional.reset_net`` between batches).
"""

import pytest
import torch
import torchvision

pytest.importorskip("spikingjelly.activation_based.model", reason="spikingjelly (and loguru, h5py)")
from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402
from spikingjelly.activation_based.model import sew_resnet, spiking_resnet  # noqa: E402

from spikedistill.config import load_config  # noqa: E402
from spikedistill.distill import build_method  # noqa: E402
from spikedistill.errors import ConfigError  # noqa: E402
from spikedistill.models import build_model, create_model  # noqa: E402
from spikedistill.models.external import build_external_teacher  # noqa: E402
from spikedistill.models.contract import contract_problems  # noqa: E402

K, T, SHAPE = 10, 2, (3, 32, 32)


def _cfg(*overrides):
    return load_config(overrides=["model.source=spikingjelly", f"model.T={T}", *overrides])


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    # threshold 0.5: every layer of the randomly initialised net spikes (1.0 goes silent deep down)
    cfg = _cfg("model.arch=spiking_resnet18",
               "model.kwargs={spiking_neuron: IFNode, v_threshold: 0.5, detach_reset: true, "
               "surrogate_function: {name: Sigmoid, alpha: 2.5}}")
    return build_model(cfg.model, K, 3, SHAPE)


def _peer(model):
    """SpikingJelly's own network with the adapter's weights, in multi-step mode."""
    net = spiking_resnet.spiking_resnet18(spiking_neuron=neuron.IFNode, v_threshold=0.5,
                                          surrogate_function=surrogate.Sigmoid(alpha=2.5),
                                          detach_reset=True, num_classes=K)
    functional.set_step_mode(net, "m")
    net.load_state_dict({k[len("net."):]: v for k, v in model.state_dict().items()})
    return net.eval()


def test_logits_equal_spikingjelly_multistep(student):
    peer = _peer(student)
    student.eval()
    x = torch.rand(3, *SHAPE) * 4
    with torch.no_grad():
        ours_t = student(x, timestep_logits=True)
        ours = student(x)
        ref_t = peer(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
        functional.reset_net(peer)
        frames = torch.rand(T, 3, *SHAPE) * 4
        ours_frames = student(frames)
        ref_frames = peer(frames).mean(0)
        functional.reset_net(peer)
    assert ref_t.shape == (T, 3, K)
    assert not torch.equal(ref_t[0], ref_t[1])     # the dynamics matter: the timesteps differ
    assert torch.equal(ours_t, ref_t)
    assert torch.allclose(ours, ref_t.mean(0), atol=1e-6)
    assert torch.allclose(ours_frames, ref_frames, atol=1e-6)
    assert contract_problems(student, x) == []


def test_state_is_reset_between_forwards(student):
    student.eval()
    x = torch.rand(2, *SHAPE) * 4
    with torch.no_grad():
        a, b = student(x), student(x)
    assert torch.equal(a, b)
    # without reset the membranes would carry over: SpikingJelly's own net differs on a rerun
    peer = _peer(student)
    with torch.no_grad():
        seq = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        first, second = peer(seq), peer(seq)
    assert not torch.equal(first, second)


def test_spiking_modules_and_taps(student):
    sn = student.net.layer4[1].sn2
    assert isinstance(sn, neuron.IFNode) and sn.v_threshold == 0.5 and sn.detach_reset
    assert isinstance(sn.surrogate_function, surrogate.Sigmoid) and sn.surrogate_function.alpha == 2.5
    sj_neurons = [n for n, m in student.named_modules() if isinstance(m, neuron.BaseNode)]
    assert [n for n, _ in student.spiking_modules()] == sj_neurons
    assert len(sj_neurons) == 17          # sn1 + 2 per BasicBlock (8 blocks)
    assert student.is_spiking and student.T == T
    assert student.feature_names == ("layer1", "layer2", "layer3", "layer4")
    assert student.feature_channels == (64, 128, 256, 512)
    assert student.classifier is student.net.fc
    student.T = 3
    try:
        assert student(torch.rand(2, *SHAPE), timestep_logits=True).shape == (3, 2, K)
    finally:
        student.T = T


def test_spike_counting_sees_spikingjelly_neurons(student):
    from spikedistill.analysis.counting import count_model
    summary = count_model(student, torch.rand(2, *SHAPE) * 4)
    names = {row["name"] for row in summary["neurons"]}
    assert names == {n for n, _ in student.spiking_modules()}
    assert summary["totals"]["spikes_per_image"] > 0


def test_create_model_rebuilds_from_name_and_kwargs(student):
    assert student.model_name == "spikingjelly/spiking_resnet18"
    again = create_model(student.model_name, **student.model_kwargs)
    again.load_state_dict(student.state_dict())
    student.eval(), again.eval()
    x = torch.rand(2, *SHAPE) * 4
    with torch.no_grad():
        assert torch.equal(again(x), student(x))
    assert again.model_kwargs == student.model_kwargs and again.model_role == "student"


def test_checkpoint_round_trip(student, tmp_path):
    from spikedistill.engine.checkpoint import (load_model_from_checkpoint, make_checkpoint,
                                                save_checkpoint)
    path = save_checkpoint(make_checkpoint(model=student, config={}, epoch=0), tmp_path / "last.pt")
    model, meta = load_model_from_checkpoint(path, T=4)
    assert model.T == 4 and meta["model_name"] == "spikingjelly/spiking_resnet18"
    x = torch.rand(2, *SHAPE) * 4
    model.T = T
    student.eval()
    with torch.no_grad():
        assert torch.equal(model(x), student(x))


def test_sew_resnet_with_cnf_and_one_channel():
    torch.manual_seed(0)
    cfg = _cfg("model.arch=sew_resnet18", "model.kwargs={cnf: IAND}")
    m = build_model(cfg.model, K, 1, (1, 16, 16))
    blocks = [b for b in m.net.modules() if isinstance(b, sew_resnet.BasicBlock)]
    assert blocks and all(b.cnf == "IAND" for b in blocks)
    assert m.net.conv1.in_channels == 1
    assert m(torch.rand(2, 1, 16, 16)).shape == (2, K)
    default = build_model(_cfg("model.arch=sew_resnet18").model, K, 3)
    assert all(b.cnf == "ADD" for b in default.net.modules() if isinstance(b, sew_resnet.BasicBlock))


def test_bad_spikingjelly_configs():
    with pytest.raises(ConfigError, match=r"model\.arch.*no builder 'nope18'"):
        build_model(_cfg("model.arch=nope18").model, K, 3)
    with pytest.raises(ConfigError, match=r"model\.kwargs\.spiking_neuron.*no neuron 'Nope'"):
        build_model(_cfg("model.arch=spiking_resnet18", "model.kwargs={spiking_neuron: Nope}").model, K, 3)
    with pytest.raises(ConfigError, match=r"model\.kwargs\.num_classes.*differs"):
        build_model(_cfg("model.arch=spiking_resnet18", "model.kwargs={num_classes: 3}").model, K, 3)
    with pytest.raises(ConfigError, match=r"model\.kwargs\.pretrained.*nothing is downloaded"):
        build_model(_cfg("model.arch=spiking_resnet18", "model.kwargs={pretrained: true}").model, K, 3)


def test_ckd_step_with_torchvision_teacher(student, tmp_path):
    """CKD (SAMD + NLD) between SpikingJelly's ResNet-18 and torchvision's: same stages, same
    resolutions."""
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(num_classes=K).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    cfg = load_config(overrides=["teacher.source=torchvision", "teacher.arch=resnet18",
                                 f"teacher.weights={path}", "distill.method=ckd"])
    teacher, _ = build_external_teacher(cfg.teacher, K, SHAPE)
    student.train()
    student.zero_grad()
    distiller = build_method("ckd", student, teacher, cfg.distill)
    x, y = torch.rand(2, *SHAPE) * 4, torch.randint(0, K, (2,))
    logits, losses = distiller.forward_train(x, y)
    assert logits.shape == (2, K) and "ce" in losses and len(losses) >= 2
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in teacher.parameters())
    student.zero_grad()
