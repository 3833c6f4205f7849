"""The LIF neuron against hand-computed spikes and gradients (method.md, "Student neuron")."""

import math

import pytest
import torch

from spikedistill.errors import ConfigError
from spikedistill.neurons import LIF, lif_multistep, resolve_backend
from spikedistill.neurons.surrogate import SURROGATES, spike


def _toy(detach_reset):
    # one neuron, T = 3, x = (0.8, 0.9, 0.3); L = 1*s0 + 2*s1 + 3*s2
    x = torch.tensor([0.8, 0.9, 0.3]).view(3, 1).requires_grad_(True)
    s = lif_multistep(x, detach_reset=detach_reset)
    (s.view(3) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    return s.detach().view(3).tolist(), x.grad.view(3).tolist()


def test_toy_spikes_and_bptt_gradients_through_the_reset():
    # Forward: h0 = 0.8 (no spike); h1 = 0.5*0.8 + 0.9 = 1.3 (spike, reset to 0); h2 = 0.3.
    # Backward, sg(h) = max(0, 1 - |h - 1|), reset not detached (u = (1 - s) h):
    #   dL/dh2 = 3 * sg(0.3) = 0.9;           gu1 = 0.5 * 0.9 = 0.45
    #   dL/dh1 = (2 - 0.45 * 1.3) * sg(1.3) + 0.45 * (1 - 1) = 1.415 * 0.7 = 0.9905
    #   gu0 = 0.5 * 0.9905 = 0.49525
    #   dL/dh0 = (1 - 0.49525 * 0.8) * sg(0.8) + 0.49525 * 1 = 0.97829
    spikes, grads = _toy(detach_reset=False)
    assert spikes == [0.0, 1.0, 0.0]
    assert grads == pytest.approx([0.97829, 0.9905, 0.9], abs=1e-6)


def test_toy_gradients_with_detached_reset():
    #   dL/dh2 = 0.9; gu1 = 0.45; dL/dh1 = 2 * 0.7 + 0 = 1.4; gu0 = 0.7
    #   dL/dh0 = 1 * 0.8 + 0.7 * 1 = 1.5
    spikes, grads = _toy(detach_reset=True)
    assert spikes == [0.0, 1.0, 0.0]
    assert grads == pytest.approx([1.5, 1.4, 0.9], abs=1e-6)


def test_t1_is_a_heaviside_step_with_strict_threshold():
    x = torch.tensor([[-1.0, 0.5, 1.0, 1.0001, 3.0]])
    assert lif_multistep(x).tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]


def test_gradient_only_inside_the_triangle_window():
    x = torch.linspace(-1.5, 3.5, 101).view(1, -1).requires_grad_(True)
    lif_multistep(x).sum().backward()
    g = x.grad.view(-1)
    inside = (x.detach().view(-1) - 1.0).abs() < 1.0
    assert torch.all(g[~inside] == 0)
    assert torch.all(g[inside] > 0)
    # T = 1: dL/dx = sg(x) = 1 - |x - 1| inside the window
    assert torch.allclose(g[inside], 1 - (x.detach().view(-1)[inside] - 1).abs(), atol=1e-6)


def test_membrane_decay_and_reset_over_time():
    # constant input 0.6: h = 0.6, 0.9, 1.05 (spike, reset), 0.6, 0.9, 1.05 ...
    x = torch.full((6, 1), 0.6)
    assert lif_multistep(x).view(-1).tolist() == [0, 0, 1, 0, 0, 1]


@pytest.mark.parametrize("name, smooth", [
    ("sigmoid", lambda v, a: torch.sigmoid(a * v)),
    ("atan", lambda v, a: torch.atan(math.pi / 2 * a * v) / math.pi + 0.5),
])
def test_smooth_surrogates_are_derivatives_of_their_primitives(name, smooth):
    alpha = 3.0
    v = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    spike(v, name, alpha).sum().backward()
    v2 = v.detach().clone().requires_grad_(True)
    smooth(v2, alpha).sum().backward()
    assert torch.allclose(v.grad, v2.grad, atol=1e-10)


def test_surrogates_share_the_exact_forward_step():
    v = torch.tensor([-0.5, 0.0, 0.5])
    for name in SURROGATES:
        assert spike(v, name).tolist() == [0.0, 0.0, 1.0]


def test_module_matches_function_and_keeps_shape_and_dtype():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3, 5, 5) * 1.5
    m = LIF(decay=0.25, threshold=0.7, surrogate="atan", alpha=2.0)
    out = m(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, lif_multistep(x, decay=0.25, threshold=0.7, surrogate="atan", alpha=2.0))
    xb = x.bfloat16()
    assert m(xb).dtype == torch.bfloat16


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="surrogate"):
        LIF(surrogate="square")
    with pytest.raises(ConfigError, match="backend"):
        LIF(backend="cuda")
    with pytest.raises(ValueError, match=r"\[T, B, ...\]"):
        lif_multistep(torch.ones(3))


def test_auto_backend_falls_back_to_torch_on_cpu():
    assert resolve_backend("auto", torch.ones(2, 2)) == "torch"
    assert LIF(backend="auto")(torch.full((1, 3), 2.0)).tolist() == [[1.0, 1.0, 1.0]]


def test_agrees_with_the_reference_release_neuron(reference_step):
    torch.manual_seed(1)
    x = (torch.randn(3, 4, 6) * 1.2 + 0.6)            # [B, T, N] for the reference
    xr = x.clone().requires_grad_(True)
    xo = x.transpose(0, 1).contiguous().requires_grad_(True)   # ours: [T, B, N]
    w = torch.randn(3, 4, 6)
    s_ref = reference_step.ReferenceLIF()(xr)
    s_ours = lif_multistep(xo)
    assert torch.equal(s_ref, s_ours.transpose(0, 1))
    (s_ref * w).sum().backward()
    (s_ours * w.transpose(0, 1)).sum().backward()
    assert torch.allclose(xr.grad, xo.grad.transpose(0, 1), atol=1e-6)


def test_bf16_input_gives_the_spikes_of_an_fp32_membrane():
    # h is accumulated in fp32: bf16 rounding of h must not flip spikes near the threshold
    torch.manual_seed(3)
    x = (torch.randn(4, 4096) * 0.6 + 0.5).bfloat16()
    assert torch.equal(lif_multistep(x).float(), lif_multistep(x.float()))


class _NoLaunch:
    """A Triton kernel whose launch fails like Triton's without a C compiler."""

    def __init__(self):
        self.launches = 0

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches += 1
            raise RuntimeError("Failed to find C compiler. Please specify via CC environment "
                               "variable or set triton.knobs.build.impl.")
        return launch


@pytest.fixture
def cuda_without_a_launchable_kernel(monkeypatch):
    """Simulates a CUDA tensor with Triton importable whose forward kernel cannot launch."""
    pytest.importorskip("triton")
    from spikedistill.neurons import lif as lif_mod
    from spikedistill.neurons import triton_lif

    kernel = _NoLaunch()
    monkeypatch.setattr(lif_mod, "_on_cuda", lambda x: True)
    monkeypatch.setattr(triton_lif, "triton_available", lambda tensor=None: (True, ""))
    monkeypatch.setattr(triton_lif, "_lif_fwd_kernel", kernel)
    triton_lif._reset_launch_failure()
    yield kernel
    triton_lif._reset_launch_failure()


def test_auto_backend_falls_back_to_torch_when_the_kernel_cannot_launch(
        cuda_without_a_launchable_kernel):
    from spikedistill.neurons import triton_lif

    kernel = cuda_without_a_launchable_kernel
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 2, 3, 5, generator=g) * 0.8 + 0.6).requires_grad_(True)
    gs = torch.randn(x.shape, generator=g)
    neuron = LIF(backend="auto")
    with pytest.warns(RuntimeWarning) as caught:
        s = neuron(x)
    s.backward(gs)
    assert kernel.launches == 1
    msgs = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert msgs == [
        "spikedistill: the Triton LIF forward kernel failed to compile or launch on cpu "
        "(RuntimeError: Failed to find C compiler. Please specify via CC environment variable "
        "or set triton.knobs.build.impl.); to fix it, install a C compiler (e.g. apt-get install "
        "gcc) or point the CC environment variable at one: Triton builds its launcher with it "
        "at the first launch. The LIF neuron runs its torch loop instead (same spikes and "
        "gradients, slower); set model.neuron.backend=torch to choose it and silence this, or "
        "=triton to make it an error."]
    assert triton_lif.launch_failure() is not None
    # the torch loop's spikes and gradients
    xr = x.detach().clone().requires_grad_(True)
    sr = LIF(backend="torch")(xr)
    sr.backward(gs)
    assert torch.equal(s, sr) and torch.equal(x.grad, xr.grad)
    # later calls use torch at once: no second launch, no second warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(neuron(x.detach()), sr.detach())
    assert kernel.launches == 1


def test_explicit_triton_backend_still_fails_loudly(cuda_without_a_launchable_kernel):
    from spikedistill.neurons.triton_lif import TritonLaunchError

    with pytest.raises(TritonLaunchError, match=r"forward kernel failed to compile or launch .*"
                                                r"Failed to find C compiler.*install a C compiler"):
        LIF(backend="triton")(torch.full((2, 3), 0.7))
    assert cuda_without_a_launchable_kernel.launches == 1
