"""``decay_input``: the LIF input scaled by ``1 - decay`` (SpikingJelly's ``decay_input=True``,
Spikformer's neuron), in the pure function, the module, the config and the Triton kernel.

    h[t] = decay * u[t-1] + (1 - decay) * x[t];  s[t] = [h[t] > thr];  u[t] = (1 - s[t]) h[t]

Peer: SpikingJelly 2.0's ``LIFNode(tau=2., decay_input=True, v_reset=0., detach_reset=...,
step_mode='m', surrogate_function=Sigmoid(alpha=4.))``, ``H = V + (X - V) / tau``; the Triton
kernel runs under ``TRITON_INTERPRET=1`` in a subprocess (as in ``test_triton_lif.py``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikedistill.config import NeuronConfig
from spikedistill.neurons import LIF, lif_multistep

REPO = Path(__file__).resolve().parents[2]


def _sig_grad(v, alpha=4.0):
    s = 1.0 / (1.0 + math.exp(-alpha * v))
    return alpha * s * (1.0 - s)


def test_golden_by_hand():
    """x = [1.5, 1.5, 3.0], decay 0.5: h = 0.75 (no spike), 0.375 + 0.75 = 1.125 (spike, reset),
    0 + 1.5 = 1.5 (spike). Without decay_input h[0] = 1.5 would already fire."""
    x = torch.tensor([1.5, 1.5, 3.0]).view(3, 1).requires_grad_(True)
    s = lif_multistep(x, decay=0.5, surrogate="sigmoid", alpha=4.0, detach_reset=True,
                      decay_input=True)
    assert s.view(-1).tolist() == [0.0, 1.0, 1.0]
    assert lif_multistep(x.detach(), decay=0.5).view(-1).tolist()[0] == 1.0
    # gradient of s[2] alone: ds2/dh2 = g(0.5); dh2/dx2 = 0.5; h2 does not depend on h1
    # (u1 = 0 * h1 with the reset detached: d u1 / d h1 = 1 - s1 = 0)
    (s[2].sum()).backward()
    want = [0.0, 0.0, 0.5 * _sig_grad(0.5)]
    assert x.grad.view(-1).tolist() == pytest.approx(want, abs=1e-7)


def test_gradient_through_membrane_by_hand():
    """x = [1.0, 1.0]: h0 = 0.5, h1 = 0.25 + 0.5 = 0.75 (no spikes). d s1 / d x0 =
    g(h1 - 1) * decay * d u0 / d h0 * 0.5, with u0 = (1 - s0) h0 and the reset in the graph:
    d u0 / d h0 = 1 - h0 * g(h0 - 1) = 1 - 0.5 g(-0.5)."""
    x = torch.tensor([1.0, 1.0]).view(2, 1).requires_grad_(True)
    s = lif_multistep(x, decay=0.5, surrogate="sigmoid", alpha=4.0, decay_input=True)
    assert s.view(-1).tolist() == [0.0, 0.0]
    s[1].sum().backward()
    g = _sig_grad(-0.25)
    du0 = 1.0 - 0.5 * _sig_grad(-0.5)
    assert x.grad.view(-1).tolist() == pytest.approx([0.25 * g * du0, 0.5 * g], abs=1e-7)


@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_matches_spikingjelly_lifnode(detach_reset, threshold):
    """Spikes and input gradients equal SpikingJelly's multi-step LIFNode(tau=2, decay_input)."""
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 4, 50, generator=g) * 1.2 + 1.0)
    up = torch.randn(6, 4, 50, generator=g)
    ref = sj_neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=threshold, v_reset=0.0,
                            detach_reset=detach_reset, step_mode="m",
                            surrogate_function=sj_surrogate.Sigmoid(alpha=4.0))
    x_ref = x.clone().requires_grad_(True)
    s_ref = ref(x_ref)
    (s_ref * up).sum().backward()
    ours = LIF(decay=0.5, threshold=threshold, surrogate="sigmoid", alpha=4.0,
               detach_reset=detach_reset, backend="torch", decay_input=True)
    x_ours = x.clone().requires_grad_(True)
    s_ours = ours(x_ours)
    (s_ours * up).sum().backward()
    assert 0.05 < s_ref.mean().item() < 0.95          # not a degenerate input
    assert torch.equal(s_ours, s_ref.detach())
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_other_decay_is_tau():
    """decay 0.75 <-> tau 4: c = 1 - decay = 1/tau (SpikingJelly LIFNode(tau=4))."""
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    x = torch.randn(5, 300, generator=torch.Generator().manual_seed(1)) * 2 + 1.5
    ref = sj_neuron.LIFNode(tau=4.0, decay_input=True, step_mode="m")(x)
    ours = lif_multistep(x, decay=0.75, surrogate="sigmoid", alpha=4.0, decay_input=True)
    assert 0.05 < ref.mean().item() < 0.95
    assert torch.equal(ours, ref)


def test_fire_at_threshold_by_hand():
    """h == threshold fires with fire_at_threshold (SpikingJelly's heaviside: x >= 0), not
    without: x = [1.0, 1.0], decay 0.5, decay_input, threshold 0.5 -> h0 = 0.5 exactly."""
    x = torch.tensor([1.0, 1.0]).view(2, 1)
    strict = lif_multistep(x, decay=0.5, threshold=0.5, decay_input=True)
    incl = lif_multistep(x, decay=0.5, threshold=0.5, decay_input=True, fire_at_threshold=True)
    # strict: h0 = 0.5 (no spike), h1 = 0.25 + 0.5 = 0.75 (spike); inclusive: h0 fires, u0 = 0,
    # h1 = 0.5 fires again
    assert strict.view(-1).tolist() == [0.0, 1.0]
    assert incl.view(-1).tolist() == [1.0, 1.0]
    assert "fire_at_threshold=True" in repr(LIF(fire_at_threshold=True))


def test_fire_at_threshold_matches_spikingjelly_on_discrete_input():
    """Spikformer's attention LIF sees multiples of 1/8 (``(Q K^T) V * 0.125``): SpikingJelly
    and ours agree exactly only with fire_at_threshold."""
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 17, (4, 2, 500), generator=g).float() * 0.125
    ref = sj_neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=0.5, detach_reset=True,
                            step_mode="m")(x)
    ours = lif_multistep(x, decay=0.5, threshold=0.5, surrogate="sigmoid", alpha=4.0,
                         detach_reset=True, decay_input=True, fire_at_threshold=True)
    strict = lif_multistep(x, decay=0.5, threshold=0.5, decay_input=True)
    assert torch.equal(ours, ref)
    assert not torch.equal(strict, ref)              # ties are common on this input


def test_config_reaches_the_neurons():
    """model.neuron.decay_input is a NeuronConfig field and every LIF of a built student has it."""
    from spikedistill.config import load_config
    from spikedistill.models import build_model

    cfg = load_config(None, ["model.neuron.decay_input=true", "model.name=spiking_resnet20",
                             "model.T=2"])
    assert cfg.model.neuron.decay_input is True
    assert NeuronConfig().decay_input is False
    model = build_model(cfg.model, num_classes=10, in_channels=3)
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert lifs and all(m.decay_input for m in lifs)
    assert "decay_input=True" in repr(lifs[0])


# ------------------------------------------------------------------------------------------
# Triton kernel under the interpreter (subprocess)
# ------------------------------------------------------------------------------------------

def _reference(x, decay, threshold, alpha, detach_reset, inclusive=False):
    """Independent fp32 loop with a sigmoid surrogate; the input scaled by (1 - decay)."""
    class _Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return ((v >= 0) if inclusive else (v > 0)).float()

        @staticmethod
        def backward(ctx, go):
            (v,) = ctx.saved_tensors
            sg = torch.sigmoid(alpha * v)
            return go * alpha * sg * (1 - sg)

    u = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = decay * u + (1 - decay) * x[t]
        s = _Spike.apply(h - threshold)
        keep = (1 - s).detach() if detach_reset else 1 - s
        u = keep * h
        out.append(s)
    return torch.stack(out)


def _worker() -> None:
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    results = {}
    g = torch.Generator().manual_seed(9)
    x = torch.randint(0, 17, (4, 1100), generator=g).float() * 0.125   # ties at h == 0.5
    up = torch.randn(4, 1100, generator=g)
    for incl in (True, False):
        xk = x.clone().requires_grad_(True)
        sk = lif_multistep_triton(xk, decay=0.5, threshold=0.5, surrogate="sigmoid", alpha=4.0,
                                  detach_reset=True, decay_input=True, fire_at_threshold=incl)
        (sk * up).sum().backward()
        xr = x.clone().requires_grad_(True)
        sr = _reference(xr, 0.5, 0.5, 4.0, True, inclusive=incl)
        (sr * up).sum().backward()
        same = torch.equal(sk, sr.detach())
        err = (xk.grad - xr.grad).abs().max().item()
        results[f"fire_at_threshold_{incl}"] = [same and err <= 1e-5 * xr.grad.abs().max().item(),
                                                f"spikes equal {same}, grad err {err:.3g}"]
    for name, (decay, thr, detach, dtype, tol) in {
        "tau2_detach_fp32": (0.5, 1.0, True, torch.float32, 1e-5),
        "tau2_attn_thr0p5_fp32": (0.5, 0.5, True, torch.float32, 1e-5),
        "decay0p7_nodetach_fp32": (0.7, 1.0, False, torch.float32, 1e-5),
        "tau2_detach_bf16": (0.5, 1.0, True, torch.bfloat16, 2e-2),
    }.items():
        g = torch.Generator().manual_seed(len(results) + 3)
        x = torch.randn(4, 1100, generator=g) * 1.5 + 1.2
        up = torch.randn(4, 1100, generator=g)
        xk = x.to(dtype).requires_grad_(True)
        sk = lif_multistep_triton(xk, decay=decay, threshold=thr, surrogate="sigmoid",
                                  alpha=4.0, detach_reset=detach, decay_input=True)
        (sk.float() * up).sum().backward()
        xr = xk.detach().float().requires_grad_(True)
        sr = _reference(xr, decay, thr, 4.0, detach)
        (sr * up).sum().backward()
        same = torch.equal(sk.float(), sr.detach())
        err = (xk.grad.float() - xr.grad).abs().max().item()
        scale = xr.grad.abs().max().item()
        rate = sr.mean().item()
        ok = same and err <= tol * scale and 0.05 < rate < 0.95
        results[name] = [ok, f"spikes equal {same}, grad err {err:.3g} / {scale:.3g}, "
                             f"rate {rate:.2f}"]
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interpreter_results():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO / "src"),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, "--worker"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["fire_at_threshold_True", "fire_at_threshold_False",
                                  "tau2_detach_fp32", "tau2_attn_thr0p5_fp32",
                                  "decay0p7_nodetach_fp32", "tau2_detach_bf16"])
def test_triton_kernel_decay_input(interpreter_results, case):
    ok, detail = interpreter_results[case]
    assert ok, detail


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker()
