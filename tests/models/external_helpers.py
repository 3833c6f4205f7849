"""Small networks for the ``source: python`` tests (imported as ``external_helpers:...``)."""

import torch.nn as nn

from spikedistill.neurons import LIF


class TinyNet(nn.Module):
    """ANN ``[B, C, H, W] -> [B, K]``: two conv stages, GAP, a Linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 8):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.stage2(self.stage1(x)).mean(dim=(2, 3)))


class TinySNN(nn.Module):
    """Multi-step, time-major SNN ``[T, B, C, H, W] -> [T, B, K]`` with spikedistill LIFs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.lif = LIF(backend="torch")
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        T, B = x.shape[:2]
        h = self.conv(x.flatten(0, 1)).unflatten(0, (T, B))
        s = self.lif(h)
        return self.fc(s.mean(dim=(3, 4)))


def tiny_net(width: int = 8):
    """A factory without ``num_classes`` (it always has 10 outputs)."""
    return TinyNet(num_classes=10, width=width)


def not_a_module():
    return 42
