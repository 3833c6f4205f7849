"""The student's multi-step LIF neuron (``method.md``, "Student neuron"), time-major.

Layout: ``x`` is **time-major**, ``[T, B, ...]``; the membrane starts at 0 at every call.
Per timestep t (decay 0.5 and threshold 1.0 in the spec, no input scaling)::

    h[t] = decay * u[t-1] + c * x[t]            (u[-1] = 0; c = 1, or 1 - decay with decay_input)
    s[t] = H(h[t] - threshold)                  (strict >: h == threshold does not fire)
    u[t] = (1 - s[t]) * h[t]                    (hard reset to 0)

The reset is part of the autograd graph unless ``detach_reset`` (the spec: not detached), and
``ds/dh`` is the named surrogate (``triangle``: ``max(0, 1 - |h - 1|)`` at alpha = 1). With
T = 1 the neuron is one Heaviside step of its input.

``decay_input=True`` scales the input by ``c = 1 - decay``: with ``decay = 1 - 1/tau`` this is
SpikingJelly's ``LIFNode(tau, decay_input=True, v_reset=0)``, ``H = V + (X - V) / tau``
(Fang et al., SpikingJelly, ``activation_based/neuron.py``, ``neuronal_charge_decay_input_reset0``),
the neuron of Spikformer (Zhou et al., ICLR 2023: ``MultiStepLIFNode(tau=2.0,
detach_reset=True)``, i.e. decay 0.5, c = 0.5, detach_reset, surrogate ``sigmoid`` alpha 4).
SpikingJelly fires at ``H >= V_th``, we at ``H > V_th`` unless ``fire_at_threshold``: they differ
only where ``H`` equals the threshold exactly, which in Spikformer's attention LIF is common (its
input ``(Q K^T) V / 8`` is a multiple of 1/8, so ``h = 0.5`` happens), so Spikformer sets it.

:func:`lif_multistep` is the pure function; :class:`LIF` is the ``nn.Module`` wrapper; both
take the parameters as one :class:`~spikedistill.neurons.parameters.LIFParameters`. The
``torch`` backend is the reference; ``triton`` runs the whole time loop in one fused kernel
(CUDA, see :mod:`spikedistill.neurons.triton_lif`); ``auto`` uses Triton on CUDA when it is
importable and supports the surrogate, else torch. When the kernel cannot compile or launch
(no C compiler for Triton's launcher, say), ``auto`` warns once, naming the cause and the fix,
and runs the torch loop from then on; an explicit ``triton`` raises
:class:`~spikedistill.neurons.triton_lif.TritonLaunchError` instead.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from spikedistill.config import NEURON_BACKENDS
from spikedistill.errors import ConfigError
from spikedistill.neurons.parameters import LIFParameters, NeuronLike
from spikedistill.neurons.surrogate import spike

BACKENDS = NEURON_BACKENDS  # the vocabulary of model.neuron.backend (spikedistill.config)


def _params(params: Optional[NeuronLike], fields: Dict[str, Any],
            backend: Optional[str] = None) -> LIFParameters:
    """The record of a call: ``params`` (a :class:`LIFParameters` or a mapping of its fields)
    with the keyword ``fields`` of the older signatures on top; ``backend`` is the function's
    default for a call made with keywords only that names none."""
    if backend is not None and params is None and "backend" not in fields:
        fields = dict(fields, backend=backend)
    return LIFParameters.of(params, **fields)


def lif_multistep_torch(x: torch.Tensor, params: Optional[NeuronLike] = None,
                        **fields: Any) -> torch.Tensor:
    """Reference Python loop over T of the LIF equations above with the neuron ``params``
    (:class:`~spikedistill.neurons.parameters.LIFParameters`; its fields may also be given one
    by one as keywords, ``decay=0.5, threshold=1.0, ...``); returns spikes like ``x``.

    The membrane is kept in fp32 whatever ``x``'s dtype (bf16 rounding of ``h`` would flip
    spikes near the threshold), so this loop and the Triton kernel give identical spikes."""
    p = _params(params, fields)
    xf = x.float()
    decay, threshold, c = p.decay, p.threshold, p.input_scale
    u = torch.zeros_like(xf[0])
    out = []
    for t in range(xf.shape[0]):
        h = decay * u + (xf[t] if c == 1.0 else c * xf[t])
        s = spike(h - threshold, p.surrogate, p.alpha, inclusive=p.fire_at_threshold)
        keep = 1.0 - (s.detach() if p.detach_reset else s)
        u = keep * h
        out.append(s)
    return torch.stack(out, dim=0).to(x.dtype)


def _triton_usable(x: torch.Tensor, surrogate: str):
    """(usable, reason) for the Triton backend on this tensor."""
    try:
        from spikedistill.neurons import triton_lif
    except Exception as exc:  # noqa: BLE001 - any import problem means "not available"
        return False, f"spikedistill.neurons.triton_lif failed to import: {exc}"
    ok, reason = triton_lif.triton_available(x)
    if not ok:
        return False, reason
    if surrogate not in triton_lif.SUPPORTED_SURROGATES:
        return False, f"surrogate {surrogate!r} not supported by the Triton kernel"
    return True, ""


def _on_cuda(x: torch.Tensor) -> bool:
    return x.is_cuda


def _triton_launch_failed() -> bool:
    """Whether the kernel already failed to compile or launch in this process (``auto``)."""
    from spikedistill.neurons import triton_lif
    return triton_lif.launch_failure() is not None


def resolve_backend(backend: str, x: torch.Tensor, surrogate: str = "triangle") -> str:
    """Map ``auto`` to ``triton`` or ``torch`` for this input; check an explicit choice."""
    if backend not in BACKENDS:
        raise ConfigError(f"neuron backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    if backend == "auto" and not _on_cuda(x):
        return "torch"
    if backend == "auto" and _triton_launch_failed():
        return "torch"
    ok, reason = _triton_usable(x, surrogate)
    if ok:
        return "triton"
    if backend == "triton":
        raise ConfigError(f"neuron backend 'triton' is not usable here: {reason} "
                          "(use model.neuron.backend=auto to fall back to torch)")
    return "torch"


def lif_multistep(x: torch.Tensor, params: Optional[NeuronLike] = None,
                  **fields: Any) -> torch.Tensor:
    """Multi-step LIF on time-major ``x`` ``[T, B, ...]`` with the neuron ``params``
    (:class:`~spikedistill.neurons.parameters.LIFParameters`, or its fields as keywords:
    ``lif_multistep(x, decay=0.5, threshold=1.0)``; called with keywords only, the backend
    defaults to ``torch``); returns spikes (0/1) of ``x``'s shape and dtype. Equations in the
    module docstring."""
    if x.dim() < 2:
        raise ValueError(f"lif_multistep expects a time-major tensor [T, B, ...], got shape "
                         f"{tuple(x.shape)}")
    p = _params(params, fields, backend="torch").validate()
    if resolve_backend(p.backend, x, p.surrogate) == "triton":
        from spikedistill.neurons import triton_lif
        try:
            return triton_lif.lif_multistep_triton(x, p, fallback=p.backend == "auto")
        except triton_lif.TritonLaunchError as exc:
            if p.backend != "auto":
                raise
            triton_lif.note_fallback(str(exc))
    return lif_multistep_torch(x, p)


class LIF(nn.Module):
    """``nn.Module`` wrapper of :func:`lif_multistep` (time-major ``[T, B, ...]`` in and out).

    Analysis code finds spiking layers by this class (``isinstance(m, LIF)``).
    """

    def __init__(self, params: Optional[NeuronLike] = None, **fields: Any):
        """``LIF(LIFParameters(...))``, ``LIF({"decay": 0.5, ...})`` (a model's ``neuron``
        mapping) or ``LIF(decay=0.5, threshold=1.0, ...)``: the record, kept in :attr:`params`."""
        super().__init__()
        self.params = LIFParameters.of(params, **fields).validate()

    # the record's fields, read-only (analysis and NIR export read them off the module)
    decay = property(lambda self: self.params.decay)
    threshold = property(lambda self: self.params.threshold)
    surrogate = property(lambda self: self.params.surrogate)
    alpha = property(lambda self: self.params.alpha)
    detach_reset = property(lambda self: self.params.detach_reset)
    backend = property(lambda self: self.params.backend)
    decay_input = property(lambda self: self.params.decay_input)
    fire_at_threshold = property(lambda self: self.params.fire_at_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lif_multistep(x, self.params)

    def extra_repr(self) -> str:
        p = self.params
        return (f"decay={p.decay}, threshold={p.threshold}, surrogate={p.surrogate}, "
                f"alpha={p.alpha}, detach_reset={p.detach_reset}, backend={p.backend}"
                + (", decay_input=True" if p.decay_input else "")
                + (", fire_at_threshold=True" if p.fire_at_threshold else ""))
