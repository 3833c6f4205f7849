"""Students and teachers: registry, shapes, parameter counts, the feature API, and a peer check
against the re-created released models."""

import pytest
import torch

from spikedistill.errors import ConfigError
from spikedistill.models import create_model, list_models, model_role
from spikedistill.models.contract import contract_problems
from spikedistill.neurons import LIF


def _small(name, **kw):
    kw.setdefault("width_mult", 1)
    if model_role(name) == "student":
        kw.setdefault("T", 2)
    return create_model(name, **kw)


def test_registry_lists_both_roles():
    assert {"spiking_resnet19", "spiking_resnet20"} <= set(list_models("student"))
    assert {"resnet19", "resnet20"} <= set(list_models("teacher"))
    assert set(list_models()) == set(list_models("student")) | set(list_models("teacher"))


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels, size", [(1, 8), (3, 32)])
def test_every_model_forward_backward(name, in_channels, size):
    torch.manual_seed(0)
    model = _small(name, num_classes=7, in_channels=in_channels)
    x = torch.randn(3, in_channels, size, size)
    assert contract_problems(model, x) == []       # any number of stages, shapes per tap
    logits, feats = model(x, return_features=True)
    assert logits.shape == (3, 7)
    assert model.feature_dim == model.feature_channels[-1]
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # the pre-classifier API reproduces the logits
    with torch.no_grad():
        model.eval()
        z, f = model(x, return_features=True)
        head = model.head if model.is_spiking else model.classifier
        assert torch.allclose(head(model.pool(f[-1])), z, atol=1e-5)
        assert model.classifier.out_features == 7


def test_parameter_counts_match_the_spec():
    # method.md: ResNet-19 student 12.72 M, teacher 12.62 M parameters at K = 100, width 8
    s = create_model("spiking_resnet19", num_classes=100)
    t = create_model("resnet19", num_classes=100)
    assert round(sum(p.numel() for p in s.parameters()) / 1e6, 2) == 12.72
    assert round(sum(p.numel() for p in t.parameters()) / 1e6, 2) == 12.62
    assert s.stage_channels == (128, 256, 512) and t.stage_channels == (128, 256, 512)
    r20 = create_model("spiking_resnet20")
    assert r20.stage_channels == (16, 32, 64)
    assert [len(st) for st in (r20.layer1, r20.layer2, r20.layer3)] == [3, 3, 3]


@pytest.mark.parametrize("last", ["relu", "lif"])
def test_student_stage_outputs_are_spikes_except_the_relu_last_block(last):
    torch.manual_seed(0)
    model = _small("spiking_resnet20", last_activation=last)
    _, (f1, f2, f3) = model(torch.randn(4, 3, 16, 16) * 3, return_features=True)
    for f in (f1, f2):
        assert torch.all((f == 0) | (f == 1))
    binary = bool(torch.all((f3 == 0) | (f3 == 1)))
    assert binary == (last == "lif")
    assert bool((f3 >= 0).all())
    acts = [type(b.act2).__name__ for st in (model.layer1, model.layer2, model.layer3) for b in st]
    assert acts[-1] == ("ReLU" if last == "relu" else "LIF") and set(acts[:-1]) == {"LIF"}


def test_timesteps_can_be_changed_after_construction_and_t1_repeats_nothing():
    torch.manual_seed(0)
    model = _small("spiking_resnet20", T=1).eval()
    x = torch.randn(2, 3, 8, 8)
    _, f = model(x, return_features=True)
    assert f[0].shape[0] == 1
    model.T = 3
    _, f = model(x, return_features=True)
    assert f[0].shape[0] == 3


def test_neuron_settings_reach_every_lif():
    model = _small("spiking_resnet20", neuron={"decay": 0.25, "threshold": 0.5, "surrogate": "atan",
                                               "alpha": 2.0, "detach_reset": True, "backend": "torch"})
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert len(lifs) == 1 + 2 * 9 - 1      # stem + two per block, last block ends in ReLU
    assert all((m.decay, m.threshold, m.surrogate, m.detach_reset) == (0.25, 0.5, "atan", True)
               for m in lifs)


def test_registry_errors_name_what_is_wrong():
    with pytest.raises(ConfigError, match="unknown model 'resnet50'.*spiking_resnet19"):
        create_model("resnet50")
    with pytest.raises(ConfigError, match="does not take T"):
        create_model("resnet20", T=4)
    with pytest.raises(ConfigError, match="last_activation"):
        create_model("spiking_resnet20", last_activation="gelu")


def _copy_by_order(src, dst):
    """Copy a state dict between two models whose tensors are registered in the same order."""
    s, d = list(src.state_dict().values()), dst.state_dict()
    assert len(s) == len(d)
    for (k, v), w in zip(d.items(), s):
        assert v.shape == w.shape, k
        v.copy_(w)


@pytest.mark.parametrize("arch", ["resnet19", "resnet20"])
def test_student_and_teacher_equal_the_reference_release_models(reference_step, arch):
    torch.manual_seed(0)
    ref_s, ref_t = reference_step.build_models(arch, T=2, num_classes=10, width_mult=1)
    ours_s = create_model(f"spiking_{arch}", T=2, width_mult=1)
    ours_t = create_model(arch, width_mult=1)
    _copy_by_order(ref_s, ours_s)
    _copy_by_order(ref_t, ours_t)
    x = torch.randn(4, 3, 32, 32)
    for ref, ours in ((ref_s, ours_s), (ref_t, ours_t)):
        for mode in (True, False):        # train-mode BN (batch statistics) and eval
            ref.train(mode), ours.train(mode)
            zr, fr = ref(x, return_inter=True)
            zo, fo = ours(x, return_features=True)
            assert torch.allclose(zr, zo, atol=1e-5)
            for a, b in zip(fr, fo):
                b = b.transpose(0, 1) if ours.is_spiking else b
                assert torch.allclose(a, b, atol=1e-5)
