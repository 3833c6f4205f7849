"""Export a trained spiking ResNet student as a NIR graph (Neuromorphic Intermediate
Representation, PyPI ``nir`` 1.0).

Mapping (one NIR node per entry, named after the PyTorch module)
----------------------------------------------------------------

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
  ``v <- v_reset`` on a spike. Its forward-Euler discretisation with step ``dt`` is
  ``v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak + (dt/tau) r I[t]``. With ``dt = 1`` we need
  ``1 - 1/tau = decay`` and ``r / tau = 1``, ``v_leak = 0``::

      tau = dt / (1 - decay)   (= 2 for decay 0.5)
      r   = tau / dt           (= 2)
      v_leak = 0,  v_threshold = threshold,  v_reset = 0

  (the snnTorch/Norse convention ``beta = 1 - dt/tau``, ``r = tau/dt``). A neuron with
  ``decay = 1`` (no leak) becomes ``nir.IF(r=1, v_threshold, v_reset=0)``. Every parameter
  is an array of the layer's shape ``(C, H, W)``. ``dt = 1`` is stored in the graph metadata.
- **Residual addition** ``o = BN2(conv2(s1)) + shortcut(x)``: NIR sums all edges arriving at a
  node, so ``conv2`` and the shortcut both have an edge into the block's output neuron.
  Identity shortcut: an edge from the block's input node. Downsampling shortcut
  ``AvgPool2d(stride) -> conv1x1 -> BN``: ``nir.AvgPool2d`` then the folded ``nir.Conv2d``.
- **Head** ``GAP -> mean over T -> Linear(C, 256) -> Linear(256, K)``: GAP is a
  ``nir.SumPool2d`` over the whole ``h x w`` map with its ``1 / (h w)`` folded into the first
  ``nir.Affine``'s weight (``W0' = W0 / (h w)``), a ``nir.Flatten`` ``(C, 1, 1) -> (C,)``,
  the two ``nir.Affine`` layers, and the **time-mean readout** as an integrator
  ``nir.I(r = 1/T)``: ``v[t] = v[t-1] + I[t] / T``, so ``v[T]`` is the mean over the T steps of
  the per-step logits, which equals the student's logits because the head is affine.
  The graph output is ``v`` after the T-th step.
- **ReLU** (``last_activation: relu``): NIR has no ReLU. The export refuses it
  (:class:`NIRExportError` naming the block) unless ``allow_relu``; then the block's output is
  a ``nir.Scale`` of ones (an identity for a NIR consumer) whose metadata says
  ``activation = relu`` and ``unmapped = true``, the graph metadata lists it under
  ``unmapped_blocks`` and a warning is issued: a consumer must apply ``max(0, x)`` there.

:func:`run_nir` is a small discrete-time (``dt = 1``) interpreter of such graphs; it defines
the semantics above executably and is what the tests compare with the PyTorch model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from spikedistill.atomic import atomic_write
from spikedistill.errors import SpikeDistillError
from spikedistill.neurons import LIF

DT = 1.0


class NIRExportError(SpikeDistillError):
    """The model (or one of its blocks) cannot be expressed in NIR."""


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().astype(np.float32)


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tuple[np.ndarray, np.ndarray]:
    """``(W', b')`` of ``bn(conv(x))`` as one conv, with BN's running statistics (see the module
    docstring)."""
    if bn.running_mean is None or bn.running_var is None:
        raise NIRExportError(f"BatchNorm {bn} has no running statistics (track_running_stats="
                             "False); it cannot be folded into the conv")
    with torch.no_grad():
        s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = conv.weight.double() * s.view(-1, 1, 1, 1)
        b_conv = conv.bias.double() if conv.bias is not None else torch.zeros_like(s)
        b = bn.bias.double() + s * (b_conv - bn.running_mean.double())
    return _np(w), _np(b)


def lif_node(lif: LIF, shape: Sequence[int], name: str):
    """The NIR neuron of a :class:`LIF` module for a layer of ``shape`` (see the module
    docstring for the equations)."""
    import nir

    shape = tuple(int(s) for s in shape)
    ones = np.ones(shape, dtype=np.float32)
    decay = float(lif.decay)
    meta = {"source": name, "decay": decay, "threshold": float(lif.threshold), "dt": DT,
            "discrete": "u = decay * u + I; spike if u > threshold; hard reset to 0"}
    if not 0.0 <= decay <= 1.0:
        raise NIRExportError(f"{name}: LIF decay {decay} is outside [0, 1]; no NIR neuron "
                             "matches it")
    if decay == 1.0:
        return nir.IF(r=ones.copy(), v_threshold=ones * float(lif.threshold),
                      v_reset=np.zeros(shape, np.float32), metadata=meta)
    tau = DT / (1.0 - decay)
    return nir.LIF(tau=ones * tau, r=ones * (tau / DT), v_leak=np.zeros(shape, np.float32),
                   v_threshold=ones * float(lif.threshold), v_reset=np.zeros(shape, np.float32),
                   metadata=meta)


def _conv_node(conv: nn.Conv2d, bn: nn.BatchNorm2d, in_hw: Tuple[int, int], name: str):
    import nir

    w, b = fold_bn(conv, bn)
    if isinstance(conv.padding, str):
        raise NIRExportError(f"{name}: string padding {conv.padding!r} is not supported")
    node = nir.Conv2d(input_shape=tuple(int(v) for v in in_hw), weight=w,
                      stride=tuple(conv.stride), padding=tuple(conv.padding),
                      dilation=tuple(conv.dilation), groups=int(conv.groups), bias=b,
                      metadata={"source": name, "batchnorm_folded": 1})
    out_hw = tuple(int(v) for v in node.output_type["output"][1:])
    return node, out_hw


def _relu_placeholder(shape, name: str):
    import nir

    return nir.Scale(scale=np.ones(tuple(shape), np.float32),
                     metadata={"source": name, "activation": "relu", "unmapped": 1,
                               "note": "NIR has no ReLU: a consumer must apply max(0, x) here; "
                                       "as a plain Scale node this is an identity"})


def to_nir(model: nn.Module, input_shape: Sequence[int], *, allow_relu: bool = False):
    """The student as a ``nir.NIRGraph`` (see the module docstring).

    ``input_shape`` is ``(C, H, W)`` of one image. Only the registered spiking ResNets
    (``SpikingResNet``) are supported; anything else raises :class:`NIRExportError`.
    """
    import nir
    from spikedistill.models.spiking_resnet import SpikingBasicBlock, SpikingResNet

    if not isinstance(model, SpikingResNet):
        raise NIRExportError(f"NIR export writes spikedistill's spiking ResNet students only "
                             f"(spiking_resnet19 / spiking_resnet20, direct encoding); "
                             f"{getattr(model, 'model_name', type(model).__name__)} is not one "
                             "of them")
    C, H, W = (int(v) for v in input_shape)
    if C != model.stem.in_channels:
        raise NIRExportError(f"input has {C} channels but the stem expects "
                             f"{model.stem.in_channels}")
    nodes: Dict[str, Any] = {"input": nir.Input(input_type=np.array([C, H, W]))}
    edges: List[Tuple[str, str]] = []
    unmapped: List[str] = []

    stem, hw = _conv_node(model.stem, model.stem_bn, (H, W), "stem")
    nodes["stem"] = stem
    edges.append(("input", "stem"))
    nodes["stem_lif"] = lif_node(model.stem_lif, (model.stem.out_channels, *hw), "stem_lif")
    edges.append(("stem", "stem_lif"))
    prev, prev_c = "stem_lif", model.stem.out_channels

    for sname in ("layer1", "layer2", "layer3"):
        for bi, block in enumerate(getattr(model, sname)):
            if not isinstance(block, SpikingBasicBlock):
                raise NIRExportError(f"{sname}.{bi}: unsupported block {type(block).__name__}")
            p = f"{sname}.{bi}"
            c1, hw1 = _conv_node(block.conv1, block.bn1, hw, f"{p}.conv1")
            cout = block.conv1.out_channels
            nodes[f"{p}.conv1"] = c1
            edges.append((prev, f"{p}.conv1"))
            nodes[f"{p}.lif1"] = lif_node(block.lif1, (cout, *hw1), f"{p}.lif1")
            edges.append((f"{p}.conv1", f"{p}.lif1"))
            c2, hw2 = _conv_node(block.conv2, block.bn2, hw1, f"{p}.conv2")
            nodes[f"{p}.conv2"] = c2
            edges.append((f"{p}.lif1", f"{p}.conv2"))
            out = f"{p}.act2"
            if isinstance(block.act2, LIF):
                nodes[out] = lif_node(block.act2, (cout, *hw2), out)
            elif isinstance(block.act2, nn.ReLU):
                if not allow_relu:
                    raise NIRExportError(
                        f"block {p}: its output activation is ReLU (model.last_activation=relu), "
                        "which NIR cannot express; export a model trained with "
                        "last_activation=lif, or pass --allow-relu to export it as a marked "
                        "identity placeholder")
                nodes[out] = _relu_placeholder((cout, *hw2), out)
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
                src, sc_hw = prev, hw
                if isinstance(mods[0], nn.AvgPool2d):
                    k = mods[0].kernel_size
                    k = (k, k) if isinstance(k, int) else tuple(k)
                    st = mods[0].stride
                    st = (st, st) if isinstance(st, int) else tuple(st)
                    pd = mods[0].padding
                    pd = (pd, pd) if isinstance(pd, int) else tuple(pd)
                    nodes[f"{p}.shortcut.0"] = nir.AvgPool2d(
                        kernel_size=np.array(k), stride=np.array(st), padding=np.array(pd),
                        metadata={"source": f"{p}.shortcut.0"})
                    edges.append((src, f"{p}.shortcut.0"))
                    src = f"{p}.shortcut.0"
                    sc_hw = tuple((sc_hw[i] + 2 * pd[i] - k[i]) // st[i] + 1 for i in range(2))
                    mods = mods[1:]
                if len(mods) != 2 or not isinstance(mods[0], nn.Conv2d) or \
                        not isinstance(mods[1], nn.BatchNorm2d):
                    raise NIRExportError(f"block {p}: unsupported shortcut {sc}")
                name = f"{p}.shortcut.conv"
                cs, _ = _conv_node(mods[0], mods[1], sc_hw, name)
                nodes[name] = cs
                edges.append((src, name))
                edges.append((name, out))
            prev, hw, prev_c = out, hw2, cout

    # head: GAP (sum pool + 1/(h w) folded into the first Affine), flatten, affines, readout
    h, w = hw
    nodes["pool"] = nir.SumPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]),
                                  padding=np.array([0, 0]),
                                  metadata={"note": "global average pool; its 1/(h*w) is folded "
                                                    "into head.0's weight"})
    edges.append((prev, "pool"))
    nodes["flatten"] = nir.Flatten(input_type={"input": np.array([prev_c, 1, 1])}, start_dim=0)
    edges.append(("pool", "flatten"))
    src = "flatten"
    linears = [m for m in model.head]
    for i, lin in enumerate(linears):
        if not isinstance(lin, nn.Linear):
            raise NIRExportError(f"head.{i}: unsupported layer {type(lin).__name__}")
        wgt = _np(lin.weight.double() / (h * w)) if i == 0 else _np(lin.weight)
        bias = _np(lin.bias) if lin.bias is not None else np.zeros(lin.out_features, np.float32)
        nodes[f"head.{i}"] = nir.Affine(weight=wgt, bias=bias,
                                        metadata={"source": f"head.{i}",
                                                  "gap_folded": 1 if i == 0 else 0})
        edges.append((src, f"head.{i}"))
        src = f"head.{i}"
    K = linears[-1].out_features
    T = int(model.T)
    nodes["readout"] = nir.I(r=np.full((K,), 1.0 / T, np.float32),
                             metadata={"note": "time-mean readout: v[t] = v[t-1] + I[t]/T; the "
                                               "logits are v after step T", "T": T})
    edges.append((src, "readout"))
    nodes["output"] = nir.Output(output_type=np.array([K]))
    edges.append(("readout", "output"))

    meta = {"producer": "spikedistill", "model": getattr(model, "model_name", "spiking_resnet"),
            "T": T, "dt": DT, "last_activation": model.last_activation,
            "encoding": "direct: the image is the input at every timestep",
            "readout": "integrator node 'readout' (r = 1/T); logits = its state after T steps",
            "batchnorm": "folded into the preceding conv (eval-mode running statistics)",
            "unmapped_blocks": ", ".join(unmapped) if unmapped else ""}
    if unmapped:
        warnings.warn(f"NIR export: {', '.join(unmapped)} exported as an identity placeholder "
                      "(nir.Scale of ones, metadata activation=relu); NIR has no ReLU",
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
# reference interpreter (dt = 1)
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


@torch.no_grad()
def run_nir(graph, x: torch.Tensor, T: int, *, apply_relu: bool = True) -> torch.Tensor:
    """Run a NIR graph in discrete time (``dt = 1``) for ``T`` steps on images ``x``
    ``[B, C, H, W]`` (presented at every step) and return the output node's value after the
    last step. Every node's input is the sum of its incoming edges at the same step; neurons
    follow the forward-Euler equations of the module docstring. ``apply_relu``: apply
    ``max(0, x)`` at ``Scale`` nodes marked ``activation = relu``."""
    import nir

    nodes, edges = graph.nodes, graph.edges
    order = _topo_order(nodes, edges)
    preds = {k: [a for a, b in edges if b == k] for k in nodes}
    state: Dict[str, torch.Tensor] = {}
    t64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    x = x.double()
    out_val = None
    for _ in range(T):
        vals: Dict[str, torch.Tensor] = {}
        for k in order:
            n = nodes[k]
            if isinstance(n, nir.Input):
                vals[k] = x
                continue
            inp = sum(vals[p] for p in preds[k])
            if isinstance(n, nir.Conv2d):
                vals[k] = F.conv2d(inp, t64(n.weight), t64(n.bias), stride=tuple(n.stride),
                                   padding=tuple(int(v) for v in n.padding),
                                   dilation=tuple(n.dilation), groups=int(n.groups))
            elif isinstance(n, (nir.LIF, nir.IF)):
                v = state.get(k, torch.zeros_like(inp))
                if isinstance(n, nir.LIF):
                    tau, r, vl = t64(n.tau), t64(n.r), t64(n.v_leak)
                    v = v + DT / tau * (vl - v + r * inp)
                else:
                    v = v + DT * t64(n.r) * inp
                z = (v > t64(n.v_threshold)).double()
                state[k] = torch.where(z > 0, t64(n.v_reset).expand_as(v), v)
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
                vals[k] = inp @ t64(n.weight).T + t64(n.bias)
            elif isinstance(n, nir.Scale):
                y = inp * t64(n.scale)
                if apply_relu and str(n.metadata.get("activation", "")) == "relu":
                    y = y.clamp_min(0)
                vals[k] = y
            elif isinstance(n, nir.I):
                v = state.get(k, torch.zeros_like(inp)) + DT * t64(n.r) * inp
                state[k] = v
                vals[k] = v
            elif isinstance(n, nir.Output):
                vals[k] = inp
                out_val = inp
            else:
                raise NIRExportError(f"run_nir: node {k!r} of type {type(n).__name__} is not "
                                     "supported by this interpreter")
    return out_val.float()


__all__ = ["NIRExportError", "export_nir", "fold_bn", "lif_node", "run_nir", "to_nir"]
