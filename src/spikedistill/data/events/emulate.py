"""Emulated event recordings of an image dataset, made the way CIFAR10-DVS was recorded.

Li et al. 2017 ("CIFAR10-DVS: an event-stream dataset for object classification", Front.
Neurosci. 11:309) upscaled every CIFAR-10 image, showed it on a monitor moving in a small
repeated closed-loop smooth movement, and recorded it with a 128x128 DVS128. Here the image is
converted to luminance (ITU-R BT.601 weights 0.299, 0.587, 0.114), resized bilinearly to
``fill x fill`` on a mid-grey (0.5) canvas, and moved along a circle of ``radius`` pixels over
``steps`` sub-frames of a recording of ``duration_us`` microseconds (start phase drawn per
recording). Every sensor pixel follows the DVS model of ESIM (Rebecq et al. 2018, "ESIM: an open
event camera simulator") and v2e (Hu et al. 2021): with ``L = log(I + 0.01)`` and a memorised
reference ``L_ref`` (``L`` at the start), whenever ``L`` (linear in time between sub-frames)
crosses ``L_ref + C_on`` an ON event (``p = 1``) is emitted at the crossing time and
``L_ref += C_on`` (OFF, ``p = 0``, ``L_ref -= C_off`` below ``L_ref - C_off``), as often as it
crosses. ``C_on``/``C_off`` are per-pixel thresholds ``N(threshold, threshold_sigma)`` (clipped
at 0.01), drawn once from ``seed`` (a sensor's fixed mismatch); no noise events, no refractory
period. Everything is a function of ``seed`` and the image index. Output: ``x`` the column,
``y`` the row of the upright image, ``t`` integer microseconds, ascending.

Everything measured on these recordings is "emulated events", not CIFAR10-DVS.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from spikedistill.atomic import atomic_write_text
from spikedistill.data.workers import pool_map
from spikedistill.errors import DataError

LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class EmulateParams:
    sensor: int = 128
    fill: int = 112
    duration_us: int = 1_000_000
    steps: int = 100
    radius: float = 3.0
    threshold: float = 0.2
    threshold_sigma: float = 0.03
    seed: int = 0

    def check(self) -> None:
        if self.sensor < 8 or not 1 <= self.fill <= self.sensor:
            raise DataError(f"emulate: need sensor >= 8 and 1 <= fill <= sensor, got {self.sensor}/{self.fill}")
        if self.steps < 2 or self.duration_us < self.steps:
            raise DataError(f"emulate: need steps >= 2 and duration_us >= steps, got {self.steps}/{self.duration_us}")
        for name in ("radius", "threshold", "threshold_sigma"):
            if not math.isfinite(getattr(self, name)):
                raise DataError(f"emulate: {name} must be a finite number, got {getattr(self, name)!r}")
        if self.threshold <= 0 or self.threshold_sigma < 0 or self.radius < 0:
            raise DataError("emulate: threshold must be > 0, threshold_sigma and radius >= 0")
        if self.radius > self.sensor:
            raise DataError(f"emulate: radius {self.radius} (sensor pixels) must be at most the "
                            f"sensor size {self.sensor}: a larger movement leaves the sensor")


def _thresholds(p: EmulateParams):
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(p.seed), 0xD55])))
    shape = (p.sensor, p.sensor)
    c_on = np.maximum(rng.normal(p.threshold, p.threshold_sigma, shape), 0.01)
    c_off = np.maximum(rng.normal(p.threshold, p.threshold_sigma, shape), 0.01)
    return c_on, c_off


def _canvas(image: np.ndarray, p: EmulateParams, margin: int) -> np.ndarray:
    import torch

    img = image.astype(np.float64) / 255.0
    gray = img[0] if img.shape[0] == 1 else np.tensordot(np.array(LUMA[:img.shape[0]]) / sum(LUMA[:img.shape[0]]), img, 1)
    up = torch.nn.functional.interpolate(torch.from_numpy(gray)[None, None], size=(p.fill, p.fill),
                                         mode="bilinear", align_corners=False)[0, 0].numpy()
    side = p.sensor + 2 * margin
    canvas = np.full((side, side), 0.5)
    o = margin + (p.sensor - p.fill) // 2
    canvas[o:o + p.fill, o:o + p.fill] = np.clip(up, 0.0, 1.0)
    return canvas


def _view(canvas: np.ndarray, dx: float, dy: float, margin: int, size: int) -> np.ndarray:
    """The sensor's view of the canvas moved by ``(dx, dy)`` (bilinear sub-pixel shift)."""
    sx, sy = margin - dx, margin - dy
    ix, iy = int(math.floor(sx)), int(math.floor(sy))
    fx, fy = sx - ix, sy - iy
    a = canvas[iy:iy + size, ix:ix + size]
    b = canvas[iy:iy + size, ix + 1:ix + 1 + size]
    c = canvas[iy + 1:iy + 1 + size, ix:ix + size]
    d = canvas[iy + 1:iy + 1 + size, ix + 1:ix + 1 + size]
    return (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)


def emulate_recording(image: np.ndarray, index: int, p: EmulateParams, thresholds=None) -> Dict[str, np.ndarray]:
    """Events ``{"t", "x", "y", "p"}`` of one uint8 ``[C, H, W]`` image (module docstring)."""
    c_on, c_off = thresholds if thresholds is not None else _thresholds(p)
    margin = int(math.ceil(p.radius)) + 2
    canvas = _canvas(image, p, margin)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(p.seed), int(index)])))
    phase = rng.uniform(0, 2 * math.pi)
    S = p.sensor
    dt = p.duration_us / p.steps
    angle = lambda s: phase + 2 * math.pi * s / p.steps  # noqa: E731
    prev = np.log(_view(canvas, p.radius * math.cos(angle(0)), p.radius * math.sin(angle(0)), margin, S) + 0.01)
    ref = prev.copy()
    parts: List[tuple] = []
    for s in range(1, p.steps + 1):
        new = np.log(_view(canvas, p.radius * math.cos(angle(s)), p.radius * math.sin(angle(s)), margin, S) + 0.01)
        d = new - ref
        k_on = np.where(d > 0, np.floor(d / c_on), 0).astype(np.int64)
        k_off = np.where(d < 0, np.floor(-d / c_off), 0).astype(np.int64)
        for k, sign, c, pol in ((k_on, 1.0, c_on, 1), (k_off, -1.0, c_off, 0)):
            pix = np.flatnonzero(k)
            if not len(pix):
                continue
            counts = k.reshape(-1)[pix]
            rep = np.repeat(pix, counts)
            j = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
            level = ref.reshape(-1)[rep] + sign * j * c.reshape(-1)[rep]
            lp, ln = prev.reshape(-1)[rep], new.reshape(-1)[rep]
            span = np.where(ln != lp, ln - lp, 1.0)
            frac = np.clip((level - lp) / span, 0.0, 1.0)
            parts.append(((s - 1 + frac) * dt, rep % S, rep // S, np.full(len(rep), pol)))
        ref = ref + k_on * c_on - k_off * c_off
        prev = new
    if not parts:
        return {k: np.zeros(0, np.int64) for k in "txyp"}
    t = np.concatenate([q[0] for q in parts])
    order = np.argsort(t, kind="stable")
    return {"t": np.round(t[order]).astype(np.int64), "x": np.concatenate([q[1] for q in parts])[order].astype(np.int64),
            "y": np.concatenate([q[2] for q in parts])[order].astype(np.int64),
            "p": np.concatenate([q[3] for q in parts])[order].astype(np.int64)}


def _emulate_chunk(args):
    from spikedistill.data.events import SUFFIX, write_events

    images, indices, paths, p, fmt = args
    th = _thresholds(p)
    counts = []
    for img, i, path in zip(images, indices, paths):
        ev = emulate_recording(img, i, p, th)
        write_events(path + SUFFIX[fmt], ev, format=fmt)
        counts.append(len(ev["t"]))
    return counts


def emulate_dataset(train_images, train_labels, test_images, test_labels, class_names: Sequence[str],
                    out: Path, *, prefix: str, params: EmulateParams, fmt: str = "aedat",
                    workers: int = 1, progress: bool = True, source: str = "") -> Dict:
    """Write one recording per image as ``out/<class>/<prefix>_<class>_<i><suffix>`` (the
    release's layout; ``i`` counts within a class, train images first), ``out/split.txt`` (the
    images' own train/test split as a split list, ``data.kwargs.split=file``) and
    ``out/emulate.json`` (parameters and counts). Returns the summary."""
    from tqdm import tqdm

    from spikedistill.data.events import FORMATS
    from spikedistill.data.events.split import write_split_file

    if fmt not in FORMATS:
        raise DataError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    params.check()
    out = Path(out)
    images = np.concatenate([train_images, test_images])
    labels = np.concatenate([train_labels, test_labels]).astype(np.int64)
    part = ["train"] * len(train_images) + ["test"] * len(test_images)
    seen = [0] * len(class_names)
    keys, paths = [], []
    for lab in labels:
        cls = str(class_names[lab])
        stem = f"{prefix}_{cls}_{seen[lab]}"
        seen[lab] += 1
        keys.append(f"{cls}/{stem}")
        paths.append(str(out / cls / stem))
    chunk = max(1, min(32, len(images) // max(1, 4 * workers) or 1))
    jobs = [(images[i:i + chunk], list(range(i, min(len(images), i + chunk))), paths[i:i + chunk], params, fmt)
            for i in range(0, len(images), chunk)]
    bar = tqdm(total=len(images), desc="emulating events", unit="rec", disable=not progress, file=sys.stderr)
    counts: List[int] = []
    try:
        if workers <= 1:
            for c in map(_emulate_chunk, jobs):
                counts += c
                bar.update(len(c))
        else:
            for c in pool_map(_emulate_chunk, jobs, workers, "events emulate"):
                counts += c
                bar.update(len(c))
    finally:
        bar.close()
    train = [k for k, s in zip(keys, part) if s == "train"]
    test = [k for k, s in zip(keys, part) if s == "test"]
    write_split_file(out / "split.txt", train, test, comment=f"emulated events of {source}: the images' own split")
    summary = {"kind": "emulated events", "source": source, "format": fmt, "recordings": len(images),
               "train": len(train), "test": len(test), "events": int(sum(counts)),
               "events_per_recording": round(float(np.mean(counts)), 1) if counts else 0.0,
               "params": asdict(params)}
    atomic_write_text(out / "emulate.json", json.dumps(summary, indent=2) + "\n")
    return summary
