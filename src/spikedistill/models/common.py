"""Layers and forward pieces shared by the built-in spiking and ANN networks."""

from __future__ import annotations

import torch
import torch.nn as nn


def require_images(x: torch.Tensor) -> None:
    """ValueError unless ``x`` is an image batch ``[B, C, H, W]`` (what a built-in ANN takes;
    frames reach it through ``teacher.frames``)."""
    if x.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)} (an ANN "
                         "takes frames through teacher.frames)")


def require_images_or_frames(x: torch.Tensor) -> None:
    """ValueError unless ``x`` is ``[B, C, H, W]`` (direct encoding) or frames ``[T, B, C, H, W]``."""
    if x.dim() not in (4, 5):
        raise ValueError(f"expected images [B, C, H, W] or frames [T, B, C, H, W], got shape "
                         f"{tuple(x.shape)}")


def student_logits(head: nn.Module, pool, last: torch.Tensor, timestep_logits: bool) -> torch.Tensor:
    """A spiking student's logits from its last tap ``F_n`` ``[T, B, C, H, W]``:
    ``z_s = head(pool(F_n))`` ``[B, K]`` (``pool``: GAP and the mean over t), or with
    ``timestep_logits`` ``z_s[t] = head(GAP(F_n[t]))`` ``[T, B, K]`` (their mean over t is
    ``z_s`` for a linear head)."""
    if timestep_logits:
        return head(last.mean(dim=(3, 4)))
    return head(pool(last))


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=1, bias=False)


def shortcut(cin: int, cout: int, stride: int):
    """``AvgPool2d(stride) -> conv1x1 -> BN`` where the shape changes (no spike), else None."""
    if stride == 1 and cin == cout:
        return None
    layers = [nn.AvgPool2d(stride)] if stride != 1 else []
    layers += [conv1x1(cin, cout), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers)


ARCH_BLOCKS = {"resnet19": (3, 3, 2), "resnet20": (3, 3, 3)}
ARCH_WIDTH = {"resnet19": 8, "resnet20": 1}


def stage_plan(arch: str, width_mult):
    """[(cin, cout, n_blocks, stride)] for the three stages; stem width 16 * width_mult."""
    wm = ARCH_WIDTH[arch] if width_mult is None else int(width_mult)
    if wm < 1:
        raise ValueError(f"width_mult must be >= 1, got {wm}")
    c = 16 * wm
    blocks = ARCH_BLOCKS[arch]
    return c, [(c, c, blocks[0], 1), (c, 2 * c, blocks[1], 2), (2 * c, 4 * c, blocks[2], 2)]
