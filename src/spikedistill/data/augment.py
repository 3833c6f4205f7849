"""Batched, per-sample image augmentation that runs on the tensor's device.

Batches are uint8 images ``[B, C, H, W]`` or frame sequences ``[B, T, C, H, W]``; a sequence
gets one geometric draw per sample, shared by all its frames (AutoAugment is for images only).

Pipeline (the CKDSNN CIFAR recipe, in this order): random crop with zero padding, horizontal
flip, AutoAugment (CIFAR-10 policy), ToTensor (divide by 255), Normalize, RandomErasing. For
event frames the DVS recipe of the SNN-KD repositories adds a random roll of up to ``translate``
pixels right after the flip (``translate``, :meth:`BatchAugment._roll`), with crop and AutoAugment
off.

Every sample draws its own random numbers (crop offset, flip, AutoAugment sub-policy, the two
ops' application coins and signs, erasing box) from one ``torch.Generator`` living on the same
device as the batch. Nothing loops over samples: the AutoAugment stage loops over the 14 op kinds
and handles the samples that drew each op at once (``index_select`` / ``index_copy``).

AutoAugment ops work on float tensors holding integer values 0..255 and reproduce the uint8
semantics of ``torchvision.transforms.v2.functional`` (results truncated to integers like a
uint8 cast): see each ``op_*`` function of :mod:`spikedistill.data.pixel_ops` for its formula.
Magnitudes follow torchvision's ``AutoAugment`` with 10 bins (:func:`magnitude_table`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from spikedistill.data.pixel_ops import (op_autocontrast, op_brightness, op_color, op_contrast, op_equalize,
                                         op_invert, op_posterize, op_rotate, op_sharpness, op_shear_x,
                                         op_shear_y, op_solarize, op_translate_x, op_translate_y)
from spikedistill.data.randaugment import RandAugment, fill_from_mean
from spikedistill.errors import ConfigError

OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Color", "Posterize", "Solarize",
       "Contrast", "Sharpness", "Brightness", "AutoContrast", "Equalize", "Invert")
"""The AutoAugment op kinds; an op id is an index into this tuple."""

SIGNED_OPS = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Color", "Contrast",
                        "Sharpness", "Brightness"})
"""Ops whose magnitude gets a random sign (probability 1/2)."""

NUM_BINS = 10

# Cubuk et al. 2019 (AutoAugment), CIFAR-10 policy: 25 sub-policies, each two (op, probability,
# magnitude bin in 0..9); None for ops without a magnitude.
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def magnitude_table(op: str, height: int, width: int, num_bins: int = NUM_BINS) -> torch.Tensor | None:
    """The magnitude of each bin for ``op`` on an ``height x width`` image (None: no magnitude).

    - ShearX/Y: ``linspace(0, 0.3)`` (shear factor; the op uses ``atan`` of it as angle)
    - TranslateX/Y: ``linspace(0, 150/331 * width|height)`` pixels (truncated to int when applied)
    - Rotate: ``linspace(0, 30)`` degrees
    - Brightness, Color, Contrast, Sharpness: ``linspace(0, 0.9)``; the op's factor is ``1 + m``
    - Posterize: bits ``8 - round(i / ((num_bins - 1) / 4))`` (8 down to 4)
    - Solarize: threshold ``255 * linspace(1, 0)``
    """
    if op in ("ShearX", "ShearY"):
        return torch.linspace(0.0, 0.3, num_bins)
    if op == "TranslateX":
        return torch.linspace(0.0, 150.0 / 331.0 * width, num_bins)
    if op == "TranslateY":
        return torch.linspace(0.0, 150.0 / 331.0 * height, num_bins)
    if op == "Rotate":
        return torch.linspace(0.0, 30.0, num_bins)
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return torch.linspace(0.0, 0.9, num_bins)
    if op == "Posterize":
        return torch.tensor([8 - round(i / ((num_bins - 1) / 4)) for i in range(num_bins)], dtype=torch.float32)
    if op == "Solarize":
        return torch.linspace(1.0, 0.0, num_bins) * 255.0
    if op in ("AutoContrast", "Equalize", "Invert"):
        return None
    raise ValueError(f"unknown AutoAugment op {op!r}; known: {', '.join(OPS)}")


OP_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ShearX": op_shear_x, "ShearY": op_shear_y, "TranslateX": op_translate_x, "TranslateY": op_translate_y,
    "Rotate": op_rotate, "Color": op_color, "Posterize": op_posterize, "Solarize": op_solarize,
    "Contrast": op_contrast, "Sharpness": op_sharpness, "Brightness": op_brightness,
    "AutoContrast": op_autocontrast, "Equalize": op_equalize, "Invert": op_invert,
}


# --------------------------------------------------------------------------------------------
# The batched pipeline
# --------------------------------------------------------------------------------------------


@dataclass
class BatchAugment:
    """Callable batched augmentation: ``aug(x_uint8 [B, C, H, W], generator) -> float32 [B, C, H, W]``.

    Switches: ``random_crop`` (zero padding ``crop_padding`` on each side, then a random
    ``H x W`` window), ``hflip`` (probability 1/2), ``autoaugment`` (CIFAR-10 policy),
    ``random_erasing`` (probability; 0 = off) with ``erasing_scale`` (area fraction range),
    ``erasing_ratio`` (aspect ratio range, sampled log-uniformly) and ``erasing_value``
    (``"random"``: standard-normal noise per erased value, or a constant in normalised units),
    ``normalize`` (``(x / 255 - mean) / std`` per channel; without it the result is ``x / 255``),
    ``translate`` (the DVS roll: a shift of ``(dy, dx)`` pixels, each drawn independently and
    uniformly from the integers ``-translate..translate``, after the flip; 0 = off) with
    ``translate_fill`` (``"wrap"``: ``torch.roll``, pixels leaving one side enter on the other, as
    TET's ``DVSCifar10`` loader does; ``"zero"``: a shift that fills the uncovered border with 0).

    RandomErasing follows torchvision's rule exactly in distribution: up to 10 tries of
    (area, ratio), ``h = round(sqrt(area * ratio))``, ``w = round(sqrt(area / ratio))``, the first
    try with ``h < H`` and ``w < W`` wins and is placed uniformly; if none fits the image is left
    alone. All 10 tries are drawn at once for every sample (vectorised), which changes the random
    stream but not the distribution. It runs after Normalize, as in the recipe.

    ``aug(x, g, return_record=True)`` also returns a dict of what each sample drew:
    ``crop_offset`` ``[B, 2]`` (top, left in the padded image), ``flip`` ``[B]`` bool,
    ``subpolicy`` ``[B]`` (-1 when AutoAugment is off), ``op`` ``[B, 2]`` (op id into :data:`OPS`
    of each applied op, -1 when its coin said no), ``magnitude`` ``[B, 2]`` (signed),
    ``erase`` ``[B]`` bool and ``erase_box`` ``[B, 4]`` (top, left, height, width),
    ``shift`` ``[B, 2]`` (dy, dx of the roll; zeros when ``translate`` is 0).
    """

    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    random_crop: bool = False
    crop_padding: int = 4
    hflip: bool = False
    autoaugment: bool = False
    random_erasing: float = 0.0
    erasing_scale: tuple[float, float] = (0.02, 0.2)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    erasing_value: float | str = "random"
    normalize: bool = True
    translate: int = 0
    translate_fill: str = "wrap"
    policy: tuple = field(default=CIFAR10_POLICY, repr=False)
    randaugment: str | None = None       # timm's RandAugment string (data/randaugment.py), in AutoAugment's slot
    randaugment_ops: Sequence[str] = ()

    def __post_init__(self) -> None:
        self._randaugment = None if self.randaugment is None else RandAugment(
            self.randaugment, self.randaugment_ops, fill_from_mean(self.mean))
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {tuple(self.mean)} and std {tuple(self.std)} differ in length")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {tuple(self.std)}")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")
        if int(self.translate) != self.translate or self.translate < 0:
            raise ValueError(f"translate is a whole number of pixels >= 0, got {self.translate}")
        if self.translate_fill not in ("wrap", "zero"):
            raise ValueError(f"translate_fill must be 'wrap' or 'zero', got {self.translate_fill!r}")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {self.random_erasing}")
        lo, hi = self.erasing_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"erasing_scale must satisfy 0 < lo <= hi <= 1, got {self.erasing_scale}")
        if not 0.0 < self.erasing_ratio[0] <= self.erasing_ratio[1]:
            raise ValueError(f"erasing_ratio must satisfy 0 < lo <= hi, got {self.erasing_ratio}")
        if isinstance(self.erasing_value, str) and self.erasing_value != "random":
            raise ValueError(f"erasing_value must be 'random' or a number, got {self.erasing_value!r}")
        for sub in self.policy:
            for op, p, _ in sub:
                if op not in OPS or not 0.0 <= p <= 1.0:
                    raise ValueError(f"bad AutoAugment policy entry {(op, p)}")
        self._tables: dict = {}

    @classmethod
    def for_eval(cls, mean: Sequence[float], std: Sequence[float]) -> "BatchAugment":
        """The test-time transform: ToTensor + Normalize only."""
        return cls(mean=tuple(mean), std=tuple(std))

    def _policy_tables(self, h: int, w: int, device: torch.device):
        """Per (sub-policy, stage): op id, probability, magnitude (0 without one) and signed flag."""
        key = (h, w, str(device))
        if key not in self._tables:
            ops, probs, mags, signed = [], [], [], []
            for sub in self.policy:
                row_o, row_p, row_m, row_s = [], [], [], []
                for op, p, b in sub:
                    table = magnitude_table(op, h, w)
                    row_o.append(OPS.index(op))
                    row_p.append(p)
                    row_m.append(float(table[b]) if table is not None and b is not None else 0.0)
                    row_s.append(op in SIGNED_OPS)
                ops.append(row_o), probs.append(row_p), mags.append(row_m), signed.append(row_s)
            self._tables[key] = (torch.tensor(ops, device=device), torch.tensor(probs, device=device),
                                 torch.tensor(mags, device=device), torch.tensor(signed, device=device))
        return self._tables[key]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, *,
                 return_record: bool = False):
        """Augment a uint8 batch ``[B, C, H, W]``, or a batch of frame sequences ``[B, T, C, H,
        W]`` (same layout out); see the class docstring.

        Frames: every geometric draw (crop offset, flip, erasing box and its noise) is made once
        per sample, exactly as for a ``[B, C, H, W]`` batch, and applied to all ``T`` frames, so
        ``aug(x, g1)[:, t] == aug(x[:, t], g2)`` for every ``t`` when ``g1`` and ``g2`` start from
        the same seed. AutoAugment is refused for frames: its colour ops are not defined on a
        sequence (ConfigError on ``data.augment.autoaugment``).
        """
        if x.ndim == 5:
            if self.autoaugment:
                raise ConfigError("config key 'data.augment.autoaugment': AutoAugment is for single "
                                  "images; a frame dataset ([N, T, C, H, W]) needs "
                                  "data.augment.autoaugment=false")
            b, t, c, h, w = x.shape
            out, record = self._apply(x.reshape(b, t * c, h, w), generator, c)
            out = out.reshape(b, t, c, h, w)
            return (out, record) if return_record else out
        if x.ndim != 4:
            raise ValueError(f"expected a batch [B, C, H, W] or frames [B, T, C, H, W], got shape "
                             f"{tuple(x.shape)}")
        out, record = self._apply(x, generator, x.shape[1])
        return (out, record) if return_record else out

    def _apply(self, x: torch.Tensor, g: torch.Generator | None, c: int):
        """The pipeline on ``[B, K*C, H, W]``: ``K`` frames of ``c`` channels share every draw."""
        b, kc, h, w = x.shape
        k = kc // c
        dev = x.device
        record: dict[str, torch.Tensor] = {}
        out = x.to(torch.float32)
        if self.random_crop and self.crop_padding > 0:
            p = self.crop_padding
            offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=g, device=dev)
            padded = F.pad(out, (p, p, p, p))
            rows = offsets[:, 0:1] + torch.arange(h, device=dev)
            cols = offsets[:, 1:2] + torch.arange(w, device=dev)
            out = padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(kc, device=dev)[None, :, None, None],
                         rows[:, None, :, None], cols[:, None, None, :]]
            record["crop_offset"] = offsets
        else:
            record["crop_offset"] = torch.full((b, 2), self.crop_padding if self.random_crop else 0, device=dev)
        if self.hflip:
            flip = torch.rand(b, generator=g, device=dev) < 0.5
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        else:
            flip = torch.zeros(b, dtype=torch.bool, device=dev)
        record["flip"] = flip
        if self.translate > 0:
            out, record["shift"] = self._roll(out, g)
        else:
            record["shift"] = torch.zeros(b, 2, dtype=torch.long, device=dev)
        if self.autoaugment:
            out, aa_record = self._autoaugment(out, g)
            record.update(aa_record)
        else:
            record["subpolicy"] = torch.full((b,), -1, dtype=torch.long, device=dev)
            record["op"] = torch.full((b, 2), -1, dtype=torch.long, device=dev)
            record["magnitude"] = torch.zeros(b, 2, device=dev)
        if self._randaugment is not None:
            out = self._randaugment(out, g, channels=c)
        out = out / 255.0
        if self.normalize:
            if len(self.mean) != c:
                raise ValueError(f"mean/std have {len(self.mean)} channels but the batch has {c}")
            mean = torch.tensor(self.mean, dtype=out.dtype, device=dev).view(1, c, 1, 1).repeat(1, k, 1, 1)
            std = torch.tensor(self.std, dtype=out.dtype, device=dev).view(1, c, 1, 1).repeat(1, k, 1, 1)
            out = (out - mean) / std
        if self.random_erasing > 0:
            out, erase, box = self._erase(out, g, c)
        else:
            erase = torch.zeros(b, dtype=torch.bool, device=dev)
            box = torch.zeros(b, 4, dtype=torch.long, device=dev)
        record["erase"], record["erase_box"] = erase, box
        return out.contiguous(), record

    def _roll(self, x: torch.Tensor, g: torch.Generator | None):
        """The DVS translation: sample ``b`` moves by ``(dy, dx)`` with ``dy, dx`` independent and
        uniform on ``{-s, ..., s}`` (``s = translate``), one draw per sample for all its frames.

        ``wrap``: ``out[i, j] = x[(i - dy) mod H, (j - dx) mod W]``, i.e. ``torch.roll(x, (dy, dx),
        dims=(-2, -1))``; this is TET's CIFAR10-DVS loader (Deng et al., ICLR 2022,
        github.com/brain-intelligence-lab/temporal_efficient_training ``data_loaders.py``:
        ``random.randint(-5, 5)`` twice, ``torch.roll(data, shifts=(off1, off2), dims=(2, 3))``
        on ``[T, C, H, W]``, after a flip with probability 1/2), reused by the TDD / SNN-KD DVS
        recipes. ``zero``: the same move with the pixels whose source falls outside the frame
        set to 0. Returns ``(x moved, shifts [B, 2] as (dy, dx))``."""
        b, _, h, w = x.shape
        dev = x.device
        s = int(self.translate)
        shift = torch.randint(-s, s + 1, (b, 2), generator=g, device=dev)
        src_r = torch.arange(h, device=dev)[None, :] - shift[:, 0:1]          # [B, H]
        src_c = torch.arange(w, device=dev)[None, :] - shift[:, 1:2]          # [B, W]
        rows, cols = src_r % h, src_c % w
        idx = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, h * w).expand(-1, x.shape[1], -1)
        out = x.reshape(b, x.shape[1], h * w).gather(2, idx).reshape(x.shape)
        if self.translate_fill == "zero":
            inside = (((src_r >= 0) & (src_r < h))[:, :, None] & ((src_c >= 0) & (src_c < w))[:, None, :])
            out = out * inside[:, None].to(out.dtype)
        return out, shift

    def _autoaugment(self, x: torch.Tensor, g: torch.Generator | None):
        """Apply one random CIFAR-10 sub-policy per sample (both stages, each with its own coin)."""
        b, _, h, w = x.shape
        dev = x.device
        ops, probs, mags, signed = self._policy_tables(h, w, dev)
        sub = torch.randint(0, len(self.policy), (b,), generator=g, device=dev)
        coins = torch.rand(b, 2, generator=g, device=dev)
        sign_coins = torch.rand(b, 2, generator=g, device=dev)
        op_drawn = ops[sub]                                   # [B, 2]
        applied = coins <= probs[sub]                         # torchvision: apply when rand <= p
        negate = signed[sub] & (sign_coins <= 0.5)
        magnitude = torch.where(negate, -mags[sub], mags[sub])
        op_record = torch.where(applied, op_drawn, torch.full_like(op_drawn, -1))
        for stage in range(2):
            kinds = op_record[:, stage]
            for k, name in enumerate(OPS):
                idx = torch.nonzero(kinds == k).flatten()
                if idx.numel() == 0:
                    continue
                part = OP_FUNCTIONS[name](x.index_select(0, idx), magnitude[idx, stage])
                x = x.index_copy(0, idx, part)
        return x, {"subpolicy": sub, "op": op_record, "magnitude": torch.where(applied, magnitude, 0.0)}

    def _erase(self, x: torch.Tensor, g: torch.Generator | None, c: int):
        """RandomErasing, vectorised over samples and over torchvision's 10 tries (see class docs);
        ``x`` is ``[B, K*c, H, W]`` and the ``K`` frames share the box and the noise."""
        b, kc, h, w = x.shape
        dev = x.device
        tries = 10
        area = float(h * w)
        lo, hi = self.erasing_scale
        target = area * (lo + (hi - lo) * torch.rand(b, tries, generator=g, device=dev))
        log_lo, log_hi = math.log(self.erasing_ratio[0]), math.log(self.erasing_ratio[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(b, tries, generator=g, device=dev))
        eh = torch.sqrt(target * ratio).round().long()
        ew = torch.sqrt(target / ratio).round().long()
        fits = (eh < h) & (ew < w)
        first = fits.int().argmax(dim=1, keepdim=True)
        eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
        pos = torch.rand(b, 2, generator=g, device=dev)
        top = (pos[:, 0] * (h - eh + 1).float()).floor().long().clamp_(min=0)
        left = (pos[:, 1] * (w - ew + 1).float()).floor().long().clamp_(min=0)
        top, left = torch.minimum(top, h - eh), torch.minimum(left, w - ew)
        erase = (torch.rand(b, generator=g, device=dev) < self.random_erasing) & fits.any(dim=1)
        rows = torch.arange(h, device=dev)
        cols = torch.arange(w, device=dev)
        in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < (top + eh)[:, None])
        in_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < (left + ew)[:, None])
        mask = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None])[:, None]
        if self.erasing_value == "random":
            fill = torch.randn((b, c, h, w), generator=g, device=dev, dtype=x.dtype).repeat(1, kc // c, 1, 1)
        else:
            fill = torch.full_like(x, float(self.erasing_value))
        box = torch.stack([top, left, eh, ew], dim=1) * erase[:, None]
        return torch.where(mask, fill, x), erase, box


def build_augment(train: bool, mean: Sequence[float], std: Sequence[float], **switches) -> BatchAugment:
    """The train transform (switches as given, defaults = the CKDSNN CIFAR recipe) or the eval one.

    Recipe defaults for ``train=True``: ``random_crop=True, crop_padding=4, hflip=True,
    autoaugment=True, random_erasing=0.5, erasing_scale=(0.02, 0.2)``; ``train=False`` ignores
    the switches and gives ToTensor + Normalize.
    """
    if not train:
        return BatchAugment.for_eval(mean, std)
    recipe = dict(random_crop=True, crop_padding=4, hflip=True, autoaugment=True, random_erasing=0.5,
                  erasing_scale=(0.02, 0.2))
    recipe.update(switches)
    return BatchAugment(mean=tuple(mean), std=tuple(std), **recipe)
