"""``train.compile``: the student and the frozen teacher go through ``torch.compile``, the run
trains to the same losses as the eager one, and the run log reports the compile time.

The backend is patched to dynamo's ``eager`` (graph capture, guards and graph breaks as with
inductor, the captured graph run by eager kernels): inductor's C++ code generation takes
minutes on a CPU. With inductor the losses of three CKD steps (spiking ResNet-20, T = 2) agreed
with eager to 1.1e-7 relative (measured once, by hand, on CPU).
"""

from __future__ import annotations

import pytest
import torch

from spikedistill.engine import build, trainer
from spikedistill.engine import checkpoint as ck
from spikedistill.engine import run_training

from engine_helpers import teacher_checkpoint, tiny_config


def _run(tmp_path, name, compile_, teacher):
    cfg = tiny_config(tmp_path, name, ["train.epochs=1", "train.max_steps_per_epoch=3",
                                       "model.T=2", "distill.method=ckd",
                                       f"teacher.checkpoint={teacher}",
                                       f"train.compile={'true' if compile_ else 'false'}"])
    return run_training(cfg)


def test_compile_trains_the_same_losses_and_reports_the_compile_time(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr(build, "COMPILE_BACKEND", "eager")
    seen = {}
    real_wrap = trainer.wrap_for_training

    def spy(distiller, *args, **kwargs):
        real_wrap(distiller, *args, **kwargs)
        seen["student"] = distiller.student
        seen["teacher"] = distiller.teacher

    monkeypatch.setattr(trainer, "wrap_for_training", spy)
    teacher = teacher_checkpoint(tmp_path / "teacher.pt")
    eager = _run(tmp_path, "eager", False, teacher)
    assert "train.compile:" not in capsys.readouterr().out
    assert not isinstance(seen["student"], torch._dynamo.eval_frame.OptimizedModule)
    assert getattr(seen["teacher"], "_compiled_call_impl", None) is None

    compiled = _run(tmp_path, "compiled", True, teacher)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("train.compile:")]
    assert len(lines) == 1 and "first training step took" in lines[0], out
    assert isinstance(seen["student"], torch._dynamo.eval_frame.OptimizedModule)
    assert seen["teacher"]._compiled_call_impl is not None  # compiled in place

    for a, b in zip(eager.history, compiled.history):
        for key in ("loss", "loss_ce", "loss_samd", "loss_nld"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), key
    assert compiled.best_acc == eager.best_acc
    # the checkpoint holds the plain student (no _orig_mod. prefixes)
    keys_e = ck.load_checkpoint(tmp_path / "eager")["model"].keys()
    keys_c = ck.load_checkpoint(tmp_path / "compiled")["model"].keys()
    assert keys_c == keys_e and not any("_orig_mod" in k for k in keys_c)
