"""train.checkpoint_stages: recomputed stages give the unchecked run's gradients and BatchNorm
statistics, save less activation memory, and bad stage numbers are one ConfigError line."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spikedistill.config import build_config
from spikedistill.errors import ConfigError
from spikedistill.models import create_model
from spikedistill.models.checkpointing import (apply_checkpointing, resolve_stages,
                                               stage_modules)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from _tap_nets import tiny_snn_taps  # noqa: E402


def _sew(**kw):
    torch.manual_seed(0)
    return create_model("sew_resnet18", num_classes=5, T=2, width_mult=1, **kw)


def _batch(size=32, B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, size, size, generator=g) * 2, torch.randint(0, 5, (B,), generator=g)


def _step(model, x, y):
    """One train-mode forward + backward; ``(loss, {name: grad}, {name: buffer})``."""
    model.train()
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    bufs = {n: b.clone() for n, b in model.named_buffers()}
    return loss.detach(), grads, bufs


def _bn_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


MODELS = {
    "sew_resnet18": lambda: _sew(),
    "sew_resnet18_iand": lambda: _sew(connect="IAND"),
    "spiking_resnet20": lambda: (torch.manual_seed(0),
                                 create_model("spiking_resnet20", num_classes=5, T=2))[1],
    "tap_model": lambda: tiny_snn_taps(T=2),
    "spikformer": lambda: (torch.manual_seed(0),
                           create_model("spikformer_4_384", num_classes=5, T=2, dim=16,
                                        heads=2, depth=2))[1],
}


@pytest.mark.parametrize("which, stages", [("sew_resnet18", [2, 3]), ("sew_resnet18", "all"),
                                           ("sew_resnet18_iand", [1, 4]),
                                           ("spiking_resnet20", [1, 3]),
                                           ("tap_model", [2, 3]),
                                           ("spikformer", [1, 3])])
def test_gradients_and_bn_statistics_equal_the_unchecked_run(which, stages):
    plain = MODELS[which]()
    checked = copy.deepcopy(plain)
    names = apply_checkpointing(checked, stages)
    assert len(names) == (len(stage_modules(plain)) if stages == "all" else len(stages))
    x, y = _batch()
    for _ in range(2):                         # two steps: the second starts from updated stats
        l0, g0, b0 = _step(plain, x, y)
        l1, g1, b1 = _step(checked, x, y)
        assert torch.equal(l0, l1)
        assert g0.keys() == g1.keys() and len(g0) == len(list(plain.parameters()))
        for n in g0:
            assert torch.allclose(g0[n], g1[n], atol=1e-6, rtol=0), n
        assert any(g.abs().sum() > 0 for g in g0.values())
        # running statistics and num_batches_tracked updated once by the forward only
        assert b0.keys() == b1.keys()
        for n in b0:
            assert torch.equal(b0[n], b1[n]), n
    tracked = [b for n, b in checked.named_buffers() if n.endswith("num_batches_tracked")]
    assert tracked and all(int(t) == 2 for t in tracked)
    # state-dict keys unchanged: checkpoints of a checkpointed run load anywhere
    assert list(plain.state_dict()) == list(checked.state_dict())
    # evaluation (no grad) runs the stages plainly and gives the same logits
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), checked.eval()(x))


def test_bn_running_mean_after_one_step_is_the_forward_batch_mean():
    # the recompute must not move running_mean a second time: after one step from zero,
    # running_mean = momentum * (batch mean of the stage's first BN input), computed here by hand
    model = _sew()
    apply_checkpointing(model, [1])
    bn = model.layer1[0].conv1[1]
    seen = {}
    bn.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].detach().clone()))
    x, y = _batch()
    _step(model, x, y)
    expect = bn.momentum * seen["x"].mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expect, atol=1e-6)
    assert int(bn.num_batches_tracked) == 1


def _saved_bytes(model, x, y):
    """Bytes of the tensors autograd saves for backward during one forward."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return total[0]


def test_checkpointed_stages_save_less_for_backward():
    x, y = _batch()
    base = _saved_bytes(_sew(), x, y)
    m = _sew()
    apply_checkpointing(m, "all")
    every = _saved_bytes(m, x, y)
    m = _sew()
    apply_checkpointing(m, [1])
    one = _saved_bytes(m, x, y)
    assert every < one < base
    assert every < 0.5 * base


def test_stateful_spikingjelly_neurons_are_reset_after_the_recompute():
    # without the reset the recompute leaves each IFNode's v a tensor of the freed graph and
    # the second step fails ("backward through the graph a second time")
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron

    def build():
        torch.manual_seed(0)
        return create_model("spikingjelly/sew_resnet18", num_classes=5, T=2,
                            kwargs={"cnf": "ADD", "spiking_neuron": neuron.IFNode},
                            input_shape=(3, 32, 32))
    try:
        plain = build()
    except ConfigError as exc:              # the adapter takes no class objects in kwargs
        pytest.skip(str(exc))
    checked = build()
    apply_checkpointing(checked, [2, 3])
    x, y = _batch()
    for _ in range(2):
        _, g0, b0 = _step(plain, x, y)
        _, g1, b1 = _step(checked, x, y)
        for n in g0:
            assert torch.allclose(g0[n], g1[n], atol=1e-6, rtol=0), n
        for n in b0:
            assert torch.equal(b0[n], b1[n]), n
    # no membrane state left behind by the recompute
    v = [m.v for m in checked.net.modules() if isinstance(m, neuron.IFNode)]
    assert v and all(not torch.is_tensor(t) or float(t.abs().sum()) == 0.0 for t in v)


@pytest.mark.parametrize("spec, match", [([0], r"train.checkpoint_stages\[0\]"),
                                         ([2, 2], r"train.checkpoint_stages\[1\].*twice"),
                                         ("some", "train.checkpoint_stages"),
                                         (["a"], r"train.checkpoint_stages.*list\[int\]")])
def test_bad_stage_numbers_in_the_config(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_config({"train": {"checkpoint_stages": spec}})


def test_stage_beyond_the_model_is_one_config_error_line():
    with pytest.raises(ConfigError, match=r"train.checkpoint_stages\[1\].*4 stages") as exc:
        apply_checkpointing(_sew(), [2, 5])
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="3 stages"):
        apply_checkpointing(create_model("spiking_resnet20", num_classes=5, T=2), [4])
    assert resolve_stages("all", 3) == [0, 1, 2] and resolve_stages([3, 1], 4) == [0, 2]
    assert resolve_stages([], 4) == [] and resolve_stages(None, 4) == []


def test_the_engine_applies_the_config_and_defaults_to_none():
    from spikedistill.engine.build import build_student

    cfg = build_config({"model": {"name": "sew_resnet18", "T": 2, "width_mult": 1},
                        "train": {"checkpoint_stages": [2, 3]}})
    model = build_student(cfg, 5, 3, (3, 32, 32))
    marked = [getattr(getattr(model, f"layer{i}"), "_sd_checkpointed", False) for i in (1, 2, 3, 4)]
    assert marked == [False, True, True, False]
    cfg = build_config({"model": {"name": "sew_resnet18", "T": 2, "width_mult": 1}})
    assert cfg.train.checkpoint_stages == []
    model = build_student(cfg, 5, 3, (3, 32, 32))
    assert not any(getattr(m, "_sd_checkpointed", False) for m in model.modules())
    cfg = build_config({"train": {"checkpoint_stages": "all"}})
    assert cfg.train.checkpoint_stages == "all"


def test_spikformer_builds_without_stages_and_checkpoints_its_blocks():
    """Spikformer's taps (``sps``, ``blockN``) are not module paths: without
    ``checkpoint_stages`` nothing is looked up; with it the stages are ``sps, block1..blockL``."""
    from spikedistill.engine.build import build_student

    model = {"name": "spikformer_4_384", "T": 2, "kwargs": {"dim": 16, "heads": 2, "depth": 2}}
    plain = build_student(build_config({"model": model}), 5, 3, (3, 32, 32))
    assert not any(getattr(m, "_sd_checkpointed", False) for m in plain.modules())
    checked = build_student(build_config({"model": model, "train": {"checkpoint_stages": [3]}}),
                            5, 3, (3, 32, 32))
    assert [n for n, _ in stage_modules(checked)] == ["sps", "block1", "block2"]
    assert getattr(checked.blocks[1], "_sd_checkpointed", False)
    assert not getattr(checked.blocks[0], "_sd_checkpointed", False)
