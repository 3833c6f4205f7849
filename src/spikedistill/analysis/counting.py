"""Firing rates, FLOPs (MACs), synaptic operations (SOPs) and energy, counted with hooks.

Everything is measured on an actual forward pass with forward hooks, for any model: no per-model
tables. Hooks go on

- every spiking layer: the modules the model declares in ``model.spiking_modules()`` (the
  :class:`~spikedistill.models.contract.DistillModel` contract; a
  :class:`~spikedistill.models.taps.FeatureTapModel` adds its foreign neuron classes, e.g.
  SpikingJelly's nodes). A plain ``nn.Module`` gets the contract's default (spikedistill's
  ``LIF`` modules) plus the declared spiking modules of every ``DistillModel`` inside it;
- every ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d`` / ``nn.Linear`` (the synaptic layers, and
  their subclasses such as SpikingJelly's multi-step layers),
- every average-pooling module (``nn.AvgPool*d`` / ``nn.AdaptiveAvgPool*d``), only to follow
  spikes through pooling (see "Input kinds" below);
- and, at the operator level, every aten product run *outside* those modules (Spikformer's
  ``(Q K^T) V``, a functional conv / linear / ``@``): a dispatch mode
  (:mod:`spikedistill.analysis.operators`) counts ``convolution`` / ``mm`` / ``addmm`` /
  ``bmm`` / ``baddbmm`` with the same input kinds, as rows named ``MODULE:OP#i``; the other
  aten ops run outside the synaptic modules are listed in ``summary()["not_counted"]``.

Conventions (per image; ``B`` images in a batch, read from the model's input)
-------------------------------------------------------------------------------

**Firing rate of a LIF layer** ``l`` with output spikes ``s`` ``[T, B, N...]``::

    fr_l = sum(s) / numel(s)            (mean spikes per neuron per timestep, over the images)

**Network firing rate**: total spikes over all LIF layers / total neuron-timesteps::

    fr = sum_l sum(s_l) / sum_l numel(s_l)

**FLOPs of a synaptic layer** (the ANN-equivalent multiply-accumulates for *one* image at *one*
timestep; bias additions are not counted)::

    conv:   FLOPs_l = C_out * C_in / groups * prod(kernel) * prod(output spatial size)
    linear: FLOPs_l = in_features * out_features

**Calls per image** ``n_l``: how often the layer runs per image, measured as
``rows / B`` where ``rows`` is the number of samples the layer processed: for a conv
``numel(output) / (C_out * prod(output spatial size))`` (the folded ``[T*B, ...]`` batch, or a
multi-step layer's ``[T, B, ...]``), for a Linear ``numel(input) / in_features``. A student conv on the folded ``[T*B, ...]`` batch has
``n_l = T``; the student's stem (run once on the static image, then repeated) and its head (run
once on the time-averaged feature) have ``n_l = 1``; every teacher layer has ``n_l = 1``.

**Input kinds**, decided *from the data* of every evaluated batch (not from the module tree).
The *model input* is the tensor passed to the model, or a view or a T-fold repeat of it (the
same values; e.g. the folded frames ``[T*B, C, H, W]`` a stem conv receives):

- a static image batch ``[B, C, H, W]`` is always ``real`` (the encoding layer is a MAC layer
  by convention, even for a binary or all-zero image);
- a frame sequence ``[T, B, C, H, W]`` (``B`` is then dim 1) is classified by its values, so the
  first layer is spike-driven for event data: ``spike`` when every value is 0 or 1, ``events``
  when every value is a non-negative integer (event counts per pixel and bin; a count ``k`` is
  ``k`` events, each one accumulate of the weight), ``real`` otherwise (e.g. normalised frames);
- normalised event frames: the data path feeds ``x = (k / 255 - mean_c) / std_c`` for event
  counts ``k`` (:class:`~spikedistill.data.DeviceLoader`), which is real-valued by value. Given
  ``input_affine = (offset_c, scale_c)`` (:func:`loader_affine`: ``255 mean_c``, ``255 std_c``),
  the counter recovers ``k = x * scale_c + offset_c``; when every ``k`` is a non-negative integer
  the first layer is ``spike`` / ``events`` and its rate is computed from ``k``. The
  normalisation is an affine map that folds into the first layer (``w' = w / scale``, a constant
  bias term), so the hardware still does one accumulate per event;
- ``spike``: every input value is exactly 0 or 1;
- ``pooled_spike``: the input is the output tensor of a fixed-window average-pooling module
  (``nn.AvgPool*d``), or a view (reshape, flatten) of it, whose own input was ``spike`` or
  ``pooled_spike`` (the student's shortcut ``AvgPool2d -> conv1x1``; VGGSNN's ``AvgPool2d``
  between stages, whose output the next stage's conv receives as a folded view); an adaptive
  (global) average pool's output is ``real`` (a mean over a whole map is a graded value);
- ``real``: anything else (the image, BN outputs, a ReLU output, the functional GAP + time
  mean before the head, the head's second Linear). A layer is spike-driven only if its input
  was ``spike``/``pooled_spike`` in *every* evaluated batch.

**Operations** of a layer per image::

    real-valued input:   MACs_l = n_l * FLOPs_l
    spike-driven input:  SOPs_l = r_l * n_l * FLOPs_l        (= fr(input) * T * FLOPs_l)

with the input event rate ``r_l = mean(input != 0)`` (for ``events`` inputs ``r_l = mean(input)``,
the number of events per input element). For binary spikes this is exactly the
input firing rate ``mean(input)``. For *pooled* spikes (values ``k / 4`` after a 2x2 average of
spikes) we count one synaptic event per non-zero pooled value: the hardware sends one graded
event per non-zero pooled position and each target accumulates a pre-scaled weight
``w * k/4`` (a shift-and-add of ``w``, no general multiply), so the op count is the number of
non-zero inputs times the fan-out. ``mean(input) * FLOPs`` would undercount (a window with a
single spike would cost a quarter of an op), and counting the four underlying spikes
separately (``4 * mean(input)``) would count the pooling's additions as synapses. The plain
mean ``mean(input)`` is also reported (``input_mean``) so either convention can be recomputed.

**Energy** per image (45 nm numbers of Horowitz, as used by SNN papers)::

    E = e_mac * sum_l MACs_l + e_ac * sum_l SOPs_l         (e_mac = 4.6 pJ, e_ac = 0.9 pJ)

reported in mJ (1 pJ = 1e-9 mJ). The teacher ANN's energy is ``e_mac * FLOPs`` with all its
layers real-valued (``n_l = 1``), counted with the same hooks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn as nn

from spikedistill.analysis.operators import CountRecord, OperatorMode
from spikedistill.models.contract import is_frames, spiking_modules_of

#: energy per multiply-accumulate / per accumulate, in pJ (45 nm CMOS)
E_MAC_PJ = 4.6
E_AC_PJ = 0.9
PJ_TO_MJ = 1e-9

SYNAPTIC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
              nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
#: pools whose output of spikes stays spike-driven (a fixed window: values k / window)
WINDOW_POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
SPIKE_KINDS = ("spike", "pooled_spike", "events")


def frame_kind(x: torch.Tensor) -> str:
    """Input kind of frames by value: ``spike`` (all 0 or 1), ``events`` (all non-negative
    integers), else ``real``."""
    if _is_binary(x):
        return "spike"
    if x.numel() and bool(((x >= 0) & (x == torch.round(x))).all()):
        return "events"
    return "real"


def loader_affine(mean: Sequence[float], std: Sequence[float]) -> tuple:
    """``(offset_c, scale_c) = (255 mean_c, 255 std_c)``: the map back from the loader's
    normalised frames ``(k / 255 - mean_c) / std_c`` to the counts ``k``."""
    return tuple(255.0 * float(m) for m in mean), tuple(255.0 * float(s) for s in std)


def event_counts(x: torch.Tensor, offset: Sequence[float], scale: Sequence[float],
                 tol: float = 1e-3) -> Optional[torch.Tensor]:
    """``k = x * scale_c + offset_c`` for frames ``[T, B, C, H, W]`` (channel dim 2), rounded,
    when every ``k`` is within ``tol`` of a non-negative integer; None otherwise (the frames
    are not normalised event counts) or when the channel counts differ."""
    if x.dim() != 5 or len(offset) != x.shape[2] or len(scale) != x.shape[2]:
        return None
    shape = (1, 1, x.shape[2], 1, 1)
    k = x.double() * torch.tensor(scale, dtype=torch.float64, device=x.device).view(shape) \
        + torch.tensor(offset, dtype=torch.float64, device=x.device).view(shape)
    r = torch.round(k)
    if x.numel() == 0 or bool((r < 0).any()) or float((k - r).abs().max()) > tol:
        return None
    return r.to(torch.float32)


def _storage_key(x: torch.Tensor) -> tuple:
    """``(device, data pointer of the storage)``: equal for a tensor and its views."""
    return (str(x.device), x.untyped_storage().data_ptr())


def _is_binary(x: torch.Tensor) -> bool:
    """True when every element of ``x`` is exactly 0 or 1 (an empty tensor is not binary)."""
    if x.numel() == 0:
        return False
    return bool(((x == 0) | (x == 1)).all())


def synaptic_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple:
    """``(FLOPs per call, rows)`` of a conv / linear layer for one forward.

    ``FLOPs per call`` are the MACs for one sample row (see the module docstring); ``rows`` is
    the number of sample rows in this forward (``numel(out) / (C_out * prod(out spatial))`` for
    a conv: every leading dimension, e.g. a multi-step ``[T, B, ...]``; ``numel(inp) /
    in_features`` for a Linear).
    """
    if isinstance(module, nn.Linear):
        rows = inp.numel() // module.in_features
        return module.in_features * module.out_features, rows
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        n_sp = len(module.kernel_size)
        out_spatial = math.prod(out.shape[-n_sp:])
        rows = out.numel() // (module.out_channels * out_spatial) if out_spatial else 0
        per_position = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return module.out_channels * per_position * out_spatial, rows
    raise TypeError(f"not a synaptic layer: {type(module).__name__}")


@dataclass
class LayerCount(CountRecord):
    """Accumulated counts of one synaptic layer over the evaluated batches (``flops``: MACs per
    image per call, per timestep for folded convs)."""

    #: per timestep t: input events (non-zero values, or the counts of ``events`` inputs) of the
    #: layers that run once per timestep (a folded ``[T*B, ...]`` or ``[T, B, ...]`` input)
    step_events: Optional[List[float]] = None
    step_broken: bool = False       # some call was not per timestep

    @property
    def spike_driven(self) -> bool:
        return bool(self.kinds) and self.kinds <= set(SPIKE_KINDS)

    def per_step(self) -> Optional[Dict[str, List[float]]]:
        """``{"macs": [...], "sops": [...]}`` per timestep (per image), or None for a layer not
        run once per timestep (the stem of a static image, the head). With ``T`` steps::

            SOPs_l[t] = e_l[t] / (numel / T) * (rows / T) / images * FLOPs_l
            MACs_l[t] = MACs_l / T

        (``e_l[t]`` the input events at step t), so that ``sum_t SOPs_l[t] = SOPs_l``."""
        if self.step_events is None or not self.input_numel or not self.images:
            return None
        T = len(self.step_events)
        if not self.spike_driven:
            return {"macs": [self.macs / T] * T, "sops": [0.0] * T}
        per_call = self.flops * (self.rows / T) / self.images / (self.input_numel / T)
        return {"macs": [0.0] * T, "sops": [e * per_call for e in self.step_events]}

    @property
    def input_kind(self) -> str:
        if not self.kinds:
            return "unused"
        if self.spike_driven:
            for kind in ("events", "pooled_spike"):
                if kind in self.kinds:
                    return kind
            return "spike"
        return "real"

    @property
    def event_rate(self) -> float:
        """``r_l`` of the SOPs: ``mean(input)`` (events per element) for event-count inputs,
        else ``mean(input != 0)``."""
        return self.input_mean if "events" in self.kinds else self.input_rate

    @property
    def macs(self) -> float:
        """MACs per image: ``n_l * FLOPs_l`` for a real-valued input, else 0."""
        return 0.0 if self.spike_driven else self.calls_per_image * self.flops

    @property
    def sops(self) -> float:
        """SOPs per image: ``r_l * n_l * FLOPs_l`` for a spike-driven input, else 0."""
        return self.event_rate * self.calls_per_image * self.flops if self.spike_driven else 0.0


@dataclass
class NeuronCount:
    """Accumulated spike counts of one LIF layer."""

    name: str
    spikes: float = 0.0
    numel: int = 0                  # neuron-timesteps (T * B * N), summed over batches
    neurons: int = 0                # neurons per image per timestep (N)

    @property
    def firing_rate(self) -> float:
        return self.spikes / self.numel if self.numel else 0.0


class OpCounter:
    """Context manager that counts spikes and operations of ``model`` while it runs.

    ::

        with OpCounter(model) as counter:
            for x, _ in batches:
                model(x)
        summary = counter.summary(e_mac=4.6, e_ac=0.9)

    The first positional argument of ``model.forward`` must be the image batch ``[B, ...]`` or
    a frame sequence ``[T, B, C, H, W]``; ``B`` normalises every count to per-image values. Nested calls of ``model`` (e.g. inside
    a distiller) are counted once per top-level forward.
    """

    def __init__(self, model: nn.Module, input_affine: Optional[tuple] = None):
        self.model = model
        #: ``(offset_c, scale_c)``: frames are ``(k - offset_c) / scale_c`` of event counts ``k``
        self.input_affine = input_affine
        self._input_raw: Optional[torch.Tensor] = None
        self.layers: Dict[str, LayerCount] = {}
        self.neurons: Dict[str, NeuronCount] = {}
        self.images = 0
        self._batch = 0
        self._handles: List[Any] = []
        self._pooled: Dict[tuple, tuple] = {}  # storage of a pool output -> (tensor, kind)
        self._depth = 0
        self._input: Optional[torch.Tensor] = None
        self._input_kind = "real"
        #: whether the evaluated inputs were frame sequences (True), images (False) or none yet
        self.frames: Optional[bool] = None
        #: ``model.T`` when it is an integer (per-timestep counts), else None
        t = getattr(model, "T", None)
        self.timesteps: Optional[int] = int(t) if isinstance(t, int) else None
        self._path: List[str] = []            # names of the modules now running
        self._in_synapse = 0                  # > 0 inside a hooked conv / linear
        self._own = 0                         # > 0 while the counter's own hooks run
        self._mode: Optional[OperatorMode] = None

    # ---- hooks --------------------------------------------------------------------------

    def _model_pre(self, module, args):
        if self._depth == 0:
            if not args or not isinstance(args[0], torch.Tensor):
                raise TypeError("OpCounter: the model's first argument must be the image batch")
            x = args[0]
            frames = is_frames(x)
            self.frames = frames if self.frames is None else (self.frames or frames)
            self._batch = int(x.shape[1] if frames else x.shape[0])
            self.images += self._batch
            self._pooled.clear()
            self._input = x
            self._input_kind = frame_kind(x.detach()) if frames else "real"
            self._input_raw = None
            if self._mode is not None:
                self._mode.new_forward()
            if frames and self._input_kind == "real" and self.input_affine is not None:
                raw = event_counts(x.detach(), *self.input_affine)
                if raw is not None:
                    self._input_raw = raw
                    self._input_kind = frame_kind(raw)
        self._depth += 1

    def _model_post(self, module, args, out):
        self._depth -= 1
        if self._depth == 0:
            self._pooled.clear()
            self._input = None
            self._input_raw = None

    def _is_model_input(self, x: torch.Tensor) -> bool:
        """``x`` is the model input, a view of it, or its values repeated (T-fold direct
        encoding / folded frames): same per-sample trailing shape and the same values."""
        inp = self._input
        if inp is None:
            return False
        if x is inp:
            return True
        if x.numel() == inp.numel() and x.device == inp.device and \
                x.untyped_storage().data_ptr() == inp.untyped_storage().data_ptr():
            return True                    # a view (reshape / flatten) of the input
        tail = inp.shape[2:] if is_frames(inp) else inp.shape[1:]
        if x.dim() < len(tail) or tuple(x.shape[x.dim() - len(tail):]) != tuple(tail) \
                or x.numel() == 0 or x.numel() % inp.numel():
            return False
        n = x.numel() // inp.numel()
        return torch.equal(x.detach().reshape(n, -1),
                           inp.detach().reshape(1, -1).expand(n, -1).to(x.dtype))

    def _kind(self, x: torch.Tensor) -> str:
        if self._is_model_input(x):
            return self._input_kind
        entry = self._pooled.get(_storage_key(x))
        if entry is not None and entry[0].numel() == x.numel():
            return entry[1]                # the pooled tensor or a view (reshape) of it
        return "spike" if _is_binary(x) else "real"

    def _pool_hook(self, module, args, out):
        x = args[0]
        kind = self._kind(x)
        if kind in SPIKE_KINDS and isinstance(out, torch.Tensor) \
                and isinstance(module, WINDOW_POOL_TYPES):
            self._pooled[_storage_key(out)] = (out, "pooled_spike")

    def _synapse_hook(self, name):
        def hook(module, args, out):
            x = args[0].detach()
            flops, rows = synaptic_flops(module, x, out)
            rec = self.layers[name]
            rec.flops = flops
            rec.rows += rows
            rec.images += self._batch
            rec.kinds.add(self._kind(args[0]))
            raw = self._input_raw
            events_kind = "events" in rec.kinds
            if raw is not None and self._is_model_input(args[0]):
                n = x.numel() // raw.numel()       # the stem sees the counts n times (T-fold)
                rec.nonzero += n * int((raw != 0).sum())
                rec.input_sum += n * float(raw.sum(dtype=torch.float64))
                seen = raw if n == 1 else None
            else:
                rec.nonzero += int((x != 0).sum())
                rec.input_sum += float(x.sum(dtype=torch.float64))
                seen = x
            rec.input_numel += x.numel()
            self._add_step_events(rec, x, seen, events_kind)
        return hook

    def _add_step_events(self, rec: LayerCount, x: torch.Tensor, seen: Optional[torch.Tensor],
                         events_kind: bool) -> None:
        """Input events per timestep of a layer run once per step: its input is the folded
        time-major ``[T*B, ...]`` or ``[T, B, ...]`` (``T = model.T``, ``B`` the batch)."""
        T, B = self.timesteps, self._batch
        per_step = (T is not None and T > 1 and seen is not None and x.dim() >= 2 and
                    (x.shape[0] == T * B or (x.shape[0] == T and x.shape[1] == B)))
        if rec.step_broken:
            return
        if not per_step:                     # seen once per image: no per-step split
            rec.step_broken, rec.step_events = True, None
            return
        v = seen.detach().reshape(T, -1)
        ev = (v.sum(1, dtype=torch.float64) if events_kind else (v != 0).sum(1)).tolist()
        old = rec.step_events or [0.0] * T
        rec.step_events = [a + float(b) for a, b in zip(old, ev)]

    def _neuron_hook(self, name):
        def hook(module, args, out):
            s = (out[0] if isinstance(out, (tuple, list)) else out).detach()
            rec = self.neurons[name]
            rec.spikes += float(s.sum(dtype=torch.float64))
            rec.numel += s.numel()
            # LIF output is time-major [T, B, ...]: neurons per image per timestep
            rec.neurons = math.prod(s.shape[2:]) if s.dim() > 2 else 1
        return hook

    def _enter_module(self, name: str, synaptic: bool):
        def pre(module, args):
            self._path.append(name)
            self._in_synapse += int(synaptic)
        return pre

    def _leave_module(self, synaptic: bool):
        def post(module, args, out):
            if self._path:
                self._path.pop()
            self._in_synapse -= int(synaptic)
        return post

    def _operator_active(self) -> bool:
        return self._depth > 0 and self._in_synapse == 0 and self._own == 0

    def _quiet(self, hook):
        """``hook`` with the operator counting paused (the counter's own tensor ops)."""
        def run(*args):
            self._own += 1
            try:
                return hook(*args)
            finally:
                self._own -= 1
        return run

    def __enter__(self) -> "OpCounter":
        self._handles.append(self.model.register_forward_pre_hook(self._quiet(self._model_pre)))
        self._handles.append(self.model.register_forward_hook(self._quiet(self._model_post)))
        spiking = {id(m): n for n, m in spiking_modules_of(self.model)}
        for name, m in self.model.named_modules():
            if name:                 # the module path, for naming functional products
                syn = isinstance(m, SYNAPTIC_TYPES) and id(m) not in spiking
                self._handles.append(m.register_forward_pre_hook(self._enter_module(name, syn)))
                self._handles.append(m.register_forward_hook(self._leave_module(syn)))
        self._mode = OperatorMode(self._kind, self._operator_active,
                                  lambda: self._path[-1] if self._path else "",
                                  lambda: self._batch)
        self._mode.__enter__()
        for name, m in self.model.named_modules():
            if id(m) in spiking:
                name = spiking[id(m)]
                self.neurons[name] = NeuronCount(name)
                self._handles.append(m.register_forward_hook(self._quiet(self._neuron_hook(name))))
            elif isinstance(m, SYNAPTIC_TYPES):
                self.layers[name] = LayerCount(name, type(m).__name__)
                self._handles.append(m.register_forward_hook(self._quiet(self._synapse_hook(name))))
            elif isinstance(m, POOL_TYPES):
                self._handles.append(m.register_forward_hook(self._quiet(self._pool_hook)))
        return self

    def __exit__(self, *exc) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
        self._path.clear()
        self._in_synapse = 0
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._pooled.clear()

    # ---- results ------------------------------------------------------------------------

    def summary(self, *, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ) -> Dict[str, Any]:
        """Per-layer tables and totals (all per image), see :func:`summarize`; the functional
        products (:mod:`~spikedistill.analysis.operators`) are rows after the modules', and
        ``not_counted`` lists the other aten ops run outside the synaptic modules (calls per
        forward)."""
        ops = self._mode.records.values() if self._mode is not None else ()
        out = summarize(list(self.layers.values()) + list(ops), self.neurons.values(),
                        images=self.images, e_mac=e_mac, e_ac=e_ac)
        n = self._mode.forwards if self._mode is not None else 0
        out["not_counted"] = ({k: v / n for k, v in sorted(self._mode.not_counted.items())}
                              if n else {})
        return out


def summarize(layers: Iterable[LayerCount], neurons: Iterable[NeuronCount], *, images: int,
              e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ) -> Dict[str, Any]:
    """Turn accumulated counts into a plain dict.

    Keys: ``images``; ``layers`` (one row per synaptic layer: name, type, input_kind,
    flops, calls_per_image, input_rate, input_mean, macs, sops, energy_mj); ``neurons`` (name,
    neurons, firing_rate, spikes_per_image); ``totals``: ``flops`` (sum of FLOPs_l, i.e. the
    ANN-equivalent MACs of one timestep), ``macs``, ``sops``, ``firing_rate`` (network average),
    ``spikes_per_image``, ``energy_mj``, ``energy_mac_mj``, ``energy_ac_mj``, and the constants
    ``e_mac_pj``, ``e_ac_pj``.
    """
    layer_rows, neuron_rows = [], []
    tot_flops = tot_macs = tot_sops = 0.0
    for rec in layers:
        if not rec.kinds:        # never called: not part of this forward
            continue
        macs, sops = rec.macs, rec.sops
        tot_flops += rec.flops
        tot_macs += macs
        tot_sops += sops
        row = {
            "name": rec.name, "type": rec.type, "input_kind": rec.input_kind,
            "flops": int(rec.flops), "calls_per_image": rec.calls_per_image,
            "input_rate": rec.input_rate, "input_mean": rec.input_mean,
            "macs": macs, "sops": sops,
            "energy_mj": (e_mac * macs + e_ac * sops) * PJ_TO_MJ,
        }
        split = rec.per_step() if hasattr(rec, "per_step") else None
        if split is not None:
            row["macs_per_step"], row["sops_per_step"] = split["macs"], split["sops"]
        layer_rows.append(row)
    spikes = numel = 0.0
    for rec in neurons:
        if not rec.numel:
            continue
        spikes += rec.spikes
        numel += rec.numel
        neuron_rows.append({"name": rec.name, "neurons": rec.neurons,
                            "firing_rate": rec.firing_rate,
                            "spikes_per_image": rec.spikes / images if images else 0.0})
    e_mac_mj = e_mac * tot_macs * PJ_TO_MJ
    e_ac_mj = e_ac * tot_sops * PJ_TO_MJ
    return {
        "images": int(images),
        "layers": layer_rows,
        "neurons": neuron_rows,
        "per_step": per_step_totals(layer_rows, e_mac=e_mac, e_ac=e_ac),
        "totals": {
            "flops": tot_flops, "macs": tot_macs, "sops": tot_sops,
            "firing_rate": spikes / numel if numel else 0.0,
            "spikes_per_image": spikes / images if images else 0.0,
            "energy_mac_mj": e_mac_mj, "energy_ac_mj": e_ac_mj,
            "energy_mj": e_mac_mj + e_ac_mj,
            "e_mac_pj": float(e_mac), "e_ac_pj": float(e_ac),
        },
    }


def per_step_totals(layer_rows: List[Dict[str, Any]], *, e_mac: float = E_MAC_PJ,
                    e_ac: float = E_AC_PJ) -> Dict[str, Any]:
    """Per-timestep totals of the layers run once per step (``macs``, ``sops``, ``energy_mj``
    lists over t) and the ``static`` rest (layers run once per image, the functional products):
    ``sum_t energy_mj[t] + static["energy_mj"]`` is the image's energy."""
    steps = [r for r in layer_rows if "sops_per_step" in r]
    T = max((len(r["sops_per_step"]) for r in steps), default=0)
    macs, sops = [0.0] * T, [0.0] * T
    st_macs = st_sops = 0.0
    for r in layer_rows:
        if "sops_per_step" in r and len(r["sops_per_step"]) == T:
            macs = [a + b for a, b in zip(macs, r["macs_per_step"])]
            sops = [a + b for a, b in zip(sops, r["sops_per_step"])]
        else:
            st_macs += r["macs"]
            st_sops += r["sops"]
    energy = [(e_mac * m + e_ac * s) * PJ_TO_MJ for m, s in zip(macs, sops)]
    return {"macs": macs, "sops": sops, "energy_mj": energy,
            "static": {"macs": st_macs, "sops": st_sops,
                       "energy_mj": (e_mac * st_macs + e_ac * st_sops) * PJ_TO_MJ}}


@torch.no_grad()
def count_model(model: nn.Module, inputs: Sequence[torch.Tensor] | torch.Tensor, *,
                e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ,
                input_affine: Optional[tuple] = None) -> Dict[str, Any]:
    """Run ``model`` (in eval mode) on one batch or a sequence of batches (images ``[B, C, H, W]``
    or frames ``[T, B, C, H, W]``) and return :func:`summarize`'s dict. The model's training mode
    is restored afterwards. ``input_affine``: see :class:`OpCounter` (normalised event frames)."""
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    was_training = model.training
    model.eval()
    try:
        with OpCounter(model, input_affine=input_affine) as counter:
            for x in inputs:
                model(x)
    finally:
        model.train(was_training)
    return counter.summary(e_mac=e_mac, e_ac=e_ac)


def ann_flops(model: nn.Module, input_shape: Sequence[int], *, device=None) -> int:
    """ANN-equivalent FLOPs (MACs) of one image at one timestep: ``sum_l FLOPs_l`` of every
    synaptic layer, counted on a zero batch of one image of ``input_shape`` (C, H, W)."""
    p = next(model.parameters(), None)
    dev = device if device is not None else (p.device if p is not None else "cpu")
    x = torch.zeros(1, *input_shape, device=dev)
    return int(count_model(model, x)["totals"]["flops"])


__all__ = ["E_AC_PJ", "E_MAC_PJ", "LayerCount", "NeuronCount", "OpCounter", "PJ_TO_MJ",
           "ann_flops", "count_model", "event_counts", "frame_kind", "loader_affine",
           "per_step_totals",
           "spiking_modules_of", "summarize", "synaptic_flops"]
