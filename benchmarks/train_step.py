"""CKDSNN training-step benchmark: spikedistill's step next to the released reference, same run.

Step kinds (ResNet-19 student / teacher, synthetic resident batch, SGD lr 0.1 momentum 0.9
weight decay 1e-4 on the student):

* ``reference``: the released step, re-created in ``shared/bench/reference_step.py`` (teacher in
  train mode with backward through it, [B, T] layout, float32 spikes, one host sync per step).
* ``lean``     : the same model code with a frozen teacher under ``inference_mode`` and no sync.
* ``ours``     : spikedistill's product at its defaults: the engine's own
  ``engine.loop.train_step`` (the step ``run_training`` runs) on
  ``create_model("spiking_resnet19", T=T, width_mult=W)``, ``create_model("resnet19",
  width_mult=W)``, ``build_method("ckd-released", ...)`` (teacher frozen: eval +
  ``inference_mode``), the product's optimiser (``engine.build.build_optimizer`` with the
  default ``train`` section: SGD, not fused), contiguous memory format
  (``train.channels_last: false``), cuDNN autotuning on (``configure_determinism``), autocast
  in ``--dtype``, neuron backend ``--neuron-backend`` (``auto``: the fused Triton LIF on CUDA).
* ``ours_torch``: ``ours`` with the pure-torch neuron loop (to see the kernel's share).
* ``ours_compiled``: ``ours`` with ``train.compile: true`` (student and teacher through
  ``torch.compile``, as ``engine.build.wrap_for_training`` applies it); ``--compile`` adds it.
* ``ours_channels_last``: ``ours`` with ``train.channels_last: true``.

Every setting of every kind is printed and stored (``settings``); the summary gives each
``ours_*`` variant's img/s against ``ours`` (``vs ours``). Global flags (cuDNN autotuning and
determinism, TF32) are restored after every kind.

Before ``ours`` is timed at a T, a loss-parity check runs the engine's step next to the
reference ``lean_step`` (frozen teacher) in fp32 with the same weights (copied from the
reference models), inputs, SGD settings and NLD noise for three steps; the first losses must
agree to 1e-5 (relative) and later ones to a tolerance derived from the spikes that flipped
between the two (see ``parity_check``; the flips are reported), else ``ours`` is reported
``parity_failed`` and the script exits 1.

All kinds are timed by ``reference_step.measure`` (CUDA events between consecutive steps, idle
gaps included; peak memory from ``torch.cuda.max_memory_allocated`` after a reset) and credited
the same FLOPs (``reference_step.flops_per_image``), so ``TFLOP/s`` and ``vs ref`` compare the
same useful work.  The summary adds ``ours / reference`` for img/s and peak memory per T, and
the project's targets (>= 2x img/s at T=1, >= 3x at T=4 with <= half the peak memory).

    python benchmarks/train_step.py --json train_step.json            # GPU: T=1,2,4, batch 128
    python benchmarks/train_step.py --compile --kind ours             # compiled student only

Without CUDA it runs tiny defaults (width 1, batch 8, 3 steps) so that it can be tested.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))
DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared/bench/reference_step.py"
KINDS = ("reference", "lean", "ours", "ours_torch", "ours_compiled", "ours_channels_last")
#: how each "ours" kind departs from the product's defaults (``train`` section, neuron auto)
OURS_VARIANTS = {"ours": {}, "ours_torch": {"neuron_backend": "torch"},
                 "ours_compiled": {"compile": True}, "ours_channels_last": {"channels_last": True}}
SGD = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)
TARGETS = {1: {"speedup": 2.0}, 4: {"speedup": 3.0, "mem_ratio": 0.5}}


def load_reference(path: Optional[str]):
    """Import reference_step.py from ``path`` (a file or the folder holding it)."""
    p = Path(path) if path else DEFAULT_REFERENCE
    if p.is_dir():
        p = p / "reference_step.py"
    if not p.is_file():
        raise SystemExit(f"error: reference step not found at {p} (use --reference PATH)")
    spec = importlib.util.spec_from_file_location("reference_step", p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reference_step"] = mod
    spec.loader.exec_module(mod)
    return mod


def _copy_by_order(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy every tensor of ``src``'s state dict into ``dst``'s (same registration order and
    shapes: the reference models and ours are built layer for layer alike)."""
    s, d = list(src.state_dict().values()), dst.state_dict()
    if len(s) != len(d):
        raise RuntimeError(f"state dicts differ in length ({len(s)} vs {len(d)})")
    with torch.no_grad():
        for (k, v), w in zip(d.items(), s):
            if v.shape != w.shape:
                raise RuntimeError(f"{k}: {tuple(v.shape)} vs {tuple(w.shape)}")
            v.copy_(w)


def _ours_method(*, T: int, width_mult: int, num_classes: int, neuron_backend: str):
    from spikedistill.distill import build_method
    from spikedistill.models import create_model

    student = create_model("spiking_resnet19", T=T, width_mult=width_mult,
                           num_classes=num_classes, neuron={"backend": neuron_backend})
    teacher = create_model("resnet19", width_mult=width_mult, num_classes=num_classes)
    return build_method("ckd-released", student, teacher, None)  # teacher frozen


def _engine_step(method, x, y, opt, device, amp, scaler, step_no: int, steps: int):
    """The engine's own training step (``spikedistill.engine.loop.train_step``)."""
    from spikedistill.distill.context import StepContext
    from spikedistill.engine.loop import takes_context, train_step

    ctx = StepContext.at(0, step_no % steps, epochs=1, steps_per_epoch=steps)
    _, _, total = train_step(method, x, y, opt, scaler=scaler, device=device, amp_dtype=amp,
                             ctx=ctx, pass_ctx=takes_context(method))
    return total.detach()


class SpikeRecorder:
    """Forward hooks on a model's spiking layers: each layer's spikes of the last forward,
    time-major ``[T, B, ...]``, and (``grads``) dL/ds of that forward once backward ran."""

    def __init__(self, layers: List[torch.nn.Module], batch_major: bool, grads: bool):
        self.batch_major, self.want_grads = batch_major, grads
        self.spikes: List[torch.Tensor] = [torch.empty(0)] * len(layers)
        self.grads: List[Optional[torch.Tensor]] = [None] * len(layers)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(layers)]

    def _hook(self, i: int):
        def hook(module, inputs, out):
            s = out.detach()
            self.spikes[i] = (s.transpose(0, 1) if self.batch_major else s).float()
            self.grads[i] = None
            if self.want_grads and out.requires_grad:
                def keep(g, i=i):
                    self.grads[i] = (g.transpose(0, 1) if self.batch_major else g).float()
                out.register_hook(keep)
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def spiking_layers(model: torch.nn.Module, reference: bool) -> List[torch.nn.Module]:
    """The spiking layers in registration order (the reference's ``ReferenceLIF``, our ``LIF``)."""
    if reference:
        return [m for m in model.modules() if type(m).__name__ == "ReferenceLIF"]
    from spikedistill.neurons import LIF
    return [m for m in model.modules() if isinstance(m, LIF)]


def compare_spikes(ref: SpikeRecorder, ours: SpikeRecorder) -> Dict:
    """Flipped spikes between the two forwards.

    ``flips``: neuron-steps whose spike differs; ``neuron_steps``: all of them;
    ``root_flips``: the flips of the first spiking layer (in forward order) that has any, of
    its ``root_layer_neuron_steps`` (the flips that start a cascade: one flip changes the input
    of every later layer); ``flip_effect``: the sum over the flipped neuron-steps of ``|dL/ds|``
    (our backward), a first-order estimate of the flips' effect on the loss (reported only:
    a cascade's flips are counted again downstream)."""
    flips, total, effect, first = 0, 0, 0.0, None
    for i, (a, b) in enumerate(zip(ref.spikes, ours.spikes)):
        if a.shape != b.shape:
            raise RuntimeError(f"spiking layer {i}: reference {tuple(a.shape)} vs ours "
                               f"{tuple(b.shape)} (time-major)")
        flipped = a != b
        n = int(flipped.sum())
        if n and first is None:
            first = (i, n, a.numel())
        flips += n
        total += a.numel()
        g = ours.grads[i]
        if g is not None and flips:
            effect += float(g.abs()[flipped].sum())
    return {"flips": flips, "neuron_steps": total, "flip_effect": effect,
            "first_flip_layer": None if first is None else first[0],
            "root_flips": 0 if first is None else first[1],
            "root_layer_neuron_steps": 0 if first is None else first[2]}


def parity_check(ref, *, T: int, width_mult: int, batch: int, num_classes: int,
                 device: torch.device, neuron_backend: str, seed: int, steps: int = 3,
                 rtol_first: float = 1e-5, rtol_later: float = 1e-5, flip_rtol: float = 4.0,
                 flip_floor: float = 1e-3, root_flip_fraction: float = 1e-5) -> Dict:
    """Loss parity of the engine's step against the reference ``lean_step`` (frozen teacher,
    fp32, TF32 off): the same weights (copied from the reference models), inputs, SGD settings
    and NLD noise (the RNG is seeded identically before each step) for ``steps`` steps (3: the
    third is the first whose update uses SGD's momentum buffer). Every step's spikes are
    compared layer by layer (:func:`compare_spikes`) and reported.

    Step 1 (same weights): no flipped spike and ``|L_ours - L_ref| <= rtol_first * |L_ref|``.
    Later steps check that the updates agree. The layouts ([T, B] vs [B, T]) sum gradients in
    different orders, so after an update the weights differ by rounding, and a neuron whose
    membrane sits within rounding of the threshold spikes in one and not the other; one such
    flip changes the input of every later layer, so the loss may then move by far more than
    rounding (measured on CPU, width 1, batch 8, 20 seeds x T = 1, 2, 4: up to 5.4e-3 relative
    after cascades of 0.07-8 % of all neuron-steps, started by 1-3 flips; a lone flip that
    cascaded nowhere moved it by 6.4e-5). Step k > 1 passes when::

        |L_ours - L_ref| <= (rtol_later + max(flip_floor, flip_rtol * flips / neuron_steps))
                            * |L_ref|        (the max term only when some spike flipped)

    and, at the first step with flips, the cascade starts from few neurons:
    ``root_flips <= max(1, root_flip_fraction * root_layer_neuron_steps)``. Rounding moves
    membranes by ~1e-7 and starts a cascade from one neuron (in every flipped case measured);
    a wrong update moves every weight by a visible amount and flips many neurons of the first
    layer it reaches at once. Measured (3 seeds x T = 1, 4, width 1, batch 8): a lost update
    (560-5400 root flips) and a 1 % learning-rate error (5-71) fail in 6 of 6, momentum 0.8 for
    0.9 (45-500, at step 3) in 5 of 6, weight decay 5e-4 for 1e-4 (1-8) in 4 of 6: the check
    is for bugs, not for a weight-decay typo at T = 1. Steps after the first flipped one are
    judged by the loss bound alone (the two trajectories have diverged by then)."""
    rec: Dict = {"T": T, "steps": steps, "seed": seed, "rtol_first": rtol_first,
                 "rtol_later": rtol_later, "flip_rtol": flip_rtol, "flip_floor": flip_floor,
                 "root_flip_fraction": root_flip_fraction}
    recorders: List[SpikeRecorder] = []
    flags = backend_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        ref_s, ref_t = ref.build_models("resnet19", T, num_classes, width_mult, device, seed)
        method = _ours_method(T=T, width_mult=width_mult, num_classes=num_classes,
                              neuron_backend=neuron_backend)
        _copy_by_order(ref_s, method.student)
        _copy_by_order(ref_t, method.teacher)
        method = method.to(device)
        method.train()
        opt_ref = ref.make_optimizer(ref_s)
        opt = torch.optim.SGD(list(method.trainable_parameters()), **SGD)
        x, y = ref.make_synthetic_batch(batch, num_classes, device, seed)
        rec_ref = SpikeRecorder(spiking_layers(ref_s, True), batch_major=True, grads=False)
        rec_ours = SpikeRecorder(spiking_layers(method.student, False), batch_major=False,
                                 grads=True)
        recorders = [rec_ref, rec_ours]
        if len(rec_ref.spikes) != len(rec_ours.spikes) or not rec_ref.spikes:
            raise RuntimeError(f"{len(rec_ref.spikes)} reference spiking layers vs "
                               f"{len(rec_ours.spikes)} of ours")
        lr_, lo_, flips, tols, checks, why = [], [], [], [], [], []
        flipped_before = False
        for i in range(steps):
            torch.manual_seed(seed + 1000 + i)
            loss_ref, _ = ref.lean_step(ref_s, ref_t, opt_ref, x, y, None)
            torch.manual_seed(seed + 1000 + i)
            loss_ours = _engine_step(method, x, y, opt, device, None, None, i, steps)
            a, b = float(loss_ref), float(loss_ours)
            f = compare_spikes(rec_ref, rec_ours)
            problems = []
            if i == 0:
                tol = rtol_first * abs(a)
                if f["flips"]:
                    problems.append(f"{f['flips']} spikes differ with the same weights")
            else:
                flip_term = max(flip_floor, flip_rtol * f["flips"] / f["neuron_steps"]) \
                    if f["flips"] else 0.0
                tol = (rtol_later + flip_term) * abs(a)
                cap = max(1.0, root_flip_fraction * f["root_layer_neuron_steps"])
                if f["flips"] and not flipped_before and f["root_flips"] > cap:
                    problems.append(f"{f['root_flips']} spikes of layer "
                                    f"{f['first_flip_layer']} flipped at once (rounding: "
                                    f"<= {cap:.0f})")
            if not abs(a - b) <= tol:
                problems.append(f"|loss difference| {abs(a - b):.3g} > {tol:.3g}")
            flipped_before = flipped_before or f["flips"] > 0
            lr_.append(a)
            lo_.append(b)
            flips.append(f)
            tols.append(tol)
            checks.append(not problems)
            why.append("; ".join(problems))
        rel = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(lr_, lo_)]
        rec.update(losses_reference=lr_, losses_ours=lo_, rel_diff=rel, max_rel_diff=max(rel),
                   abs_diff=[abs(a - b) for a, b in zip(lr_, lo_)], tolerance=tols,
                   flips=[f["flips"] for f in flips], neuron_steps=flips[0]["neuron_steps"],
                   root_flips=[f["root_flips"] for f in flips],
                   first_flip_layer=[f["first_flip_layer"] for f in flips],
                   flip_effect=[f["flip_effect"] for f in flips], step_ok=checks,
                   status="ok" if all(checks) else "MISMATCH")
        if not all(checks):
            rec["why"] = "; ".join(f"step {k + 1}: {w}" for k, w in enumerate(why) if w)
    except Exception as exc:  # noqa: BLE001 - reported, and 'ours' is then not timed
        rec.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        for r in recorders:
            r.close()
        restore_backend_flags(flags)
    return rec


def product_train_config():
    """The product's ``train`` section at its defaults (what ``run_training`` would use)."""
    from spikedistill.config import build_config
    return build_config({}, []).train


def backend_flags() -> Dict:
    """The global torch flags a run may change: cuDNN autotuning / determinism (the engine's
    ``determinism_flags``) and TF32."""
    from spikedistill.engine.build import determinism_flags
    return {**determinism_flags(), "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


def restore_backend_flags(flags: Dict) -> None:
    from spikedistill.engine.build import restore_determinism
    restore_determinism(flags)
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul_allow_tf32"]
    torch.backends.cudnn.allow_tf32 = flags["cudnn_allow_tf32"]


def ours_settings(kind: str, *, dtype: str, neuron_backend: str, device: torch.device) -> Dict:
    """Every setting an "ours" kind runs with: the product's defaults (``train`` section:
    optimizer, channels_last, compile, deterministic -> cuDNN autotuning) with the kind's
    change (:data:`OURS_VARIANTS`)."""
    tc = product_train_config()
    st = {"neuron_backend": neuron_backend, "amp": dtype, "channels_last": tc.channels_last,
          "compile": tc.compile, "deterministic": tc.deterministic,
          "cudnn_benchmark": not tc.deterministic,
          "optimizer": f"{tc.optimizer} lr={tc.lr} momentum={tc.momentum} "
                       f"nesterov={tc.nesterov} weight_decay={tc.weight_decay} (not fused)",
          "teacher": "frozen (eval, inference_mode)", "threads": torch.get_num_threads(),
          "device": str(device)}
    st.update(OURS_VARIANTS[kind])
    return st


def ours_setup(ref, *, T: int, width_mult: int, batch: int, num_classes: int, dtype: str,
               device: torch.device, settings: Dict, seed: int, steps: int = 1
               ) -> Callable[[], Callable[[], torch.Tensor]]:
    """A setup() for ``ref.measure``: spikedistill's CKD method and the product's optimiser
    (``engine.build.build_optimizer``), stepped by the engine's own ``train_step``;
    ``train.compile`` as the product applies it (``engine.build.wrap_for_training``: student
    and teacher); cuDNN flags as ``configure_determinism`` sets them."""

    def setup():
        from spikedistill.engine import distributed as D
        from spikedistill.engine.build import (build_optimizer, configure_determinism,
                                               trainable_parameters, wrap_for_training)

        tc = product_train_config()
        tc.compile = bool(settings["compile"])
        configure_determinism(bool(settings["deterministic"]))
        torch.manual_seed(seed)
        method = _ours_method(T=T, width_mult=width_mult, num_classes=num_classes,
                              neuron_backend=settings["neuron_backend"])
        fmt = torch.channels_last if settings["channels_last"] else torch.contiguous_format
        method = method.to(device=device, memory_format=fmt)
        method.train()
        wrap_for_training(method, method.student, dict(method.extras.items()),
                          D.DistInfo(device=device), tc)
        opt = build_optimizer(trainable_parameters(method), tc)
        x, y = ref.make_synthetic_batch(batch, num_classes, device, seed)
        x = x.contiguous(memory_format=fmt)
        amp = ref.DTYPES[dtype]
        amp = None if amp == torch.float32 else amp
        scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
        counter = [0]

        def step():
            counter[0] += 1
            return _engine_step(method, x, y, opt, device, amp, scaler, counter[0] - 1,
                                max(steps, 1))

        return step

    return setup


def summarize(results: List[Dict]) -> List[Dict]:
    """ours* vs reference per (T, dtype): img/s ratio, peak-memory ratio, targets; every
    ours_* variant also vs ours (``vs_ours``: compiled / eager, channels_last / contiguous)."""
    out = []
    refs = {(r["T"], r["dtype"]): r for r in results
            if r.get("kind") == "reference" and r.get("status") == "ok"}
    eagers = {(r["T"], r["dtype"]): r for r in results
              if r.get("kind") == "ours" and r.get("status") == "ok"}
    for r in results:
        if not str(r.get("kind", "")).startswith("ours") or r.get("status") != "ok":
            continue
        base = refs.get((r["T"], r["dtype"]))
        row = {"T": r["T"], "dtype": r["dtype"], "kind": r["kind"],
               "images_per_s": r["images_per_s"], "peak_mem_mib": r.get("peak_mem_mib")}
        eager = eagers.get((r["T"], r["dtype"]))
        if eager and r["kind"] != "ours":
            row["vs_ours"] = r["images_per_s"] / eager["images_per_s"]
            if r["kind"] == "ours_compiled":
                row["compile_warmup_s"] = r.get("warmup_s")
        if base:
            row["reference_images_per_s"] = base["images_per_s"]
            row["speedup"] = r["images_per_s"] / base["images_per_s"]
            if r.get("peak_mem_mib") and base.get("peak_mem_mib"):
                row["mem_ratio"] = r["peak_mem_mib"] / base["peak_mem_mib"]
            target = TARGETS.get(r["T"])
            if target and r.get("width_mult") == 8 and r.get("batch") == 128:
                ok = row["speedup"] >= target["speedup"]
                if "mem_ratio" in target:
                    ok = ok and row.get("mem_ratio") is not None and \
                        row["mem_ratio"] <= target["mem_ratio"]
                row["target"] = ("met" if ok else "MISSED") + " (" + ", ".join(
                    [f">= {target['speedup']:g}x img/s"]
                    + ([f"<= {target['mem_ratio']:g}x memory"] if "mem_ratio" in target else [])
                ) + ")"
        out.append(row)
    return out


def format_summary(rows: List[Dict]) -> str:
    head = (f"{'T':>2} {'dtype':<5} {'kind':<19}{'img/s':>10}{'ref img/s':>11}{'speedup':>9}"
            f"{'peak MiB':>10}{'mem/ref':>9}{'vs ours':>9}  target")
    lines = [head, "-" * len(head)]

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    for r in rows:
        lines.append(f"{r['T']:>2} {r['dtype']:<5} {r['kind']:<19}{f(r['images_per_s'], '.1f'):>10}"
                     f"{f(r.get('reference_images_per_s'), '.1f'):>11}"
                     f"{f(r.get('speedup'), '.2f'):>8}x{f(r.get('peak_mem_mib'), '.0f'):>10}"
                     f"{f(r.get('mem_ratio'), '.2f'):>9}{f(r.get('vs_ours'), '.2f'):>8}x"
                     f"  {r.get('target', '-')}")
    return "\n".join(lines)


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--reference", default=None,
                   help=f"reference_step.py or its folder (default {DEFAULT_REFERENCE})")
    p.add_argument("--T", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--dtype", nargs="+", default=["bf16"], choices=["bf16", "fp16", "fp32"])
    p.add_argument("--kind", nargs="+", default=["reference", "lean", "ours"], choices=KINDS)
    p.add_argument("--width-mult", type=int, default=None, help="default 8 on CUDA, 1 on CPU")
    p.add_argument("--batch", type=int, default=None, help="default 128 on CUDA, 8 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (30 / 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="default 5 (10 with --compile) / 1")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--neuron-backend", default="auto", choices=["auto", "torch", "triton"],
                   help="LIF backend of 'ours' (auto: Triton on CUDA)")
    p.add_argument("--compile", action="store_true",
                   help="also time 'ours_compiled' (train.compile: student and teacher "
                        "compiled) next to 'ours'")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark for the reference kinds too (the release "
                        "leaves it off; 'ours' uses the product's setting: on)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write {meta, results, summary} to this path")
    args = p.parse_args(argv)
    on_cuda = torch.device(args.device).type == "cuda"
    args.width_mult = args.width_mult or (8 if on_cuda else 1)
    args.batch = args.batch or (128 if on_cuda else 8)
    args.steps = args.steps or (30 if on_cuda else 3)
    if args.compile and "ours_compiled" not in args.kind:
        args.kind.append("ours_compiled")
    if args.warmup is None:
        args.warmup = (10 if "ours_compiled" in args.kind else 5) if on_cuda else 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    ref = load_reference(args.reference)
    device = torch.device(args.device)
    flags_at_start = backend_flags()
    meta = ref.environment_info(device)
    meta.update(args=vars(args), reference_file=str(Path(ref.__file__).resolve()))
    print(json.dumps({"meta": meta}), flush=True)

    results: List[Dict] = []
    arch = "resnet19"
    parity: Dict[int, Dict] = {}
    for T in args.T:
        if any(k.startswith("ours") for k in args.kind):
            parity[T] = parity_check(ref, T=T, width_mult=args.width_mult,
                                     batch=min(args.batch, 16), num_classes=args.classes,
                                     device=device, neuron_backend=args.neuron_backend,
                                     seed=args.seed)
            print(json.dumps({"parity": parity[T]}), flush=True)
        for dtype in args.dtype:
            flops = ref.flops_per_image(arch, T, args.width_mult, args.classes)
            for kind in args.kind:
                if kind in ("reference", "lean"):
                    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
                    rec = ref.bench_reference(arch, T, dtype, kind, args.batch, device,
                                              args.steps, args.warmup, args.classes,
                                              args.width_mult, args.seed)
                    rec["settings"] = {"amp": dtype, "cudnn_benchmark": bool(args.cudnn_benchmark),
                                       "teacher": "train mode, backward through it"
                                       if kind == "reference" else "frozen",
                                       "threads": torch.get_num_threads()}
                    restore_backend_flags(flags_at_start)
                elif parity[T]["status"] != "ok":
                    rec = {"arch": arch, "T": T, "dtype": dtype, "kind": kind,
                           "batch": args.batch, "width_mult": args.width_mult,
                           "status": "parity_failed", "error": json.dumps(parity[T])[:300]}
                else:
                    settings = ours_settings(kind, dtype=dtype, device=device,
                                             neuron_backend=args.neuron_backend)
                    setup = ours_setup(ref, T=T, width_mult=args.width_mult, batch=args.batch,
                                       num_classes=args.classes, dtype=dtype, device=device,
                                       settings=settings, seed=args.seed,
                                       steps=args.steps + args.warmup)
                    try:
                        rec = ref.measure(setup, device=device, batch=args.batch,
                                          steps=args.steps, warmup=args.warmup,
                                          flops_per_image=flops, arch=arch,
                                          width_mult=args.width_mult, T=T, dtype=dtype,
                                          kind=kind, classes=args.classes,
                                          flops_per_image_g=flops / 1e9,
                                          flops_source=ref.flops_source(arch, args.width_mult),
                                          neuron_backend=settings["neuron_backend"],
                                          compiled=settings["compile"],
                                          channels_last=settings["channels_last"])
                    finally:
                        restore_backend_flags(flags_at_start)
                    rec["settings"] = settings
                rec.update(device_name=meta.get("device_name"), torch=meta["torch"])
                print(json.dumps(rec), flush=True)
                results.append(rec)

    summary = summarize(results)
    print()
    print(f"device: {meta.get('device_name')} | torch {meta['torch']} | "
          f"timer: {'CUDA events' if device.type == 'cuda' else 'perf_counter'} | "
          f"{args.steps} timed steps after {args.warmup} warm-up | width {args.width_mult} | "
          f"batch {args.batch}")
    print(ref.format_table(results))
    seen = set()
    for r in results:
        key = (r["kind"], json.dumps(r.get("settings"), sort_keys=True))
        if r.get("settings") and key not in seen:
            seen.add(key)
            print(f"settings {r['kind']}: " + ", ".join(f"{k}={v}" for k, v in
                                                        r["settings"].items()))
    if summary:
        print()
        print(format_summary(summary))
    for T, p in parity.items():
        print(f"parity T={T}: {p['status']} (max relative loss difference "
              f"{p.get('max_rel_diff', float('nan')):.2e} over {p['steps']} fp32 steps vs "
              f"lean_step; flipped spikes per step {p.get('flips')} of {p.get('neuron_steps')})"
              + (f" {p['error']}" if "error" in p else "") + (f" {p['why']}" if "why" in p else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results,
                                               "summary": summary,
                                               "parity": {str(k): v for k, v in parity.items()}},
                                              indent=2, default=str))
    ok = all(r.get("status") in ("ok", "oom") for r in results)
    return 0 if ok and all(p["status"] == "ok" for p in parity.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
