"""Export a trained spiking ResNet student as a NIR graph (Neuromorphic Intermediate
Representation, PyPI ``nir`` 1.0) that the NIR importers of snnTorch, SpikingJelly and Norse
load as it is.

Mapping (one NIR node per entry, named after the PyTorch module)
----------------------------------------------------------------

- **Time step** ``dt = 1e-4`` (seconds), the step snnTorch and SpikingJelly use when they write
  and read NIR; it is stored in the graph metadata (``dt``) and every time constant is written
  for it. One NIR step is one of the student's T timesteps.
- **Input** ``(C, H, W)``: the (normalised) image, presented as a constant input at every one
  of the T timesteps. This equals the student's direct encoding, where the stem conv runs once
  and its output is repeated T times.
- **Conv + BatchNorm** -> one ``nir.Conv2d`` with BN folded in (eval-mode running statistics;
  BN in training mode cannot be exported)::

      s = gamma / sqrt(running_var + eps)          (per output channel)
      W' = W * s[:, None, None, None]
      b' = beta + s * (b_conv - running_mean)      (b_conv = 0: our convs have no bias)

- **LIF** ``u = decay * u + I; spike if u > threshold; u = 0 after a spike`` -> ``nir.LIF``.
  NIR's LIF is ``tau dv/dt = (v_leak - v) + r I`` with ``z = [v > v_threshold]`` and
  ``v <- v_reset`` on a spike; its forward-Euler step is
  ``v[t] = (1 - dt/tau) v[t-1] + (dt/tau) (v_leak + r I[t])``. We write::

      tau = dt / (1 - decay)               (= 2e-4 s for decay 0.5: 1 - dt/tau = decay)
      r = 1,  v_leak = 0,  v_reset = 0
      v_threshold = (1 - decay) * threshold

  so ``v = (1 - decay) u`` at every step (``v[t] = decay v[t-1] + (1 - decay) I[t]``) and
  ``v > (1 - decay) threshold`` exactly when ``u > threshold``; for decay 0.5 the factor is a
  power of two and the scaled membrane is exact in floating point. ``r = 1`` is the one
  convention all three importers honour: snnTorch divides the threshold by ``r dt / tau``,
  SpikingJelly maps it to ``LIFNode(tau = tau/dt, decay_input=True)``, Norse ignores ``r``
  (its LIF always integrates ``(dt/tau) I``). The comparison is **strict** (``v ==
  v_threshold`` does not spike), as in the student; the graph metadata says so
  (``threshold``) because SpikingJelly fires at equality.
  A neuron with ``decay = 1`` (no leak) becomes ``nir.IF(r = 1/dt, v_threshold = threshold,
  v_reset = 0)``: ``v[t] = v[t-1] + dt r I[t] = v[t-1] + I[t]``, as SpikingJelly writes and
  reads it (Norse's IF adds ``I`` whatever ``r``; snnTorch 1.0 refuses ``r != 1`` and maps
  ``nir.IF`` to a leaky neuron, so such a graph does not run there). Every parameter is an
  array of the layer's shape ``(C, H, W)``.
- **Residual addition** ``o = BN2(conv2(s1)) + shortcut(x)``: NIR sums all edges arriving at a
  node, so ``conv2`` and the shortcut both have an edge into the block's output neuron.
  Identity shortcut: an edge from the block's input node. Downsampling shortcut
  ``AvgPool2d(k) -> conv1x1 -> BN``: a ``nir.SumPool2d(k)`` (the spike count of each window,
  which every importer maps; Norse has no ``AvgPool2d``) then the folded ``nir.Conv2d`` with
  the pool's ``1 / (k_h k_w)`` folded into its weight.
- **Head** ``GAP -> mean over T -> Linear(C, 256) -> Linear(256, K)``: GAP is a
  ``nir.SumPool2d`` over the whole ``h x w`` map, then the two Linears as ``1 x 1``
  ``nir.Conv2d`` on the ``(C, 1, 1)`` map (``head.0`` with the GAP's ``1 / (h w)`` folded into
  its weight). No ``nir.Flatten``: the importers turn NIR's batch-free ``Flatten(start_dim=0)``
  into a ``torch.nn.Flatten(0)`` that also flattens the batch, so a convolutional head is what
  runs on batches of many samples. The graph output ``(K, 1, 1)`` at step ``t`` is the
  per-step logits ``z[t]`` (a current, no neuron).
- **Readout**: the student's logits are the **mean over the T steps of the output** (the head
  is affine, so the mean of the per-step logits equals the head of the time-mean feature):
  ``logits = (1/T) sum_t output[t]``, reshaped to ``(B, K)``. NIR's integrator ``nir.I`` could
  express that mean but no importer maps it, so the graph leaves it to the consumer; the
  metadata says so (``readout``). :func:`run_nir` applies it.
- **ReLU** (``last_activation: relu``): NIR has no ReLU. The export refuses it
  (:class:`NIRExportError` naming the block) unless ``allow_relu``; then the block's output is
  a ``nir.Scale`` of ones whose metadata says ``activation = relu`` and ``unmapped = true``, the
  graph metadata lists it under ``unmapped_blocks`` and a warning is issued. Such a graph is
  **not a faithful export**: to any NIR consumer the placeholder is an identity (so the logits
  differ from the model's wherever the block's input is negative), and snnTorch, SpikingJelly
  and Norse do not load it at all (none maps ``nir.Scale``). Only :func:`run_nir`, which applies
  ``max(0, x)`` at marked nodes, reproduces the model from it.

Parameters are written in the model's precision (float64 for a float64 model, else float32);
the graph metadata records it (``dtype``).

:func:`run_nir` / :func:`simulate_nir` are a small discrete-time interpreter of such graphs: they
read ``dt`` and ``T`` from the metadata, integrate in the graph's precision, and define the
semantics above executably; the tests compare them and the peers' importers with the PyTorch
model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from spikedistill.atomic import atomic_write
from spikedistill.errors import SpikeDistillError
from spikedistill.neurons import LIF

DT = 1e-4
"""The NIR time step in seconds (snnTorch's and SpikingJelly's default): one student timestep."""

THRESHOLD_RULE = "strict: spike when v > v_threshold; v == v_threshold does not spike"


class NIRExportError(SpikeDistillError):
    """The model (or one of its blocks) cannot be expressed in NIR."""


def _model_dtype(model: nn.Module) -> np.dtype:
    """float64 when the model's parameters are float64, else float32 (the precision written)."""
    p = next(model.parameters(), None)
    return np.dtype(np.float64) if p is not None and p.dtype == torch.float64 \
        else np.dtype(np.float32)


def _np(t: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return t.detach().cpu().double().numpy().astype(dtype)


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, dtype=np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """``(W', b')`` of ``bn(conv(x))`` as one conv, with BN's running statistics (see the module
    docstring), computed in float64 and returned as ``dtype``."""
    if bn.running_mean is None or bn.running_var is None:
        raise NIRExportError(f"BatchNorm {bn} has no running statistics (track_running_stats="
                             "False); it cannot be folded into the conv")
    with torch.no_grad():
        s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = conv.weight.double() * s.view(-1, 1, 1, 1)
        b_conv = conv.bias.double() if conv.bias is not None else torch.zeros_like(s)
        b = bn.bias.double() + s * (b_conv - bn.running_mean.double())
    return _np(w, dtype), _np(b, dtype)


def lif_node(lif: LIF, shape: Sequence[int], name: str, dtype=np.float32):
    """The NIR neuron of a :class:`LIF` module for a layer of ``shape`` at ``dt = DT``:
    ``nir.LIF(tau = dt/(1-decay), r = 1, v_threshold = (1-decay) threshold)``, or
    ``nir.IF(r = 1/dt, v_threshold = threshold)`` for ``decay = 1`` (module docstring)."""
    import nir

    shape = tuple(int(s) for s in shape)
    ones = np.ones(shape, dtype=dtype)
    zeros = np.zeros(shape, dtype=dtype)
    decay, thr = float(lif.decay), float(lif.threshold)
    meta = {"source": name, "decay": decay, "threshold": thr, "dt": DT,
            "threshold_rule": THRESHOLD_RULE,
            "discrete": "u = decay * u + I; spike if u > threshold; hard reset to 0"}
    if not 0.0 <= decay <= 1.0:
        raise NIRExportError(f"{name}: LIF decay {decay} is outside [0, 1]; no NIR neuron "
                             "matches it")
    for option in ("decay_input", "fire_at_threshold"):
        if getattr(lif, option, False):
            raise NIRExportError(f"{name}: neuron option {option}=True is not exported (the NIR "
                                 "graph maps u = decay * u + I with a strict threshold); export a "
                                 f"model built with model.neuron.{option}=false")
    if decay == 1.0:
        meta["membrane"] = "v = u"
        return nir.IF(r=ones * (1.0 / DT), v_threshold=ones * thr, v_reset=zeros, metadata=meta)
    meta["membrane"] = f"v = (1 - decay) u = {1.0 - decay!r} u"
    return nir.LIF(tau=ones * (DT / (1.0 - decay)), r=ones.copy(), v_leak=zeros.copy(),
                   v_threshold=ones * ((1.0 - decay) * thr), v_reset=zeros.copy(),
                   metadata=meta)


def _conv_node(weight: np.ndarray, bias: np.ndarray, conv: Optional[nn.Conv2d],
               in_hw: Tuple[int, int], meta: Dict[str, Any]):
    """A ``nir.Conv2d`` of ``weight``/``bias`` with ``conv``'s geometry (a 1x1 conv with stride 1
    when ``conv`` is None) on an ``in_hw`` map, and its output ``(h, w)``."""
    import nir

    if conv is not None and isinstance(conv.padding, str):
        raise NIRExportError(f"{meta.get('source')}: string padding {conv.padding!r} is not "
                             "supported")
    geo = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1) if conv is None else \
        dict(stride=tuple(conv.stride), padding=tuple(conv.padding),
             dilation=tuple(conv.dilation), groups=int(conv.groups))
    node = nir.Conv2d(input_shape=tuple(int(v) for v in in_hw), weight=weight, bias=bias,
                      metadata=meta, **geo)
    out_hw = tuple(int(v) for v in node.output_type["output"][1:])
    return node, out_hw


def _bn_conv_node(conv: nn.Conv2d, bn: nn.BatchNorm2d, in_hw, name: str, dtype, scale=1.0):
    w, b = fold_bn(conv, bn, np.float64)
    meta = {"source": name, "batchnorm_folded": 1}
    if scale != 1.0:
        w = w * scale
        meta["pool_folded"] = 1
    return _conv_node(w.astype(dtype), b.astype(dtype), conv, in_hw, meta)


def _relu_placeholder(shape, name: str, dtype):
    import nir

    return nir.Scale(scale=np.ones(tuple(shape), dtype),
                     metadata={"source": name, "activation": "relu", "unmapped": 1,
                               "note": "NIR has no ReLU: a consumer must apply max(0, x) here; "
                                       "as a plain Scale node this is an identity"})


def _shortcut_pool(pool: nn.AvgPool2d, name: str):
    """``(nir.SumPool2d, 1/divisor, (k, stride, padding))`` of an ``AvgPool2d`` shortcut."""
    import nir

    k, st = _pair(pool.kernel_size), _pair(pool.stride if pool.stride is not None
                                           else pool.kernel_size)
    pd = _pair(pool.padding)
    if pool.ceil_mode:
        raise NIRExportError(f"{name}: AvgPool2d(ceil_mode=True) has no NIR equivalent")
    if any(pd) and not pool.count_include_pad:
        raise NIRExportError(f"{name}: AvgPool2d with padding and count_include_pad=False "
                             "divides by a position-dependent count; no NIR equivalent")
    divisor = pool.divisor_override or k[0] * k[1]
    node = nir.SumPool2d(kernel_size=np.array(k), stride=np.array(st), padding=np.array(pd),
                         metadata={"source": name,
                                   "note": f"AvgPool2d as a sum pool; its 1/{divisor} is folded "
                                           "into the following conv"})
    return node, 1.0 / divisor, (k, st, pd)


#: the registered students :func:`to_nir` writes
NIR_STUDENTS = ("spiking_resnet19", "spiking_resnet20")


def nir_export_problem(model_cfg) -> Optional[str]:
    """Why the student a ``model`` config section describes cannot be exported to NIR by
    :func:`to_nir` (and how to get one that can), or None when it can: the same rules as
    :func:`to_nir` (a registered spiking ResNet, no ReLU block), read from the config so that
    ``train`` / ``distill`` can say so before training."""
    if model_cfg.source != "spikedistill" or model_cfg.name not in NIR_STUDENTS:
        what = (f"{model_cfg.source}:{model_cfg.arch}" if model_cfg.source != "spikedistill"
                else model_cfg.name)
        return (f"NIR export writes the spiking ResNets only ({', '.join(NIR_STUDENTS)}); "
                f"this student is {what}")
    if model_cfg.last_activation == "relu":
        return ("its last block ends in a ReLU (model.last_activation=relu, the released "
                "code's recipe), which NIR cannot express; train with "
                "--set model.last_activation=lif for a student that "
                "'spikedistill export --format nir' writes")
    return None


def to_nir(model: nn.Module, input_shape: Sequence[int], *, allow_relu: bool = False):
    """The student as a ``nir.NIRGraph`` (see the module docstring).

    ``input_shape`` is ``(C, H, W)`` of one image. Only the registered spiking ResNets
    (``SpikingResNet``) are supported; anything else raises :class:`NIRExportError`.
    """
    import nir
    from spikedistill.models.spiking_resnet import SpikingBasicBlock, SpikingResNet

    if not isinstance(model, SpikingResNet):
        raise NIRExportError(f"NIR export writes spikedistill's spiking ResNet students only "
                             f"({' / '.join(NIR_STUDENTS)}, direct encoding); "
                             f"{getattr(model, 'model_name', type(model).__name__)} is not one "
                             "of them")
    C, H, W = (int(v) for v in input_shape)
    if C != model.stem.in_channels:
        raise NIRExportError(f"input has {C} channels but the stem expects "
                             f"{model.stem.in_channels}")
    dtype = _model_dtype(model)
    nodes: Dict[str, Any] = {"input": nir.Input(input_type=np.array([C, H, W]))}
    edges: List[Tuple[str, str]] = []
    unmapped: List[str] = []

    stem, hw = _bn_conv_node(model.stem, model.stem_bn, (H, W), "stem", dtype)
    nodes["stem"] = stem
    edges.append(("input", "stem"))
    nodes["stem_lif"] = lif_node(model.stem_lif, (model.stem.out_channels, *hw), "stem_lif",
                                 dtype)
    edges.append(("stem", "stem_lif"))
    prev = "stem_lif"

    for sname in ("layer1", "layer2", "layer3"):
        for bi, block in enumerate(getattr(model, sname)):
            if not isinstance(block, SpikingBasicBlock):
                raise NIRExportError(f"{sname}.{bi}: unsupported block {type(block).__name__}")
            p = f"{sname}.{bi}"
            c1, hw1 = _bn_conv_node(block.conv1, block.bn1, hw, f"{p}.conv1", dtype)
            cout = block.conv1.out_channels
            nodes[f"{p}.conv1"] = c1
            edges.append((prev, f"{p}.conv1"))
            nodes[f"{p}.lif1"] = lif_node(block.lif1, (cout, *hw1), f"{p}.lif1", dtype)
            edges.append((f"{p}.conv1", f"{p}.lif1"))
            c2, hw2 = _bn_conv_node(block.conv2, block.bn2, hw1, f"{p}.conv2", dtype)
            nodes[f"{p}.conv2"] = c2
            edges.append((f"{p}.lif1", f"{p}.conv2"))
            out = f"{p}.act2"
            if isinstance(block.act2, LIF):
                nodes[out] = lif_node(block.act2, (cout, *hw2), out, dtype)
            elif isinstance(block.act2, nn.ReLU):
                if not allow_relu:
                    raise NIRExportError(
                        f"block {p}: its output activation is ReLU (model.last_activation=relu), "
                        "which NIR cannot express; export a model trained with "
                        "last_activation=lif, or pass --allow-relu to export it as a marked "
                        "identity placeholder (loaded by spikedistill's run_nir only)")
                nodes[out] = _relu_placeholder((cout, *hw2), out, dtype)
                unmapped.append(f"{out} (ReLU)")
            else:
                raise NIRExportError(f"block {p}: unsupported activation "
                                     f"{type(block.act2).__name__}")
            edges.append((f"{p}.conv2", out))
            sc = block.shortcut
            if sc is None:
                edges.append((prev, out))                     # identity residual
            else:
                mods = list(sc)
                src, sc_hw, scale = prev, hw, 1.0
                if isinstance(mods[0], nn.AvgPool2d):
                    pool, scale, (k, st, pd) = _shortcut_pool(mods[0], f"{p}.shortcut.0")
                    nodes[f"{p}.shortcut.0"] = pool
                    edges.append((src, f"{p}.shortcut.0"))
                    src = f"{p}.shortcut.0"
                    sc_hw = tuple((sc_hw[i] + 2 * pd[i] - k[i]) // st[i] + 1 for i in range(2))
                    mods = mods[1:]
                if len(mods) != 2 or not isinstance(mods[0], nn.Conv2d) or \
                        not isinstance(mods[1], nn.BatchNorm2d):
                    raise NIRExportError(f"block {p}: unsupported shortcut {sc}")
                name = f"{p}.shortcut.conv"
                cs, _ = _bn_conv_node(mods[0], mods[1], sc_hw, name, dtype, scale=scale)
                nodes[name] = cs
                edges.append((src, name))
                edges.append((name, out))
            prev, hw = out, hw2

    # head: GAP (sum pool, its 1/(h w) folded into head.0), the Linears as 1x1 convs
    h, w = hw
    nodes["pool"] = nir.SumPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]),
                                  padding=np.array([0, 0]),
                                  metadata={"note": "global average pool; its 1/(h*w) is folded "
                                                    "into head.0's weight"})
    edges.append((prev, "pool"))
    src = "pool"
    linears = list(model.head)
    for i, lin in enumerate(linears):
        if not isinstance(lin, nn.Linear):
            raise NIRExportError(f"head.{i}: unsupported layer {type(lin).__name__}")
        wgt = lin.weight.double() / (h * w) if i == 0 else lin.weight
        bias = _np(lin.bias, dtype) if lin.bias is not None else \
            np.zeros(lin.out_features, dtype)
        nodes[f"head.{i}"], _ = _conv_node(
            _np(wgt, dtype)[:, :, None, None], bias, None, (1, 1),
            {"source": f"head.{i}", "linear_as_1x1_conv": 1, "gap_folded": 1 if i == 0 else 0})
        edges.append((src, f"head.{i}"))
        src = f"head.{i}"
    K = linears[-1].out_features
    T = int(model.T)
    nodes["output"] = nir.Output(output_type=np.array([K, 1, 1]))
    edges.append((src, "output"))

    meta = {"producer": "spikedistill", "model": getattr(model, "model_name", "spiking_resnet"),
            "T": T, "dt": DT, "dt_unit": "s", "dtype": dtype.name,
            "threshold": THRESHOLD_RULE,
            "neuron": "v[t] = (1 - dt/tau) v[t-1] + (dt/tau) (v_leak + r I[t]); spike if "
                      "v > v_threshold; v = v_reset after a spike; LIF r = 1 and "
                      "v = (1 - decay) u (u: the student's membrane)",
            "last_activation": model.last_activation,
            "encoding": "direct: the image is the input at every timestep",
            "readout": f"logits = mean over the {T} steps of the output node's value (the "
                       f"per-step logits, shape ({K}, 1, 1)); no node integrates them",
            "batchnorm": "folded into the preceding conv (eval-mode running statistics)",
            "unmapped_blocks": ", ".join(unmapped) if unmapped else ""}
    if unmapped:
        warnings.warn(f"NIR export: {', '.join(unmapped)} exported as an identity placeholder "
                      "(nir.Scale of ones, metadata activation=relu); NIR has no ReLU, so only "
                      "spikedistill's run_nir reproduces this model from the graph",
                      stacklevel=2)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def export_nir(model: nn.Module, path, input_shape: Sequence[int], *,
               allow_relu: bool = False) -> Path:
    """Write :func:`to_nir` of ``model`` to ``path`` with ``nir.write`` (HDF5, atomically)."""
    import io

    import nir

    graph = to_nir(model, input_shape, allow_relu=allow_relu)
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


# --------------------------------------------------------------------------------------------
# reference interpreter
# --------------------------------------------------------------------------------------------

def _topo_order(nodes: Dict[str, Any], edges: Sequence[Tuple[str, str]]) -> List[str]:
    preds = {k: [] for k in nodes}
    for a, b in edges:
        preds[b].append(a)
    order, done = [], set()

    def visit(k, stack=()):
        if k in done:
            return
        if k in stack:
            raise NIRExportError(f"NIR graph has a cycle through {k!r}")
        for p in preds[k]:
            visit(p, stack + (k,))
        done.add(k)
        order.append(k)

    for k in nodes:
        visit(k)
    return order


class NIRRun(NamedTuple):
    """What :func:`simulate_nir` computed: ``logits`` ``[B, K]`` (the graph's readout),
    ``outputs`` ``[T, B, ...]`` (the output node's value at every step) and ``spike_counts``
    (spikes of every ``LIF``/``IF`` node, summed over steps, samples and neurons)."""

    logits: torch.Tensor
    outputs: torch.Tensor
    spike_counts: Dict[str, int]


def _graph_dtype(graph) -> torch.dtype:
    """The precision recorded in the metadata (``dtype``), else that of the first conv weight."""
    import nir

    name = str(graph.metadata.get("dtype", "")) if graph.metadata else ""
    if not name:
        for n in graph.nodes.values():
            if isinstance(n, (nir.Conv2d, nir.Affine)):
                name = np.asarray(n.weight).dtype.name
                break
    return torch.float64 if name == "float64" else torch.float32


@torch.no_grad()
def simulate_nir(graph, x: torch.Tensor, T: Optional[int] = None, *,
                 dtype: Optional[torch.dtype] = None, apply_relu: bool = True) -> NIRRun:
    """Run a NIR graph in discrete time for ``T`` steps (default: the metadata's ``T``) of
    ``dt`` (the metadata's ``dt``; 1 for a graph without one) on images ``x`` ``[B, C, H, W]``
    presented at every step, in ``dtype`` (default: the graph's precision, see
    :func:`_graph_dtype`).

    Every node's input is the sum of its incoming edges at the same step; neurons follow the
    forward-Euler equations of the module docstring (``v <- (1 - dt/tau) v + (dt/tau)(v_leak +
    r I)``, ``v <- v + dt r I`` for ``IF``; strict threshold, then reset). The logits are the mean
    over the T steps of the output (this module's graphs), or the output after the last step for
    a graph whose readout is an integrator ``nir.I`` (graphs of older spikedistill versions).
    ``apply_relu``: apply ``max(0, x)`` at ``Scale`` nodes marked ``activation = relu``."""
    import nir

    nodes, edges = graph.nodes, graph.edges
    meta = graph.metadata or {}
    T = int(meta["T"]) if T is None else int(T)
    if T < 1:
        raise NIRExportError(f"run_nir: T must be a positive integer, got {T}")
    dtype = _graph_dtype(graph) if dtype is None else dtype
    dt = torch.tensor(float(meta.get("dt", 1.0)), dtype=dtype)
    order = _topo_order(nodes, edges)
    preds = {k: [a for a, b in edges if b == k] for k in nodes}
    ten = lambda a: torch.as_tensor(np.asarray(a)).to(dtype)  # noqa: E731
    x = x.to(dtype)
    integrating = any(isinstance(n, nir.I) for n in nodes.values())
    state: Dict[str, torch.Tensor] = {}
    counts: Dict[str, int] = {k: 0 for k, n in nodes.items() if isinstance(n, (nir.LIF, nir.IF))}
    outputs = []
    for _ in range(T):
        vals: Dict[str, torch.Tensor] = {}
        for k in order:
            n = nodes[k]
            if isinstance(n, nir.Input):
                vals[k] = x
                continue
            inp = sum(vals[p] for p in preds[k])
            if isinstance(n, nir.Conv2d):
                vals[k] = F.conv2d(inp, ten(n.weight), ten(n.bias), stride=tuple(n.stride),
                                   padding=tuple(int(v) for v in n.padding),
                                   dilation=tuple(n.dilation), groups=int(n.groups))
            elif isinstance(n, (nir.LIF, nir.IF)):
                v = state.get(k, torch.zeros_like(inp))
                if isinstance(n, nir.LIF):
                    a = dt / ten(n.tau)
                    v = (1 - a) * v + a * (ten(n.v_leak) + ten(n.r) * inp)
                else:
                    v = v + (dt * ten(n.r)) * inp
                z = (v > ten(n.v_threshold)).to(dtype)
                state[k] = torch.where(z > 0, ten(n.v_reset).expand_as(v), v)
                counts[k] += int(z.sum().item())
                vals[k] = z
            elif isinstance(n, nir.AvgPool2d):
                vals[k] = F.avg_pool2d(inp, tuple(int(v) for v in n.kernel_size),
                                       tuple(int(v) for v in n.stride),
                                       tuple(int(v) for v in n.padding))
            elif isinstance(n, nir.SumPool2d):
                ks = tuple(int(v) for v in n.kernel_size)
                vals[k] = F.avg_pool2d(inp, ks, tuple(int(v) for v in n.stride),
                                       tuple(int(v) for v in n.padding),
                                       count_include_pad=True) * (ks[0] * ks[1])
            elif isinstance(n, nir.Flatten):
                vals[k] = inp.flatten(1 + int(n.start_dim),
                                      int(n.end_dim) if int(n.end_dim) < 0 else 1 + int(n.end_dim))
            elif isinstance(n, nir.Affine):
                vals[k] = inp @ ten(n.weight).T + ten(n.bias)
            elif isinstance(n, nir.Scale):
                y = inp * ten(n.scale)
                if apply_relu and str(n.metadata.get("activation", "")) == "relu":
                    y = y.clamp_min(0)
                vals[k] = y
            elif isinstance(n, nir.I):
                v = state.get(k, torch.zeros_like(inp)) + dt * ten(n.r) * inp
                state[k] = v
                vals[k] = v
            elif isinstance(n, nir.Output):
                vals[k] = inp
                outputs.append(inp)
            else:
                raise NIRExportError(f"run_nir: node {k!r} of type {type(n).__name__} is not "
                                     "supported by this interpreter")
    out = torch.stack(outputs)
    logits = out[-1] if integrating else out.mean(dim=0)
    return NIRRun(logits=logits.flatten(1), outputs=out, spike_counts=counts)


def run_nir(graph, x: torch.Tensor, T: Optional[int] = None, *,
            dtype: Optional[torch.dtype] = None, apply_relu: bool = True) -> torch.Tensor:
    """The logits ``[B, K]`` of :func:`simulate_nir` (the graph run for ``T`` steps on ``x``)."""
    return simulate_nir(graph, x, T, dtype=dtype, apply_relu=apply_relu).logits


__all__ = ["DT", "NIRExportError", "NIRRun", "export_nir", "fold_bn", "lif_node", "run_nir",
           "simulate_nir", "to_nir"]
