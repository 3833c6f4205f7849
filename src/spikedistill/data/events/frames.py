"""Events to frames: SpikingJelly's fixed-frames-number integration, and the resize to the
training size.

With ``N`` events ``(t_i, x_i, y_i, p_i)`` (``t`` ascending, as recorded) and ``T`` frames,
frame ``j`` holds the events of indices ``[j_l, j_r)`` and ``F_j(p, y, x)`` counts them per
polarity channel and pixel (``spikingjelly.datasets.utils.integrate_events_segment_to_frame``):

- ``split_by="number"``: ``j_l = floor(N / T) * j``, ``j_r = j_l + floor(N / T)``, the last frame
  up to ``N`` (``cal_fixed_frames_number_segment_index``); with ``N < T`` every event is in the
  last frame, as there;
- ``split_by="time"``: ``dT = floor((t_{N-1} - t_0) / T)``, event ``i`` in frame
  ``min(floor((t_i - t_0) / dT), T - 1)``: SpikingJelly's windows ``[t_0 + dT j, t_0 + dT (j+1))``
  with the last one open to the end (SpikingJelly fails on an empty window; here it is an empty
  frame; ``dT = 0`` puts everything in the last frame).

Channel 1 holds ``p != 0``. :func:`resize_counts` takes the ``[T, 2, H, W]`` counts to
``size x size`` as events per output pixel: a bilinear, antialiased resize scaled by
``H W / size^2`` (so a frame keeps its total count), rounded and clipped to uint8 (0..255).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from spikedistill.errors import DataError

SPLIT_BY = ("number", "time")


def frame_index(t: np.ndarray, T: int, split_by: str) -> np.ndarray:
    """The frame ``0..T-1`` of every event (see the module docstring)."""
    n = len(t)
    if split_by == "number":
        di = n // T
        if di == 0:
            return np.full(n, T - 1, dtype=np.int64)
        return np.minimum(np.arange(n, dtype=np.int64) // di, T - 1)
    if split_by == "time":
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t = np.asarray(t, dtype=np.int64)
        dt = (int(t[-1]) - int(t[0])) // T
        if dt <= 0:
            return np.full(n, T - 1, dtype=np.int64)
        return np.clip((t - t[0]) // dt, 0, T - 1)
    raise DataError(f"data.kwargs.split_by: expected one of {', '.join(SPLIT_BY)}, got {split_by!r}")


def events_to_frames(events: Dict[str, np.ndarray], T: int, split_by: str = "number",
                     sensor_size: Sequence[int] = (128, 128)) -> np.ndarray:
    """``[T, 2, H, W]`` int32 event counts of ``events`` (``sensor_size = (H, W)``, ``x`` the
    column, ``y`` the row), equal to SpikingJelly's ``integrate_events_by_fixed_frames_number``
    (``split_by="number"|"time"``, ``frames_num=T``)."""
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise DataError(f"data.kwargs.T: the number of frames must be an integer >= 1, got {T!r}")
    H, W = (int(s) for s in sensor_size)
    x = np.asarray(events["x"], dtype=np.int64)
    y = np.asarray(events["y"], dtype=np.int64)
    p = (np.asarray(events["p"]) != 0).astype(np.int64)
    if len(x) and (x.min() < 0 or x.max() >= W or y.min() < 0 or y.max() >= H):
        raise DataError(f"events outside the {H}x{W} sensor (x in [{x.min()}, {x.max()}], "
                        f"y in [{y.min()}, {y.max()}])")
    f = frame_index(np.asarray(events["t"]), int(T), split_by)
    index = ((f * 2 + p) * H + y) * W + x
    return np.bincount(index, minlength=int(T) * 2 * H * W).reshape(int(T), 2, H, W).astype(np.int32)


def resize_counts(frames: np.ndarray, size: int, return_clipped: bool = False):
    """uint8 ``[T, 2, size, size]`` events per output pixel (module docstring); the input is
    only clipped to uint8 when it already has that size. ``return_clipped``: also the number of
    output pixels whose rounded count exceeded 255."""
    import torch

    T, C, H, W = frames.shape
    if (H, W) == (size, size):
        y = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    else:
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True) * (H * W / float(size * size))
    y = y.round()
    out = y.clamp(0, 255).to(torch.uint8).numpy()
    return (out, int((y > 255).sum())) if return_clipped else out
