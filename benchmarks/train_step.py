"""CKDSNN training-step benchmark: spikedistill's step next to the released reference, same run.

Step kinds (ResNet-19 student / teacher, synthetic resident batch, SGD lr 0.1 momentum 0.9
weight decay 1e-4 on the student):

* ``reference``: the released step, re-created in ``shared/bench/reference_step.py`` (teacher in
  train mode with backward through it, [B, T] layout, float32 spikes, one host sync per step).
* ``lean``     : the same model code with a frozen teacher under ``inference_mode`` and no sync.
* ``ours``     : spikedistill -- ``create_model("spiking_resnet19", T=T, width_mult=W)``,
  ``create_model("resnet19", width_mult=W)``, ``build_method("ckd-released", ...)`` (teacher
  frozen: eval + ``inference_mode``), loss = sum of the method's weighted terms, autocast in
  ``--dtype``, channels_last weights and input, neuron backend ``--neuron-backend`` (``auto``:
  the fused Triton LIF on CUDA), optionally ``torch.compile`` of the student (``--compile``).
* ``ours_torch``: ``ours`` with the pure-torch neuron loop (to see the kernel's share).

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
KINDS = ("reference", "lean", "ours", "ours_torch")
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


def ours_setup(ref, *, T: int, width_mult: int, batch: int, num_classes: int, dtype: str,
               device: torch.device, neuron_backend: str, compile_student: bool,
               channels_last: bool, seed: int) -> Callable[[], Callable[[], torch.Tensor]]:
    """A setup() for ``ref.measure``: builds spikedistill's CKD step and returns it."""

    def setup():
        # imported here so that the reference-only part runs even without these modules
        from spikedistill.distill import build_method
        from spikedistill.models import create_model

        torch.manual_seed(seed)
        student = create_model("spiking_resnet19", T=T, width_mult=width_mult,
                               num_classes=num_classes, neuron={"backend": neuron_backend})
        teacher = create_model("resnet19", width_mult=width_mult, num_classes=num_classes)
        method = build_method("ckd-released", student, teacher, None)  # teacher frozen
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        method = method.to(device=device, memory_format=fmt)
        method.train()
        if compile_student:
            method.student = torch.compile(method.student)
        params = list(method.trainable_parameters())
        try:
            opt = torch.optim.SGD(params, fused=device.type == "cuda", **SGD)
        except (TypeError, RuntimeError):
            opt = torch.optim.SGD(params, **SGD)
        x, y = ref.make_synthetic_batch(batch, num_classes, device, seed)
        x = x.contiguous(memory_format=fmt)
        amp = ref.DTYPES[dtype]
        scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

        def step():
            with ref.autocast_context(device.type, amp):
                _, losses = method.forward_train(x, y)
                loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            return loss.detach()

        return step

    return setup


def summarize(results: List[Dict]) -> List[Dict]:
    """ours(/_torchlif) vs reference per (T, dtype): img/s ratio, peak-memory ratio, targets."""
    out = []
    refs = {(r["T"], r["dtype"]): r for r in results
            if r.get("kind") == "reference" and r.get("status") == "ok"}
    for r in results:
        if not str(r.get("kind", "")).startswith("ours") or r.get("status") != "ok":
            continue
        base = refs.get((r["T"], r["dtype"]))
        row = {"T": r["T"], "dtype": r["dtype"], "kind": r["kind"],
               "images_per_s": r["images_per_s"], "peak_mem_mib": r.get("peak_mem_mib")}
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
    head = (f"{'T':>2} {'dtype':<5} {'kind':<14}{'img/s':>10}{'ref img/s':>11}{'speedup':>9}"
            f"{'peak MiB':>10}{'mem/ref':>9}  target")
    lines = [head, "-" * len(head)]

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    for r in rows:
        lines.append(f"{r['T']:>2} {r['dtype']:<5} {r['kind']:<14}{f(r['images_per_s'], '.1f'):>10}"
                     f"{f(r.get('reference_images_per_s'), '.1f'):>11}"
                     f"{f(r.get('speedup'), '.2f'):>8}x{f(r.get('peak_mem_mib'), '.0f'):>10}"
                     f"{f(r.get('mem_ratio'), '.2f'):>9}  {r.get('target', '-')}")
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
    p.add_argument("--compile", action="store_true", help="torch.compile the student of 'ours'")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep 'ours' in contiguous (NCHW) memory format")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark for every kind (the release leaves it off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write {meta, results, summary} to this path")
    args = p.parse_args(argv)
    on_cuda = torch.device(args.device).type == "cuda"
    args.width_mult = args.width_mult or (8 if on_cuda else 1)
    args.batch = args.batch or (128 if on_cuda else 8)
    args.steps = args.steps or (30 if on_cuda else 3)
    if args.warmup is None:
        args.warmup = (10 if args.compile else 5) if on_cuda else 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    ref = load_reference(args.reference)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    meta = ref.environment_info(device)
    meta.update(args=vars(args), reference_file=str(Path(ref.__file__).resolve()))
    print(json.dumps({"meta": meta}), flush=True)

    results: List[Dict] = []
    arch = "resnet19"
    for T in args.T:
        for dtype in args.dtype:
            flops = ref.flops_per_image(arch, T, args.width_mult, args.classes)
            for kind in args.kind:
                if kind in ("reference", "lean"):
                    rec = ref.bench_reference(arch, T, dtype, kind, args.batch, device,
                                              args.steps, args.warmup, args.classes,
                                              args.width_mult, args.seed)
                else:
                    backend = "torch" if kind == "ours_torch" else args.neuron_backend
                    setup = ours_setup(ref, T=T, width_mult=args.width_mult, batch=args.batch,
                                       num_classes=args.classes, dtype=dtype, device=device,
                                       neuron_backend=backend, compile_student=args.compile,
                                       channels_last=not args.no_channels_last, seed=args.seed)
                    rec = ref.measure(setup, device=device, batch=args.batch, steps=args.steps,
                                      warmup=args.warmup, flops_per_image=flops, arch=arch,
                                      width_mult=args.width_mult, T=T, dtype=dtype, kind=kind,
                                      classes=args.classes, flops_per_image_g=flops / 1e9,
                                      flops_source=ref.flops_source(arch, args.width_mult),
                                      neuron_backend=backend, compiled=args.compile,
                                      channels_last=not args.no_channels_last)
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
    if summary:
        print()
        print(format_summary(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results,
                                               "summary": summary}, indent=2, default=str))
    return 0 if all(r.get("status") in ("ok", "oom") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
