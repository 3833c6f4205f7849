"""Tests of the fused Triton LIF kernel (spikedistill.neurons.triton_lif).

The kernel checks run through Triton's CPU interpreter in a *subprocess* started with
``TRITON_INTERPRET=1`` (Triton latches that flag when a kernel is decorated, so setting it in
this process could change how other test modules' kernels behave).  The subprocess is this
file run as a script with ``--worker``: it runs every case in ``CASES`` once and prints one
JSON object ``{case: [ok, detail]}``; each case is then one pytest test.  On a machine with
CUDA the same comparisons also run natively, in-process, at a larger shape.

The expected values come from ``reference_lif``, an independent pure-torch loop written here
(fp32 arithmetic, autograd through the reset):

    h[t] = decay * u[t-1] + x[t];  s[t] = [h[t] > threshold];  u[t] = (1 - s[t]) * h[t]
    ds/dh := surrogate(h - threshold) in backward; detach_reset stops the gradient of (1 - s).
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

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

# ------------------------------------------------------------------------------------------
# Independent reference
# ------------------------------------------------------------------------------------------


def surrogate_ref(v: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
    if name == "triangle":
        return (1.0 / alpha - v.abs() / alpha ** 2).clamp(min=0)
    if name == "sigmoid":
        sig = torch.sigmoid(alpha * v)
        return alpha * sig * (1 - sig)
    if name == "atan":
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * v) ** 2)
    raise ValueError(name)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, name, alpha):
        ctx.save_for_backward(v)
        ctx.name, ctx.alpha = name, alpha
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * surrogate_ref(v, ctx.name, ctx.alpha), None, None


def reference_lif(x, decay=0.5, threshold=1.0, surrogate="triangle", alpha=1.0,
                  detach_reset=False):
    """fp32 loop over T on x [T, ...]; returns fp32 spikes (differentiable w.r.t. x)."""
    u = torch.zeros_like(x[0], dtype=torch.float32)
    out = []
    for t in range(x.shape[0]):
        h = decay * u + x[t].float()
        s = _Spike.apply(h - threshold, surrogate, alpha)
        keep = 1.0 - s
        if detach_reset:
            keep = keep.detach()
        u = keep * h
        out.append(s)
    return torch.stack(out)


def compare(x, gs, *, dtype, rtol, **kw):
    """Run kernel and reference on the same input / upstream gradient; return (ok, detail)."""
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    xk = x.detach().to(dtype).requires_grad_(True)
    xr = xk.detach().float().requires_grad_(True)
    s_k = lif_multistep_triton(xk, **kw)
    s_r = reference_lif(xr, **kw)
    g = gs.to(dtype)
    s_k.backward(g)
    s_r.backward(g.float())
    problems = []
    if s_k.dtype != dtype or s_k.shape != x.shape:
        problems.append(f"spikes {s_k.dtype} {tuple(s_k.shape)}")
    if not torch.equal(s_k.float(), s_r.detach()):
        problems.append(f"{int((s_k.float() != s_r).sum())} spikes differ")
    gk, gr = xk.grad.float(), xr.grad
    scale = gr.abs().max().item()
    err = (gk - gr).abs().max().item()
    if xk.grad.dtype != dtype:
        problems.append(f"grad dtype {xk.grad.dtype}")
    if not err <= rtol * max(scale, 1e-30) or not torch.isfinite(gk).all():
        problems.append(f"grad max err {err:.3g} vs max |ref| {scale:.3g} (rtol {rtol})")
    if scale > 0 and gk.abs().max().item() == 0:
        problems.append("kernel gradient is all zero, reference is not")
    # per time step: a step whose reference gradient is non-zero must not come back all zero
    for t in range(x.shape[0]):
        if gr[t].abs().max() > 0 and gk[t].abs().max() == 0:
            problems.append(f"kernel gradient all zero at t={t}")
    rate = s_r.detach().mean().item()
    if x.numel() >= 64 and not 0.02 < rate < 0.98:
        problems.append(f"test input degenerate: firing rate {rate:.3f}")
    return not problems, "; ".join(problems) or f"ok (rate {rate:.2f}, grad err {err:.2g})"


# ------------------------------------------------------------------------------------------
# Cases (run in the interpreter subprocess, and on CUDA in-process when present)
# ------------------------------------------------------------------------------------------

TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}
DTYPE_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def case_golden(device):
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    x = torch.tensor([0.8, 0.9, 0.3], device=device).view(3, 1).requires_grad_(True)
    s = lif_multistep_triton(x)
    (s.view(3) * torch.tensor([1.0, 2.0, 3.0], device=device)).sum().backward()
    got_s, got_g = s.view(3).tolist(), x.grad.view(3).tolist()
    ok = got_s == [0.0, 1.0, 0.0] and all(
        abs(a - b) <= 1e-5 for a, b in zip(got_g, [0.97829, 0.9905, 0.9]))
    return ok, f"spikes {got_s}, grads {[round(g, 6) for g in got_g]}"


def case_heaviside_t1(device):
    """T = 1: a single Heaviside step; grad = triangle(h - 1) = 1 - |h - 1| clipped at 0."""
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    x = torch.tensor([[1.0, 1.5, 0.2, 2.5, -3.0]], device=device).requires_grad_(True)
    s = lif_multistep_triton(x)
    s.sum().backward()
    got_s, got_g = s.view(-1).tolist(), x.grad.view(-1).tolist()
    want_g = [1.0, 0.5, 0.2, 0.0, 0.0]
    ok = got_s == [0.0, 1.0, 0.0, 1.0, 0.0] and all(
        abs(a - b) <= 1e-6 for a, b in zip(got_g, want_g))
    return ok, f"spikes {got_s}, grads {got_g}"


def _random_case(T, shape, dtype_name, surrogate, detach, device, seed, decay=0.5, threshold=1.0,
                 alpha=None):
    alpha = {"triangle": 1.0, "sigmoid": 4.0, "atan": 2.0}[surrogate] if alpha is None else alpha
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, *shape, generator=g) * 0.8 + 0.6).to(device)
    gs = torch.randn(T, *shape, generator=g).to(device)
    return compare(x, gs, dtype=DTYPE_NAMES[dtype_name], rtol=TOL[DTYPE_NAMES[dtype_name]],
                   decay=decay, threshold=threshold, surrogate=surrogate, alpha=alpha,
                   detach_reset=detach)


def _make_random_cases():
    cases = {}
    # (T, shape): odd sizes, below / above / not a multiple of BLOCK (1024)
    shapes = [(1, (3, 5, 7)), (2, (1029,)), (4, (2, 1100)), (4, (7, 3))]
    seed = 0
    for T, shape in shapes:
        for dtype_name in ("fp32", "bf16"):
            for detach in (False, True):
                seed += 1
                name = f"random_T{T}_{'x'.join(map(str, shape))}_{dtype_name}_detach{int(detach)}"
                cases[name] = (lambda dev, T=T, shape=shape, dn=dtype_name, d=detach, sd=seed:
                               _random_case(T, shape, dn, "triangle", d, dev, sd))
    for surrogate in ("sigmoid", "atan"):
        for dtype_name in ("fp32", "bf16"):
            seed += 1
            cases[f"surrogate_{surrogate}_T4_{dtype_name}"] = (
                lambda dev, s=surrogate, dn=dtype_name, sd=seed:
                _random_case(4, (300,), dn, s, False, dev, sd))
    cases["fp16_T4_detach0"] = lambda dev: _random_case(4, (513,), "fp16", "triangle", False,
                                                        dev, 101)
    cases["decay_0p3_threshold_0p7_alpha_0p8"] = lambda dev: _random_case(
        4, (400,), "fp32", "triangle", False, dev, 102, decay=0.3, threshold=0.7, alpha=0.8)
    return cases


def case_noncontiguous(device):
    g = torch.Generator().manual_seed(7)
    base = torch.randn(5, 4, 6, generator=g).to(device) * 0.8 + 0.6
    x = base.transpose(0, 1)            # [T=4, 5, 6], not contiguous
    gs = torch.randn(6, 5, 4, generator=g).to(device).permute(2, 1, 0)  # also not contiguous
    assert not x.is_contiguous() and not gs.is_contiguous()
    return compare(x, gs, dtype=torch.float32, rtol=1e-5)


def case_channels_last_layout(device):
    """[T*B, C, H, W] channels_last viewed as [T, B, C, H, W] runs in place (no copy): the
    spikes keep the input's strides; an upstream gradient in another layout is handled."""
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    g = torch.Generator().manual_seed(11)
    T, B, C, H, W = 2, 3, 5, 4, 6
    base = (torch.randn(T * B, C, H, W, generator=g) * 0.8 + 0.6).to(device)
    x = base.to(memory_format=torch.channels_last).view(T, B, C, H, W)
    assert not x.is_contiguous()
    xk = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    s = lif_multistep_triton(xk)
    same_layout = s.stride() == x.stride()
    gs = torch.randn(T, B, C, H, W, generator=g).to(device)     # contiguous: other layout
    ok, detail = compare(x, gs, dtype=torch.float32, rtol=1e-5)
    expanded = torch.full((1, 7), 1.5, device=device).expand(3, 7)  # overlapping -> copied
    e_ok = lif_multistep_triton(expanded).tolist() == [[1.0] * 7, [1.0] * 7, [1.0] * 7]
    return ok and same_layout and e_ok, (f"{detail}; output strides {s.stride()} vs input "
                                         f"{x.stride()}; expanded input ok: {e_ok}")


def case_detach_flag_matters(device):
    """detach_reset changes the gradient (the flag reaches the kernel), spikes do not change."""
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 200, generator=g) * 0.8 + 0.6).to(device)
    grads, spikes = [], []
    for detach in (False, True):
        xx = x.clone().requires_grad_(True)
        s = lif_multistep_triton(xx, detach_reset=detach)
        s.sum().backward()
        grads.append(xx.grad)
        spikes.append(s.detach())
    diff = (grads[0] - grads[1]).abs().max().item()
    ok = torch.equal(spikes[0], spikes[1]) and diff > 1e-3
    return ok, f"max grad difference {diff:.3g}"


def case_inference_and_empty(device):
    """No grad required -> spikes only; empty neuron dimension -> empty output."""
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    g = torch.Generator().manual_seed(5)
    x = (torch.randn(4, 1500, generator=g) * 0.8 + 0.6).to(device)
    s = lif_multistep_triton(x)
    with torch.no_grad():
        s2 = lif_multistep_triton(x.clone().requires_grad_(True))
    ref = reference_lif(x)
    e = lif_multistep_triton(torch.zeros(3, 0, 4, device=device))
    ok = (torch.equal(s, ref) and torch.equal(s2, ref) and not s.requires_grad
          and tuple(e.shape) == (3, 0, 4))
    return ok, f"inference spikes equal: {torch.equal(s, ref)}, empty shape {tuple(e.shape)}"


def case_fp16_overflow_no_nan(device):
    """A 16-bit v that overflows (|h| = inf) must not turn the gradient into NaN."""
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    # h1 = -120000 -> v = h1 - 1 rounds to -inf in fp16; surrogate(-inf) = 0, and the last
    # step has gu = 0: an unguarded "(gs - gu * h) * sg" would give 0 * inf = NaN.
    x = torch.tensor([[-60000.0], [-60000.0]], device=device, dtype=torch.float16)
    x.requires_grad_(True)
    s = lif_multistep_triton(x, decay=1.0)
    s.float().sum().backward()
    ok = s.view(-1).tolist() == [0.0, 0.0] and bool(torch.isfinite(x.grad).all())
    return ok, f"spikes {s.view(-1).tolist()}, grad {x.grad.view(-1).tolist()}"


def case_backward_fallback_matches_kernel(device):
    """A backward kernel that cannot launch, with fallback (the neuron's ``auto``): the torch
    BPTT from the saved v gives the kernel's own gradients, with one RuntimeWarning; without
    fallback the failure is a TritonLaunchError."""
    import warnings

    from spikedistill.neurons import triton_lif as tlif

    class NoLaunch:
        def __getitem__(self, grid):
            def launch(*a, **k):
                raise RuntimeError("Failed to find C compiler. Please specify via CC "
                                   "environment variable.")
            return launch

    problems = []
    g = torch.Generator().manual_seed(5)
    real = tlif._lif_bwd_kernel
    try:
        for dtype in (torch.float32, torch.bfloat16):
            for surrogate, detach, incl in (("triangle", False, False), ("triangle", True, True),
                                            ("sigmoid", False, False)):
                alpha = 4.0 if surrogate == "sigmoid" else 1.0
                x = (torch.randn(4, 3, 170, generator=g) * 0.8 + 0.6).to(device, dtype)
                gs = torch.randn(x.shape, generator=g).to(device, dtype)
                kw = dict(surrogate=surrogate, alpha=alpha, detach_reset=detach,
                          fire_at_threshold=incl, decay_input=incl)
                xk = x.clone().requires_grad_(True)
                tlif.lif_multistep_triton(xk, **kw).backward(gs)
                tlif._lif_bwd_kernel = NoLaunch()
                tlif._reset_launch_failure()
                xf = x.clone().requires_grad_(True)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    tlif.lif_multistep_triton(xf, fallback=True, **kw).backward(gs)
                    tlif.lif_multistep_triton(x.clone().requires_grad_(True), fallback=True,
                                              **kw).backward(gs)  # no second warning
                xe = x.clone().requires_grad_(True)
                try:
                    tlif.lif_multistep_triton(xe, **kw).backward(gs)
                    problems.append("no error without fallback")
                except tlif.TritonLaunchError as exc:
                    if "backward kernel failed" not in str(exc):
                        problems.append(f"message {exc}")
                tlif._lif_bwd_kernel = real
                err = (xf.grad.float() - xk.grad.float()).abs().max().item()
                tol = 1e-6 if dtype == torch.float32 else 1e-2
                if xf.grad.dtype != dtype or not err <= tol * xk.grad.float().abs().max().item():
                    problems.append(f"{dtype} {surrogate} detach{detach}: grad err {err:.3g}")
                msgs = [str(w.message) for w in caught if w.category is RuntimeWarning]
                if len(msgs) != 1 or "install a C compiler" not in msgs[0]:
                    problems.append(f"warnings {msgs}")
    finally:
        tlif._lif_bwd_kernel = real
        tlif._reset_launch_failure()
    return not problems, "; ".join(problems) or "ok"


CASES = {
    "golden_T3": case_golden,
    "heaviside_T1": case_heaviside_t1,
    **_make_random_cases(),
    "noncontiguous": case_noncontiguous,
    "channels_last_layout": case_channels_last_layout,
    "detach_flag_matters": case_detach_flag_matters,
    "inference_and_empty": case_inference_and_empty,
    "fp16_overflow_no_nan": case_fp16_overflow_no_nan,
    "backward_fallback_matches_kernel": case_backward_fallback_matches_kernel,
}


def run_cases(device: str) -> dict:
    results = {}
    for name, fn in CASES.items():
        try:
            ok, detail = fn(device)
        except Exception as exc:  # noqa: BLE001 - reported per case
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        results[name] = [bool(ok), str(detail)]
    return results


def _probe_interpreter() -> str:
    """'' when a trivial kernel runs under the interpreter, else the reason it does not."""
    try:
        import triton
        import triton.language as tl
    except Exception as exc:  # noqa: BLE001
        return f"triton not importable: {exc}"
    try:
        @triton.jit
        def _add_one(x_ptr, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            m = offs < n
            tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=m) + 1.0, mask=m)

        t = torch.zeros(10)
        _add_one[(1,)](t, 10, BLOCK=16)
        if t.tolist() != [1.0] * 10:
            return f"interpreter gave wrong result {t.tolist()}"
    except Exception as exc:  # noqa: BLE001
        return f"Triton interpreter does not run here: {type(exc).__name__}: {exc}"
    return ""


def _worker_main() -> int:
    assert os.environ.get("TRITON_INTERPRET") == "1", "worker needs TRITON_INTERPRET=1"
    torch.set_num_threads(1)
    reason = _probe_interpreter()
    if reason:
        print(json.dumps({"__skip__": reason}))
        return 0
    import spikedistill.neurons.triton_lif as tlif

    if not tlif._INTERPRET:
        print(json.dumps({"__error__": "triton_lif did not latch the interpreter flag"}))
        return 0
    print(json.dumps(run_cases("cpu")))
    return 0


# ------------------------------------------------------------------------------------------
# pytest side
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interpreter_results():
    env = dict(os.environ)
    env["TRITON_INTERPRET"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker"],
                          env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"interpreter worker crashed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        pytest.fail(f"interpreter worker printed no result:\n{proc.stdout[-2000:]}\n"
                    f"{proc.stderr[-2000:]}")
    results = json.loads(lines[-1])
    if "__skip__" in results:
        pytest.skip(results["__skip__"])
    if "__error__" in results:
        pytest.fail(results["__error__"])
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_interpreter(case, interpreter_results):
    ok, detail = interpreter_results[case]
    assert ok, f"{case}: {detail}"


_CUDA_CASES = [c for c in CASES if c != "fp16_overflow_no_nan"] + ["large_layer_like"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", _CUDA_CASES)
def test_cuda(case):
    import spikedistill.neurons.triton_lif as tlif

    ok, reason = tlif.triton_available(torch.empty(1, device="cuda"))
    if not ok:
        pytest.skip(reason)
    if case == "large_layer_like":
        for dn in ("fp32", "bf16"):
            ok, detail = _random_case(4, (8, 128, 16, 16), dn, "triangle", False, "cuda", 9)
            assert ok, f"{dn}: {detail}"
        return
    ok, detail = CASES[case]("cuda")
    assert ok, f"{case}: {detail}"


def test_module_api_without_interpreter():
    """Import, argument validation and availability reporting in this (non-interpreter) process."""
    import spikedistill.neurons.triton_lif as tlif

    assert set(tlif.SUPPORTED_SURROGATES) == {"triangle", "sigmoid", "atan"}
    assert tlif.bytes_per_neuron_step(torch.bfloat16) == 12
    assert tlif.bytes_per_neuron_step(torch.float32) == 24
    assert tlif.bytes_per_neuron_step(torch.bfloat16, training=False) == 4
    ok, reason = tlif.triton_available(torch.zeros(2))
    if not tlif._INTERPRET:
        assert not ok and reason, "a CPU tensor must be reported unusable outside the interpreter"
        with pytest.raises(RuntimeError, match="unavailable"):
            tlif.lif_multistep_triton(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="surrogate"):
        tlif.lif_multistep_triton(torch.zeros(2, 3), surrogate="box")
    with pytest.raises(TypeError, match="float"):
        tlif.lif_multistep_triton(torch.zeros(2, 3, dtype=torch.int32))


def test_imports_without_triton():
    """With triton unimportable the module still imports and reports why it is unavailable."""
    code = (
        "import sys; sys.modules['triton'] = None; sys.modules['triton.language'] = None\n"
        "import torch\n"
        "import spikedistill.neurons.triton_lif as m\n"
        "ok, reason = m.triton_available()\n"
        "assert not ok and 'triton' in reason, reason\n"
        "try:\n"
        "    m.lif_multistep_triton(torch.zeros(2, 3))\n"
        "except RuntimeError as e:\n"
        "    assert 'unavailable' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no error without triton')\n"
        "print('OK')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_reference_matches_golden():
    """The test's own reference reproduces the spec's hand-computed values."""
    x = torch.tensor([0.8, 0.9, 0.3]).view(3, 1).requires_grad_(True)
    s = reference_lif(x)
    (s.view(3) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert s.view(3).tolist() == [0.0, 1.0, 0.0]
    assert torch.allclose(x.grad.view(3), torch.tensor([0.97829, 0.9905, 0.9]), atol=1e-5)


if __name__ == "__main__" and "--worker" in sys.argv:
    sys.exit(_worker_main())
