"""Spikformer students (models/zoo/spikformer.py): parameter counts against the paper, block
shapes and counts written out by hand, Spikformer's neurons, a block against a reference built
from SpikingJelly's LIFNode, the token-grid taps and their SAM, model.kwargs plumbing."""

from __future__ import annotations

import math

import pytest
import torch

from spikedistill.distill.functional import spike_activation_map
from spikedistill.errors import ConfigError
from spikedistill.models import create_model
from spikedistill.neurons import LIF


def _count(m):
    return sum(p.numel() for p in m.parameters())


def hand_count(depth, D, K, qkv_bias=True, mlp_ratio=4):
    """Parameters of the repo's CIFAR model, written out (LayerNorms norm1/norm2 left out: built
    but never called in ``cifar10/model.py``)."""
    widths = [3, D // 8, D // 4, D // 2, D]
    sps = sum(widths[i] * widths[i + 1] * 9 + 2 * widths[i + 1] for i in range(4))
    sps += D * D * 9 + 2 * D                                   # rpe conv + BN
    qkv = 3 * (D * D + (D if qkv_bias else 0) + 2 * D)         # Linear + BN1d each
    proj = D * D + D + 2 * D
    H = mlp_ratio * D
    mlp = (D * H + H + 2 * H) + (H * D + D + 2 * D)
    return sps + depth * (qkv + proj + mlp) + D * K + K


def test_spikformer_4_384_matches_the_paper():
    """Paper (Zhou et al., ICLR 2023, Table CIFAR): Spikformer-4-384, 9.32 M parameters. The
    count is the CIFAR-10 model's (K = 10): 9,324,730; with CIFAR-100's head (K = 100) it is
    90 * 385 = 34,650 more, 9,359,380 (9.36 M) -- the paper lists one count for both."""
    m10 = create_model("spikformer_4_384", num_classes=10)
    m100 = create_model("spikformer_4_384", num_classes=100)
    assert _count(m10) == hand_count(4, 384, 10) == 9_324_730
    assert _count(m100) == hand_count(4, 384, 100) == 9_359_380
    assert round(_count(m10) / 1e6, 2) == 9.32
    assert _count(m100) - _count(m10) == 90 * 385


@pytest.mark.parametrize("name,paper", [("spikformer_8_384", 16.81), ("spikformer_8_512", 29.68)])
def test_8_layer_sizes_match_the_paper_imagenet_table(name, paper):
    """The paper gives 8-384 and 8-512 for ImageNet only (K = 1000; ``imagenet/model.py`` has
    bias-free Q/K/V and the same SPS convolutions, whose count does not depend on the image
    size): 16,816,024 and 29,689,384, which the paper truncates to 16.81 M and 29.68 M."""
    m = create_model(name, num_classes=1000, qkv_bias=False)
    depth, D = 8, int(name.split("_")[-1])
    assert _count(m) == hand_count(depth, D, 1000, qkv_bias=False)
    assert math.floor(_count(m) / 1e4) / 100 == paper


def test_block_shapes_and_counts_by_hand():
    D, T, B = 64, 2, 3
    m = create_model("spikformer_4_384", num_classes=10, T=T, depth=2, dim=D)
    shapes = {}
    for i, lif in enumerate(m.sps.lifs):
        lif.register_forward_hook(lambda mod, inp, out, i=i: shapes.__setitem__(i, tuple(out.shape)))
    logits, feats = m(torch.randn(B, 3, 32, 32), return_features=True)
    assert shapes == {0: (T, B, 8, 32, 32), 1: (T, B, 16, 32, 32), 2: (T, B, 32, 32, 32),
                      3: (T, B, 64, 16, 16)}               # pools after LIF 2 and LIF 3
    assert m.feature_names == ("sps", "block1", "block2")
    assert [tuple(f.shape) for f in feats] == [(T, B, D, 8, 8)] * 3
    assert logits.shape == (B, 10)
    blk = m.blocks[0]
    assert _count(blk.attn) == 4 * (D * D + D) + 4 * 2 * D
    assert _count(blk.mlp) == (D * 4 * D + 4 * D) + 2 * 4 * D + (4 * D * D + D) + 2 * D
    assert _count(m.sps) == 3 * 8 * 9 + 8 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9 \
        + 2 * (8 + 16 + 32 + 64 + 64)
    assert m.heads == 2 and blk.attn.heads == 2 and blk.attn.scale == 0.125


def test_spikformer_neurons():
    """SpikingJelly MultiStepLIFNode(tau=2, detach_reset=True) everywhere (decay 0.5, input
    scaled by 1/2, sigmoid surrogate alpha 4, fire at >=), the attention LIF at 0.5."""
    L = 3
    m = create_model("spikformer_4_384", num_classes=10, depth=L, dim=32,
                     neuron={"decay": 0.9, "surrogate": "triangle", "backend": "torch"})
    lifs = [mod for _, mod in m.spiking_modules()]
    assert len(lifs) == 5 + L * (3 + 1 + 1 + 2)
    for lif in lifs:
        assert (lif.decay, lif.decay_input, lif.detach_reset, lif.surrogate, lif.alpha,
                lif.fire_at_threshold, lif.backend) == (0.5, True, True, "sigmoid", 4.0, True,
                                                        "torch")
    assert sorted(l.threshold for l in lifs).count(0.5) == L
    own = create_model("spikformer_4_384", num_classes=10, depth=1, dim=32,
                       neuron={"decay": 0.9}, neuron_preset="config")
    assert all(l.decay == 0.9 for _, l in own.spiking_modules())


def _sj_block_reference(blk, x):
    """The repo's Block.forward, written with SpikingJelly 2.0's multi-step LIFNode
    (tau=2, detach_reset=True, v_threshold 1 / 0.5) and our block's weights."""
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")

    def lif(v, thr=1.0):
        return neuron.LIFNode(tau=2.0, detach_reset=True, v_threshold=thr, step_mode="m")(v)

    def lbl(layer, v):  # Linear -> BN1d over [TB, C, N] -> LIF
        T, B, N, _ = v.shape
        y = layer.linear(v.flatten(0, 1))
        y = layer.bn(y.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, -1)
        return lif(y.contiguous())

    T, B, N, C = x.shape
    h = blk.attn.heads

    def split(s):
        return s.reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4)

    q, k, v = split(lbl(blk.attn.q, x)), split(lbl(blk.attn.k, x)), split(lbl(blk.attn.v, x))
    a = ((q @ k.transpose(-2, -1)) * 0.125) @ v
    a = lif(a.transpose(2, 3).reshape(T, B, N, C), 0.5)
    x = x + lbl(blk.attn.proj, a)
    return x + lbl(blk.mlp.fc2, lbl(blk.mlp.fc1, x))


def test_block_matches_spikingjelly_reference():
    torch.manual_seed(0)
    m = create_model("spikformer_4_384", num_classes=10, T=3, depth=1, dim=64, heads=4)
    blk = m.blocks[0].train()
    x = (torch.rand(3, 2, 16, 64) < 0.3).float()          # spike tokens [T, B, N, C]
    with torch.no_grad():
        for mod in blk.modules():                         # BN gains large enough to spike
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.weight.fill_(4.0)
                mod.bias.fill_(1.0)
        ours = blk(x)
        ref = _sj_block_reference(blk, x)
    attn_in = []
    blk.attn.attn_lif.register_forward_hook(lambda mod, i, o: attn_in.append(o.mean().item()))
    with torch.no_grad():
        blk(x)
    assert 0.01 < attn_in[0] < 0.99                       # the attention LIF does fire
    assert torch.equal(ours, ref)


def test_taps_are_token_grids_and_sam_counts_spikes_per_patch():
    """F[t, b, c, i, j] = X[t, b, i w + j, c]; SAM M[b, i, j] = sum_t sum_c X[t, b, i w + j, c]."""
    torch.manual_seed(1)
    m = create_model("spikformer_4_384", num_classes=10, T=2, depth=2, dim=32,
                     taps=["sps", "block1", "block2"]).eval()
    seen = {}
    m.blocks[1].register_forward_hook(lambda mod, i, o: seen.__setitem__("tokens", o))
    x = torch.randn(2, 3, 16, 16)
    logits, feats = m(x, return_features=True)
    X = seen["tokens"]                                    # [T, B, N, C], N = 4 * 4
    F = feats[-1]
    for i in range(4):
        for j in range(4):
            assert torch.equal(F[:, :, :, i, j], X[:, :, i * 4 + j, :])
    sam = spike_activation_map(F)
    want = X.sum(dim=(0, 3)).view(2, 4, 4)
    assert torch.equal(sam, want)
    assert torch.allclose(m.pool(F), X.mean(dim=(0, 2)))
    assert torch.allclose(logits, m.head(X.mean(dim=(0, 2))), atol=1e-6)
    assert torch.equal(m.classifier_weight(), m.head.weight)


def test_direct_encoding_equals_the_repos_repeat():
    """Stem conv once, repeated T times == the repo's image repeated T times, then SPS."""
    torch.manual_seed(2)
    m = create_model("spikformer_4_384", num_classes=10, T=3, depth=1, dim=32).eval()
    x = torch.randn(2, 3, 16, 16)
    frames = x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
    with torch.no_grad():
        assert torch.allclose(m(x), m(frames), atol=1e-6)


def test_kwargs_reach_the_model_through_the_config():
    from spikedistill.config import load_config
    from spikedistill.models import build_model

    cfg = load_config(None, ["model.name=spikformer_8_512", "model.T=2",
                             "model.kwargs={depth: 1, dim: 48, heads: 3, mlp_ratio: 2}"])
    m = build_model(cfg.model, num_classes=7, in_channels=3)
    assert (m.depth, m.dim, m.heads, m.mlp_ratio, m.T) == (1, 48, 3, 2.0, 2)
    assert m.model_kwargs["dim"] == 48
    again = create_model(m.model_name, **m.model_kwargs)   # what a checkpoint rebuilds
    assert _count(again) == _count(m)
    bad = load_config(None, ["model.name=spikformer_4_384", "model.kwargs={T: 3}"])
    with pytest.raises(ConfigError, match="model.kwargs.T"):
        build_model(bad.model, num_classes=7, in_channels=3)


@pytest.mark.parametrize("kw,key", [({"dim": 36}, "model.kwargs.dim"),
                                    ({"dim": 64, "heads": 3}, "model.kwargs.heads"),
                                    ({"taps": ["block9"]}, "model.kwargs.taps"),
                                    ({"last_activation": "lif"}, "model.last_activation"),
                                    ({"neuron_preset": "x"}, "model.kwargs.neuron_preset")])
def test_bad_sizes_are_config_errors(kw, key):
    with pytest.raises(ConfigError, match=key):
        create_model("spikformer_4_384", num_classes=10, **kw)


def test_width_mult_is_32_channels_per_unit():
    m = create_model("spikformer_4_384", num_classes=5, T=2, width_mult=1)
    assert (m.dim, m.heads, m.depth) == (32, 1, 4)
    assert isinstance(m.spiking_modules()[0][1], LIF)
