"""Shared fixtures of the method tests: a tiny spiking ResNet-20 student with its ANN twin as
teacher, a seeded batch of 8x8 images, and a ``distill`` section for a method."""

from __future__ import annotations

import torch

from spikedistill.config import build_config
from spikedistill.models import create_model

K = 5


def pair(seed=0, T=2):
    """``(student, teacher)``: ``spiking_resnet20`` (T steps) and ``resnet20``, width 1, K classes."""
    torch.manual_seed(seed)
    student = create_model("spiking_resnet20", num_classes=K, T=T, width_mult=1)
    teacher = create_model("resnet20", num_classes=K, width_mult=1)
    return student, teacher


def batch(seed=0, B=4):
    """``(x [B, 3, 8, 8], y [B])`` from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, 8, 8, generator=g) * 2, torch.randint(0, K, (B,), generator=g)


def method_cfg(method, *overrides):
    """The ``distill`` section of a config with ``distill.method=method`` and ``overrides``."""
    return build_config({}, [f"distill.method={method}", *overrides]).distill
