"""Mixup and CutMix per batch, on the batch's device, seeded by the loader's generator.

Mixup (Zhang et al., ICLR 2018, "mixup: Beyond Empirical Risk Minimization") and CutMix (Yun et
al., ICCV 2019, "CutMix: Regularization Strategy to Train Strong Classifiers") in the per-batch
form of timm's ``timm.data.mixup.Mixup(mode="batch")`` (pytorch-image-models,
``timm/data/mixup.py``), which the Spikformer CIFAR recipe uses (ZK-Zhou/spikformer,
``cifar10/train.py``, ``mixup_mode: batch`` in ``cifar10/cifar10.yml``). Every sample ``i`` is
paired with ``j = B - 1 - i`` (the batch flipped):

- one draw per batch: with probability ``mix_prob`` the batch is mixed; when both alphas are
  positive CutMix is chosen with probability ``switch_prob``, else Mixup; ``lam ~ Beta(alpha,
  alpha)`` of the chosen one (``data.augment.mixup`` / ``data.augment.cutmix``);
- Mixup: ``x~ = lam * x + (1 - lam) * x.flip(0)``;
- CutMix: a box of ``cut_h = int(H sqrt(1 - lam))`` by ``cut_w = int(W sqrt(1 - lam))`` centred
  on ``(cy, cx)`` uniform over the pixels, clipped to the image: rows ``[clip(cy - cut_h // 2),
  clip(cy + (cut_h + 1) // 2))`` (timm 1.0's ``rand_bbox``), columns likewise; the box is
  pasted from ``x.flip(0)`` and ``lam`` is corrected to the area left, ``lam = 1 - box_area /
  (H W)`` (timm's ``correct_lam=True``);
- the target: ``y~ = lam * onehot(y) + (1 - lam) * onehot(y.flip(0))`` ``[B, K]``.

Label smoothing is *not* applied here: ``Distiller.cross_entropy`` applies
``train.label_smoothing`` once to whatever target it gets, ``(1 - eps) y~ + eps / K``. Because the
smoothing is affine and ``lam + (1 - lam) = 1`` this equals timm's ``mixup_target(...,
smoothing=eps)`` (smoothed one-hots mixed) exactly; see :func:`mix_targets`.

Frames: the same ``lam`` and box hold for every timestep (the weight map covers the last two
axes only), whether the batch is ``[B, T, C, H, W]`` (``batch_dim=0``) or time-major ``[T, B, C,
H, W]`` (``batch_dim=1``).

Randomness: every call draws the same number of values from the generator it is given (four
uniforms, plus one Beta draw per positive alpha), whatever is chosen, all on the batch's device
and without a host synchronisation; with the loader's per-epoch generator a resumed run mixes
exactly as the uninterrupted one. An odd batch's middle sample is paired with itself (timm
requires an even batch instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from spikedistill.errors import ConfigError


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``onehot(y)`` float32 ``[B, K]`` for int labels ``y [B]``."""
    out = torch.zeros(y.shape[0], num_classes, dtype=torch.float32, device=y.device)
    return out.scatter_(1, y.long().view(-1, 1), 1.0)


def mix_targets(y: torch.Tensor, lam, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - eps) (lam onehot(y) + (1 - lam) onehot(y.flip(0))) + eps / K`` ``[B, K]``.

    ``lam`` is a float or a 0-d tensor, ``eps = smoothing``. With ``eps > 0`` this is timm's
    ``mixup_target(y, K, lam, smoothing=eps)``, whose one-hots are smoothed first
    (``on = 1 - eps + eps / K``, ``off = eps / K``); the two orders agree since ``lam + (1 - lam)
    = 1``. The loader uses ``eps = 0`` (the loss smooths)."""
    t = one_hot(y, num_classes)
    lam = torch.as_tensor(lam, dtype=t.dtype, device=t.device)
    t = lam * t + (1.0 - lam) * t.flip(0)
    if smoothing:
        t = t * (1.0 - smoothing) + smoothing / num_classes
    return t


def cutmix_box(height: int, width: int, lam: torch.Tensor, cy: torch.Tensor,
               cx: torch.Tensor) -> torch.Tensor:
    """The CutMix box ``[yl, yh, xl, xh]`` (int64, half-open) for ``lam`` and the centre ``(cy,
    cx)``: ``cut = int(side * sqrt(1 - lam))``, ``lo = clip(c - cut // 2, 0, side)``, ``hi =
    clip(c + (cut + 1) // 2, 0, side)`` (timm 1.0 ``rand_bbox`` with ``margin=0``)."""
    ratio = torch.sqrt((1.0 - lam.double()).clamp(min=0.0))     # float64 like timm's numpy
    cut_h = torch.floor(height * ratio).long()
    cut_w = torch.floor(width * ratio).long()
    yl = (cy - torch.div(cut_h, 2, rounding_mode="floor")).clamp(0, height)
    yh = (cy + torch.div(cut_h + 1, 2, rounding_mode="floor")).clamp(0, height)
    xl = (cx - torch.div(cut_w, 2, rounding_mode="floor")).clamp(0, width)
    xh = (cx + torch.div(cut_w + 1, 2, rounding_mode="floor")).clamp(0, width)
    return torch.stack([yl, yh, xl, xh])


@dataclass
class MixDraw:
    """One batch's draw (0-d device tensors): ``use_cutmix`` (bool), ``lam`` (the target weight
    of ``y``, area-corrected for CutMix; 1 when the batch is not mixed) and ``box`` ``[4]`` (the
    CutMix box ``yl, yh, xl, xh``; meaningful only when ``use_cutmix``)."""

    use_cutmix: torch.Tensor
    lam: torch.Tensor
    box: torch.Tensor

    def weight_map(self, height: int, width: int, dtype=torch.float32) -> torch.Tensor:
        """``w [H, W]``, the weight of the sample itself (``1 - w`` of its partner): ``lam``
        everywhere for Mixup, 0 inside the box and 1 outside for CutMix."""
        dev = self.lam.device
        rows = torch.arange(height, device=dev)
        cols = torch.arange(width, device=dev)
        yl, yh, xl, xh = self.box
        inside = ((rows >= yl) & (rows < yh))[:, None] & ((cols >= xl) & (cols < xh))[None, :]
        cut = (~inside).to(dtype)
        return torch.where(self.use_cutmix, cut, self.lam.to(dtype).expand(height, width))


def _beta(alpha: float, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """One ``Beta(alpha, alpha)`` draw (0-d): the first coordinate of ``Dirichlet(alpha,
    alpha)``, drawn from ``generator``."""
    conc = torch.full((2,), float(alpha), dtype=torch.float32, device=device)
    return torch._sample_dirichlet(conc, generator=generator)[0]


class BatchMixer:
    """``mixer(x, y, generator) -> (x~, y~ [B, K])``: Mixup / CutMix of one batch (module doc).

    ``cfg`` holds the ``data.augment`` keys ``mixup`` (Mixup's alpha, 0 = off), ``cutmix``
    (CutMix's alpha, 0 = off), ``mix_prob``, ``switch_prob`` and ``mix_off_epoch`` (no mixing
    from this 0-based epoch on, 0 = never off: timm's ``mixup_off_epoch``); ``num_classes`` is K.
    ``x`` is a float batch ``[B, C, H, W]``, frames ``[B, T, C, H, W]`` (``batch_dim=0``) or
    ``[T, B, C, H, W]`` (``batch_dim=1``); ``y`` int64 ``[B]``. The result's ``y~`` is always
    soft float32 ``[B, K]`` (one-hot where nothing was mixed), unsmoothed. ``epoch`` (optional)
    switches mixing off at ``mix_off_epoch``; the draws are made all the same."""

    def __init__(self, cfg, num_classes: int) -> None:
        self.mixup_alpha = float(cfg.mixup)
        self.cutmix_alpha = float(cfg.cutmix)
        self.mix_prob = float(cfg.mix_prob)
        self.switch_prob = float(cfg.switch_prob)
        self.off_epoch = int(getattr(cfg, "mix_off_epoch", 0))
        self.num_classes = int(num_classes)
        if self.mixup_alpha <= 0 and self.cutmix_alpha <= 0:
            raise ConfigError("config key 'data.augment.mixup': a BatchMixer needs "
                              "data.augment.mixup > 0 or data.augment.cutmix > 0")
        if self.num_classes < 2:
            raise ConfigError(f"config key 'data.augment.mixup': mixing needs at least 2 "
                              f"classes, the dataset has {self.num_classes}")

    @staticmethod
    def enabled(cfg) -> bool:
        """Whether ``data.augment`` asks for mixing (``mixup > 0`` or ``cutmix > 0``)."""
        return float(cfg.mixup) > 0 or float(cfg.cutmix) > 0

    def draw(self, height: int, width: int, generator: Optional[torch.Generator],
             device, epoch: Optional[int] = None) -> MixDraw:
        """The batch's :class:`MixDraw`: uniforms ``u [4]`` (mix coin ``u0 < mix_prob``, switch
        coin ``u1 < switch_prob``, box centre ``cy = floor(u2 H)``, ``cx = floor(u3 W)``), then
        ``Beta(mixup, mixup)`` and ``Beta(cutmix, cutmix)`` for the positive alphas."""
        u = torch.rand(4, generator=generator, device=device)
        lam_m = _beta(self.mixup_alpha, generator, device) if self.mixup_alpha > 0 else None
        lam_c = _beta(self.cutmix_alpha, generator, device) if self.cutmix_alpha > 0 else None
        return self.decide(u, lam_m, lam_c, height, width, epoch)

    def decide(self, u: torch.Tensor, lam_m: Optional[torch.Tensor], lam_c: Optional[torch.Tensor],
               height: int, width: int, epoch: Optional[int] = None) -> MixDraw:
        """The :class:`MixDraw` for given uniforms ``u [4]`` and Beta draws (timm's
        ``_params_per_batch`` then ``cutmix_bbox_and_lam``): mixed iff ``u0 < mix_prob`` (and
        before ``mix_off_epoch``); CutMix iff only ``cutmix > 0``, or both and ``u1 <
        switch_prob``; ``lam`` the chosen Beta draw (1 when not mixed), area-corrected for
        CutMix with the box centred at ``(floor(u2 H), floor(u3 W))``."""
        on = u[0] < self.mix_prob
        if epoch is not None and self.off_epoch > 0 and epoch >= self.off_epoch:
            on = torch.zeros_like(on)
        if lam_m is not None and lam_c is not None:
            use_cut = u[1] < self.switch_prob
            lam_mix = torch.where(use_cut, lam_c, lam_m)
        elif lam_c is not None:
            use_cut, lam_mix = torch.ones_like(on), lam_c
        else:
            use_cut, lam_mix = torch.zeros_like(on), lam_m
        use_cut = use_cut & on
        lam = torch.where(on, lam_mix, torch.ones_like(lam_mix))
        cy = torch.floor(u[2] * height).long().clamp(max=height - 1)
        cx = torch.floor(u[3] * width).long().clamp(max=width - 1)
        box = cutmix_box(height, width, lam, cy, cx)
        area = (box[1] - box[0]) * (box[3] - box[2])
        lam_cut = 1.0 - area.to(lam.dtype) / float(height * width)
        return MixDraw(use_cutmix=use_cut, lam=torch.where(use_cut, lam_cut, lam), box=box)

    def apply(self, x: torch.Tensor, y: torch.Tensor, d: MixDraw,
              batch_dim: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x w + x.flip(batch_dim) (1 - w), mix_targets(y, d.lam))`` with ``w`` =
        :meth:`MixDraw.weight_map` over the last two axes (every channel and timestep)."""
        if not x.is_floating_point():
            raise ValueError(f"mixing needs a float batch (after ToTensor/Normalize), got {x.dtype}")
        w = d.weight_map(x.shape[-2], x.shape[-1], x.dtype)
        x_mixed = x * w + x.flip(batch_dim) * (1.0 - w)
        return x_mixed, mix_targets(y, d.lam, self.num_classes)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: Optional[torch.Generator] = None,
                 *, batch_dim: int = 0, epoch: Optional[int] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.shape[batch_dim] != y.shape[0]:
            raise ValueError(f"x has {x.shape[batch_dim]} samples on axis {batch_dim} but y has "
                             f"{y.shape[0]}")
        d = self.draw(x.shape[-2], x.shape[-1], generator, x.device, epoch)
        return self.apply(x, y, d, batch_dim)

    def __repr__(self) -> str:
        return (f"BatchMixer(mixup={self.mixup_alpha}, cutmix={self.cutmix_alpha}, "
                f"mix_prob={self.mix_prob}, switch_prob={self.switch_prob}, "
                f"off_epoch={self.off_epoch}, num_classes={self.num_classes})")


__all__ = ["BatchMixer", "MixDraw", "cutmix_box", "mix_targets", "one_hot"]
