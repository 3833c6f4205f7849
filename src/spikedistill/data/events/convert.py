"""Recordings to the on-disk frame cache, once, in parallel.

A cache entry holds every recording of a source as uint8 ``[N, T, 2, S, S]`` frames (events per
output pixel, clipped at 255: uint8 because the data contract is uint8 frames, so the cache is
what the loader holds; the number of clipped pixels is recorded), their ``<class>/<stem>`` keys
and labels. It is keyed by the source's fingerprint (:func:`spikedistill.data.cache.fingerprint`)
plus ``T``, ``split_by`` and ``S``, written atomically, and reused by every run (the split is cut
after loading, so changing it converts nothing). Conversion runs over ``workers`` processes
(:func:`spikedistill.data.workers.pool_map`: they die with the parent and stop on Ctrl-C; 1: in this process) with a tqdm progress bar.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from spikedistill.data.cache import cache_path, fingerprint, load_entry, save_entry
from spikedistill.data.events import decode_events
from spikedistill.data.events.frames import events_to_frames, resize_counts
from spikedistill.data.events.layout import Recording, open_archive
from spikedistill.data.events.npz import read_frames_npz
from spikedistill.data.workers import pool_map
from spikedistill.errors import DataError

CACHE_VERSION = 1
SENSOR = (128, 128)


def recording_frames(rec: Recording, data: bytes, T: int, split_by: str, size: int) -> Tuple[np.ndarray, int, int]:
    """``(uint8 [T, 2, size, size], events, clipped pixels)`` of one recording."""
    name = f"{rec.path}:{rec.member}" if rec.member else rec.path
    if rec.kind == "frames":
        counts = read_frames_npz(data, name)
        if counts.shape[0] != T:
            raise DataError(f"{name}: {counts.shape[0]} frames, expected T={T}")
        n = int(counts.sum())
    else:
        ev = decode_events(data, name)
        counts = events_to_frames(ev, T, split_by, SENSOR)
        n = len(ev["t"])
    out, clipped = resize_counts(counts, size, return_clipped=True)
    return out, n, clipped


def _convert_chunk(args) -> Tuple[List[int], np.ndarray, int, int, float]:
    recs, idx, T, split_by, size = args
    handles: Dict[str, object] = {}
    out = np.zeros((len(recs), T, 2, size, size), np.uint8)
    events = clipped = 0
    read_s = 0.0
    try:
        for j, rec in enumerate(recs):
            t0 = time.perf_counter()
            if rec.member is not None and rec.path not in handles:
                handles[rec.path] = open_archive(rec.path)
            data = rec.read_bytes(handles.get(rec.path))
            read_s += time.perf_counter() - t0
            out[j], n, c = recording_frames(rec, data, T, split_by, size)
            events += n
            clipped += c
    finally:
        for h in handles.values():
            h.close()
    return idx, out, events, clipped, read_s


def convert(recs: Sequence[Recording], T: int, split_by: str, size: int, workers: int = 1,
            progress: bool = True) -> Tuple[np.ndarray, Dict]:
    """uint8 ``[N, T, 2, size, size]`` frames of ``recs`` (in order) and stats (events, clipped
    pixels, seconds, events/s)."""
    n = len(recs)
    frames = np.zeros((n, T, 2, size, size), np.uint8)
    chunk = max(1, min(64, n // max(1, 4 * workers) or 1))
    jobs = [(list(recs[i:i + chunk]), list(range(i, min(n, i + chunk))), T, split_by, size)
            for i in range(0, n, chunk)]
    from tqdm import tqdm

    bar = tqdm(total=n, desc=f"events -> frames (T={T}, {size}x{size})", unit="rec",
               disable=not progress, file=sys.stderr)
    start = time.perf_counter()
    events = clipped = 0
    try:
        if workers <= 1:
            results = map(_convert_chunk, jobs)
            for idx, out, e, c, _ in results:
                frames[idx] = out
                events += e
                clipped += c
                bar.update(len(idx))
        else:
            for idx, out, e, c, _ in pool_map(_convert_chunk, jobs, workers, "events convert"):
                frames[idx] = out
                events += e
                clipped += c
                bar.update(len(idx))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return frames, {"events": events, "clipped_pixels": clipped, "seconds": round(seconds, 3),
                    "events_per_s": round(events / seconds, 1) if seconds > 0 else None}


def cache_key(root: os.PathLike, T: int, split_by: str, size: int, layout: Dict) -> str:
    return fingerprint(root, kind="event-frames", version=CACHE_VERSION, T=int(T),
                       split_by=split_by, size=int(size), layout=layout.get("layout"),
                       format=layout.get("format"))


def load_frames_cache(path: Path, key: str):
    """``(frames, keys, labels, class_names, stats)`` of an intact entry for ``key``, else None."""
    def build(arrays):
        frames = arrays["frames"]
        if frames.dtype != np.uint8 or frames.ndim != 5:
            raise ValueError("frames are not uint8 [N, T, 2, S, S]")
        return (frames, [str(k) for k in arrays["keys"].tolist()], arrays["labels"].astype(np.int64),
                [str(c) for c in arrays["class_names"].tolist()], json.loads(str(arrays["stats"])))

    return load_entry(path, key, "event-frame cache", build)


def save_frames_cache(path: Path, key: str, frames, keys, labels, class_names, stats) -> None:
    save_entry(path, key, "event-frame cache", frames=frames, keys=np.array(keys, dtype=str),
               labels=np.asarray(labels, np.int64), class_names=np.array(class_names, dtype=str),
               stats=np.array(json.dumps(stats)))


def frames_cache_path(cache_dir, key: str) -> Path:
    return cache_path(cache_dir, "event-frames", key)
