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

Public API: ``lif_multistep_triton``, ``triton_available``, ``SUPPORTED_SURROGATES``.  The
module imports without Triton installed; calling the kernel then raises ``RuntimeError``.
On a CPU the kernels run under Triton's interpreter when ``TRITON_INTERPRET=1`` was set
before this module was imported (it is read when the kernels are decorated).
"""

from __future__ import annotations

import math
import os
from typing import Optional, Tuple

import torch

try:  # Triton is optional: the package must import on machines without it.
    import triton
    import triton.language as tl

    _TRITON_IMPORT_ERROR: Optional[str] = None
except Exception as exc:  # noqa: BLE001 - any import failure means "no Triton"
    triton = None
    tl = None
    _TRITON_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

__all__ = ["lif_multistep_triton", "triton_available", "SUPPORTED_SURROGATES",
           "BLOCK", "NUM_WARPS", "bytes_per_neuron_step"]

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
    def forward(ctx, x, decay, threshold, surrogate_id, alpha, detach_reset, in_scale=1.0,
                inclusive=False):
        if not _time_major_dense(x):
            x = x.contiguous()
        T = x.shape[0]
        n = x.numel() // T if T > 0 else 0
        spikes = _like(x)
        need_grad = bool(ctx.needs_input_grad[0])
        v = _like(x) if need_grad else spikes  # dummy pointer when v is not stored
        if n > 0:
            with _device_guard(x):
                _lif_fwd_kernel[_grid(n)](x, spikes, v, n, T, float(decay), float(threshold),
                                          float(in_scale), STORE_V=need_grad, BLOCK_SIZE=BLOCK,
                                          INCLUSIVE=bool(inclusive),
                                          num_warps=NUM_WARPS)
        if need_grad:
            ctx.save_for_backward(v)
        ctx.params = (float(decay), float(threshold), int(surrogate_id), float(alpha),
                      bool(detach_reset), float(in_scale))
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        (v,) = ctx.saved_tensors
        decay, threshold, surrogate_id, alpha, detach_reset, in_scale = ctx.params
        T = v.shape[0]
        n = v.numel() // T if T > 0 else 0
        gs = grad_spikes
        if gs.stride() != v.stride():  # bring dL/ds into v's memory layout (any float dtype)
            gs = torch.empty_strided(v.shape, v.stride(), dtype=gs.dtype,
                                     device=v.device).copy_(grad_spikes)
        grad_x = _like(v)
        if n > 0:
            with _device_guard(v):
                _lif_bwd_kernel[_grid(n)](gs, v, grad_x, n, T, (T - 1) * n, decay, threshold,
                                          alpha, in_scale, SURROGATE=surrogate_id,
                                          DETACH_RESET=detach_reset, BLOCK_SIZE=BLOCK,
                                          num_warps=NUM_WARPS)
        return grad_x, None, None, None, None, None, None, None


def lif_multistep_triton(x: torch.Tensor, decay: float = 0.5, threshold: float = 1.0,
                         surrogate: str = "triangle", alpha: float = 1.0,
                         detach_reset: bool = False, decay_input: bool = False,
                         fire_at_threshold: bool = False) -> torch.Tensor:
    """Multi-step LIF on time-major ``x: [T, ...]`` with the fused Triton kernels.

    Returns spikes (0./1.) of x's shape and dtype.  See the module docstring for the equations,
    the surrogates and the backward pass.  ``x`` must be fp32, bf16 or fp16 on CUDA (or on the
    CPU under ``TRITON_INTERPRET=1``).  Time slices may be laid out in any dense order
    (channels_last: the spikes come back channels_last too); other strided input is copied
    once to contiguous.
    """
    if surrogate not in SUPPORTED_SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SUPPORTED_SURROGATES)}, "
                         f"got {surrogate!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError("x must be a time-major tensor [T, ...] with at least one dimension")
    if x.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"x must be float32, bfloat16 or float16, got {x.dtype}")
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive finite number, got {alpha}")
    _require_triton(x)
    in_scale = 1.0 - float(decay) if decay_input else 1.0
    return _LIFMultistepTriton.apply(x, decay, threshold, SUPPORTED_SURROGATES[surrogate],
                                     alpha, detach_reset, in_scale, bool(fire_at_threshold))
