"""Benchmark of the multi-step LIF neuron alone, at the ResNet-19 layer shapes.

Implementations (all time-major ``[T, B, C, H, W]``, decay 0.5, threshold 1, triangle surrogate
with alpha 1, reset not detached)::

    h[t] = 0.5 * u[t-1] + x[t];  s[t] = [h[t] > 1];  u[t] = (1 - s[t]) * h[t]
    backward: ds/dh := max(0, 1 - |h - 1|), BPTT through the reset

* ``torch_loop``  : a plain PyTorch loop over T (a custom autograd spike function, arithmetic in
                    the input dtype) -- the released code's neuron, in time-major layout.
* ``compiled_loop``: ``torch.compile`` of that loop (skipped with the error if it does not
                    compile).
* ``triton``      : ``spikedistill.neurons.triton_lif.lif_multistep_triton`` (one fused launch
                    forward, one backward; fp32 membrane).

Each configuration is first checked against ``reference_fp32`` on the upcast input (spike
mismatches, max relative gradient error): forward and BPTT written out by hand in fp32, without
autograd, so that neither the loop nor the kernel is checked against itself; then timed: forward+backward (``torch.autograd.grad`` of the
spikes with a fixed random upstream gradient, so no ``.grad`` accumulation is timed) and
forward alone under ``no_grad``.  GPU timings use CUDA events per iteration (median reported).

GB/s uses the same byte count for every implementation: the minimum traffic of a fused
neuron that saves one input-dtype tensor for backward, 6 x element size per neuron-step
(forward: read x, write s, write v; backward: read v, read dL/ds, write dL/dx) -- 12 B in
bf16, 24 B in fp32.  ``floor ms`` = those bytes / the device-to-device copy bandwidth measured
in the same run (``copy_`` of a large buffer, read + write counted).

On a machine without CUDA the benchmark runs a tiny shape with the torch loop (and Triton when
``TRITON_INTERPRET=1`` is set, through the CPU interpreter), so that it can be tested anywhere.

    python benchmarks/lif_kernel.py --json lif_kernel.json               # GPU, full sweep
    python benchmarks/lif_kernel.py --layers layer1 --T 4 --dtype bf16   # the headline number
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# ResNet-19 (width 8, CIFAR 32x32) layer shapes after T and the batch: (C, H, W)
LAYERS = {"layer1": (128, 32, 32), "layer2": (256, 16, 16), "layer3": (512, 8, 8),
          "tiny": (16, 8, 8)}
IMPLS = ("torch_loop", "compiled_loop", "triton")
DECAY, THRESHOLD, ALPHA = 0.5, 1.0, 1.0


# ----------------------------------------------------------------------------------------------
# The plain loop (reference semantics)
# ----------------------------------------------------------------------------------------------

class _TriangleSpike(torch.autograd.Function):
    """s = [v > 0] in v's dtype; ds/dv = max(0, 1/alpha - |v|/alpha^2) (alpha = 1)."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * (1.0 / ALPHA - v.abs() / (ALPHA * ALPHA)).clamp(min=0)


def torch_loop(x: torch.Tensor) -> torch.Tensor:
    """LIF over x [T, ...] in x's dtype; reset not detached."""
    u = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = DECAY * u + x[t]
        s = _TriangleSpike.apply(h - THRESHOLD)
        u = (1.0 - s) * h
        out.append(s)
    return torch.stack(out)


def reference_fp32(x: torch.Tensor, grad_spikes: torch.Tensor):
    """Spikes and ``dL/dx`` of the LIF neuron in fp32, written out without autograd (an
    implementation independent of :func:`torch_loop`, the checks' yardstick).

    Forward: ``h[t] = 0.5 u[t-1] + x[t]``, ``s[t] = [h[t] > 1]``, ``u[t] = (1 - s[t]) h[t]``.
    Backward (reverse over t, ``g_u`` = dL/du[t] from the future, 0 after the last step,
    ``sg[t] = max(0, 1 - |h[t] - 1|)`` the triangle surrogate of ds/dh, reset not detached)::

        dL/dh[t] = g_s[t] sg[t] + g_u ((1 - s[t]) - h[t] sg[t])
        dL/dx[t] = dL/dh[t];   g_u <- 0.5 dL/dh[t]
    """
    x = x.detach().float()
    gs = grad_spikes.detach().float()
    T = x.shape[0]
    u = torch.zeros_like(x[0])
    hs, ss = [], []
    for t in range(T):
        h = DECAY * u + x[t]
        s = (h > THRESHOLD).float()
        u = (1.0 - s) * h
        hs.append(h)
        ss.append(s)
    gx = torch.empty_like(x)
    g_u = torch.zeros_like(x[0])
    for t in reversed(range(T)):
        h, s = hs[t], ss[t]
        sg = (1.0 / ALPHA - (h - THRESHOLD).abs() / (ALPHA * ALPHA)).clamp(min=0)
        g_h = gs[t] * sg + g_u * ((1.0 - s) - h * sg)
        gx[t] = g_h
        g_u = DECAY * g_h
    return torch.stack(ss), gx


def make_triton() -> Callable[[torch.Tensor], torch.Tensor]:
    from spikedistill.neurons.triton_lif import lif_multistep_triton

    return lambda x: lif_multistep_triton(x, decay=DECAY, threshold=THRESHOLD,
                                          surrogate="triangle", alpha=ALPHA)


# ----------------------------------------------------------------------------------------------
# Measurement helpers
# ----------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> Dict:
    """Median / mean / min milliseconds per call of ``fn``."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    if device.type == "cuda":
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(iters)]
        for a, b in ev:
            a.record()
            fn()
            b.record()
        torch.cuda.synchronize(device)
        times = [a.elapsed_time(b) for a, b in ev]
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"ms": statistics.median(times), "ms_mean": sum(times) / len(times),
            "ms_min": min(times)}


def copy_bandwidth(device: torch.device, mib: int, iters: int = 20) -> Dict:
    """Device-to-device copy bandwidth (GB/s, read + write bytes) with ``dst.copy_(src)``."""
    n = mib * 2**20 // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), device, iters=iters, warmup=3)
    gbs = 2 * n * 4 / (t["ms"] * 1e-3) / 1e9
    src = dst = None          # frees both (the lambda's cells hold them)
    return {"copy_buffer_mib": mib, "copy_ms": t["ms"], "copy_gb_s": gbs}


def environment(device: torch.device) -> Dict:
    """Versions and the device (card name, capability, SMs, memory): the header of every
    benchmark's JSON (also used by ``gpu_check.py``)."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "platform": platform.platform(),
            "device_type": device.type,
            "triton_interpret": os.environ.get("TRITON_INTERPRET", "0") == "1"}
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001
        info["triton"] = f"unavailable ({type(exc).__name__})"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=torch.cuda.get_device_name(device),
                    capability=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1))
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def check_against_reference(fn, x: torch.Tensor, gs: torch.Tensor) -> Dict:
    """Spike mismatches and max gradient error relative to max |grad| vs
    :func:`reference_fp32` on the upcast input."""
    sr, gr = reference_fp32(x, gs)
    xi = x.detach().clone().requires_grad_(True)
    si = fn(xi)
    (gi,) = torch.autograd.grad(si, xi, gs)
    mism = int((si.float() != sr).sum().item())
    scale = gr.abs().max().item()
    err = (gi.float() - gr).abs().max().item() / max(scale, 1e-30)
    return {"spike_mismatches": mism, "grad_rel_err": err,
            "firing_rate": sr.mean().item(), "out_dtype": str(si.dtype).replace("torch.", "")}


# ----------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------

def bench_one(impl: str, fn, layer: str, T: int, dtype_name: str, batch: int,
              device: torch.device, args, copy_gb_s: float) -> Dict:
    c, h, w = LAYERS[layer]
    dtype = DTYPES[dtype_name]
    shape = (T, batch, c, h, w)
    n_steps = T * batch * c * h * w
    nbytes = 6 * torch.empty((), dtype=dtype).element_size() * n_steps
    rec: Dict[str, object] = {"layer": layer, "T": T, "dtype": dtype_name, "impl": impl,
                              "shape": list(shape), "neuron_steps": n_steps,
                              "model_bytes": nbytes,
                              "floor_ms": nbytes / (copy_gb_s * 1e9) * 1e3 if copy_gb_s else None}
    g = torch.Generator(device="cpu").manual_seed(0)
    # BN-output-like input: N(0.6, 0.8^2) fires ~20-30 % of the neurons
    x = (torch.randn(shape, generator=g) * 0.8 + 0.6).to(device=device, dtype=dtype)
    gs = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    try:
        t0 = time.perf_counter()
        rec.update(check_against_reference(fn, x, gs))
        rec["first_call_s"] = time.perf_counter() - t0   # includes compile / autotune
        tol = 1e-5 if dtype == torch.float32 else 1e-2
        if impl == "triton" or dtype == torch.float32:
            # fp32 membrane: must match the fp32 loop exactly in spikes, closely in gradients
            ok = rec["grad_rel_err"] <= tol and rec["spike_mismatches"] == 0
            rec["check"] = "ok" if ok else "MISMATCH"
        else:
            # a 16-bit loop rounds h to 16 bits: near-threshold spikes flip and the gradient
            # of the whole later trajectory changes with them -- reported, not judged
            rec["check"] = "info"

        xg = x.detach().clone().requires_grad_(True)

        def fwd_bwd():
            s = fn(xg)
            return torch.autograd.grad(s, xg, gs)

        rec.update({f"fwdbwd_{k}": v for k, v in
                    time_fn(fwd_bwd, device, args.iters, args.warmup).items()})
        if not args.skip_fwd:
            def fwd():
                with torch.no_grad():
                    return fn(x)
            rec.update({f"fwd_{k}": v for k, v in
                        time_fn(fwd, device, args.iters, args.warmup).items()})
        rec["gb_s"] = nbytes / (rec["fwdbwd_ms"] * 1e-3) / 1e9
        rec["pct_of_copy_bw"] = 100 * rec["gb_s"] / copy_gb_s if copy_gb_s else None
        rec["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - one failing impl must not stop the sweep
        msg = str(exc).strip().splitlines()
        # a loop that torch.compile cannot compile is reported, not counted as a failure
        rec["status"] = "compile_failed" if impl == "compiled_loop" else "error"
        rec["error"] = f"{type(exc).__name__}: {msg[0][:300] if msg else ''}"
    finally:
        x = gs = None         # frees both (fwd_bwd / fwd hold them in cells)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rec


def format_table(results: List[Dict], meta: Dict) -> str:
    loop_ms = {(r["layer"], r["T"], r["dtype"]): r.get("fwdbwd_ms") for r in results
               if r["impl"] == "torch_loop" and r.get("status") == "ok"}
    head = (f"{'layer':<7}{'T':>2} {'dtype':<5} {'impl':<14}{'Msteps':>8}{'fwd ms':>9}"
            f"{'f+b ms':>9}{'floor ms':>9}{'GB/s':>8}{'%copy':>7}{'vs loop':>8}  check")
    lines = [f"device: {meta.get('device_name')} | torch {meta['torch']} | triton "
             f"{meta.get('triton')} | copy bandwidth {meta.get('copy_gb_s', 0):.0f} GB/s",
             head, "-" * len(head)]

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    for r in results:
        key = (r["layer"], r["T"], r["dtype"])
        ok = r.get("status") == "ok"
        speed = (f"{loop_ms[key] / r['fwdbwd_ms']:.1f}x"
                 if ok and loop_ms.get(key) and r.get("fwdbwd_ms") else "-")
        tail = (f"{r.get('check')} (mism {r.get('spike_mismatches')}, "
                f"grad err {f(r.get('grad_rel_err'), '.1e')})" if ok else
                f"{r.get('status')}: {r.get('error', r.get('reason', ''))}")
        lines.append(
            f"{r['layer']:<7}{r['T']:>2} {r['dtype']:<5} {r['impl']:<14}"
            f"{r['neuron_steps'] / 1e6:>8.3g}{f(r.get('fwd_ms') if ok else None, '.3f'):>9}"
            f"{f(r.get('fwdbwd_ms') if ok else None, '.3f'):>9}{f(r.get('floor_ms'), '.3f'):>9}"
            f"{f(r.get('gb_s') if ok else None, '.0f'):>8}"
            f"{f(r.get('pct_of_copy_bw') if ok else None, '.0f'):>7}{speed:>8}  {tail}")
    return "\n".join(lines)


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--layers", nargs="+", default=None, choices=sorted(LAYERS),
                   help="default: layer1 layer2 layer3 on CUDA, tiny on CPU")
    p.add_argument("--T", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--dtype", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    p.add_argument("--impl", nargs="+", default=None, choices=IMPLS,
                   help="default: all three on CUDA; torch_loop (+ triton under "
                        "TRITON_INTERPRET=1) on CPU")
    p.add_argument("--batch", type=int, default=None, help="default 128 on CUDA, 2 on CPU")
    p.add_argument("--iters", type=int, default=None, help="timed calls (default 50 / 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="default 10 / 1 on CPU")
    p.add_argument("--copy-mib", type=int, default=None, help="copy-bandwidth buffer (1024 / 16)")
    p.add_argument("--skip-fwd", action="store_true", help="time forward+backward only")
    p.add_argument("--json", default=None, help="write {meta, results} to this path")
    args = p.parse_args(argv)
    on_cuda = torch.device(args.device).type == "cuda"
    if args.layers is None:
        args.layers = ["layer1", "layer2", "layer3"] if on_cuda else ["tiny"]
    if args.impl is None:
        # on CPU the triton row runs under TRITON_INTERPRET=1 and is reported skipped otherwise
        args.impl = list(IMPLS) if on_cuda else ["torch_loop", "triton"]
    args.batch = args.batch or (128 if on_cuda else 2)
    args.iters = args.iters or (50 if on_cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (10 if on_cuda else 1)
    args.copy_mib = args.copy_mib or (1024 if on_cuda else 16)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    meta = environment(device)
    meta.update(copy_bandwidth(device, args.copy_mib))
    meta["args"] = vars(args)
    meta["bytes_model"] = ("6 x element size per neuron-step: fwd read x + write s + write v, "
                           "bwd read v + read dL/ds + write dL/dx")
    print(json.dumps({"meta": meta}), flush=True)

    fns: Dict[str, Optional[Callable]] = {}
    skipped: Dict[str, str] = {}
    for impl in args.impl:
        if impl == "torch_loop":
            fns[impl] = torch_loop
        elif impl == "compiled_loop":
            try:
                fns[impl] = torch.compile(torch_loop, dynamic=False)
            except Exception as exc:  # noqa: BLE001
                skipped[impl] = f"torch.compile failed: {type(exc).__name__}: {exc}"
        elif impl == "triton":
            try:
                from spikedistill.neurons.triton_lif import triton_available
                ok, reason = triton_available(torch.empty(0, device=device))
            except Exception as exc:  # noqa: BLE001
                ok, reason = False, f"import failed: {type(exc).__name__}: {exc}"
            if ok:
                fns[impl] = make_triton()
            else:
                skipped[impl] = reason
    if "compiled_loop" in fns:
        import torch._dynamo as dynamo  # `import torch._dynamo` would make `torch` local here
        dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, 64)

    results: List[Dict] = []
    for layer in args.layers:
        for T in args.T:
            for dtype_name in args.dtype:
                for impl in args.impl:
                    if impl in skipped:
                        c, h, w = LAYERS[layer]
                        rec = {"layer": layer, "T": T, "dtype": dtype_name, "impl": impl,
                               "neuron_steps": T * args.batch * c * h * w,
                               "status": "skipped", "reason": skipped[impl]}
                    else:
                        rec = bench_one(impl, fns[impl], layer, T, dtype_name, args.batch,
                                        device, args, meta["copy_gb_s"])
                    print(json.dumps(rec), flush=True)
                    results.append(rec)

    print()
    print(format_table(results, meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    bad = [r for r in results if r.get("status") == "error" or r.get("check") == "MISMATCH"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
