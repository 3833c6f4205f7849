"""Activation checkpointing (``train.checkpoint_stages``): peak memory and step time with and
without, in the same run.

Every setting runs in a fresh subprocess (so that no allocator cache of an earlier setting
hides memory), builds ``create_model(--arch, T, width_mult)`` with seed 0, checkpoints the
stages of the setting (:func:`spikedistill.models.checkpointing.apply_checkpointing`), and
times full training steps on one fixed synthetic batch ``[B, 3, S, S]``: forward, CE loss,
backward, SGD (lr 0.1, momentum 0.9). Peak memory of a step:

* CPU: the process's peak resident set (``VmHWM`` of ``/proc/self/status``, reset through
  ``/proc/self/clear_refs``) during the forward and backward of the second step, minus its
  resident set just before it (model, batch and optimiser state built by a warm-up step,
  gradients freed); ``tracemalloc`` does not see torch's allocations, RSS does. The workers run
  with ``MALLOC_MMAP_THRESHOLD_=65536``, so glibc returns every freed large block to the system
  and the resident set follows the live tensors.
* CUDA: ``torch.cuda.max_memory_allocated`` during that forward and backward minus the memory
  allocated before it.

Step time: the median of ``--steps`` full steps after those two. Check: the sum of ``|grad|``
over all parameters at the second step and its loss must agree with the unchecked setting to 1e-5 (relative)
(checkpointing must not change a number), else the row says ``MISMATCH`` and the script exits
1. Ratios are against the unchecked baseline (``none``) of the same run.

    python benchmarks/checkpoint_memory.py                         # SEW-ResNet-34, T=4, 64x64, batch 8
    python benchmarks/checkpoint_memory.py --settings none 2,3 all --json ckpt.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="sew_resnet34")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--width-mult", type=int, default=None, help="None: the model's default")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--settings", nargs="+", default=["none", "2,3", "all"],
                   help="none | all | comma-separated 1-based stage numbers")
    p.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def stages_of(setting: str):
    """``train.checkpoint_stages`` of a setting name."""
    if setting == "none":
        return []
    if setting == "all":
        return "all"
    return [int(s) for s in setting.split(",")]


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(args) -> Dict[str, Any]:
    """One setting in this process: memory and time of the training step."""
    import torch
    import torch.nn.functional as F

    from spikedistill.models import create_model
    from spikedistill.models.checkpointing import apply_checkpointing

    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    kw = {"num_classes": args.classes, "T": args.T}
    if args.width_mult is not None:
        kw["width_mult"] = args.width_mult
    model = create_model(args.arch, **kw).to(dev).train()
    names = apply_checkpointing(model, stages_of(args.worker))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).mul_(2).to(dev)
    y = torch.randint(0, args.classes, (args.batch,), generator=g).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    cuda = dev.type == "cuda"
    t0 = time.perf_counter()
    step()                                     # warm-up: optimiser state, one-time buffers
    first_s = time.perf_counter() - t0
    opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:   # VmHWM := VmRSS
            f.write("5")
        base = _rss_kb("VmRSS") * 1024
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_kb("VmHWM") * 1024 - base
    grad_abs = float(sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None))
    opt.step()
    times: List[float] = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"setting": args.worker, "stages": names, "device": str(dev),
            "peak_mb": peak / 2 ** 20, "step_s": statistics.median(times) if times else first_s,
            "first_step_s": first_s, "loss": float(loss), "grad_abs_sum": grad_abs}


def run_setting(args, setting: str) -> Dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--arch", args.arch,
           "--T", str(args.T), "--size", str(args.size), "--batch", str(args.batch),
           "--classes", str(args.classes), "--steps", str(args.steps), "--device", args.device,
           "--threads", str(args.threads)]
    if args.width_mult is not None:
        cmd += ["--width-mult", str(args.width_mult)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: setting {setting} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return 0
    settings = list(args.settings)
    if "none" in settings:
        settings.remove("none")
    settings.insert(0, "none")                 # the baseline first
    rows = [run_setting(args, s) for s in settings]
    base = rows[0]
    ok = True
    for r in rows:
        r["mem_ratio"] = r["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else float("nan")
        r["time_ratio"] = r["step_s"] / base["step_s"]
        rel = abs(r["grad_abs_sum"] - base["grad_abs_sum"]) / max(abs(base["grad_abs_sum"]), 1e-12)
        r["check"] = "ok" if rel <= 1e-5 and r["loss"] == base["loss"] else "MISMATCH"
        ok = ok and r["check"] == "ok"
    head = (f"{args.arch} T={args.T} batch={args.batch} {args.size}x{args.size} "
            f"width_mult={args.width_mult or 'default'} on {base['device']} "
            f"({args.threads} thread(s)); peak = step peak over the memory before it")
    print(head)
    print(f"{'checkpoint_stages':<18} {'stages':<28} {'peak MB':>9} {'x base':>7} "
          f"{'step s':>8} {'x base':>7}  check")
    for r in rows:
        print(f"{r['setting']:<18} {','.join(r['stages']) or '-':<28} {r['peak_mb']:>9.1f} "
              f"{r['mem_ratio']:>7.2f} {r['step_s']:>8.3f} {r['time_ratio']:>7.2f}  {r['check']}")
    for r in rows:
        print(json.dumps(r))
    if args.json:
        from spikedistill.atomic import atomic_write_text
        atomic_write_text(args.json, json.dumps({"config": {k: v for k, v in vars(args).items()
                                                            if k != "worker"},
                                                 "results": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
