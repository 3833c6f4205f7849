"""One command for a person with one GPU: the checks that need CUDA, in under 8 minutes.

    python benchmarks/gpu_check.py --data PATH/cifar10-jpeg.tar.gz --json gpu_check.json

Parts (each one's failure is recorded in the JSON and does not stop the others):

1. ``triton_tests``: the CUDA cases of ``tests/neurons/test_triton_lif.py`` (pytest in a
   subprocess; passed / failed / skipped counts).
2. ``lif_kernel``: ``benchmarks/lif_kernel.py`` at ResNet-19 layer 1, T = 4 (Triton kernel vs
   the torch loop, forward + backward ms, correctness check).
3. ``train_step``: ``benchmarks/train_step.py`` at T = 1 and 4, reference vs ours (the engine's
   own step at the product's defaults, after its loss-parity check) and, on CUDA, ours
   compiled (``train.compile``) and channels_last: images/s, peak memory, ratios, the flips
   of the parity check, every setting.
4. ``end_to_end``: an ANN teacher (ResNet-20) and a CKD student (spiking ResNet-20, T = 1)
   trained for a few epochs on the CIFAR-10 JPEG copy through ``run_training``: test
   accuracy, images/s, wall time, the teacher's provenance record.

``meta`` holds the card's name, the NVIDIA driver, torch / CUDA / cuDNN / Triton versions;
``status`` each part's status. Runs on a stock CUDA PyTorch image plus PyYAML, tqdm,
matplotlib, scikit-learn (pytest for part 1); only the standard library and torch are imported
at the top, and ``src/`` is put on ``sys.path``.

Without a usable CUDA device (torch sees none, or cannot run a kernel on the one it sees) the
script prints one line (what torch sees, the driver, torch's CUDA build) and exits 2: it cannot
pass without the GPU. ``--cpu`` asks for the CPU dry run instead: every part at tiny sizes
(digits when ``--data`` is not given), the same JSON keys; a test of the script (CI runs it),
not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lif_kernel import environment  # noqa: E402  (the benchmarks' shared JSON header)

PARTS = ("triton_tests", "lif_kernel", "train_step", "end_to_end")
#: seconds each part's subprocess may take: a cold ``torch.compile`` of the ResNet-19 student
#: (the step benchmark compiles it at T = 1 and 4) takes minutes on its own
PART_TIMEOUT_S = 900.0
NO_CUDA_EXIT = 2
#: where the Linux NVIDIA kernel driver states its version
DRIVER_FILE = Path("/proc/driver/nvidia/version")


# --------------------------------------------------------------------------------------------
# is there a usable CUDA device?
# --------------------------------------------------------------------------------------------

def nvidia_driver() -> str:
    """The NVIDIA kernel driver's version as the host reports it (``/proc/driver/nvidia/version``,
    else ``nvidia-smi``), or why none was found. Independent of torch: a driver too old for
    torch's CUDA build is still reported."""
    proc_file = DRIVER_FILE
    try:
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", proc_file.read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"none found (no {proc_file}, nvidia-smi: {type(exc).__name__})"
    first = (out.stdout.strip() or out.stderr.strip()).splitlines()
    if out.returncode == 0 and first:
        return first[0].strip()
    return f"none found (no {proc_file}, nvidia-smi exit {out.returncode}: " \
           f"{first[0][:120] if first else 'no output'})"


def torch_cuda_build() -> str:
    """torch's version and the CUDA toolkit it was built against."""
    cuda = torch.version.cuda
    return f"torch {torch.__version__} built for CUDA {cuda}" if cuda else \
        f"torch {torch.__version__} is a CPU-only build (no CUDA)"


def _cuda_smoke(device: torch.device) -> None:
    """Run one small kernel on ``device`` and wait for it (raises when the card cannot)."""
    x = torch.arange(1024, dtype=torch.float32, device=device)
    total = float((x * 2).sum().item())
    torch.cuda.synchronize(device)
    if total != 1024 * 1023:
        raise RuntimeError(f"a sum on the device gave {total}, expected {1024 * 1023}")


def probe_cuda() -> Tuple[bool, str]:
    """``(usable, what torch sees)``: usable when torch sees a CUDA device and can run a kernel
    on it and read the result back (a driver too old for the build, a card whose architecture
    the build lacks, or ``CUDA_VISIBLE_DEVICES=`` all fail here)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
    if not available or count == 0:
        said = "; ".join(str(w.message).strip().splitlines()[0][:200] for w in caught
                         if str(w.message).strip())
        return False, ("torch sees no CUDA device (torch.cuda.is_available() is False"
                       + (f": {said}" if said else "") + ")")
    device = torch.device("cuda", 0)
    try:
        name = torch.cuda.get_device_name(device)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        return False, f"torch sees {count} CUDA device(s) but cannot query cuda:0 " \
                      f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})"
    try:
        _cuda_smoke(device)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return False, f"torch sees {count} CUDA device(s) ({name}) but cannot run a kernel " \
                      f"on cuda:0 ({type(exc).__name__}: {msg})"
    return True, f"torch sees {count} CUDA device(s): {name}"


def no_cuda_line(seen: str) -> str:
    """The one line printed when there is no usable CUDA device."""
    return (f"gpu_check: no usable CUDA device: {seen}; NVIDIA driver: {nvidia_driver()}; "
            f"{torch_cuda_build()}. The checks need the GPU (use --cpu for the CPU dry run).")


def gpu_meta(device: torch.device) -> Dict[str, Any]:
    """The JSON's ``meta``: the benchmarks' environment header plus the driver, cuDNN and the
    build's CUDA architectures."""
    meta = dict(environment(device))
    meta.update(driver=nvidia_driver(), torch_cuda_build=torch_cuda_build(),
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
                else None,
                cuda_arch_list=torch.cuda.get_arch_list() if device.type == "cuda" else None)
    return meta


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _subprocess(cmd: List[str], timeout: float, env: Dict[str, str] = None) -> Dict[str, Any]:
    """Run ``cmd`` from the checkout; ``returncode`` is None when it ran past ``timeout``."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1",
                    PYTHONPATH=os.pathsep.join([str(REPO / "src"),
                                                os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    full_env.update(env or {})
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        def text(b: Optional[bytes]) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        return {"returncode": None, "wall_s": round(time.perf_counter() - t0, 1),
                "stdout": text(exc.stdout),
                "stderr": text(exc.stderr) + f"\ntimed out after {timeout:g} s "
                                             "(raise --part-timeout)"}
    return {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1),
            "stdout": proc.stdout, "stderr": proc.stderr}


def _failed_status(out: Dict[str, Any]) -> str:
    return "timeout" if out["returncode"] is None else "failed"


def _tail(text: str, n: int = 1500) -> str:
    return text[-n:]


# --------------------------------------------------------------------------------------------
# the parts
# --------------------------------------------------------------------------------------------

def pytest_counts(text: str) -> Dict[str, int]:
    """``{passed, failed, skipped, errors, deselected}`` from pytest's summary line."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "deselected": 0}
    summary = [ln for ln in text.splitlines() if re.search(r"\b(passed|failed|skipped|error)", ln)]
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)",
                              summary[-1] if summary else ""):
        counts["errors" if word.startswith("error") else word] += int(n)
    return counts


def part_triton_tests(args, device) -> Dict[str, Any]:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"status": "error", "error": "pytest is not installed (pip install pytest)"}
    out = _subprocess([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                       "tests/neurons/test_triton_lif.py", "-k", "cuda"], timeout=args.part_timeout)
    counts = pytest_counts(out["stdout"])
    ok = out["returncode"] in (0, 5) and counts["failed"] == 0 and counts["errors"] == 0
    return {"status": "ok" if ok else _failed_status(out), **counts, "returncode": out["returncode"],
            "wall_s": out["wall_s"], "tail": _tail(out["stdout"])}


def _bench_json(script: str, extra: List[str], args) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        out = _subprocess([sys.executable, f"benchmarks/{script}", *extra, "--json", str(path)],
                          timeout=args.part_timeout)
        data = json.loads(path.read_text()) if path.is_file() else None
    return out, data


def part_lif_kernel(args, device) -> Dict[str, Any]:
    cuda = device.type == "cuda"
    extra = ["--device", device.type, "--layers", "layer1" if cuda else "tiny", "--T", "4",
             "--dtype", "bf16", "fp32"]
    if not cuda:
        extra += ["--impl", "torch_loop"]
    out, data = _bench_json("lif_kernel.py", extra, args)
    if data is None:
        return {"status": "timeout" if out["returncode"] is None else "error",
                "returncode": out["returncode"], "error": _tail(out["stderr"] or out["stdout"])}
    rows = data["results"]
    loop = {r["dtype"]: r.get("fwdbwd_ms") for r in rows if r["impl"] == "torch_loop"}
    headline = [{"impl": r["impl"], "dtype": r["dtype"], "status": r.get("status"),
                 "check": r.get("check"), "fwdbwd_ms": r.get("fwdbwd_ms"),
                 "pct_of_copy_bw": r.get("pct_of_copy_bw"),
                 "vs_loop": (loop.get(r["dtype"]) / r["fwdbwd_ms"]
                             if loop.get(r["dtype"]) and r.get("fwdbwd_ms") else None)}
                for r in rows]
    bad = [r for r in rows if r.get("status") == "error" or r.get("check") == "MISMATCH"]
    return {"status": "ok" if out["returncode"] == 0 and not bad else _failed_status(out),
            "returncode": out["returncode"], "wall_s": out["wall_s"], "headline": headline,
            "copy_gb_s": data["meta"].get("copy_gb_s"), "results": rows}


def part_train_step(args, device) -> Dict[str, Any]:
    extra = ["--device", device.type, "--T", "1", "4", "--kind", "reference", "ours"]
    if device.type == "cuda":  # compiled next to eager, and channels_last next to contiguous
        extra += ["ours_compiled", "ours_channels_last"]
    if args.reference:
        extra += ["--reference", args.reference]
    if device.type != "cuda":
        extra += ["--dtype", "fp32", "--steps", "2", "--warmup", "1"]
    out, data = _bench_json("train_step.py", extra, args)
    if data is None:
        return {"status": "timeout" if out["returncode"] is None else "error",
                "returncode": out["returncode"], "error": _tail(out["stderr"] or out["stdout"])}
    return {"status": "ok" if out["returncode"] == 0 else _failed_status(out),
            "returncode": out["returncode"], "wall_s": out["wall_s"],
            "parity": data.get("parity"), "summary": data.get("summary"),
            "results": [{k: r.get(k) for k in ("kind", "T", "dtype", "batch", "width_mult",
                                               "images_per_s", "ms_per_step", "peak_mem_mib",
                                               "warmup_s", "settings", "status", "error")}
                        for r in data["results"]]}


def part_end_to_end(args, device) -> Dict[str, Any]:
    from spikedistill.config import build_config
    from spikedistill.engine import run_training

    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        common = [f"run.out_dir={tmp}", "run.progress=false", "run.tensorboard=false",
                  "run.plots=false", f"train.device={device.type}"]
        if args.data:
            common += ["data.name=cifar10", f"data.root={args.data}"]
            if not cuda:
                common += ["data.train_subset=200", "data.test_subset=100"]
        else:
            common += ["data.name=digits"]
        if cuda:
            common += ["train.batch_size=128", "train.eval_batch_size=1000"]
        else:
            common += ["train.batch_size=16", "train.max_steps_per_epoch=2",
                       "train.eval_batch_size=100", "train.threads=1"]
        t_epochs = args.teacher_epochs or (4 if cuda else 1)
        s_epochs = args.student_epochs or (3 if cuda else 1)
        out: Dict[str, Any] = {"dataset": "CIFAR-10 (JPEG q75 copy)" if args.data else "digits"}
        teacher = run_training(build_config({}, common + [
            "model.name=resnet20", "distill.method=ce", f"train.epochs={t_epochs}",
            "train.lr=0.1", "run.name=teacher"]))
        out["teacher"] = {"model": "resnet20", "epochs": t_epochs, "best_acc": teacher.best_acc,
                          "last_acc": teacher.last_acc, "images_per_s": teacher.images_per_s,
                          "wall_s": teacher.wall_time_s}
        student = run_training(build_config({}, common + [
            "model.name=spiking_resnet20", "model.T=1", "distill.method=ckd",
            f"train.epochs={s_epochs}", "train.lr=0.1", "run.name=student",
            f"teacher.checkpoint={Path(teacher.run_dir) / 'best.pt'}"]))
        out["student"] = {"model": "spiking_resnet20", "T": 1, "method": "ckd",
                          "epochs": s_epochs, "best_acc": student.best_acc,
                          "last_acc": student.last_acc, "images_per_s": student.images_per_s,
                          "wall_s": student.wall_time_s, "loss_means": student.loss_means,
                          "teacher_acc": student.teacher_acc}
        out["teacher_record"] = {k: v for k, v in (student.teacher or {}).items()
                                 if k != "checkpoint"}
    out["status"] = "ok"
    return out


RUNNERS: Dict[str, Callable[[Any, torch.device], Dict[str, Any]]] = {
    "triton_tests": part_triton_tests, "lif_kernel": part_lif_kernel,
    "train_step": part_train_step, "end_to_end": part_end_to_end}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help="CIFAR-10 root: cifar10-jpeg.tar.gz or a folder holding it (default: "
                        "the embedded digits)")
    p.add_argument("--json", default="gpu_check.json", help="where the report is written")
    p.add_argument("--cpu", action="store_true",
                   help="the CPU dry run (tiny sizes; a test of the script, not a measurement): "
                        "without it the script needs a usable CUDA device")
    p.add_argument("--reference", default=None, help="reference_step.py for the step benchmark "
                                                     "(default ../shared/bench/reference_step.py)")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--teacher-epochs", type=int, default=None, help="default 4 (GPU) / 1 (CPU)")
    p.add_argument("--student-epochs", type=int, default=None, help="default 3 (GPU) / 1 (CPU)")
    p.add_argument("--part-timeout", type=float, default=PART_TIMEOUT_S,
                   help="seconds each benchmark / test subprocess may take (default "
                        f"{PART_TIMEOUT_S:g}: a cold torch.compile takes minutes)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.cpu:
        usable, seen = probe_cuda()
        if not usable:
            print(no_cuda_line(seen), file=sys.stderr, flush=True)
            return NO_CUDA_EXIT
    args.device = "cpu" if args.cpu else "cuda"
    device = torch.device(args.device)
    t0 = time.perf_counter()
    report: Dict[str, Any] = {"meta": gpu_meta(device), "args": vars(args)}
    for name in PARTS:
        if name not in args.parts:
            report[name] = {"status": "not_run"}
            continue
        _sync(device)
        t = time.perf_counter()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            report[name] = RUNNERS[name](args, device)
        except Exception as exc:  # noqa: BLE001 - one part's failure must not stop the others
            report[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                            "traceback": _tail(traceback.format_exc(), 3000)}
        _sync(device)
        report[name].setdefault("wall_s", round(time.perf_counter() - t, 1))
        print(f"gpu_check: {name}: {report[name]['status']} ({report[name]['wall_s']} s)",
              flush=True)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["status"] = {n: report[n]["status"] for n in PARTS}
    report["ok"] = all(report[n]["status"] in ("ok", "not_run") for n in PARTS)
    from spikedistill.atomic import atomic_write_text
    atomic_write_text(args.json, json.dumps(report, indent=2, default=str))
    print(f"gpu_check: wrote {args.json} ({'all parts ok' if report['ok'] else 'see failures'})")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
