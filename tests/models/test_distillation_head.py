"""DeiT's distillation head on any contract model (``model.distill_head``): training returns
the class head and keeps the distillation head's logits, eval averages both heads, the class
head's weights and state-dict keys are unchanged, and a checkpoint rebuilds it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from spikedistill.config import build_config
from spikedistill.errors import ConfigError
from spikedistill.models import build_model, create_model
from spikedistill.models.contract import (DistillationHead, add_distillation_head,
                                          contract_problems, distillation_head)


def test_head_returns_class_logits_in_training_and_the_average_in_eval():
    torch.manual_seed(0)
    head = DistillationHead(6, 4)
    h = torch.randn(3, 6)
    head.train()
    z = head(h)
    z_kd = head.pop_kd()
    assert torch.allclose(z, h @ head.weight.T + head.bias)
    assert torch.allclose(z_kd, h @ head.kd.weight.T + head.kd.bias)
    with pytest.raises(RuntimeError, match="train mode"):
        head.pop_kd()
    head.eval()
    assert torch.allclose(head(h), (z + z_kd) / 2, atol=1e-6)


@pytest.mark.parametrize("name,kwargs", [("spikformer_4_384", {"depth": 1, "dim": 32}),
                                         ("spiking_resnet20", {"width_mult": 1})])
def test_added_head_keeps_the_classifier_and_evaluates_the_average(name, kwargs):
    torch.manual_seed(0)
    plain = create_model(name, num_classes=5, T=2, **kwargs)
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, T=2, distill_head=True, **kwargs)
    head = distillation_head(model)
    assert isinstance(head, DistillationHead) and model.classifier is head
    assert model.model_kwargs["distill_head"] is True
    keys = set(model.state_dict())
    assert set(plain.state_dict()) <= keys
    assert keys - set(plain.state_dict()) == {k for k in keys if ".kd." in k} != set()
    x = torch.randn(2, 3, 8, 8) * 2
    seen = {}
    head.register_forward_hook(lambda m, a, o: seen.__setitem__("h", a[0]))
    with torch.no_grad():               # training: the class head's logits, kd kept aside
        z = model(x)
        z_kd = head.pop_kd()
        assert seen["h"].abs().sum() > 0
        assert torch.allclose(z, plain(x), atol=1e-5)
        assert torch.allclose(z_kd, head.kd(seen["h"]), atol=1e-6)
        for _ in range(20):             # BN running statistics of the data (eval spikes)
            plain(x)
    model.load_state_dict(plain.state_dict(), strict=False)
    model.eval()
    plain.eval()
    with torch.no_grad():               # eval: the average of both heads
        out = model(x)
        want = (plain(x) + head.kd(seen["h"])) / 2
    assert torch.allclose(out, want, atol=1e-5)
    assert contract_problems(model, x) == []
    rebuilt = create_model(model.model_name, **model.model_kwargs)   # what a checkpoint does
    rebuilt.load_state_dict(model.state_dict())
    assert isinstance(distillation_head(rebuilt), DistillationHead)


def test_config_key_builds_the_head_and_a_non_linear_classifier_is_refused():
    cfg = build_config({}, ["model.name=spiking_resnet20", "model.T=2", "model.distill_head=true"])
    model = build_model(cfg.model, num_classes=5, in_channels=3)
    assert distillation_head(model) is not None
    model = create_model("spiking_resnet20", num_classes=5, T=2).eval()
    assert not add_distillation_head(model).training          # the model's mode is kept
    model = create_model("spiking_resnet20", num_classes=5, T=2)
    model.head[1] = nn.Sequential(nn.Linear(256, 5))          # classifier = head[1]
    with pytest.raises(ConfigError, match="model.distill_head"):
        add_distillation_head(model)


def test_per_timestep_head_outputs_are_averaged_like_the_logits():
    head = DistillationHead(3, 2)
    h = torch.randn(4, 5, 3)                      # [T, B, C], a classifier called per timestep
    head(h)
    want = head.kd(h).mean(0)
    assert torch.allclose(head.pop_kd(like=torch.zeros(5, 2)), want, atol=1e-6)
    head(h.reshape(20, 3))                        # [T B, C] (SeqToANN-style folding)
    assert torch.allclose(head.pop_kd(like=torch.zeros(5, 2)), want, atol=1e-6)
    head(torch.randn(3, 3))
    with pytest.raises(RuntimeError, match="does not match"):
        head.pop_kd(like=torch.zeros(5, 2))
