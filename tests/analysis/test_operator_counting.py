"""Operator-level counting (analysis/operators.py inside OpCounter): Spikformer's attention
products, VGGSNN's convs after its pools (a reshaped view of pooled spikes), a SEW block; golden
counts computed by hand from the spikes the layers saw, and SpikingJelly 2.0's ``SynOpCounter``
where both count the same thing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from spikedistill.analysis.counting import count_model
from spikedistill.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_helpers import calibrate_bn as _calibrate  # noqa: E402


def _tiny_spikformer():
    torch.manual_seed(0)
    m = create_model("spikformer_4_384", num_classes=5, T=2, dim=16, heads=2, depth=1,
                     taps=["sps", "block1"])
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    return _calibrate(m, x), x


def _attention_spikes(m, x):
    """Q, K, V spikes ``[T, B, heads, N, d]`` of the first block, from forward hooks."""
    seen = {}
    attn = m.blocks[0].attn
    hooks = [getattr(attn, k).register_forward_hook(
        lambda mod, a, o, k=k: seen.__setitem__(k, attn._split(o))) for k in "qkv"]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    return seen["q"], seen["k"], seen["v"]


def _rows(s, prefix):
    return {r["name"]: r for r in s["layers"] if r["name"].startswith(prefix)}


def test_spikformer_attention_products_golden():
    m, x = _tiny_spikformer()
    q, k, v = _attention_spikes(m, x)
    B, N = x.shape[0], q.shape[-2]
    assert 0 < float(q.mean()) < 1 and 0 < float(k.mean()) < 1 and 0 < float(v.mean()) < 1
    # Q K^T: both binary -> the number of (1, 1) products; (Q K^T) V: V binary -> nnz(V) * N
    qk = float(torch.einsum("tbhnd,tbhmd->", q.double(), k.double())) / B
    a = (q @ k.transpose(-2, -1)) * 0.125
    assert not bool(((a == 0) | (a == 1)).all())          # the scores are graded, not spikes
    av = float((v != 0).sum()) * N / B
    s = count_model(m, x)
    ops = _rows(s, "blocks.0.attn:")
    assert set(ops) == {"blocks.0.attn:bmm#0", "blocks.0.attn:bmm#1"}
    assert ops["blocks.0.attn:bmm#0"]["input_kind"] == "spike x spike"
    assert ops["blocks.0.attn:bmm#0"]["sops"] == pytest.approx(qk, rel=1e-12)
    assert ops["blocks.0.attn:bmm#1"]["input_kind"] == "spike"
    assert ops["blocks.0.attn:bmm#1"]["sops"] == pytest.approx(av, rel=1e-12)
    heads, d = q.shape[2], q.shape[-1]
    assert ops["blocks.0.attn:bmm#0"]["flops"] == N * d * N
    assert ops["blocks.0.attn:bmm#0"]["calls_per_image"] == 2 * heads      # T * heads
    assert all(r["macs"] == 0 for r in ops.values())
    # the energy includes them; the rest of the aten ops are listed, not dropped
    assert s["totals"]["sops"] >= qk + av
    assert "aten.native_batch_norm" in s["not_counted"] and "aten.bmm" not in s["not_counted"]
    assert "aten.max_pool2d_with_indices" in s["not_counted"]


def test_spikformer_products_agree_with_spikingjelly():
    """SpikingJelly's SynOpCounter counts the same bmm SOPs and, for the Linear layers fed by
    binary spikes (proj, fc2), the same addmm SOPs; it counts nothing for the layers fed by the
    integer residual stream (q, k, v, fc1: our MACs) nor for the real-valued stem."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    m, x = _tiny_spikformer()
    s = count_model(m, x)
    sj = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([sj]):
        m(x)
    glob = sj.get_counts()["Global"]
    aten = torch.ops.aten
    B = x.shape[0]
    ours_bmm = sum(r["sops"] for r in s["layers"] if r["type"] == "aten.bmm") * B
    assert ours_bmm > 0 and glob[aten.bmm.default] == pytest.approx(ours_bmm, rel=1e-12)
    spike_linears = [r for r in s["layers"] if r["type"] == "Linear"
                     and r["input_kind"] == "spike"]
    assert {r["name"] for r in spike_linears} >= {"blocks.0.attn.proj.linear",
                                                   "blocks.0.mlp.fc2.linear"}
    ours_lin = sum(r["sops"] for r in spike_linears) * B
    sj_lin = glob.get(aten.addmm.default, 0) + glob.get(aten.mm.default, 0)
    assert sj_lin == pytest.approx(ours_lin, rel=1e-9)


def test_vggsnn_convs_after_the_pools_are_spike_driven():
    """The 2x2 average pools feed the next stage a reshaped view of their output: those convs
    are SOPs (one op per non-zero pooled value and fan-out), not MACs."""
    torch.manual_seed(0)
    m = create_model("vggsnn", num_classes=10, T=2, in_channels=2)
    x = torch.randint(0, 3, (2, 2, 2, 16, 16), generator=torch.Generator().manual_seed(0)).float()
    _calibrate(m, x)
    seen = {}
    conv = m.stage2[0].conv
    h = conv.register_forward_hook(lambda mod, a, o: seen.__setitem__("x", a[0].detach()))
    s = count_model(m, x)
    h.remove()
    rows = {r["name"]: r for r in s["layers"]}
    after_pool = [f"stage{i}.0.conv" for i in (2, 3, 4)]
    assert all(rows[n]["input_kind"] == "pooled_spike" for n in after_pool)
    assert all(rows[n]["macs"] == 0 for n in after_pool)
    # golden: r * n * FLOPs, r = mean(pooled input != 0), n = T, FLOPs = C_out C_in 9 H W
    xin = seen["x"]
    assert not bool(((xin == 0) | (xin == 1)).all())       # graded k / 4 values
    r = float((xin != 0).double().mean())
    flops = 256 * 128 * 9 * 8 * 8
    assert rows["stage2.0.conv"]["sops"] == pytest.approx(r * 2 * flops, rel=1e-9)
    # only the event-count stem... is spike-driven too (events); the head reads the GAP mean
    assert s["totals"]["macs"] == rows["head"]["macs"] > 0


def test_conv_sops_equal_spikingjelly_away_from_the_border():
    """For a conv, our SOPs are ``rate * dense`` (padding positions counted as fan-out);
    SpikingJelly counts the exact weight uses. They agree when no spike touches the border and
    ours is larger otherwise."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    class Folded(nn.Module):           # spike frames [T, B, C, H, W] -> conv on [T*B, ...]
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(x.flatten(0, 1))

    net = Folded()
    x = torch.zeros(1, 1, 2, 6, 6)
    x[0, 0, 0, 2, 3] = x[0, 0, 1, 3, 2] = x[0, 0, 1, 4, 4] = 1.0
    border = x.clone()
    border[0, 0, 0, 0, 5] = 1.0                # a corner spike reaches 4 of its 9 taps
    for inp, equal in ((x, True), (border, False)):
        ours = count_model(net, inp)["layers"][0]["sops"]
        sj = SynOpCounter()
        with torch.no_grad(), DispatchCounterMode([sj]):
            net(inp)
        theirs = sj.get_total()
        assert (ours == pytest.approx(theirs)) if equal else ours > theirs
    assert count_model(net, x)["layers"][0]["sops"] == 3 * 3 * 9


def test_sew_block_golden():
    """SEW-ResNet (ADD): a block's conv1 is fed by spikes (SOPs = rate * T * FLOPs); the block
    output ``SN(...) + x`` is an integer sum of spikes, so the next block's conv1 is MACs (the
    convention; SpikingJelly's SynOpCounter counts it as nothing)."""
    torch.manual_seed(0)
    m = create_model("sew_resnet18", num_classes=5, T=2, width_mult=1)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2
    _calibrate(m, x)
    seen = {}
    hooks = [m.layer1[i].conv1.register_forward_hook(
        lambda mod, a, o, i=i: seen.__setitem__(i, a[0].detach())) for i in (0, 1)]
    s = count_model(m, x)
    for h in hooks:
        h.remove()
    rows = {r["name"]: r for r in s["layers"]}
    first, second = rows["layer1.0.conv1.0"], rows["layer1.1.conv1.0"]
    c = m.layer1[0].conv1[0]
    hw = seen[0].shape[-2] * seen[0].shape[-1]
    flops = c.out_channels * c.in_channels * 9 * hw
    assert first["flops"] == flops and first["input_kind"] == "spike"
    assert first["sops"] == pytest.approx(float(seen[0].mean()) * 2 * flops, rel=1e-9)
    assert float(seen[1].max()) > 1                     # ADD: spikes + spikes
    assert second["input_kind"] == "real" and second["macs"] == 2 * flops
