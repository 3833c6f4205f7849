"""Layers shared by the spiking and ANN ResNets."""

from __future__ import annotations

import torch.nn as nn


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
