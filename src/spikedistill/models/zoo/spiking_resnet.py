"""Spiking ResNet-19 / ResNet-20 students (``method.md``, "Student and teacher networks").

Time-major throughout: stage outputs are ``[T, B, C, H, W]``. Direct encoding: the stem
``Conv2d(in, C, 3, 1, 1)`` runs once on the image and its output is repeated T times; every
conv and BatchNorm runs on the folded ``[T*B, C, H, W]`` view (plain BN over B*T samples).

Block: ``s1 = LIF(BN(conv3x3(x)))``, ``o = BN(conv3x3(s1)) + shortcut(x)``, ``out = LIF(o)``;
the shortcut where the shape changes is ``AvgPool2d(stride) -> conv1x1 -> BN`` (no spike).
The very last block's output activation is ReLU (``last_activation="relu"``, the released code /
EnOF's RepAct) or LIF (``"lif"``). Head: GAP per timestep, mean over T, ``Linear(C, 256)``,
``Linear(256, K)``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.common import (conv3x3, require_images_or_frames, shortcut, stage_plan,
                                       student_logits)
from spikedistill.models.contract import DistillModel, linear_chain_weight
from spikedistill.models.registry import register_model
from spikedistill.neurons import LIF, LIFParameters, NeuronLike


def _fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    return x.flatten(0, 1)


def _unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.view(T, x.shape[0] // T, *x.shape[1:])


class SpikingBasicBlock(nn.Module):
    """``out = act2(BN2(conv2(LIF1(BN1(conv1(x))))) + shortcut(x))`` on ``[T, B, C, H, W]``."""

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronLike,
                 last_activation: str = "lif"):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.lif1 = LIF(neuron)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = shortcut(cin, cout, stride)
        self.act2 = nn.ReLU() if last_activation == "relu" else LIF(neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        xf = _fold(x)
        s1 = self.lif1(_unfold(self.bn1(self.conv1(xf)), T))
        o = self.bn2(self.conv2(_fold(s1)))
        o = o + (xf if self.shortcut is None else self.shortcut(xf))
        return self.act2(_unfold(o, T))


class SpikingResNet(DistillModel):
    """Spiking ResNet for CIFAR-sized inputs (any H, W divisible by 4); taps ``layer1..3``
    ``[T, B, C, H, W]``. Input: images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]``."""

    is_spiking = True
    feature_names = ("layer1", "layer2", "layer3")

    def __init__(self, arch: str, num_classes: int = 10, T: int = 1,
                 width_mult: Optional[int] = None, in_channels: int = 3,
                 last_activation: str = "relu", neuron: Optional[NeuronLike] = None):
        super().__init__()
        if last_activation not in ("relu", "lif"):
            raise ConfigError(f"config key 'model.last_activation': expected relu or lif, "
                              f"got {last_activation!r}")
        if int(T) < 1:
            raise ConfigError(f"config key 'model.T': expected a positive integer, got {T!r}")
        neuron = LIFParameters.of(neuron)
        c, plan = stage_plan(arch, width_mult)
        self.T = int(T)
        self.num_classes = int(num_classes)
        self.last_activation = last_activation
        self.stem = nn.Conv2d(in_channels, c, kernel_size=3, stride=1, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(c)
        self.stem_lif = LIF(neuron)
        stages = []
        for si, (cin, cout, n_blocks, stride) in enumerate(plan):
            blocks = []
            for bi in range(n_blocks):
                is_last = si == len(plan) - 1 and bi == n_blocks - 1
                blocks.append(SpikingBasicBlock(cin if bi == 0 else cout, cout,
                                                stride if bi == 0 else 1, neuron,
                                                last_activation if is_last else "lif"))
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.feature_channels = tuple(p[1] for p in plan)
        self.head = nn.Sequential(nn.Linear(self.feature_channels[-1], 256),
                                  nn.Linear(256, num_classes))

    @property
    def classifier(self) -> nn.Linear:
        """The layer producing the logits: ``Linear(256, K)``."""
        return self.head[1]

    def classifier_weight(self) -> torch.Tensor:
        """``W_2 W_1`` ``[K, C]``: the head is linear, so the CAM weights are its product."""
        return linear_chain_weight(self.head)

    @staticmethod
    def pool(last_stage: torch.Tensor) -> torch.Tensor:
        """Pre-classifier feature ``(B, C)``: GAP per timestep, then mean over T."""
        return last_stage.mean(dim=(3, 4)).mean(dim=0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Direct encoding: stem conv once on ``[B, C, H, W]``, repeated to ``[T, B, C, H, W]``,
        then BN over the B*T samples and LIF. Frames ``[T, B, C, H, W]``: the stem conv runs on
        every frame (folded ``[T*B, C, H, W]``)."""
        if x.dim() == 5:
            if x.shape[0] != self.T:
                raise ValueError(f"frame input has {x.shape[0]} timesteps but the model runs "
                                 f"T={self.T}; set model.T to the number of frames")
            return self.stem_lif(_unfold(self.stem_bn(self.stem(_fold(x))), self.T))
        y = self.stem(x)
        fmt = (torch.channels_last if y.is_contiguous(memory_format=torch.channels_last)
               and not y.is_contiguous() else torch.contiguous_format)
        y = y.unsqueeze(0).expand(self.T, *y.shape).reshape(self.T * y.shape[0], *y.shape[1:])
        y = y.contiguous(memory_format=fmt)   # keep channels_last through the repeat
        return self.stem_lif(_unfold(self.stem_bn(y), self.T))

    def forward(self, x: torch.Tensor, return_features: bool = False,
                timestep_logits: bool = False):
        """Logits ``z_s = head(mean_t GAP(F_3[t]))`` ``[B, K]``; with ``timestep_logits``
        ``z_s[t] = head(GAP(F_3[t]))`` ``[T, B, K]`` (their mean over t is ``z_s``: the head is
        linear)."""
        require_images_or_frames(x)
        f1 = self.layer1(self.encode(x))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        logits = student_logits(self.head, self.pool, f3, timestep_logits)
        if return_features:
            return logits, [f1, f2, f3]
        return logits


@register_model("spiking_resnet19", role="student")
def spiking_resnet19(num_classes: int = 10, T: int = 1, width_mult: Optional[int] = 8,
                     in_channels: int = 3, last_activation: str = "relu",
                     neuron: Optional[NeuronLike] = None) -> SpikingResNet:
    """Spiking ResNet-19: blocks [3, 3, 2], width_mult 8 -> 128 / 256 / 512 channels
    (12.72 M parameters at K = 100)."""
    return SpikingResNet("resnet19", num_classes, T, width_mult, in_channels, last_activation, neuron)


@register_model("spiking_resnet20", role="student")
def spiking_resnet20(num_classes: int = 10, T: int = 1, width_mult: Optional[int] = 1,
                     in_channels: int = 3, last_activation: str = "relu",
                     neuron: Optional[NeuronLike] = None) -> SpikingResNet:
    """Spiking ResNet-20: blocks [3, 3, 3], width_mult 1 -> 16 / 32 / 64 channels."""
    return SpikingResNet("resnet20", num_classes, T, width_mult, in_channels, last_activation, neuron)
