"""Networks for the contract tests that spikedistill does not define itself: a torchvision
ResNet-18 (ANN teacher) and a small hand-made multi-step spiking net (conv + our LIF,
time-major), each wrapped in a FeatureTapModel."""

from __future__ import annotations

import torch
import torch.nn as nn

from spikedistill.models.taps import FeatureTapModel
from spikedistill.neurons import LIF

RESNET18_TAPS = ["layer1", "layer2", "layer3", "layer4"]


class TinySNN(nn.Module):
    """Multi-step, time-major: ``[T, B, C, H, W] -> [T, B, K]``.

    ``blocks.i``: ``h = LIF(BN(conv(h)))`` on the folded ``[T*B, ...]`` batch; head: GAP per
    timestep then ``fc``. With the default strides a 32x32 input gives 8 / 4 / 2 / 1 px maps
    (the spatial sizes of torchvision ResNet-18's ``layer1..4``)."""

    def __init__(self, in_channels=3, num_classes=5, widths=(8, 12, 16, 24),
                 strides=(4, 2, 2, 2)):
        super().__init__()
        self.blocks = nn.ModuleList()
        cin = in_channels
        for w, s in zip(widths, strides):
            blk = nn.Module()
            blk.conv = nn.Conv2d(cin, w, 3, stride=s, padding=1, bias=False)
            blk.bn = nn.BatchNorm2d(w)
            blk.lif = LIF(backend="torch")
            self.blocks.append(blk)
            cin = w
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        T, B = x.shape[:2]
        h = x
        for blk in self.blocks:
            h = blk.lif(blk.bn(blk.conv(h.flatten(0, 1))).unflatten(0, (T, B)) * 2.0)
        return self.fc(h.mean(dim=(3, 4)))


def tiny_snn_taps(T=2, in_channels=3, num_classes=5, size=32, **kw) -> FeatureTapModel:
    torch.manual_seed(0)
    net = TinySNN(in_channels, num_classes, **kw)
    n = len(net.blocks)
    return FeatureTapModel(net, features=[f"blocks.{i}.lif" for i in range(n)], classifier="fc",
                           is_spiking=True, T=T, input_shape=(in_channels, size, size))


def resnet18_taps(num_classes=5, size=32, key="teacher") -> FeatureTapModel:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    return FeatureTapModel(net, features=RESNET18_TAPS, classifier="fc",
                           input_shape=(3, size, size), key=key)
