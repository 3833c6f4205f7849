"""Export a trained spiking student as a NIR graph (Neuromorphic Intermediate Representation,
PyPI ``nir`` 1.0) that the NIR importers of snnTorch, SpikingJelly and Norse load as it is.

Students: the spiking ResNets (``spiking_resnet19/20``), SEW-ResNet with ``connect=ADD`` and
the CIFAR stem, and VGGSNN (``head=gap``). The export is two tables: :data:`NODE_MAPPERS`
(module type -> NIR node(s): conv + BN folded, LIF / IF, the ReLU placeholder, an average pool
as a sum pool whose divisor the next conv folds in, the GAP + Linear head) and one walker per
model type (:func:`_model_mappers`) that visits the student's modules in order and calls them.
A residual addition is no node: NIR sums the edges into a node, so a SEW ``ADD`` block's output
``A + S`` is the set of its sources, each with an edge into every consumer. Refused, with the
node NIR lacks: SEW ``IAND`` / ``AND`` (a product of two spike tensors), the ImageNet stem's
max-pool, Spikformer (:data:`SPIKFORMER_REFUSAL`: the attention's products of two inputs).

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


def _shortcut_pool(pool: nn.AvgPool2d, name: str, check_ceil: bool = True):
    """``(nir.SumPool2d, 1/divisor, (k, stride, padding))`` of an ``AvgPool2d`` shortcut."""
    import nir

    k, st = _pair(pool.kernel_size), _pair(pool.stride if pool.stride is not None
                                           else pool.kernel_size)
    pd = _pair(pool.padding)
    if pool.ceil_mode and check_ceil:
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


# --------------------------------------------------------------------------------------------
# the mapper table: module type -> NIR node(s)
# --------------------------------------------------------------------------------------------

Sources = Tuple[str, ...]
"""The nodes whose values sum to a tensor of the network (NIR sums every edge into a node): one
node, or several for a SEW ``ADD`` block's output ``A + S``."""


class _Graph:
    """Nodes and edges under construction, in the model's precision ``dtype``."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.nodes: Dict[str, Any] = {}
        self.edges: List[Tuple[str, str]] = []
        self.unmapped: List[str] = []

    def add(self, name: str, node, srcs: Sources) -> Sources:
        """Add ``node`` as ``name`` with an edge from every source; its sources ``(name,)``."""
        self.nodes[name] = node
        self.connect(srcs, name)
        return (name,)

    def connect(self, srcs: Sources, name: str) -> None:
        self.edges.extend((s, name) for s in srcs)


def map_conv_bn(g: _Graph, conv: nn.Conv2d, bn: nn.BatchNorm2d, srcs: Sources, hw, name: str,
                scale: float = 1.0) -> Tuple[Sources, Tuple[int, int]]:
    """``BN(conv(x))`` (the BN folding entry) -> one ``nir.Conv2d``; ``scale``: a preceding
    average pool's ``1/(k_h k_w)`` folded into the weight."""
    node, out_hw = _bn_conv_node(conv, bn, hw, name, g.dtype, scale=scale)
    return g.add(name, node, srcs), out_hw


def map_neuron(g: _Graph, lif: LIF, srcs: Sources, shape, name: str) -> Sources:
    """:class:`LIF` -> ``nir.LIF`` / ``nir.IF`` (:func:`lif_node`)."""
    return g.add(name, lif_node(lif, shape, name, g.dtype), srcs)


def map_relu(g: _Graph, relu: nn.ReLU, srcs: Sources, shape, name: str,
             allow_relu: bool = False) -> Sources:
    """``nn.ReLU``: refused (NIR has no ReLU), or with ``allow_relu`` a marked ``nir.Scale``
    placeholder (module docstring)."""
    if not allow_relu:
        raise NIRExportError(relu_refusal(f"block {name.rsplit('.', 1)[0]}"))
    g.unmapped.append(f"{name} (ReLU)")
    return g.add(name, _relu_placeholder(shape, name, g.dtype), srcs)


def map_avgpool(g: _Graph, pool: nn.AvgPool2d, srcs: Sources, hw, name: str
                ) -> Tuple[Sources, Tuple[int, int], float]:
    """``AvgPool2d`` (the shortcut / pooling entry) -> ``nir.SumPool2d``; returns its sources,
    output ``(h, w)`` and the ``1/divisor`` the next conv folds in. ``ceil_mode`` is accepted
    where it changes nothing (every window fits)."""
    k, st, pd = _pair(pool.kernel_size), _pair(pool.stride if pool.stride is not None
                                                else pool.kernel_size), _pair(pool.padding)
    if pool.ceil_mode and any((hw[i] + 2 * pd[i] - k[i]) % st[i] for i in range(2)):
        raise NIRExportError(f"{name}: AvgPool2d(ceil_mode=True) on a {hw[0]}x{hw[1]} map has a "
                             "partial window; no NIR equivalent (use an input size the pools "
                             "divide)")
    node, scale, (k, st, pd) = _shortcut_pool(pool, name, check_ceil=False)
    out_hw = tuple((hw[i] + 2 * pd[i] - k[i]) // st[i] + 1 for i in range(2))
    return g.add(name, node, srcs), out_hw, scale


def map_head(g: _Graph, linears: Sequence[nn.Linear], srcs: Sources, hw) -> Sources:
    """``GAP -> Linear ... Linear``: a ``nir.SumPool2d`` over the whole map (its ``1/(h w)``
    folded into the first Linear), each Linear a ``1 x 1`` ``nir.Conv2d`` (module docstring)."""
    import nir

    h, w = hw
    src = g.add("pool", nir.SumPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]),
                                      padding=np.array([0, 0]),
                                      metadata={"note": "global average pool; its 1/(h*w) is "
                                                        "folded into head.0's weight"}), srcs)
    for i, lin in enumerate(linears):
        if not isinstance(lin, nn.Linear):
            raise NIRExportError(f"head.{i}: unsupported layer {type(lin).__name__}")
        # a DeiT distillation head exports as its eval output: one Linear, both heads averaged
        lin_w, lin_b = lin.eval_weight_bias() if hasattr(lin, "eval_weight_bias") else \
            (lin.weight, lin.bias)
        wgt = lin_w.double() / (h * w) if i == 0 else lin_w
        bias = _np(lin_b, g.dtype) if lin_b is not None else \
            np.zeros(lin.out_features, g.dtype)
        node, _ = _conv_node(
            _np(wgt, g.dtype)[:, :, None, None], bias, None, (1, 1),
            {"source": f"head.{i}", "linear_as_1x1_conv": 1, "gap_folded": 1 if i == 0 else 0})
        src = g.add(f"head.{i}", node, src)
    return src


#: module type -> its mapper (the residual addition is no entry: NIR sums the edges into a
#: node, so ``A + S`` is the union of both sources; see :data:`Sources`)
NODE_MAPPERS: Dict[Any, Any] = {
    (nn.Conv2d, nn.BatchNorm2d): map_conv_bn,
    LIF: map_neuron,
    nn.ReLU: map_relu,
    nn.AvgPool2d: map_avgpool,
    nn.Linear: map_head,
}


def _activation(g: _Graph, act: nn.Module, srcs: Sources, shape, name: str,
                allow_relu: bool) -> Sources:
    if isinstance(act, LIF):
        return map_neuron(g, act, srcs, shape, name)
    if isinstance(act, nn.ReLU):
        return map_relu(g, act, srcs, shape, name, allow_relu)
    raise NIRExportError(f"{name}: unsupported activation {type(act).__name__}")


def _walk_spiking_resnet(model, g: _Graph, srcs: Sources, hw, allow_relu: bool):
    """spiking_resnet19/20: stem, ``layer1..3`` of SpikingBasicBlocks, the MLP head."""
    from spikedistill.models.spiking_resnet import SpikingBasicBlock

    cout = model.stem.out_channels
    srcs, hw = map_conv_bn(g, model.stem, model.stem_bn, srcs, hw, "stem")
    srcs = map_neuron(g, model.stem_lif, srcs, (cout, *hw), "stem_lif")
    for sname in ("layer1", "layer2", "layer3"):
        for bi, block in enumerate(getattr(model, sname)):
            if not isinstance(block, SpikingBasicBlock):
                raise NIRExportError(f"{sname}.{bi}: unsupported block {type(block).__name__}")
            p = f"{sname}.{bi}"
            cout = block.conv1.out_channels
            a, hw1 = map_conv_bn(g, block.conv1, block.bn1, srcs, hw, f"{p}.conv1")
            a = map_neuron(g, block.lif1, a, (cout, *hw1), f"{p}.lif1")
            a, hw2 = map_conv_bn(g, block.conv2, block.bn2, a, hw1, f"{p}.conv2")
            if not isinstance(block.act2, (LIF, nn.ReLU)):
                raise NIRExportError(f"block {p}: unsupported activation "
                                     f"{type(block.act2).__name__}")
            out = _activation(g, block.act2, a, (cout, *hw2), f"{p}.act2", allow_relu)
            sc = block.shortcut
            if sc is None:
                g.connect(srcs, out[0])                        # identity residual
            else:
                mods, s, sc_hw, scale = list(sc), srcs, hw, 1.0
                if isinstance(mods[0], nn.AvgPool2d):
                    s, sc_hw, scale = map_avgpool(g, mods[0], s, sc_hw, f"{p}.shortcut.0")
                    mods = mods[1:]
                if len(mods) != 2 or not isinstance(mods[0], nn.Conv2d) or \
                        not isinstance(mods[1], nn.BatchNorm2d):
                    raise NIRExportError(f"block {p}: unsupported shortcut {sc}")
                s, _ = map_conv_bn(g, mods[0], mods[1], s, sc_hw, f"{p}.shortcut.conv", scale)
                g.connect(s, out[0])
            srcs, hw = out, hw2
    return map_head(g, list(model.head), srcs, hw), model.head[-1].out_features


def _walk_sew_resnet(model, g: _Graph, srcs: Sources, hw, allow_relu: bool):
    """SEW-ResNet (``connect=ADD``, ``stem=cifar``: :func:`export_refusal` refuses the others):
    each block's output ``A + S`` is the union of the residual branch's last neuron and the
    shortcut's sources (the block input, or the spiking downsample ``SN(BN(conv1x1))``);
    ``GAP -> fc``."""
    c = model.conv1.out_channels
    srcs, hw = map_conv_bn(g, model.conv1, model.bn1, srcs, hw, "conv1")
    srcs = map_neuron(g, model.sn1, srcs, (c, *hw), "sn1")
    for si in range(1, 5):
        for bi, block in enumerate(getattr(model, f"layer{si}")):
            p = f"layer{si}.{bi}"
            names = ["1", "2", "3"] if hasattr(block, "conv3") else ["1", "2"]
            a, a_hw = srcs, hw
            for k in names:
                cb, sn = getattr(block, f"conv{k}"), getattr(block, f"sn{k}")
                cout = cb[0].out_channels
                a, a_hw = map_conv_bn(g, cb[0], cb[1], a, a_hw, f"{p}.conv{k}")
                a = map_neuron(g, sn, a, (cout, *a_hw), f"{p}.sn{k}")
            if block.downsample is None:
                s = srcs
            else:
                cb, sn = block.downsample[0], block.downsample[1]
                s, s_hw = map_conv_bn(g, cb[0], cb[1], srcs, hw, f"{p}.downsample.0")
                s = map_neuron(g, sn, s, (cb[0].out_channels, *s_hw), f"{p}.downsample.1")
            srcs, hw = tuple(a) + tuple(s), a_hw            # ADD: O = A + S
    return map_head(g, [model.fc], srcs, hw), model.fc.out_features


def _walk_vggsnn(model, g: _Graph, srcs: Sources, hw, allow_relu: bool):
    """VGGSNN (``head=gap``, :func:`export_refusal`): ``LIF(BN(conv3x3 + b))`` x 8, ``AvgPool2d(2)`` after stages 1-3
    (a sum pool, its 1/4 folded into the next conv), ``GAP -> head``."""
    scale = 1.0
    for si in range(1, 5):
        stage = getattr(model, f"stage{si}")
        for li, layer in enumerate(stage):
            p = f"stage{si}.{li}"
            cout = layer.conv.out_channels
            srcs, hw = map_conv_bn(g, layer.conv, layer.bn, srcs, hw, f"{p}.conv", scale)
            scale = 1.0
            srcs = _activation(g, layer.lif, srcs, (cout, *hw), f"{p}.lif", allow_relu)
        if si < 4:
            srcs, hw, scale = map_avgpool(g, model.avgpool, srcs, hw, f"pool{si}")
    return map_head(g, [model.head], srcs, hw), model.head.out_features


SPIKFORMER_REFUSAL = (
    "Spikformer cannot be written as NIR 1.0: its spiking self-attention multiplies two "
    "activation tensors (Q K^T, then (Q K^T) V), and NIR has no node for a product of two "
    "inputs (Affine / Linear / Conv have fixed weights; the edges into a node are summed); its "
    "SPS also max-pools (no NIR max-pool node) and normalises tokens with BatchNorm1d after "
    "Linear layers on [T*B, N, D] tokens")


#: the registered students :func:`to_nir` writes (SEW-ResNets with ``connect=ADD`` and the
#: CIFAR stem, VGGSNN with its ``gap`` head)
NIR_STUDENTS = ("spiking_resnet19", "spiking_resnet20", "sew_resnet18", "sew_resnet34",
                "sew_resnet50", "vggsnn")


class NIRTraits(NamedTuple):
    """What decides whether :func:`to_nir` can write a student, read from the built model
    (:func:`model_traits`) or from its ``model`` config section (:func:`config_traits`), so that
    one rule table (:func:`export_refusal`) judges both."""

    family: Optional[str]         # spiking_resnet | sew_resnet | vggsnn | spikformer | None: other
    name: str                     # how a refusal names the network
    connect: str = "ADD"          # SEW-ResNet's g(A, S)
    stem: str = "cifar"           # SEW-ResNet's stem (imagenet: a max-pool)
    head: str = "gap"             # VGGSNN's head
    relu_at: Tuple[str, ...] = ()  # where a block's output activation is a ReLU


def relu_refusal(where: str) -> str:
    """The refusal of a ReLU output activation (``where``: the block, or "its last block")."""
    return (f"{where} ends in a ReLU (model.last_activation=relu, the released code's recipe), "
            "which NIR cannot express; export a model trained with --set "
            "model.last_activation=lif, or pass --allow-relu to export it as a marked identity "
            "placeholder (loaded by spikedistill's run_nir only)")


def export_refusal(traits: NIRTraits, allow_relu: bool = False) -> Optional[str]:
    """The one table of what NIR 1.0 cannot express, in order: Spikformer
    (:data:`SPIKFORMER_REFUSAL`), a network that is none of :data:`NIR_STUDENTS`, SEW-ResNet
    with ``connect`` AND / IAND (a product of two spike tensors) or the ImageNet stem (a
    max-pool), VGGSNN's ``flatten`` head, a ReLU output activation (unless ``allow_relu``:
    a marked placeholder). Returns why, or None when :func:`to_nir` can write it."""
    if traits.family == "spikformer":
        return SPIKFORMER_REFUSAL
    if traits.family is None:
        return (f"NIR export writes spikedistill's spiking ResNet students only "
                f"(spiking_resnet19 / spiking_resnet20, direct encoding), "
                f"SEW-ResNet (connect=ADD, stem=cifar) and VGGSNN; {traits.name} is none "
                f"of them (the registered students it writes: {', '.join(NIR_STUDENTS)})")
    if traits.family == "sew_resnet":
        if traits.connect != "ADD":
            op = "A * S" if traits.connect == "AND" else "(1 - A) * S"
            return (f"SEW-ResNet connect={traits.connect}: g(A, S) = {op} multiplies two spike "
                    "tensors, and NIR 1.0 has no element-wise product node (the edges into a "
                    "node are summed; nir.Threshold / nir.Scale take one input); only "
                    "connect=ADD exports: train with model.connect=ADD")
        if traits.stem != "cifar":
            return ("SEW-ResNet stem=imagenet: its MaxPool2d(3, 2, 1) after the stem has no NIR "
                    "node (NIR 1.0 pools only by sum or average: nir.SumPool2d, nir.AvgPool2d); "
                    "a model built with model.kwargs.stem=cifar exports")
    if traits.family == "vggsnn" and traits.head != "gap":
        return ("VGGSNN head=flatten: its AdaptiveAvgPool2d(3) grid has no NIR node; the "
                "registered vggsnn (head=gap, model.kwargs.head=gap) exports")
    if traits.relu_at and not allow_relu:
        return relu_refusal(traits.relu_at[0])
    return None


def model_traits(model: nn.Module) -> NIRTraits:
    """:class:`NIRTraits` of a built model."""
    from spikedistill.models.spiking_resnet import SpikingResNet
    from spikedistill.models.zoo.sew_resnet import SEWResNet
    from spikedistill.models.zoo.spikformer import Spikformer
    from spikedistill.models.zoo.vggsnn import VGGSNN

    name = getattr(model, "model_name", type(model).__name__)
    if isinstance(model, Spikformer):
        return NIRTraits("spikformer", name)
    if isinstance(model, SEWResNet):
        return NIRTraits("sew_resnet", name, connect=str(model.connect),
                         stem="imagenet" if model.maxpool is not None else "cifar")
    if isinstance(model, VGGSNN):
        relu = tuple(f"block stage{si}.{li}" for si in range(1, 5)
                     for li, layer in enumerate(getattr(model, f"stage{si}"))
                     if isinstance(layer.lif, nn.ReLU))
        return NIRTraits("vggsnn", name, head=str(model.head_kind), relu_at=relu)
    if isinstance(model, SpikingResNet):
        relu = tuple(f"block {s}.{bi}" for s in ("layer1", "layer2", "layer3")
                     for bi, block in enumerate(getattr(model, s))
                     if isinstance(getattr(block, "act2", None), nn.ReLU))
        return NIRTraits("spiking_resnet", name, relu_at=relu)
    return NIRTraits(None, name)


def config_traits(model_cfg) -> NIRTraits:
    """:class:`NIRTraits` of the student a ``model`` config section describes (before it is
    built)."""
    name = str(model_cfg.name)
    if model_cfg.source != "spikedistill":
        return NIRTraits(None, f"{model_cfg.source}:{model_cfg.arch}")
    if name.startswith("spikformer"):
        return NIRTraits("spikformer", name)
    if name not in NIR_STUDENTS:
        return NIRTraits(None, name)
    kwargs = dict(model_cfg.kwargs or {})
    if name.startswith("sew_resnet"):
        return NIRTraits("sew_resnet", name,
                         connect=str(model_cfg.connect or kwargs.get("connect", "ADD")).upper(),
                         stem=str(kwargs.get("stem", "imagenet")))
    relu = ("its last block",) if model_cfg.last_activation == "relu" else ()
    if name == "vggsnn":
        return NIRTraits("vggsnn", name, head=str(kwargs.get("head", "gap")), relu_at=relu)
    return NIRTraits("spiking_resnet", name, relu_at=relu)


def nir_export_problem(model_cfg) -> Optional[str]:
    """Why the student a ``model`` config section describes cannot be exported to NIR by
    :func:`to_nir` (and how to get one that can), or None when it can: :func:`export_refusal`
    of its :func:`config_traits`, so that ``train`` / ``distill`` can say so before training."""
    return export_refusal(config_traits(model_cfg))


def _model_mappers() -> Dict[type, Any]:
    """Model type -> walker (the students NIR can express)."""
    from spikedistill.models.spiking_resnet import SpikingResNet
    from spikedistill.models.zoo.sew_resnet import SEWResNet
    from spikedistill.models.zoo.vggsnn import VGGSNN

    return {SpikingResNet: _walk_spiking_resnet, SEWResNet: _walk_sew_resnet,
            VGGSNN: _walk_vggsnn}


def _first_conv(model) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def to_nir(model: nn.Module, input_shape: Sequence[int], *, allow_relu: bool = False):
    """The student as a ``nir.NIRGraph`` (see the module docstring), by the mapper tables:
    the model's walker (spiking ResNets, SEW-ResNet with ``connect=ADD`` and the CIFAR stem,
    VGGSNN) emits the nodes of :data:`NODE_MAPPERS`. ``input_shape`` is ``(C, H, W)`` of one
    image (or frame). Any other model, and the parts NIR cannot express (Spikformer's
    attention, IAND/AND connections, max-pools: :func:`export_refusal`, the table
    :func:`nir_export_problem` reads from a config too), raise :class:`NIRExportError` naming
    why."""
    import nir

    reason = export_refusal(model_traits(model), allow_relu)
    if reason is not None:
        raise NIRExportError(reason)
    walkers = _model_mappers()
    walker = next(w for cls, w in walkers.items() if isinstance(model, cls))
    C, H, W = (int(v) for v in input_shape)
    stem = _first_conv(model)
    if C != stem.in_channels:
        raise NIRExportError(f"input has {C} channels but the stem expects {stem.in_channels}")
    g = _Graph(_model_dtype(model))
    srcs = g.add("input", nir.Input(input_type=np.array([C, H, W])), ())
    srcs, K = walker(model, g, srcs, (H, W), allow_relu)
    T = int(model.T)
    g.add("output", nir.Output(output_type=np.array([K, 1, 1])), srcs)
    unmapped = g.unmapped
    meta = {"producer": "spikedistill", "model": getattr(model, "model_name", "spiking_resnet"),
            "T": T, "dt": DT, "dt_unit": "s", "dtype": g.dtype.name,
            "threshold": THRESHOLD_RULE,
            "neuron": "v[t] = (1 - dt/tau) v[t-1] + (dt/tau) (v_leak + r I[t]); spike if "
                      "v > v_threshold; v = v_reset after a spike; LIF r = 1 and "
                      "v = (1 - decay) u (u: the student's membrane)",
            "last_activation": getattr(model, "last_activation", "lif"),
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
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=meta)


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


__all__ = ["DT", "NIR_STUDENTS", "NODE_MAPPERS", "NIRExportError", "NIRRun", "NIRTraits",
           "SPIKFORMER_REFUSAL", "config_traits", "export_nir", "export_refusal", "model_traits",
           "nir_export_problem", "relu_refusal",
           "fold_bn", "lif_node", "map_avgpool", "map_conv_bn", "map_head", "map_neuron",
           "map_relu", "run_nir", "simulate_nir", "to_nir"]
