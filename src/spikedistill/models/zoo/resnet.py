"""ANN ResNet-19 / ResNet-20 teachers: the students' layout with ReLU and no time axis.

Stem ``conv3x3 -> BN -> ReLU``; blocks ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``;
head ``GAP -> Linear(C, K)`` (12.62 M parameters for ResNet-19 at width 8, K = 100).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from spikedistill.models.common import conv3x3, require_images, shortcut, stage_plan
from spikedistill.models.contract import DistillModel
from spikedistill.models.registry import register_model


class BasicBlock(nn.Module):
    """``out = ReLU(BN2(conv2(ReLU(BN1(conv1(x))))) + shortcut(x))`` on ``[B, C, H, W]``."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = shortcut(cin, cout, stride)
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(o + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(DistillModel):
    """ANN ResNet for CIFAR-sized inputs; taps ``layer1..3`` ``[B, C, H, W]``."""

    is_spiking = False
    feature_names = ("layer1", "layer2", "layer3")

    def __init__(self, arch: str, num_classes: int = 10, width_mult: Optional[int] = None,
                 in_channels: int = 3):
        super().__init__()
        c, plan = stage_plan(arch, width_mult)
        self.num_classes = int(num_classes)
        self.stem = conv3x3(in_channels, c)
        self.stem_bn = nn.BatchNorm2d(c)
        self.stem_act = nn.ReLU(inplace=True)
        stages = []
        for cin, cout, n_blocks, stride in plan:
            stages.append(nn.Sequential(*[BasicBlock(cin if i == 0 else cout, cout,
                                                     stride if i == 0 else 1)
                                          for i in range(n_blocks)]))
        self.layer1, self.layer2, self.layer3 = stages
        self.feature_channels = tuple(p[1] for p in plan)
        self.fc = nn.Linear(self.feature_channels[-1], num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The layer producing the logits: ``Linear(C, K)``."""
        return self.fc

    @staticmethod
    def pool(last_stage: torch.Tensor) -> torch.Tensor:
        """Pre-classifier feature ``(B, C)``: global average pooling."""
        return last_stage.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, return_features: bool = False,
                timestep_logits: bool = False):
        require_images(x)
        f1 = self.layer1(self.stem_act(self.stem_bn(self.stem(x))))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        logits = self.fc(self.pool(f3))
        if return_features:
            return logits, [f1, f2, f3]
        return logits


@register_model("resnet19", role="teacher")
def resnet19(num_classes: int = 10, width_mult: Optional[int] = 8, in_channels: int = 3) -> ResNet:
    """ANN ResNet-19 teacher: blocks [3, 3, 2], width_mult 8."""
    return ResNet("resnet19", num_classes, width_mult, in_channels)


@register_model("resnet20", role="teacher")
def resnet20(num_classes: int = 10, width_mult: Optional[int] = 1, in_channels: int = 3) -> ResNet:
    """ANN ResNet-20 teacher: blocks [3, 3, 3], width_mult 1."""
    return ResNet("resnet20", num_classes, width_mult, in_channels)
