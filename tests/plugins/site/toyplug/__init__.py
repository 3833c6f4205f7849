"""Test-only spikedistill plugin, loaded through its entry point ``toyplug:register``.

Registers the model ``toy_snn`` (a one-layer spiking net), the method ``toyconf`` with its own
section ``distill.toyconf`` and the frames dataset ``toyframes`` (synthetic, [N, T, C, H, W]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

CALLS = []

T_FRAMES = 3


def register() -> None:
    CALLS.append("register")
    from spikedistill.data import register_dataset
    from spikedistill.data.readers import RawDataset
    from spikedistill.distill import Distiller, register_method
    from spikedistill.models import register_model
    from spikedistill.models.contract import DistillModel, time_major_input
    from spikedistill.neurons import LIF

    @register_model("toy_snn", role="student")
    class ToySNN(DistillModel):
        is_spiking = True
        feature_names = ("conv",)

        def __init__(self, num_classes: int = 4, in_channels: int = 1, T: int = T_FRAMES,
                     neuron=None):  # a registered student gets model.neuron as a dict
            neuron = dict(neuron or {})
            super().__init__()
            self.num_classes, self.T = num_classes, T
            self.feature_channels = (6,)
            self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
            self.lif = LIF(**neuron)
            self.classifier = nn.Linear(6, num_classes)

        def forward(self, x, return_features=False, timestep_logits=False):
            x = time_major_input(x, self.T)                       # [T, B, C, H, W]
            t, b = x.shape[:2]
            f = self.lif(self.conv(x.flatten(0, 1)).view(t, b, 6, *x.shape[-2:]) * 2.0)
            per_t = self.classifier(f.mean(dim=(-2, -1)))          # [T, B, K]
            if timestep_logits:
                return per_t
            logits = per_t.mean(0)
            return (logits, [f]) if return_features else logits

    @dataclass
    class ToyConfig:
        """distill.toyconf: ``weight * sum_k p_k log p_k`` with ``p = softmax(z_s / tau)``."""

        tau: float = 2.0
        weight: float = 0.5

        def validate(self, prefix: str = "") -> None:
            from spikedistill.config import check_range
            check_range(self.tau, f"{prefix}.tau", low=0.0, low_open=True)

    @register_method("toyconf", config=ToyConfig)
    class ToyConfidence(Distiller):
        """``L = CE(z_s, y) + weight * sum_k p_k log p_k`` (a confidence penalty)."""

        requires_teacher = False

        def forward_train(self, x, y, ctx=None):
            logits = self.student(x)
            c = self.section
            p = torch.softmax(logits / c.tau, dim=1)
            neg_entropy = (p * torch.log_softmax(logits / c.tau, dim=1)).sum(1).mean()
            return logits, {"ce": self.cross_entropy(logits, y), "conf": c.weight * neg_entropy}

    @register_dataset("toyframes", num_classes=4, in_channels=1, image_size=6, frames=True,
                      T=T_FRAMES, needs_root=False, options=("n_train",),
                      class_names=["a", "b", "c", "d"])
    def read_toyframes(request):
        """Synthetic frame sequences: class k is a bright square moving along row k."""
        n_train = int(request.options.get("n_train", 32))
        rng = np.random.default_rng(0)

        def split(n):
            labels = np.arange(n) % 4
            x = rng.integers(0, 40, size=(n, T_FRAMES, 1, 6, 6)).astype(np.uint8)
            for i, k in enumerate(labels):
                for t in range(T_FRAMES):
                    x[i, t, 0, k:k + 2, t:t + 2] = 250
            return x, labels.astype(np.int64)

        tr, ytr = split(n_train)
        te, yte = split(16)
        return RawDataset(tr, ytr, te, yte, ["a", "b", "c", "d"], source="toyframes (synthetic)")
