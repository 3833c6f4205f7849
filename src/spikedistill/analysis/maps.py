"""Pictures of the SAMD maps: teacher CAM / Grad-CAM and student spike activation map.

The maps are computed exactly as the SAMD loss computes them (:mod:`spikedistill.distill.
functional`, with the switches of ``distill.ckd.samd`` resolved by
:func:`spikedistill.distill.config.resolve_ckd`)::

    student (spike_sum):  M_s[b] = sum_t sum_c F_s[t, b, c]              (stage output [T, B, C, H, W])
    student (cam):        M_s[b] = ReLU( sum_c W[k_b, c] * mean_t F_s[t, b, c] ),  W = classifier_weight()
    teacher (cam):        M_t[b] = ReLU( sum_c w[k_b, c] * F_t[b, c] ),  k_b = teacher argmax
    teacher (gradcam_*):  Grad-CAM of the stage for the label (gradcam_label) or the teacher's
                          prediction (gradcam_pred)

then ``normalize_map`` (e.g. the released code's batch-global min-max; note that it depends on
the whole batch, here the ``n`` pictured images) and ``P = scale_map(., scaling, tau)``, the
distributions over the H*W positions that enter ``KL(P_t || P_s)``.

Student and teacher are read through the model contract (``feature_channels`` for the stages,
``classifier_weight()`` for CAMs), so any :class:`~spikedistill.models.contract.DistillModel`
works. Frames ``[T, B, C, H, W]``: the student takes them as they are, the teacher sees them as
``teacher.frames`` says (:func:`spikedistill.distill.base.teacher_input`: the mean frame, the
``T*C`` stacked channels, or every frame with logits and features averaged over T; Grad-CAM per
frame, averaged, as CKD's loss does), and the pictured input is the event image
(:func:`event_image`): ``E_b(h, w) = sum_t sum_p k[t, b, p, h, w]``, the event counts summed over
time and polarities, scaled by its maximum, with the maps overlaid on it.

The grid has one row per image: the de-normalised input, the raw teacher and student maps,
the two distributions ``P_t`` and ``P_s``, and each raw map overlaid on the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikedistill.distill import functional as Fn
from spikedistill.analysis.figures import pyplot
from spikedistill.errors import ConfigError

#: methods whose SAMD switches live in ``distill.ckd``; any other method (ce, kd, ...) is
#: pictured with the default CKDSNN preset
CKD_METHODS = ("ckd", "ckd-released", "ckd-paper", "samd", "nld")


def samd_settings(distill_cfg=None):
    """The resolved ``distill.ckd.samd`` switches (presets filled in) for a run's ``distill``
    config section (a :class:`~spikedistill.distill.config.DistillConfig` or None)."""
    from spikedistill.distill.config import DistillConfig, resolve_ckd

    cfg = distill_cfg if distill_cfg is not None else DistillConfig()
    method = cfg.method if cfg.method in CKD_METHODS else "ckd"
    return resolve_ckd(cfg, method=method).samd


def _stage_index(stage: int, n_stages: int) -> int:
    if stage == 0 or not -n_stages <= stage <= n_stages:
        raise ConfigError(f"visualize: stage {stage} does not exist; the models have {n_stages} "
                          f"stages (use 1..{n_stages}, or -1 for the last)")
    return stage - 1 if stage > 0 else n_stages + stage


def _n_stages(model: nn.Module, role: str) -> int:
    n = len(tuple(getattr(model, "feature_channels", ()) or ()))
    if n == 0:
        raise ConfigError(f"visualize: the {role} {type(model).__name__} reports no "
                          "feature_channels (model contract); it has no stages to picture")
    return n


def compute_maps(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 settings=None, stage: Optional[int] = None,
                 teacher_frames: str = "mean") -> Dict[str, torch.Tensor]:
    """Student and teacher maps of one batch, as SAMD computes them.

    ``x``: images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]`` (the teacher sees them as
    ``teacher_frames`` says: ``mean`` | ``stack`` | ``per_step``).
    ``settings``: resolved SAMD switches (:func:`samd_settings`; default preset when None);
    ``stage``: 1-based stage (negative from the end), default the first configured SAMD stage.
    Returns float32 CPU tensors: ``student_map`` / ``teacher_map`` (raw, ``(B, H, W)``),
    ``student_norm`` / ``teacher_norm`` (after ``normalize_map``), ``student_p`` / ``teacher_p``
    (``scale_map`` distributions reshaped to ``(B, H, W)``), ``classes`` (the class k of each
    map), ``student_pred``, ``teacher_pred``, ``labels``; and ``stage`` (1-based).
    """
    from spikedistill.distill.base import teacher_input, time_mean
    from spikedistill.distill.methods.ckd import (cam_teacher_maps, gradcam_teacher_maps,
                                                  student_samd_map)

    sc = settings if settings is not None else samd_settings()
    n_stages = _n_stages(student, "student")
    n_teacher = _n_stages(teacher, "teacher")
    if n_teacher != n_stages:
        raise ConfigError(f"visualize: student has {n_stages} stages and teacher "
                          f"{n_teacher}; the maps need the same stages")
    idx = _stage_index(stage if stage is not None else sc.stages[0], n_stages)
    student.eval()
    teacher.eval()
    with torch.no_grad():
        s_logits, s_feats = student(x, return_features=True)
    if sc.teacher_map.startswith("gradcam"):       # CKD's own maps (SAMD calls the same)
        t_logits, _, maps, classes = gradcam_teacher_maps(teacher, x, y, sc.teacher_map, [idx],
                                                          teacher_frames)
        m_t = maps[idx]
    else:
        x, steps = teacher_input(x, teacher_frames)   # how the teacher sees frames
        if idx != n_stages - 1:
            raise ConfigError(f"visualize: a CAM teacher map exists only at the last stage "
                              f"({n_stages}); stage {idx + 1} needs distill.ckd.samd.teacher_map="
                              "gradcam_label or gradcam_pred")
        with torch.no_grad():
            t_logits, t_feats = teacher(x, return_features=True)
            t_logits = time_mean(t_logits, steps)
            t_feats = [time_mean(f, steps) for f in t_feats]
            maps, classes = cam_teacher_maps(t_logits, t_feats, teacher.classifier_weight(),
                                             [idx])
            m_t = maps[idx]
    with torch.no_grad():
        w = student.classifier_weight() if sc.student_map == "cam" else None
        m_s = student_samd_map(s_feats, idx, sc.student_map, w, classes)
        if m_s.shape != m_t.shape:
            raise ConfigError(f"visualize: at stage {idx + 1} the student map is "
                              f"{tuple(m_s.shape[1:])} and the teacher map {tuple(m_t.shape[1:])}")
        n_s = Fn.normalize_map(m_s, sc.normalize)
        n_t = Fn.normalize_map(m_t.detach(), sc.normalize)
        p_s = Fn.scale_map(n_s, sc.scaling, sc.tau).view_as(m_s)
        p_t = Fn.scale_map(n_t, sc.scaling, sc.tau).view_as(m_t)
    cpu = lambda t: t.detach().float().cpu()  # noqa: E731
    return {"student_map": cpu(m_s), "teacher_map": cpu(m_t), "student_norm": cpu(n_s),
            "teacher_norm": cpu(n_t), "student_p": cpu(p_s), "teacher_p": cpu(p_t),
            "classes": classes.detach().cpu(), "student_pred": s_logits.argmax(1).cpu(),
            "teacher_pred": t_logits.argmax(1).cpu(), "labels": y.detach().cpu(),
            "stage": idx + 1}


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``x * std + mean`` per channel, clamped to [0, 1]: ``[B, C, H, W]`` float."""
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    return (x.detach().float().cpu() * s + m).clamp(0, 1)


def event_image(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The picture of event frames ``[T, B, C, H, W]`` (as the loader feeds them,
    ``(k / 255 - mean_c) / std_c``): ``E_b = sum_t sum_c k[t, b, c] / max_{h,w} (same sum)``,
    ``[B, 1, H, W]`` in [0, 1] (0 where a sample has no event). The counts ``k`` are recovered
    exactly when they are integers (:func:`~spikedistill.analysis.counting.event_counts`), else
    taken as ``255 * denormalised`` values."""
    from spikedistill.analysis.counting import event_counts, loader_affine

    x = frames.detach().float().cpu()
    k = event_counts(x, *loader_affine(mean, std))
    if k is None:
        m = torch.tensor(list(mean), dtype=torch.float32).view(1, 1, -1, 1, 1)
        s = torch.tensor(list(std), dtype=torch.float32).view(1, 1, -1, 1, 1)
        k = ((x * s + m) * 255.0).clamp(min=0)
    e = k.sum(dim=(0, 2))                                   # [B, H, W]
    peak = e.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, 1, 1)
    return (e / peak).unsqueeze(1)


def plot_maps(images: torch.Tensor, maps: Dict[str, Any], path, *,
              class_names: Optional[Sequence[str]] = None, title: str = "") -> Path:
    """PNG grid: per image, input | M_t | M_s | P_t | P_s | image + M_t | image + M_s.

    ``images``: de-normalised ``[B, C, H, W]`` in [0, 1] (C = 1 or 3). Colour scales: each raw
    map column (M_t, M_s: different units) is shared by its rows, and P_t and P_s, both
    distributions over the map's positions, share one scale; a colour bar under each of these
    columns gives it. The overlays show each map scaled to its own maximum.
    """
    plt = pyplot()

    n = images.shape[0]
    H, W = images.shape[-2:]
    cols = ["input", "teacher map\nM_t", "student map\nM_s", "teacher\nP_t", "student\nP_s",
            "input\n+ M_t", "input\n+ M_s"]
    fig, axes = plt.subplots(n, len(cols), figsize=(1.7 * len(cols), 1.8 * n + 1.6), dpi=80,
                             squeeze=False, layout="constrained")
    p_max = float(max(maps["teacher_p"][:n].max(), maps["student_p"][:n].max()))
    scales = {1: (0.0, float(maps["teacher_map"][:n].max())),
              2: (0.0, float(maps["student_map"][:n].max())), 3: (0.0, p_max), 4: (0.0, p_max)}
    shown = {}

    def up(m):  # (h, w) map -> image size for overlays
        return F.interpolate(m[None, None], size=(H, W), mode="bilinear",
                             align_corners=False)[0, 0].numpy()

    def name(k):
        k = int(k)
        return class_names[k] if class_names is not None and k < len(class_names) else str(k)

    for i in range(n):
        img = images[i].permute(1, 2, 0).numpy()
        img_kw = {"cmap": "gray", "vmin": 0, "vmax": 1} if img.shape[2] == 1 else {}
        img = img[:, :, 0] if img.shape[2] == 1 else img
        panels = [None, maps["teacher_map"][i], maps["student_map"][i], maps["teacher_p"][i],
                  maps["student_p"][i], maps["teacher_map"][i], maps["student_map"][i]]
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0 or j >= 5:
                ax.imshow(img, **img_kw)
            if 1 <= j <= 4:
                lo, hi = scales[j]
                shown[j] = ax.imshow(panels[j].numpy(), cmap="viridis", vmin=lo,
                                     vmax=hi if hi > lo else lo + 1.0)
            elif j >= 5:
                ax.imshow(up(panels[j]), cmap="jet", alpha=0.5)
            if i == 0:
                ax.set_title(cols[j], fontsize=8)
        axes[i][0].set_ylabel(f"y={name(maps['labels'][i])}\nT:{name(maps['teacher_pred'][i])} "
                              f"S:{name(maps['student_pred'][i])}", fontsize=7)
    for j, image in shown.items():
        bar = fig.colorbar(image, ax=axes[:, j], location="bottom", shrink=0.9, aspect=12)
        bar.ax.tick_params(labelsize=6, rotation=45)
    if title:
        fig.suptitle(title, fontsize=8, wrap=True)
    return _save_constrained(fig, path)


def _save_constrained(fig, path) -> Path:
    """Write a constrained-layout figure atomically (``save_figure`` would re-lay it out with
    tight_layout, which does not know the colour bars) and close it."""
    from spikedistill.atomic import atomic_write

    path = Path(path)
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png"))
    finally:
        pyplot().close(fig)
    return path


def visualize(student: nn.Module, teacher: nn.Module, loader, out, *, n: int = 16,
              mean: Sequence[float], std: Sequence[float], distill_cfg=None,
              stage: Optional[int] = None, class_names: Optional[Sequence[str]] = None,
              teacher_frames: str = "mean") -> Path:
    """Take the first ``n`` images of ``loader`` (``(x, y)`` batches, normalised), compute the
    maps (:func:`compute_maps`) and write the PNG grid to ``out``. Frames are pictured as their
    event image (:func:`event_image`) under the maps."""
    if int(n) < 1:
        raise ConfigError(f"visualize: --n must be a positive integer, got {n!r}")
    xs, ys, have = [], [], 0
    for x, y in loader:
        xs.append(x)
        ys.append(y)
        have += x.shape[1] if x.dim() == 5 else x.shape[0]
        if have >= n:
            break
    if not xs:
        raise ConfigError("visualize: the data loader yielded no images")
    frames = xs[0].dim() == 5           # [T, B, C, H, W]: batch along dim 1
    x = torch.cat(xs, dim=1)[:, :n] if frames else torch.cat(xs)[:n]
    y = torch.cat(ys)[:n]
    device = next(student.parameters()).device
    settings = samd_settings(distill_cfg)
    maps = compute_maps(student, teacher.to(device), x.to(device), y.to(device), settings, stage,
                        teacher_frames=teacher_frames)
    title = (f"stage {maps['stage']}: teacher {settings.teacher_map}, student "
             f"{settings.student_map}, normalize {settings.normalize}, scaling {settings.scaling} "
             f"(tau {settings.tau})")
    shown = event_image(x, mean, std) if frames else denormalize(x, mean, std)
    if frames:
        title += "; input: events summed over time and polarity"
    return plot_maps(shown, maps, out, class_names=class_names, title=title)


__all__ = ["compute_maps", "denormalize", "event_image", "plot_maps", "samd_settings",
           "visualize"]
