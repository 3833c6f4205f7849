"""Operator-level counting: the aten products a model calls outside its conv / linear modules.

:class:`~spikedistill.analysis.counting.OpCounter` counts every ``nn.Conv*`` / ``nn.Linear``
with module hooks (names, calls per image, input kinds). What a model computes *functionally*
(Spikformer's attention ``(Q K^T) V``, a ``F.conv2d`` / ``F.linear`` / ``@`` in a forward) runs no
such module; :class:`OperatorMode`, a :class:`~torch.utils._python_dispatch.TorchDispatchMode`
active while the counter runs, sees it at the aten level. Outside the hooked synaptic modules it
counts

- ``aten.convolution``: ``dense = N * C_out * prod(out spatial) * C_in / groups * prod(kernel)``
  (rows ``N``),
- ``aten.mm`` / ``aten.addmm`` (``A [M, K] @ B [K, N]``): ``dense = M K N`` (rows ``M``),
- ``aten.bmm`` / ``aten.baddbmm`` (``[b, M, K] @ [b, K, N]``): ``dense = b M K N`` (rows ``b``),

and classifies each product by its operands' input kinds (the counter's rule: the model input,
pooled spikes and views of them, else ``spike`` when every value is 0 or 1):

- both operands spike-driven (spike @ spike, e.g. ``Q K^T``): ``SOPs = sum((A != 0) @ (B != 0))``,
  the products of two non-zero values (one AND + accumulate each; for binary operands this is
  ``sum(A @ B)``, SpikingJelly's ``SynOpCounter`` rule),
- one spike-driven operand ``S`` (the other dense ``D``, e.g. ``(Q K^T) V``): ``SOPs = nnz(S) *
  fan-out`` (each non-zero value accumulates a row / column of ``D``: ``nnz(A) * N`` when ``A``
  is the spike operand, ``nnz(B) * M`` when ``B`` is), which is ``rate(S) * dense``,
- neither: ``MACs = dense``.

Every other aten op the model runs outside the synaptic modules (BatchNorm, the neurons'
arithmetic, residual additions, pools, means) is *not* an operation of the energy model; it is
not dropped silently but tallied by name in :attr:`OperatorMode.not_counted` (calls per
forward), and shape-only ops (views, copies, concatenation) are ignored as free.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

#: kinds that make an operand spike-driven (see counting.SPIKE_KINDS)
_SPIKE = ("spike", "pooled_spike", "events")

#: ops that only move, view or copy data: no arithmetic, never listed as uncounted
FREE_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "clone",
    "contiguous", "unsqueeze", "squeeze", "select", "slice", "detach", "alias", "empty",
    "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "copy_",
    "_to_copy", "to", "lift_fresh", "lift_fresh_copy", "flatten", "split", "split_with_sizes",
    "cat", "stack", "unbind", "as_strided", "new_empty", "new_zeros", "new_ones", "fill_",
    "zero_", "_reshape_alias", "unfold", "index_select", "repeat", "scalar_tensor", "arange",
    "_local_scalar_dense", "is_same_size", "sym_size", "sym_stride", "sym_numel", "dim",
    "empty_strided", "chunk", "narrow", "movedim", "squeeze_", "unsqueeze_", "resize_",
    "set_", "item", "equal", "detach_",
})


@dataclass
class CountRecord:
    """What every counted layer or product accumulates over the evaluated batches (shared by
    :class:`~spikedistill.analysis.counting.LayerCount` and :class:`OperatorCount`)."""

    name: str
    type: str
    flops: int = 0                  # dense MACs per image per call (per row)
    rows: int = 0                   # sample rows (calls) seen, summed over batches
    images: int = 0                 # images seen, summed over batches
    nonzero: int = 0                # non-zero input elements, summed
    input_sum: float = 0.0          # sum of the input values
    input_numel: int = 0            # input elements, summed
    kinds: set = field(default_factory=set)   # input kinds seen

    @property
    def calls_per_image(self) -> float:
        return self.rows / self.images if self.images else 0.0

    @property
    def input_rate(self) -> float:
        """``mean(input != 0)`` over everything this layer saw."""
        return self.nonzero / self.input_numel if self.input_numel else 0.0

    @property
    def input_mean(self) -> float:
        return self.input_sum / self.input_numel if self.input_numel else 0.0


@dataclass
class OperatorCount(CountRecord):
    """Accumulated counts of one functional product (a name per module and call order); its
    kinds are ``spike`` / ``spike x spike`` / ``real`` and its operations are summed per call."""

    sops_total: float = 0.0
    macs_total: float = 0.0

    @property
    def spike_driven(self) -> bool:
        return bool(self.kinds) and "real" not in self.kinds

    @property
    def input_kind(self) -> str:
        if not self.kinds:
            return "unused"
        if not self.spike_driven:
            return "real"
        return "spike x spike" if self.kinds == {"spike x spike"} else "spike"

    @property
    def macs(self) -> float:
        return self.macs_total / self.images if self.images else 0.0

    @property
    def sops(self) -> float:
        return self.sops_total / self.images if self.images else 0.0


def _name(func) -> str:
    return func.__name__.split(".")[0] if hasattr(func, "__name__") else str(func)


def _operands(func, args) -> Optional[Tuple[str, torch.Tensor, torch.Tensor, int, int]]:
    """``(op, A, B, dense MACs, rows)`` of a counted product, None for any other op."""
    op = _name(func)
    if op in ("mm", "addmm"):
        a, b = (args[0], args[1]) if op == "mm" else (args[1], args[2])
        return op, a, b, a.shape[0] * a.shape[1] * b.shape[1], a.shape[0]
    if op in ("bmm", "baddbmm"):
        a, b = (args[0], args[1]) if op == "bmm" else (args[1], args[2])
        return op, a, b, a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2], a.shape[0]
    if op == "convolution":
        return op, args[0], args[1], 0, args[0].shape[0]
    return None


def _conv_dense(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, groups: int) -> int:
    """``N * C_out * prod(out spatial) * C_in / groups * prod(kernel)``."""
    return int(out.numel() * (x.shape[1] // groups) * math.prod(w.shape[2:]))


class OperatorMode(TorchDispatchMode):
    """Counts the functional products of a forward (module docstring) into ``records``.

    ``kind(t)``: the input kind of a tensor (the counter's rule); ``active()``: whether an op
    now belongs to the counted model and is outside a hooked synaptic module; ``where()``: the
    path of the innermost module running; ``batch()``: the images of the current forward.
    """

    def __init__(self, kind: Callable[[torch.Tensor], str], active: Callable[[], bool],
                 where: Callable[[], str], batch: Callable[[], int]):
        super().__init__()
        self._kind, self._active, self._where, self._batch = kind, active, where, batch
        self.records: Dict[str, OperatorCount] = {}
        self.not_counted: Counter = Counter()
        self._order: Counter = Counter()       # per forward: products seen per module
        self.forwards = 0

    def new_forward(self) -> None:
        self._order.clear()
        self.forwards += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self._active():
            return out
        found = _operands(func, args)
        if found is None:
            op = _name(func)
            if op not in FREE_OPS:
                self.not_counted[f"aten.{op}"] += 1
            return out
        self._count(found, args, out)
        return out

    def _count(self, found, args, out) -> None:
        op, a, b, dense, rows = found
        where = self._where()
        idx = self._order[(where, op)]
        self._order[(where, op)] += 1
        name = f"{where}:{op}#{idx}" if where else f"{op}#{idx}"
        rec = self.records.setdefault(name, OperatorCount(name, f"aten.{op}"))
        B = max(int(self._batch()), 1)
        if op == "convolution":
            dense = _conv_dense(a, b, out, int(args[8]))
            ka, kb = self._kind(a), "real"          # the weight is a dense parameter
        else:
            ka, kb = self._kind(a), self._kind(b)
        a_sp, b_sp = ka in _SPIKE, kb in _SPIKE
        with torch.no_grad():
            if a_sp and b_sp:
                mm = torch.bmm if a.dim() == 3 else torch.mm
                sops = float(mm((a != 0).double(), (b != 0).double()).sum())
                rec.kinds.add("spike x spike")
                nz, numel, tot = int((a != 0).sum() + (b != 0).sum()), a.numel() + b.numel(), \
                    float(a.sum(dtype=torch.float64) + b.sum(dtype=torch.float64))
            elif a_sp or b_sp:
                s = a if a_sp else b
                nz, numel, tot = int((s != 0).sum()), s.numel(), float(s.sum(dtype=torch.float64))
                sops = dense * nz / numel if numel else 0.0      # = nnz(S) * fan-out
                rec.kinds.add("spike")
            else:
                sops = 0.0
                nz, numel, tot = int((a != 0).sum()), a.numel(), float(a.sum(dtype=torch.float64))
                rec.kinds.add("real")
        rec.flops = dense // rows if rows else 0
        rec.rows += rows
        rec.images += B
        rec.sops_total += sops
        rec.macs_total += 0.0 if (a_sp or b_sp) else float(dense)
        rec.nonzero += nz
        rec.input_numel += numel
        rec.input_sum += tot


__all__ = ["CountRecord", "FREE_OPS", "OperatorCount", "OperatorMode"]
