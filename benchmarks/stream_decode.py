"""Streaming-pipeline throughput: decoded images/s of ``StreamLoader`` per DataLoader worker count.

Streams the training split of an ImageFolder-style dataset (``--name imagefolder | cifar10 |
imagenet``, ``--root`` a folder) through the product's loader (``spikedistill.data.stream``):
read, decode (``torchvision.io.decode_image``), ``RandomResizedCrop(--size) +
RandomHorizontalFlip`` in ``--workers`` worker processes, uint8 batches to the device and
normalised there. For each worker count it reports images/s and images/s per worker (for 0
workers the trainer process decodes; counted as one). The first batch (worker start-up) is not
timed. With ``--decode cuda`` on a CUDA machine it also times GPU JPEG decoding
(``torchvision.io.decode_jpeg(..., device="cuda")``).

``--compare-memory``: the training-step rate of a small spiking ResNet-20 on the same data,
from the in-memory ``DeviceLoader`` (decoded once, resized to ``--size``) against the stream
(so the loader's share of a step shows).

    python benchmarks/stream_decode.py --name imagefolder --root /data/cifar10 --size 64 \
        --workers 1 2 --batches 40 --json stream.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402


def _cfg(args, extra=()):
    from spikedistill.config import build_config

    return build_config({}, [f"data.name={args.name}", f"data.root={args.root}",
                             f"data.image_size={args.size}", "data.augment.autoaugment=false",
                             "data.augment.random_erasing=0"] + list(extra))


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work: every timed interval starts and ends synchronised."""
    from spikedistill.engine.loop import sync
    sync(device)


def time_stream(args, workers: int, decode: str, device: torch.device) -> dict:
    from spikedistill.data import build_augment
    from spikedistill.data.stream import StreamLoader, load_stream

    cfg = _cfg(args, ["data.pipeline=stream"])
    splits = load_stream(cfg.data)
    loader = StreamLoader(splits.train.files, args.batch_size, shuffle=True, image_size=args.size,
                          augment=build_augment(False, splits.mean, splits.std), device=device,
                          workers=workers, prefetch_factor=args.prefetch, persistent_workers=True,
                          decode=decode)
    loader.set_epoch(0)
    it = iter(loader)
    next(it)                                   # start-up (workers, first prefetch) not timed
    n = 0
    _sync(device)                              # the first batch's device work is not timed
    t0 = time.perf_counter()
    for _ in range(args.batches):
        try:
            x, _ = next(it)
        except StopIteration:
            break
        n += int(x.shape[0])
    _sync(device)
    dt = time.perf_counter() - t0
    rate = n / dt if dt > 0 else float("nan")
    return {"kind": "stream", "decode": decode, "workers": workers, "images": n, "time_s": dt,
            "images_per_s": rate, "images_per_s_per_worker": rate / max(1, workers),
            "size": args.size, "batch_size": args.batch_size, "train_images": len(splits.train)}


def time_steps(args, pipeline: str, device: torch.device) -> dict:
    """Training steps/s of spiking_resnet20 (width 1, T 1) fed by the pipeline."""
    from spikedistill.data.pipeline import open_pipeline
    from spikedistill.engine.build import build_distiller, build_optimizer
    from spikedistill.engine.loop import train_step
    from spikedistill.models import create_model

    extra = [f"data.pipeline={pipeline}", f"data.workers={args.step_workers}",
             f"train.batch_size={args.batch_size}"]
    if pipeline == "memory":
        extra.append(f"data.train_subset={args.memory_subset}")
    cfg = _cfg(args, extra)
    t_load = time.perf_counter()
    pipe = open_pipeline(cfg.data)
    splits = pipe.splits
    t_load = time.perf_counter() - t_load
    train, _ = pipe.loaders(args.batch_size, cfg.train.eval_batch_size, device,
                            seed=cfg.train.seed, channels_last=cfg.train.channels_last)
    model = create_model("spiking_resnet20", num_classes=splits.num_classes, in_channels=3,
                         width_mult=1, T=1).to(device)
    distiller = build_distiller(cfg, model, None, device)
    opt = build_optimizer([p for p in distiller.parameters() if p.requires_grad], cfg.train)
    train.set_epoch(0)
    it = iter(train)
    x, y = next(it)
    train_step(distiller, x, y, opt, device=device)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    for _ in range(args.step_batches):
        try:
            x, y = next(it)
        except StopIteration:
            break
        train_step(distiller, x, y, opt, device=device)
        n += 1
    _sync(device)
    dt = time.perf_counter() - t0
    return {"kind": "steps", "pipeline": pipeline, "steps": n, "time_s": dt,
            "steps_per_s": n / dt if dt > 0 else float("nan"), "load_s": t_load,
            "workers": args.step_workers if pipeline == "stream" else 0,
            "train_images": len(splits.train)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="imagefolder")
    p.add_argument("--root", required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--prefetch", type=int, default=2)
    p.add_argument("--decode", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare-memory", action="store_true")
    p.add_argument("--memory-subset", type=int, default=5000)
    p.add_argument("--step-workers", type=int, default=1)
    p.add_argument("--step-batches", type=int, default=20)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for decode in args.decode:
        if decode == "cuda" and device.type != "cuda":
            print("decode=cuda skipped: no CUDA device here")
            continue
        for w in args.workers:
            r = time_stream(args, w, decode, device)
            rows.append(r)
            print(f"stream decode={decode} workers={w}: {r['images_per_s']:.1f} img/s "
                  f"({r['images_per_s_per_worker']:.1f} per worker) over {r['images']} images "
                  f"at {args.size}x{args.size}")
            print(json.dumps(r))
    if args.compare_memory:
        for pipeline in ("memory", "stream"):
            r = time_steps(args, pipeline, device)
            rows.append(r)
            print(f"steps pipeline={pipeline}: {r['steps_per_s']:.2f} steps/s (batch "
                  f"{args.batch_size}, load {r['load_s']:.1f} s, {r['train_images']} train images)")
            print(json.dumps(r))
    if args.json:
        from spikedistill.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({"device": str(device), "cpus": os.cpu_count(),
                                                 "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
