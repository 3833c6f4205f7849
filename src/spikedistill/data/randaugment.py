"""RandAugment per sample on the batch's device, in timm's reading of the RandAugment string.

RandAugment (Cubuk et al., CVPR-W 2020, "RandAugment: Practical automated data augmentation with
a reduced search space") as pytorch-image-models implements it (``rand_augment_transform`` and
``AugmentOp`` in ``timm/data/auto_augment.py``), which the Spikformer CIFAR recipe uses with
``aa: rand-m9-n1-mstd0.4-inc1`` (ZK-Zhou/spikformer ``cifar10/cifar10.yml``; its
``cifar10/aa_snn.py`` is timm's file with the op list cut to Equalize, Rotate, ShearX,
TranslateXRel, TranslateYRel: ``data.augment.randaugment_ops``). For every sample and each of
its ``N`` layers:

- an op is drawn uniformly (with replacement) from the op set (timm's ``_RAND_TRANSFORMS``, or
  ``_RAND_INCREASING_TRANSFORMS`` with ``inc1``, or ``randaugment_ops``);
- it is applied with probability 1/2 (timm skips it when ``u > 0.5``);
- the magnitude is ``M' = clip(M + mstd * n, 0, mmax)`` with ``n ~ N(0, 1)`` (``mstd = inf``:
  ``M' ~ U(0, M)``), read as the level ``f = M' / 10`` (timm's ``_LEVEL_DENOM``);
- signed ops take the sign ``-1`` with probability 1/2 (``_randomly_negate``).

The op arguments from ``f`` (timm's ``*_level_to_arg``; ``s`` the random sign):

==========================  ===============================================================
Rotate                      ``30 f s`` degrees
ShearX / ShearY             factor ``0.3 f s``
TranslateXRel / YRel        ``0.45 f s`` of the width / height, in pixels (timm's translate_pct)
Posterize                   ``int(4 f)`` bits kept; PosterizeIncreasing ``4 - int(4 f)``
Solarize                    threshold ``min(256, int(256 f))``; SolarizeIncreasing ``256 - that``
SolarizeAdd                 add ``min(128, int(110 f))`` to pixels below 128 (capped at 255)
Color/Contrast/Brightness/  factor ``1.8 f + 0.1``; the ``...Increasing`` ops
Sharpness                   ``max(0.1, 1 + 0.9 f s)``
AutoContrast/Equalize/      no argument
Invert
==========================  ===============================================================

The pixel ops are those of :mod:`spikedistill.data.pixel_ops` (shared with AutoAugment,
uint8 semantics of torchvision/PIL on float tensors holding 0..255; a factor ``F`` is its
``m = F - 1``). Geometric ops fill the uncovered area with timm's ``img_mean =
round(255 * mean)`` per channel (``fill``); they resample with nearest neighbour and whole-pixel
translations (truncated), where timm picks bilinear or bicubic at random: the one deliberate
difference from timm.

Frames ``[B, T, C, H, W]`` (passed as ``[B, T*C, H, W]`` with ``channels=C``, the layout
:class:`~spikedistill.data.augment.BatchAugment` works in): every frame of a sample gets the same
draw (ops, coins, magnitudes, signs); image-dependent ops (Equalize, AutoContrast, Contrast) use
each frame's own statistics.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from spikedistill.config import RANDAUGMENT_INC_OPS, RANDAUGMENT_OPS, RandAugmentSpec, parse_randaugment
from spikedistill.data import pixel_ops as P
from spikedistill.errors import ConfigError

#: ops whose argument takes a random sign
SIGNED = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
                    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                    "SharpnessIncreasing"})
#: ops that move pixels (filled with ``fill`` where nothing maps)
GEOMETRIC = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})


def level_to_arg(name: str, f: torch.Tensor, sign: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The op argument (see the module table) for levels ``f = M' / 10`` and signs ``+-1`` ``[n]``,
    in the units the :mod:`~spikedistill.data.pixel_ops` op takes (enhance ops: ``m = factor - 1``)."""
    if name == "Rotate":
        return 30.0 * f * sign
    if name in ("ShearX", "ShearY"):
        return 0.3 * f * sign
    if name == "TranslateXRel":
        return 0.45 * f * sign * width
    if name == "TranslateYRel":
        return 0.45 * f * sign * height
    if name == "Posterize":
        return torch.floor(4.0 * f)
    if name == "PosterizeIncreasing":
        return 4.0 - torch.floor(4.0 * f)
    if name == "Solarize":
        return torch.floor(256.0 * f).clamp(max=256.0)
    if name == "SolarizeIncreasing":
        return 256.0 - torch.floor(256.0 * f).clamp(max=256.0)
    if name == "SolarizeAdd":
        return torch.floor(110.0 * f).clamp(max=128.0)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return 1.8 * f + 0.1 - 1.0
    if name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        return (1.0 + 0.9 * f * sign).clamp(min=0.1) - 1.0
    if name in ("AutoContrast", "Equalize", "Invert"):
        return torch.zeros_like(f)
    raise ValueError(f"unknown RandAugment op {name!r}")


def op_solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """SolarizeAdd (timm ``solarize_add``, threshold 128): ``min(255, x + add)`` where ``x < 128``."""
    return torch.where(x < 128.0, (x + add.view(-1, 1, 1, 1)).clamp(max=255.0), x)


_BASE: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "AutoContrast": P.op_autocontrast, "Equalize": P.op_equalize, "Invert": P.op_invert,
    "Rotate": P.op_rotate, "ShearX": P.op_shear_x, "ShearY": P.op_shear_y,
    "TranslateXRel": P.op_translate_x, "TranslateYRel": P.op_translate_y,
    "Posterize": P.op_posterize, "PosterizeIncreasing": P.op_posterize,
    "Solarize": P.op_solarize, "SolarizeIncreasing": P.op_solarize, "SolarizeAdd": op_solarize_add,
    "Color": P.op_color, "ColorIncreasing": P.op_color, "Contrast": P.op_contrast,
    "ContrastIncreasing": P.op_contrast, "Brightness": P.op_brightness,
    "BrightnessIncreasing": P.op_brightness, "Sharpness": P.op_sharpness,
    "SharpnessIncreasing": P.op_sharpness,
}


def apply_op(name: str, x: torch.Tensor, arg: torch.Tensor, fill: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Op ``name`` with per-sample arguments ``arg [n]`` on ``x`` ``[n, C, H, W]`` (float, 0..255).

    Geometric ops with ``fill`` (``[C]``) compute ``op(x - fill) + fill``: the op's zero fill
    becomes ``fill`` and, nearest-neighbour resampling moving whole values, the covered pixels
    are exact. Posterize with 8 or more bits leaves the image unchanged (timm)."""
    fn = _BASE[name]
    if name in GEOMETRIC and fill is not None:
        f = fill.to(x.dtype).view(1, -1, 1, 1)
        return fn(x - f, arg) + f
    if name in ("Posterize", "PosterizeIncreasing"):
        keep = arg >= 8
        return torch.where(keep.view(-1, 1, 1, 1), x, fn(x, arg.clamp(max=8.0)))
    return fn(x, arg)


class RandAugment:
    """``ra(x [B, K*C, H, W] float 0..255, generator, channels=C) -> same shape`` (module doc).

    ``spec``: a :class:`~spikedistill.config.RandAugmentSpec` or timm's string;
    ``ops``: the op set (default: timm's, by ``spec.increasing``); ``fill``: the geometric fill
    per channel in 0..255 (timm: ``round(255 * mean)``; default 128, timm's ``_FILL``).
    ``return_record=True`` also returns ``{"op": [B, N] (op index into :attr:`ops`, -1 when
    the op's coin said no), "arg": [B, N] (the op argument), "magnitude": [B, N] (M')}``.

    Draws per call, in order, from ``generator`` on the batch's device: op indices ``[B, N]``,
    coins ``[B, N]``, magnitude noise ``[B, N]`` (normal; uniform for ``mstd = inf``), signs
    ``[B, N]``.
    """

    def __init__(self, spec, ops: Sequence[str] = (), fill: Optional[Sequence[float]] = None) -> None:
        self.spec: RandAugmentSpec = parse_randaugment(spec) if isinstance(spec, str) else spec
        self.ops: Tuple[str, ...] = tuple(ops) or (RANDAUGMENT_INC_OPS if self.spec.increasing
                                                   else RANDAUGMENT_OPS)
        for i, op in enumerate(self.ops):
            if op not in _BASE:
                raise ConfigError(f"config key 'data.augment.randaugment_ops[{i}]': unknown op "
                                  f"{op!r}; known: {', '.join(_BASE)}")
        self.fill = None if fill is None else tuple(float(v) for v in fill)

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None, *,
                 channels: Optional[int] = None, return_record: bool = False):
        b, kc, h, w = x.shape
        c = kc if channels is None else int(channels)
        if kc % c:
            raise ValueError(f"{kc} channels are not a whole number of frames of {c} channels")
        k = kc // c
        dev = x.device
        n_layers = self.spec.num_ops
        op_id = torch.randint(0, len(self.ops), (b, n_layers), generator=generator, device=dev)
        coin = torch.rand(b, n_layers, generator=generator, device=dev)
        if math.isinf(self.spec.magnitude_std):
            mag = torch.rand(b, n_layers, generator=generator, device=dev) * self.spec.magnitude
        else:
            noise = torch.randn(b, n_layers, generator=generator, device=dev)
            mag = self.spec.magnitude + self.spec.magnitude_std * noise
        mag = mag.clamp(0.0, self.spec.magnitude_max)
        sign = torch.where(torch.rand(b, n_layers, generator=generator, device=dev) > 0.5, -1.0, 1.0)
        applied = coin <= 0.5
        fill = None
        if self.fill is not None:
            if len(self.fill) != c:
                raise ValueError(f"fill has {len(self.fill)} values but the images have {c} channels")
            fill = torch.tensor(self.fill, device=dev, dtype=x.dtype)
        elif any(op in GEOMETRIC for op in self.ops):
            fill = torch.full((c,), 128.0, device=dev, dtype=x.dtype)
        out = x.reshape(b * k, c, h, w)
        args = torch.zeros(b, n_layers, device=dev)
        for layer in range(n_layers):
            for j, name in enumerate(self.ops):
                sel = applied[:, layer] & (op_id[:, layer] == j)
                idx = torch.nonzero(sel).flatten()
                if idx.numel() == 0:
                    continue
                arg = level_to_arg(name, mag[idx, layer] / 10.0, sign[idx, layer], h, w)
                args[idx, layer] = arg
                rows = (idx[:, None] * k + torch.arange(k, device=dev)).flatten()   # its frames
                part = apply_op(name, out.index_select(0, rows), arg.repeat_interleave(k), fill)
                out = out.index_copy(0, rows, part)
        out = out.reshape(b, kc, h, w)
        if not return_record:
            return out
        return out, {"op": torch.where(applied, op_id, torch.full_like(op_id, -1)), "arg": args,
                     "magnitude": mag}

    def __repr__(self) -> str:
        return f"RandAugment({self.spec}, ops={list(self.ops)}, fill={self.fill})"


def fill_from_mean(mean: Sequence[float]) -> Tuple[float, ...]:
    """timm's geometric fill ``img_mean = min(255, round(255 * m))`` per channel
    (``transforms_imagenet_train``; Spikformer ``cifar10/transforms_factory.py``)."""
    return tuple(float(min(255, round(255 * m))) for m in mean)


__all__ = ["GEOMETRIC", "RandAugment", "SIGNED", "apply_op", "fill_from_mean", "level_to_arg",
           "op_solarize_add"]
