"""``spikedistill events emulate | info | convert``: event-camera recordings.

    spikedistill events emulate --data.name cifar10 --data.root PATH --out DIR [--format aedat|aedat3|aedat4|npz]
                                [--train-subset N --test-subset N] [--seed S] [--workers W]
    spikedistill events info PATH            # recordings, classes, formats, events, event rate
    spikedistill events convert PATH [--T 10] [--split-by number] [--size 48] [--workers W]

``emulate`` writes "emulated events" (:mod:`spikedistill.data.events.emulate`): never call them
CIFAR10-DVS.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from spikedistill.commands.common import add_config_args, load_from_args
from spikedistill.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("events", help="event data: emulate recordings from images, inspect, convert to frames")
    s = p.add_subparsers(dest="events_command", metavar="ACTION")
    e = s.add_parser("emulate", help="turn an image dataset (data.name, data.root) into emulated event recordings")
    add_config_args(e)
    e.add_argument("--out", required=True, help="output folder (<class>/<name>.aedat, split.txt, emulate.json)")
    e.add_argument("--format", default="aedat", help="aedat (AEDAT 2.0, the release's) | aedat3 | aedat4 (tonic's) | npz")
    e.add_argument("--train-subset", type=int, default=None, help="class-balanced train images (default data.train_subset)")
    e.add_argument("--test-subset", type=int, default=None, help="class-balanced test images (default data.test_subset)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    e.add_argument("--steps", type=int, default=100, help="sub-frames of the movement")
    e.add_argument("--threshold", type=float, default=0.2, help="contrast threshold C (log intensity)")
    e.add_argument("--radius", type=float, default=3.0, help="radius of the circular movement, sensor pixels")
    e.set_defaults(func=run_emulate)
    i = s.add_parser("info", help="recordings, formats, events and event rate under PATH")
    i.add_argument("path")
    i.add_argument("--limit", type=int, default=200, help="recordings decoded for the event statistics (0: all)")
    i.set_defaults(func=run_info)
    c = s.add_parser("convert", help="convert the recordings under PATH into the frame cache")
    c.add_argument("path")
    c.add_argument("--T", type=int, default=10)
    c.add_argument("--split-by", default="number")
    c.add_argument("--size", type=int, default=48)
    c.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    c.add_argument("--cache-dir", default=None)
    c.set_defaults(func=run_convert)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_emulate(args) -> int:
    from spikedistill.data import load_dataset
    from spikedistill.data.events.emulate import emulate_dataset

    from spikedistill.data.events.emulate import EmulateParams

    params = EmulateParams(seed=args.seed, steps=args.steps, threshold=args.threshold, radius=args.radius)
    params.check()                      # before any data is loaded
    cfg = load_from_args(args)
    d = cfg.data
    if d.name == "cifar10dvs":
        raise ConfigError("config key 'data.name': events emulate converts an image dataset "
                          "(e.g. cifar10, digits), not an event dataset")
    tr = d.train_subset if args.train_subset is None else args.train_subset
    te = d.test_subset if args.test_subset is None else args.test_subset
    data = load_dataset(d.name, d.root, train_subset=tr, test_subset=te, subset_seed=d.subset_seed,
                        cache_dir=d.cache_dir, options=d.kwargs)
    if data.frames:
        raise ConfigError(f"config key 'data.name': {d.name} already holds frames; emulate needs images")
    t0 = time.perf_counter()
    summary = emulate_dataset(data.train.images.numpy(), data.train.labels.numpy(), data.test.images.numpy(),
                              data.test.labels.numpy(), data.class_names, Path(args.out), prefix=d.name,
                              params=params, fmt=args.format, workers=max(1, args.workers),
                              source=f"{d.name} ({data.source or 'embedded'})")
    print(f"emulated events: {summary['recordings']} recordings ({summary['train']} train / "
          f"{summary['test']} test images), {summary['events']} events "
          f"({summary['events_per_recording']:.0f} per recording) in {time.perf_counter() - t0:.1f} s -> {args.out}")
    return 0


def run_info(args) -> int:
    import numpy as np

    from spikedistill.data.events import decode_events
    from spikedistill.data.events.layout import discover

    recs, layout = discover(Path(args.path))
    classes = sorted({r.cls for r in recs})
    print(f"{args.path}: {len(recs)} recordings, {len(classes)} classes ({', '.join(classes[:10])}"
          f"{', ...' if len(classes) > 10 else ''}), layout {layout['layout']}, format {layout['format']}")
    if layout["kind"] != "events":
        return 0
    step = max(1, len(recs) // args.limit) if args.limit > 0 else 1
    sample = recs[::step]
    n, dur, on, nbytes = [], [], 0, 0
    t0 = time.perf_counter()
    for r in sample:
        data = r.read_bytes()
        nbytes += len(data)
        ev = decode_events(data, r.key)
        n.append(len(ev["t"]))
        dur.append((int(ev["t"][-1]) - int(ev["t"][0])) if len(ev["t"]) else 0)
        on += int((ev["p"] != 0).sum())
    secs = time.perf_counter() - t0
    total = int(sum(n))
    stats = {"decoded": len(sample), "events_mean": float(np.mean(n)), "events_min": int(min(n)),
             "events_max": int(max(n)), "duration_ms_mean": float(np.mean(dur)) / 1e3,
             "event_rate_per_s": total / max(1e-9, sum(dur) / 1e6), "on_fraction": on / max(1, total),
             "reader_events_per_s": total / max(1e-9, secs), "bytes_per_event": nbytes / max(1, total)}
    print(json.dumps(stats, indent=2))
    return 0


#: largest frame side of ``events convert`` (frames are [N, T, 2, size, size] uint8 in memory)
MAX_CONVERT_SIZE = 1024


def _check_int_arg(flag: str, value: int, low: int, high: int) -> None:
    """ConfigError naming ``flag`` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ConfigError(f"{flag}: expected an integer in [{low}, {high}], got {value}")


def run_convert(args) -> int:
    from spikedistill.data.registry import ReadRequest
    from spikedistill.data.sets.cifar10dvs import load_event_frames

    from spikedistill.config import MAX_T

    _check_int_arg("--size", args.size, 1, MAX_CONVERT_SIZE)
    _check_int_arg("--T", args.T, 1, MAX_T)
    request = ReadRequest(name="cifar10dvs", root=Path(args.path), image_size=args.size, cache_dir=args.cache_dir,
                          options={"T": args.T, "split_by": args.split_by, "workers": max(1, args.workers)})
    data, info = load_event_frames(request, expected_classes=None)
    size = Path(info["frame_cache"]).stat().st_size if info.get("frame_cache") else 0
    print(json.dumps({k: info[k] for k in ("frame_cache", "frame_cache_state", "events", "events_per_s",
                                            "clipped_pixels", "split_file")} | {"cache_bytes": size}, indent=2))
    return 0
