"""The LIF parameters as one record (``LIFParameters``): construction, the config's vocabulary,
and the same spikes and gradients whether the pure functions and the module get the record, a
mapping or the fields one by one (issue 21 part 8)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spikedistill.config import NeuronConfig
from spikedistill.errors import ConfigError
from spikedistill.neurons import LIF, LIFParameters, lif_multistep, lif_multistep_torch

CUSTOM = LIFParameters(decay=0.25, threshold=0.7, surrogate="atan", alpha=2.0, detach_reset=True,
                       backend="torch", decay_input=True, fire_at_threshold=True)


def test_the_record_has_the_fields_and_defaults_of_model_neuron():
    ours = [(f.name, f.default) for f in dataclasses.fields(LIFParameters)]
    config = [(f.name, f.default) for f in dataclasses.fields(NeuronConfig)]
    assert ours == config and len(ours) == 8
    assert LIFParameters.of(NeuronConfig()) == LIFParameters()
    assert LIFParameters.of(dataclasses.asdict(NeuronConfig(decay=0.25))).decay == 0.25


def test_of_takes_a_record_a_mapping_or_a_subset_and_names_unknown_keys():
    assert LIFParameters.of(CUSTOM) is CUSTOM
    assert LIFParameters.of(CUSTOM.as_dict()) == CUSTOM
    assert LIFParameters.of(None) == LIFParameters()
    old = {"decay": 0.25, "threshold": 0.7, "surrogate": "atan", "alpha": 2.0,
           "detach_reset": True, "backend": "torch"}          # a checkpoint from before decay_input
    assert LIFParameters.of(old) == CUSTOM.replace(decay_input=False, fire_at_threshold=False)
    assert LIFParameters.of(CUSTOM, threshold=0.5).threshold == 0.5 and CUSTOM.threshold == 0.7
    with pytest.raises(ConfigError, match=r"'model.neuron.tau'"):
        LIFParameters.of({"tau": 2.0})
    with pytest.raises(ConfigError, match="model.neuron"):
        LIFParameters.of(0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CUSTOM.decay = 0.5
    assert isinstance(LIFParameters(decay=1, alpha=2).decay, float)      # coerced once
    assert LIFParameters(decay=0.25, decay_input=True).input_scale == 0.75
    assert LIFParameters(decay=0.25).input_scale == 1.0


def test_hand_computed_spikes_with_input_scaling_and_the_threshold_tie():
    # decay 0.5, threshold 0.5, c = 1 - 0.5: h = 0.5, 0.75 (after u = 0.5), 0.5, 0.75 for x = 1
    x = torch.ones(4, 1)
    strict = LIFParameters(decay=0.5, threshold=0.5, decay_input=True, backend="torch")
    assert lif_multistep(x, strict).view(-1).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert lif_multistep(x, strict.replace(fire_at_threshold=True)).view(-1).tolist() == [1.0] * 4


@pytest.mark.parametrize("detach", [False, True])
def test_record_mapping_and_keywords_give_the_same_spikes_and_gradients(detach):
    p = CUSTOM.replace(detach_reset=detach)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 7, generator=gen)
    outs = []
    for call in (lambda x: lif_multistep(x, p), lambda x: lif_multistep(x, p.as_dict()),
                 lambda x: lif_multistep(x, **p.as_dict()), lambda x: lif_multistep_torch(x, p),
                 lambda x: LIF(p)(x), lambda x: LIF(p.as_dict())(x), lambda x: LIF(**p.as_dict())(x)):
        x = x0.clone().requires_grad_(True)
        s = call(x)
        (s * torch.arange(1.0, 8.0)).sum().backward()
        outs.append((s.detach(), x.grad))
    for s, g in outs[1:]:
        assert torch.equal(s, outs[0][0]) and torch.equal(g, outs[0][1])
    assert outs[0][0].sum() > 0 and outs[0][1].abs().sum() > 0


def test_the_module_keeps_the_record_and_reads_it_only():
    m = LIF(CUSTOM)
    assert m.params is CUSTOM
    assert (m.decay, m.threshold, m.surrogate, m.alpha, m.detach_reset, m.backend, m.decay_input,
            m.fire_at_threshold) == tuple(CUSTOM.as_dict().values())
    with pytest.raises(AttributeError):
        m.threshold = 2.0
    assert LIF().params == LIFParameters()                      # backend auto, as model.neuron
    assert LIF(CUSTOM, threshold=0.5).params == CUSTOM.replace(threshold=0.5)
    with pytest.raises(ConfigError, match="surrogate"):
        LIF(CUSTOM.replace(surrogate="square"))
    with pytest.raises(ConfigError, match="backend"):
        lif_multistep(torch.ones(2, 1), CUSTOM.replace(backend="cuda"))


def test_keyword_calls_of_the_pure_function_keep_the_torch_default_backend(monkeypatch):
    import spikedistill.neurons.lif as lif

    seen = []
    real = lif.resolve_backend
    monkeypatch.setattr(lif, "resolve_backend", lambda b, x, s="triangle": seen.append(b) or real(b, x, s))
    lif.lif_multistep(torch.ones(2, 1), decay=0.5)
    lif.lif_multistep(torch.ones(2, 1), LIFParameters())
    assert seen == ["torch", "auto"]
