"""Fused multi-step LIF neuron in Triton: one launch for the whole forward time loop, one for
the whole backward (BPTT) loop.

Semantics (identical to ``spikedistill.neurons.lif.lif_multistep``; time-major input
``x: [T, N...]``, everything after T is flattened into N independent neurons, u[-1] = 0)::

    h[t] = decay * u[t-1] + c * x[t]             (membrane before the spike; c = 1, or
                                                  1 - decay with decay_input)
    s[t] = 1 if h[t] > threshold else 0          (strict >; >= with fire_at_threshold; spikes
                                                  are returned in x's dtype)
    u[t] = (1 - s[t]) * h[t]                     (hard reset to 0)

Backward, with v = h - threshold, sg(v) the surrogate of ds/dh, gs[t] = dL/ds[t] incoming and
gu[t] = dL/du[t] flowing back from step t+1 (gu[T-1] = 0)::

    dL/dh[t] = (gs[t] - gu[t] * h[t]) * sg(v[t]) + gu[t] * (1 - s[t])
               (detach_reset=True drops the "- gu[t] * h[t]" term: the reset factor (1 - s)
                is treated as a constant)
    dL/dx[t] = c * dL/dh[t],     gu[t-1] = decay * dL/dh[t]

Surrogates (selected by a compile-time id):

    triangle  sg(v) = max(0, 1/alpha - |v| / alpha^2)                    (alpha = 1 in the spec)
    sigmoid   sg(v) = alpha * sig(alpha v) * (1 - sig(alpha v))          (alpha default 4)
    atan      sg(v) = (alpha / 2) / (1 + (pi/2 * alpha * v)^2)           (alpha default 2)

All arithmetic is fp32 (the membrane lives in registers across the time loop); loads and
stores use the tensor's dtype (fp32, bf16 or fp16).

What is saved for backward, and memory traffic
----------------------------------------------
The reset makes the recurrence non-invertible (after a spike h[t] cannot be recovered from
u[t] = 0), so the backward loop, which runs in reverse time, needs h[t] for every step.
Recomputing it from x would cost a full forward pass of reads (or O(T^2) reads) plus keeping x
alive -- the same memory as storing h.  So the forward kernel stores one tensor ``v = h -
threshold`` **in the input dtype**, and nothing else (the spikes are not saved: s = (v > 0)).
Storing v rather than h keeps the 16-bit rounding error proportional to |v|, i.e. smallest
exactly where the surrogate is largest; a spiking neuron whose v would round to 0 is stored
as the smallest positive fp16 subnormal (2^-24) so that s = (v > 0) is recovered exactly.

Bytes per neuron-step (e = element size, 2 for bf16/fp16, 4 for fp32):

    forward : read x (e) + write s (e) + write v (e)            = 3e
    backward: read v (e) + read dL/ds (e) + write dL/dx (e)     = 3e
    total   : 6e = 12 bytes (bf16/fp16), 24 bytes (fp32); memory kept for backward: e per step.

At ResNet-19 layer 1 (T=4, B=128, 128 x 32 x 32: 67.1 M neuron-steps) in bf16 that is 805 MB,
0.27 ms at an H100's 2.95 TB/s -- the floor this kernel is designed to sit near.  In inference
(no input requires grad) v is not stored: 2e bytes per neuron-step.

Public API: ``lif_multistep_triton``, ``triton_available``, ``SUPPORTED_SURROGATES``,
``TritonLaunchError``.  The module imports without Triton installed; calling the kernel then
raises ``RuntimeError``.

A kernel that cannot compile or launch (Triton builds a small C launcher at the first launch
and needs a C compiler for it; a ptxas too old for the card; ...) raises
:class:`TritonLaunchError` naming the cause and the fix.  With ``fallback=True`` (the neuron's
``auto`` backend) a backward kernel that fails instead computes the same BPTT equations in
torch from the saved ``v`` (:func:`lif_backward_torch`), after one warning; the forward
fallback is the neuron's (``spikedistill.neurons.lif``).
On a CPU the kernels run under Triton's interpreter when ``TRITON_INTERPRET=1`` was set
before this module was imported (it is read when the kernels are decorated).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Optional, Tuple

import torch

from spikedistill.neurons.parameters import LIFParameters, NeuronLike

try:  # Triton is optional: the package must import on machines without it.
    import triton
    import triton.language as tl

    _TRITON_IMPORT_ERROR: Optional[str] = None
except Exception as exc:  # noqa: BLE001 - any import failure means "no Triton"
    triton = None
    tl = None
    _TRITON_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

__all__ = ["lif_multistep_triton", "triton_available", "SUPPORTED_SURROGATES",
           "BLOCK", "NUM_WARPS", "bytes_per_neuron_step", "TritonLaunchError",
           "launch_failure", "lif_backward_torch"]

#: surrogate name -> compile-time id used by the kernels
SUPPORTED_SURROGATES = {"triangle": 0, "sigmoid": 1, "atan": 2}

#: neurons per program and warps per program (8 elements per thread: one 16-byte vector of
#: bf16, two of fp32).  Memory-bound streaming kernel; a fixed configuration is enough.
BLOCK = 1024
NUM_WARPS = 4

_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# The interpreter flag is latched at decoration time, like Triton itself does.
_INTERPRET = _interpreter_enabled()


def triton_available(tensor: Optional[torch.Tensor] = None) -> Tuple[bool, str]:
    """Whether the Triton kernels can run (on ``tensor``'s device when one is given).

    Returns ``(True, "")`` or ``(False, reason)``: Triton not importable; or, outside the
    interpreter (``TRITON_INTERPRET=1`` set before import), no CUDA device / ``tensor`` not
    on CUDA.
    """
    if _TRITON_IMPORT_ERROR is not None:
        return False, f"triton is not importable ({_TRITON_IMPORT_ERROR})"
    if _INTERPRET:
        if tensor is not None and tensor.device.type != "cpu":
            return False, (f"TRITON_INTERPRET=1 runs kernels on the CPU; tensor is on "
                           f"{tensor.device}")
        return True, ""
    if tensor is not None:
        if tensor.device.type != "cuda":
            return False, (f"tensor is on {tensor.device}; the Triton kernel needs a CUDA tensor "
                           "(or TRITON_INTERPRET=1 set before import for the CPU interpreter)")
        return True, ""
    if not torch.cuda.is_available():
        return False, "no CUDA device (torch.cuda.is_available() is False)"
    return True, ""


def bytes_per_neuron_step(dtype: torch.dtype, training: bool = True) -> int:
    """DRAM bytes moved per neuron per time step: 6e forward+backward, 2e forward only."""
    e = torch.empty((), dtype=dtype).element_size()
    return 6 * e if training else 2 * e


if triton is not None:

    @triton.jit
    def _surrogate(v, alpha, SURROGATE: tl.constexpr):
        """ds/dh at v = h - threshold (fp32)."""
        if SURROGATE == 0:  # triangle
            g = tl.maximum(1.0 / alpha - tl.abs(v) / (alpha * alpha), 0.0)
        elif SURROGATE == 1:  # sigmoid
            sig = 1.0 / (1.0 + tl.exp(-alpha * v))
            g = alpha * sig * (1.0 - sig)
        else:  # atan
            z = 1.5707963267948966 * alpha * v
            g = (0.5 * alpha) / (1.0 + z * z)
        return g

    @triton.jit
    def _lif_fwd_kernel(x_ptr, s_ptr, v_ptr, N, T, decay, threshold, in_scale,
                        STORE_V: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                        INCLUSIVE: tl.constexpr = False):
        """One program = BLOCK_SIZE neurons, looping over all T steps; u stays in registers."""
        pid = tl.program_id(0)
        offs = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        mask = offs < N
        x_p = x_ptr + offs          # pointer arithmetic is 64-bit: += N never overflows
        s_p = s_ptr + offs
        v_p = v_ptr + offs
        u = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
        for _t in range(T):
            x = tl.load(x_p, mask=mask, other=0.0).to(tl.float32)
            h = decay * u + in_scale * x
            if INCLUSIVE:
                spike = h >= threshold
            else:
                spike = h > threshold
            # via fp32: the interpreter mis-casts bool -> bf16 directly
            tl.store(s_p, tl.where(spike, 1.0, 0.0).to(s_ptr.dtype.element_ty), mask=mask)
            if STORE_V:
                v = h - threshold
                # a spiking neuron must keep v > 0 after rounding to the storage dtype
                # (5.96e-8 = 2^-24, the smallest positive fp16 subnormal, exact in bf16/fp32)
                v = tl.where(spike, tl.maximum(v, 5.960464477539063e-08), v)
                tl.store(v_p, v.to(v_ptr.dtype.element_ty), mask=mask)
            u = tl.where(spike, 0.0, h)
            x_p += N
            s_p += N
            v_p += N

    @triton.jit
    def _lif_bwd_kernel(gs_ptr, v_ptr, gx_ptr, N, T, last_offset, decay, threshold, alpha, in_scale,
                        SURROGATE: tl.constexpr, DETACH_RESET: tl.constexpr,
                        BLOCK_SIZE: tl.constexpr):
        """Reverse time loop: t = T-1 .. 0, gu (dL/du[t]) carried in registers."""
        pid = tl.program_id(0)
        offs = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        mask = offs < N
        # start at step T-1; last_offset = (T-1)*N is typed i64 by Triton when it needs to be
        gs_p = gs_ptr + last_offset + offs
        v_p = v_ptr + last_offset + offs
        gx_p = gx_ptr + last_offset + offs
        gu = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
        for _i in range(T):
            gs = tl.load(gs_p, mask=mask, other=0.0).to(tl.float32)
            v = tl.load(v_p, mask=mask, other=-1.0).to(tl.float32)
            sg = _surrogate(v, alpha, SURROGATE)
            not_spike = tl.where(v > 0.0, 0.0, 1.0)
            if DETACH_RESET:
                gh = gs * sg + gu * not_spike
            else:
                # where(): an overflowed 16-bit v (|h| = inf, sg = 0) must not give inf * 0
                gh = tl.where(sg > 0.0, (gs - gu * (v + threshold)) * sg, 0.0) + gu * not_spike
            tl.store(gx_p, (in_scale * gh).to(gx_ptr.dtype.element_ty), mask=mask)
            gu = decay * gh
            gs_p -= N
            v_p -= N
            gx_p -= N


class TritonLaunchError(RuntimeError):
    """The Triton LIF kernel could not compile or launch here (the message names the cause and
    how to fix it)."""


#: why a kernel failed to compile or launch in this process (set once, by note_fallback)
_LAUNCH_FAILURE: Optional[str] = None


def launch_failure() -> Optional[str]:
    """Why a Triton LIF kernel failed in this process under the ``auto`` backend, or None.
    Once set, ``auto`` uses the torch loop without trying the kernel again."""
    return _LAUNCH_FAILURE


def _fix_hint(text: str) -> str:
    """How to fix a launch failure whose message is ``text``."""
    low = text.lower()
    if "c compiler" in low or "cc environment" in low or "python.h" in low:
        return ("install a C compiler (e.g. apt-get install gcc) or point the CC environment "
                "variable at one: Triton builds its launcher with it at the first launch")
    if "ptxas" in low or "no kernel image" in low or "unsupported gpu" in low:
        return ("install a Triton release that supports this card and CUDA driver "
                "(pip install -U triton matching your torch)")
    return ("check that `python -c \"import triton\"` works and that Triton matches your torch "
            "(pip show torch triton)")


def _launch_error(which: str, x: torch.Tensor, exc: BaseException) -> TritonLaunchError:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    cause = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return TritonLaunchError(f"the Triton LIF {which} kernel failed to compile or launch on "
                             f"{x.device} ({cause}); to fix it, {_fix_hint(str(exc))}")


def note_fallback(reason: str) -> None:
    """Record that the kernel cannot run here and warn once (later calls stay silent)."""
    global _LAUNCH_FAILURE
    if _LAUNCH_FAILURE is not None:
        return
    _LAUNCH_FAILURE = reason
    warnings.warn(f"spikedistill: {reason}. The LIF neuron runs its torch loop instead (same "
                  "spikes and gradients, slower); set model.neuron.backend=torch to choose it "
                  "and silence this, or =triton to make it an error.",
                  RuntimeWarning, stacklevel=3)


def _reset_launch_failure() -> None:
    """Forget a recorded failure (tests)."""
    global _LAUNCH_FAILURE
    _LAUNCH_FAILURE = None


def lif_backward_torch(grad_spikes: torch.Tensor, v: torch.Tensor,
                       params: LIFParameters) -> torch.Tensor:
    """The backward kernel's BPTT in torch, from the saved ``v = h - threshold`` ([T, ...],
    spikes recovered as ``s = [v > 0]``), fp32 arithmetic, t = T-1 .. 0 with gu = 0 at T-1,
    ``c`` = ``params.input_scale``::

        dL/dh[t] = (gs[t] - gu * h[t]) * sg(v[t]) + gu * (1 - s[t])    (no "- gu * h" term
                                                                           with detach_reset)
        dL/dx[t] = c * dL/dh[t],     gu <- decay * dL/dh[t]

    Returns dL/dx in ``v``'s dtype and layout."""
    from spikedistill.neurons.surrogate import get_surrogate

    sg_fn = get_surrogate(params.surrogate)
    decay, threshold, alpha, in_scale = params.decay, params.threshold, params.alpha, \
        params.input_scale
    vf, gs = v.float(), grad_spikes.float()
    grad_x = torch.empty_like(v)
    gu = torch.zeros_like(vf[0])
    for t in range(v.shape[0] - 1, -1, -1):
        sg = sg_fn(vf[t], alpha)
        not_spike = (vf[t] <= 0).float()
        if params.detach_reset:
            gh = gs[t] * sg + gu * not_spike
        else:  # sg == 0 masked as in the kernel (an overflowed 16-bit v must not give inf * 0)
            gh = torch.where(sg > 0, (gs[t] - gu * (vf[t] + threshold)) * sg,
                             torch.zeros_like(sg)) + gu * not_spike
        grad_x[t] = (in_scale * gh).to(v.dtype)
        gu = decay * gh
    return grad_x


def _require_triton(x: torch.Tensor) -> None:
    ok, reason = triton_available(x)
    if not ok:
        raise RuntimeError(f"lif_multistep_triton unavailable: {reason}")


def _grid(n: int):
    return (triton.cdiv(n, BLOCK),)


def _device_guard(x: torch.Tensor):
    if x.device.type == "cuda":
        return torch.cuda.device(x.device)
    import contextlib
    return contextlib.nullcontext()


def _time_major_dense(x: torch.Tensor) -> bool:
    """True when the kernel can stream x's memory as it is: every time slice x[t] has the same
    non-overlapping, dense layout (any dimension order, e.g. channels_last) and the slices are
    packed one after the other (stride(0) == numel of a slice)."""
    if x.is_contiguous():
        return True
    sizes, strides = x.shape[1:], x.stride()[1:]
    n = 1
    for size in sizes:
        n *= size
    if x.shape[0] > 1 and x.stride(0) != n:
        return False
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(strides, sizes) if sz > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _like(t: torch.Tensor) -> torch.Tensor:
    """Uninitialised tensor with t's shape, dtype and exact strides."""
    out = torch.empty_like(t)  # preserve_format keeps the strides of a dense tensor
    if out.stride() != t.stride():
        out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    return out


class _LIFMultistepTriton(torch.autograd.Function):
    """autograd wrapper: forward saves only v = h - threshold (input dtype).

    The kernels treat memory as [T, N]: element k of time slice t is at offset t*N + k for x,
    spikes, v, dL/ds and dL/dx alike.  A time-major input whose slices are dense in any
    dimension order (channels_last included) is used as it is, and the outputs get the same
    strides; anything else is copied to contiguous once.
    """

    @staticmethod
    def forward(ctx, x, params, fallback=False):
        if not _time_major_dense(x):
            x = x.contiguous()
        T = x.shape[0]
        n = x.numel() // T if T > 0 else 0
        spikes = _like(x)
        need_grad = bool(ctx.needs_input_grad[0])
        v = _like(x) if need_grad else spikes  # dummy pointer when v is not stored
        if n > 0:
            try:
                with _device_guard(x):
                    _lif_fwd_kernel[_grid(n)](x, spikes, v, n, T, params.decay,
                                              params.threshold, params.input_scale,
                                              STORE_V=need_grad, BLOCK_SIZE=BLOCK,
                                              INCLUSIVE=params.fire_at_threshold,
                                              num_warps=NUM_WARPS)
            except Exception as exc:  # noqa: BLE001 - compile / launch failures of any kind
                raise _launch_error("forward", x, exc) from exc
        if need_grad:
            ctx.save_for_backward(v)
        ctx.params = params
        ctx.fallback = bool(fallback)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        (v,) = ctx.saved_tensors
        p = ctx.params
        T = v.shape[0]
        n = v.numel() // T if T > 0 else 0
        gs = grad_spikes
        if gs.stride() != v.stride():  # bring dL/ds into v's memory layout (any float dtype)
            gs = torch.empty_strided(v.shape, v.stride(), dtype=gs.dtype,
                                     device=v.device).copy_(grad_spikes)
        grad_x = _like(v)
        if n > 0 and ctx.fallback and _LAUNCH_FAILURE is not None:
            return lif_backward_torch(gs, v, p), None, None
        if n > 0:
            try:
                with _device_guard(v):
                    _lif_bwd_kernel[_grid(n)](gs, v, grad_x, n, T, (T - 1) * n, p.decay,
                                              p.threshold, p.alpha, p.input_scale,
                                              SURROGATE=SUPPORTED_SURROGATES[p.surrogate],
                                              DETACH_RESET=p.detach_reset, BLOCK_SIZE=BLOCK,
                                              num_warps=NUM_WARPS)
            except Exception as exc:  # noqa: BLE001 - compile / launch failures of any kind
                err = _launch_error("backward", v, exc)
                if not ctx.fallback:
                    raise err from exc
                note_fallback(str(err))
                return lif_backward_torch(gs, v, p), None, None
        return grad_x, None, None


def lif_multistep_triton(x: torch.Tensor, params: Optional[NeuronLike] = None,
                         fallback: bool = False, **fields: Any) -> torch.Tensor:
    """Multi-step LIF on time-major ``x: [T, ...]`` with the fused Triton kernels and the
    neuron ``params`` (:class:`~spikedistill.neurons.parameters.LIFParameters`, or its fields
    as keywords: ``decay=0.5, threshold=1.0, ...``; ``backend`` is ignored here).

    Returns spikes (0./1.) of x's shape and dtype.  See the module docstring for the equations,
    the surrogates and the backward pass.  ``x`` must be fp32, bf16 or fp16 on CUDA (or on the
    CPU under ``TRITON_INTERPRET=1``).  Time slices may be laid out in any dense order
    (channels_last: the spikes come back channels_last too); other strided input is copied
    once to contiguous.  A kernel that cannot compile or launch raises
    :class:`TritonLaunchError`; with ``fallback`` a failing backward kernel is replaced by
    :func:`lif_backward_torch` (one warning).
    """
    p = LIFParameters.of(params, **fields)
    if p.surrogate not in SUPPORTED_SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SUPPORTED_SURROGATES)}, "
                         f"got {p.surrogate!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError("x must be a time-major tensor [T, ...] with at least one dimension")
    if x.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"x must be float32, bfloat16 or float16, got {x.dtype}")
    if not (p.alpha > 0 and math.isfinite(p.alpha)):
        raise ValueError(f"alpha must be a positive finite number, got {p.alpha}")
    _require_triton(x)
    return _LIFMultistepTriton.apply(x, p, bool(fallback))
