"""``distill.warmup_epochs``: every loss term but ``ce`` ramps linearly from 0 to its weight,
per step (mdistiller's DKD warm-up ``min(epoch / warmup, 1)``, taken per step)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from engine_helpers import SimulatedCrash, crash_after, state_dicts_equal, teacher_checkpoint, \
    tiny_config
from spikedistill.config import build_config
from spikedistill.engine import checkpoint as ck
from spikedistill.engine.loop import distill_scale, scale_distill_terms, train_one_epoch
from spikedistill.engine.trainer import run_training
from spikedistill.errors import ConfigError


def test_scale_is_a_per_step_linear_ramp_that_ends_at_one():
    assert [distill_scale(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert distill_scale(0, 0) == 1.0 and distill_scale(10**6, 0) == 1.0


def test_only_the_terms_other_than_ce_are_scaled():
    losses = {"ce": torch.tensor(3.0), "kd": torch.tensor(2.0), "samd": torch.tensor(4.0)}
    out = scale_distill_terms(losses, 0.25)
    assert {k: float(v) for k, v in out.items()} == {"ce": 3.0, "kd": 0.5, "samd": 1.0}
    assert scale_distill_terms(losses, 1.0) is losses


class _FixedLosses(nn.Module):
    """A method whose terms are the constants ce = 1, kd = 2 (plus 0 * w for a gradient)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.teacher = None

    def forward_train(self, x, y, ctx=None):
        logits = torch.zeros(x.shape[0], 10) + self.w
        return logits, {"ce": 1.0 + 0 * self.w, "kd": 2.0 + 0 * self.w}


def test_epoch_means_follow_the_ramp():
    # 8 warm-up steps, 4 steps an epoch: epoch 0 scales 1/8..4/8 (mean 2.5/8), epoch 1 5/8..8/8
    # (mean 6.5/8), epoch 2 all 1
    method = _FixedLosses()
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    batches = [(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))] * 4
    means = []
    for epoch in range(3):
        res = train_one_epoch(method, batches, opt, epoch=epoch, epochs=3, steps_per_epoch=4,
                              device=torch.device("cpu"), distill_warmup_steps=8)
        means.append((res.loss_means["ce"], res.loss_means["kd"]))
    assert means == [(1.0, 2 * 2.5 / 8), (1.0, 2 * 6.5 / 8), (1.0, 2.0)]


def test_negative_warmup_is_a_config_error():
    with pytest.raises(ConfigError, match="distill.warmup_epochs"):
        build_config({}, ["distill.warmup_epochs=-1"])


def test_warmup_changes_training_and_resumes_exactly(tmp_path):
    teacher = teacher_checkpoint(tmp_path / "teacher.pt")
    kd = ["distill.method=kd", f"teacher.checkpoint={teacher}"]
    ramped = kd + ["distill.warmup_epochs=2"]
    plain = run_training(tiny_config(tmp_path, "plain", kd))
    full = run_training(tiny_config(tmp_path, "full", ramped))
    # the first epoch's KD term is scaled by the mean of 1/6 .. 3/6 (3 steps of a 6-step ramp)
    assert full.history[0]["loss_kd"] < plain.history[0]["loss_kd"]
    assert full.history[0]["loss_ce"] != plain.history[0]["loss_ce"] or \
        full.history[1]["loss_ce"] != plain.history[1]["loss_ce"]
    with pytest.raises(SimulatedCrash):
        run_training(tiny_config(tmp_path, "cut", ramped), on_epoch_end=crash_after(1))
    resumed = run_training(None, resume=tmp_path / "cut")
    assert [(r["loss_kd"], r["test_acc"]) for r in full.history] == \
        [(r["loss_kd"], r["test_acc"]) for r in resumed.history]
    a, b = (ck.load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "cut"))
    assert state_dicts_equal(a["model"], b["model"])
