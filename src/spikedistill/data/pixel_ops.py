"""Batched pixel ops with the uint8 semantics of ``torchvision.transforms.v2.functional`` / PIL.

``x`` is float ``[n, C, H, W]`` holding integers 0..255; ``m`` is float ``[n]`` (one magnitude per
sample). Results are truncated to integers like a uint8 cast; see each ``op_*`` function for its
formula. These are the ops shared by AutoAugment (:mod:`spikedistill.data.augment`) and
RandAugment (:mod:`spikedistill.data.randaugment`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _to_uint8_values(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 255] and truncate towards zero, i.e. what a cast to uint8 does."""
    return x.clamp_(0.0, 255.0).trunc_()


def _affine(x: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` with the output->input map ``p_in = a @ p_out + t`` (nearest, fill 0).

    Coordinates are in pixels, measured from the image centre (pixel (i, j) sits at
    ``(j + 0.5 - W/2, i + 0.5 - H/2)``), y pointing down; ``a`` is ``[n, 2, 2]``, ``t`` ``[n, 2]``.
    With ``S = diag(W/2, H/2)`` the normalised grid matrix is ``[S^-1 a S | S^-1 t]``, fed to
    ``affine_grid``/``grid_sample`` with ``align_corners=False`` (pixel centres).
    """
    n, _, h, w = x.shape
    scale = torch.tensor([w / 2.0, h / 2.0], device=x.device, dtype=x.dtype)
    theta = torch.empty(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, :, :2] = a * scale[None, None, :] / scale[None, :, None]
    theta[:, :, 2] = t / scale
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def op_shear_x(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ShearX by factor m about the top-left corner: ``x_in = x_out + m * y_out`` (corner coords)."""
    h = x.shape[-2]
    a = torch.zeros(len(m), 2, 2, device=x.device, dtype=x.dtype)
    a[:, 0, 0] = a[:, 1, 1] = 1.0
    a[:, 0, 1] = m
    t = torch.stack([m * (h / 2.0), torch.zeros_like(m)], dim=1)
    return _affine(x, a, t)


def op_shear_y(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ShearY by factor m about the top-left corner: ``y_in = y_out + m * x_out`` (corner coords)."""
    w = x.shape[-1]
    a = torch.zeros(len(m), 2, 2, device=x.device, dtype=x.dtype)
    a[:, 0, 0] = a[:, 1, 1] = 1.0
    a[:, 1, 0] = m
    t = torch.stack([torch.zeros_like(m), m * (w / 2.0)], dim=1)
    return _affine(x, a, t)


def _translate(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Shift content by (dx, dy) whole pixels (truncated towards zero), filling with 0."""
    a = torch.eye(2, device=x.device, dtype=x.dtype).expand(len(dx), 2, 2)
    t = -torch.stack([dx.trunc(), dy.trunc()], dim=1)
    return _affine(x, a, t)


def op_translate_x(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """TranslateX: content moves right by ``int(m)`` pixels (left when negative)."""
    return _translate(x, m, torch.zeros_like(m))


def op_translate_y(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """TranslateY: content moves down by ``int(m)`` pixels (up when negative)."""
    return _translate(x, torch.zeros_like(m), m)


def op_rotate(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Rotate counter-clockwise by m degrees about the image centre:
    ``p_in = [[cos, -sin], [sin, cos]] @ p_out`` (y down)."""
    rad = m * (math.pi / 180.0)
    c, s = torch.cos(rad), torch.sin(rad)
    a = torch.stack([torch.stack([c, -s], dim=1), torch.stack([s, c], dim=1)], dim=1)
    return _affine(x, a, torch.zeros(len(m), 2, device=x.device, dtype=x.dtype))


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` floored to an integer, ``[n, 1, H, W]`` (1 channel: x)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (r * 0.2989 + g * 0.587 + b * 0.114).floor_()


def _blend(x: torch.Tensor, other: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``uint8(clamp(f * x + (1 - f) * other))`` with factor ``f = 1 + m`` per sample.

    The weight of ``other`` is formed as ``-m`` rather than ``1 - f``: both are the same number,
    but ``-m`` is exact in float32. torchvision adds the second term with a fused multiply-add,
    so on rare pixels (well under 1 %) its truncated result differs from this one by 1.
    """
    f = (1.0 + m).view(-1, 1, 1, 1)
    return _to_uint8_values(x * f + other * (-m).view(-1, 1, 1, 1))


def op_brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Brightness: blend with black, factor ``1 + m``: ``uint8((1 + m) x)``."""
    return _blend(x, torch.zeros_like(x), m)


def op_color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Color (saturation): blend with the floored luma image, factor ``1 + m`` (1 channel: identity)."""
    if x.shape[1] == 1:
        return x.clone()
    return _blend(x, _grey(x), m)


def op_contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Contrast: blend with the mean of the floored luma image (a constant), factor ``1 + m``."""
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, m)


def op_sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Sharpness: blend the interior pixels with ``round(smooth(x))``, factor ``1 + m``.

    ``smooth`` is the 3x3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``; the one-pixel border
    is left unchanged (as PIL and torchvision do).
    """
    n, c, h, w = x.shape
    if h <= 2 or w <= 2:
        return x.clone()
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = F.conv2d(x, kernel, groups=c).round_()
    out = x.clone()
    inner = out[:, :, 1:-1, 1:-1]
    inner.copy_(_to_uint8_values(inner + (-m).view(-1, 1, 1, 1) * (smooth - inner)))
    return out


def op_posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Posterize to ``b = m`` bits: keep the top b bits, ``floor(x / 2^(8-b)) * 2^(8-b)``."""
    q = torch.pow(2.0, 8.0 - m.trunc()).view(-1, 1, 1, 1)
    return torch.floor(x / q) * q


def op_solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Solarize with threshold m: ``255 - x`` where ``x >= m``, else x."""
    return torch.where(x >= m.view(-1, 1, 1, 1), 255.0 - x, x)


def op_autocontrast(x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
    """AutoContrast per image and channel: ``uint8((x - lo) / ((hi - lo) / 255))`` with lo/hi the
    channel's min/max; flat channels (hi == lo) are unchanged."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    flat = hi == lo
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    inv_scale = torch.where(flat, torch.ones_like(hi), (hi - lo) * (1.0 / 255.0))
    return _to_uint8_values((x - lo) / inv_scale)


def op_equalize(x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
    """Histogram equalisation per image and channel, PIL's rule.

    With ``hist`` the 256-bin histogram of a channel, ``cum`` its cumulative sum, ``top`` the
    count of the channel's largest value and ``step = floor((numel - top) / 255)``:
    ``lut[0] = 0``, ``lut[v] = min(255, floor((cum[v-1] + floor(step / 2)) / step))`` and the
    channel becomes ``lut[x]``; channels with ``step == 0`` are left unchanged.
    """
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    top = hist.gather(1, flat.max(dim=1, keepdim=True).values)
    step = torch.div(h * w - top, 255, rounding_mode="floor")
    cum = hist.cumsum(dim=1)[:, :-1]
    lut = torch.div(cum + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1),
                    rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros(n * c, 1, device=x.device, dtype=lut.dtype), lut], dim=1)
    out = torch.where(step > 0, lut.gather(1, flat), flat)
    return out.to(x.dtype).view(n, c, h, w)


def op_invert(x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
    """Invert: ``255 - x``."""
    return 255.0 - x


__all__ = ["op_autocontrast", "op_brightness", "op_color", "op_contrast", "op_equalize",
           "op_invert", "op_posterize", "op_rotate", "op_sharpness", "op_shear_x", "op_shear_y",
           "op_solarize", "op_translate_x", "op_translate_y"]
