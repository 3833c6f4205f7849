"""Shared helpers of the model tests."""

from __future__ import annotations

import torch


def calibrate_bn(model, x):
    """Running BN statistics of one batch (so that an eval-mode forward spikes)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()
