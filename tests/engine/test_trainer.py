"""The training loop on CPU: exact resume, run records, teachers, user errors."""

from __future__ import annotations

import math
import os

import pytest
import torch

from engine_helpers import (SimulatedCrash, crash_after, state_dicts_equal, teacher_checkpoint,
                            tiny_config)
from spikedistill.analysis.curves import training_callbacks
from spikedistill.config import build_config
from spikedistill.engine import checkpoint as ck
from spikedistill.engine.logging import read_metrics_csv
from spikedistill.data.pipeline import open_pipeline
from spikedistill.engine.trainer import (build_optimizer, build_scheduler, evaluate,
                                         per_rank_batch, run_training)
from spikedistill.errors import CheckpointError, ConfigError, DataError, SpikeDistillError


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    full = run_training(tiny_config(tmp_path, "full"))
    assert full.epochs == 3 and len(full.history) == 3

    with pytest.raises(SimulatedCrash):
        run_training(tiny_config(tmp_path, "crashed"), on_epoch_end=crash_after(1))
    crashed_dir = tmp_path / "crashed"
    assert ck.load_checkpoint(crashed_dir)["epoch"] == 1
    resumed = run_training(None, resume=crashed_dir)  # config taken from the checkpoint
    assert resumed.start_epoch == 1 and resumed.run_dir == str(crashed_dir)

    a = ck.load_checkpoint(tmp_path / "full" / "last.pt")
    b = ck.load_checkpoint(crashed_dir / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    assert state_dicts_equal(a["model"], b["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"]) for k in sa)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 9
    for ra, rb in zip(full.history, resumed.history):
        assert ra["loss_ce"] == rb["loss_ce"] and ra["test_acc"] == rb["test_acc"]
    assert full.best_acc == resumed.best_acc and full.last_acc == resumed.last_acc
    # the CSV of the resumed run holds each epoch exactly once
    rows = read_metrics_csv(crashed_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_run_records_and_result(tmp_path):
    cfg = tiny_config(tmp_path, "rec", ["train.epochs=2", "train.eval_every=2",
                                         "run.tensorboard=true", "run.plots=true"])
    res = run_training(cfg, callbacks=training_callbacks())  # curves: the commands' callback
    run = tmp_path / "rec"
    assert {"config.yaml", "metrics.csv", "last.pt", "best.pt", "tensorboard"} <= {
        p.name for p in run.iterdir()}
    assert list(ck.list_temp_files(run)) == []
    assert any(run.glob("*.png"))  # run.plots
    assert any((run / "tensorboard").iterdir())
    rows = read_metrics_csv(run / "metrics.csv")
    assert list(rows[0])[:4] == ["epoch", "lr", "loss", "loss_ce"]
    assert rows[0]["test_acc"] == "" and rows[1]["test_acc"] != ""  # eval_every=2
    assert res.history[0]["test_acc"] is None and res.best_epoch == 2
    assert 0.0 <= res.best_acc <= 1.0 and res.last_acc == res.best_acc
    assert set(res.loss_means) == {"ce"} and math.isfinite(res.loss_means["ce"])
    assert res.loss_means["ce"] == pytest.approx(res.history[-1]["loss_ce"])
    assert res.global_batch == 16 and res.images_per_s > 0 and res.T == 1
    saved = build_config(__import__("yaml").safe_load((run / "config.yaml").read_text()))
    assert saved.to_dict() == cfg.to_dict()
    # best.pt rebuilds to a model whose accuracy is the recorded best
    model, meta = ck.load_model_from_checkpoint(run / "best.pt")
    acc = evaluate(model, open_pipeline(cfg.data).eval_loader(32, torch.device("cpu")), "cpu",
                   "fp32")
    assert acc == pytest.approx(res.best_acc) and meta["best_acc"] == res.best_acc


def test_evaluate_counts_match_a_manual_loop():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    batches.append((torch.randn(2, 4), torch.randint(0, 3, (2,))))
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    model.train()
    assert evaluate(model, batches, "cpu", "fp32") == correct / 17
    assert model.training  # mode restored


def test_scheduler_shapes():
    p = [torch.nn.Parameter(torch.zeros(1))]
    cfg = build_config({}, ["train.epochs=4", "train.lr=0.2", "train.warmup_epochs=1"]).train
    opt = build_optimizer(p, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(); sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.2 / 5) and lrs[4] == pytest.approx(0.2)  # linear warm-up
    assert lrs[5] == pytest.approx(0.2) and lrs[6] < lrs[5] and lrs[-1] == pytest.approx(0.0, abs=1e-12)       # cosine to 0
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    const = build_config({}, ["train.scheduler=constant", "train.lr=0.1"]).train
    opt = build_optimizer(p, const)
    sched = build_scheduler(opt, const, steps_per_epoch=3)
    for _ in range(7):
        opt.step(); sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    one = build_config({}, ["train.scheduler=onecycle", "train.epochs=2", "train.lr=0.1"]).train
    opt = build_optimizer(p, one)
    sched = build_scheduler(opt, one, steps_per_epoch=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 25)
    peak = 0.0
    for _ in range(20):
        peak = max(peak, opt.param_groups[0]["lr"])
        opt.step(); sched.step()
    assert peak == pytest.approx(0.1, rel=1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 25 / 1e4)
    assert isinstance(build_optimizer(p, build_config({}, ["train.optimizer=adamw"]).train),
                      torch.optim.AdamW)


def test_global_batch_must_divide():
    cfg = build_config({}, ["train.batch_size=32", "train.batch_size_is=global"]).train
    assert per_rank_batch(cfg, 4) == (8, 32)
    with pytest.raises(ConfigError, match="global batch of 32 does not divide evenly over 3"):
        per_rank_batch(cfg, 3)
    cfg = build_config({}, ["train.batch_size=32"]).train
    assert per_rank_batch(cfg, 3) == (32, 96)


def test_teacher_class_count_must_match(tmp_path):
    path = teacher_checkpoint(tmp_path / "t5.pt", 5)
    cfg = tiny_config(tmp_path, "mismatch", ["distill.method=kd"])
    with pytest.raises(CheckpointError, match=r"predicts 5 classes but dataset 'digits' has 10"):
        run_training(cfg, teacher_checkpoint=str(path))
    assert not (tmp_path / "mismatch").exists()


def test_chance_level_teacher_warns_and_min_accuracy_refuses(tmp_path, capsys):
    path = teacher_checkpoint(tmp_path / "t.pt", 10, constant_class=3)
    cfg = tiny_config(tmp_path, "kd", ["distill.method=kd", "train.epochs=1",
                                       "train.max_steps_per_epoch=1"])
    res = run_training(cfg, teacher_checkpoint=str(path))
    assert res.teacher_acc == pytest.approx(0.1)  # balanced 80-image test subset
    err = capsys.readouterr().err
    assert "WARNING" in err and "at or below chance (1/10" in err
    assert ck.load_checkpoint(tmp_path / "kd")["teacher_acc"] == pytest.approx(0.1)
    assert set(res.loss_means) >= {"ce", "kd"}

    strict = tiny_config(tmp_path, "strict", ["distill.method=kd", "teacher.min_accuracy=0.5"])
    with pytest.raises(CheckpointError, match="below teacher.min_accuracy"):
        run_training(strict, teacher_checkpoint=str(path))


def test_method_needing_a_teacher_without_one(tmp_path):
    with pytest.raises(ConfigError, match="needs a teacher"):
        run_training(tiny_config(tmp_path, "noteacher", ["distill.method=kd"]))


def test_an_ann_student_distilled_by_kd_gets_its_teacher(tmp_path):
    # the evidence recipes' positive control (configs/evidence: --set model.name=resnet20
    # --methods ce,kd): an ANN student with a teacher-needing method builds the teacher
    teacher = teacher_checkpoint(tmp_path / "teacher.pt")
    res = run_training(tiny_config(tmp_path, "ann_kd", [
        "model.name=resnet20", "distill.method=kd", f"teacher.checkpoint={teacher}"]))
    assert res.teacher_acc is not None and "loss_kd" in res.history[-1]
    # and a train-teacher run (an ANN with ce) still builds none, whatever its teacher section
    res = run_training(tiny_config(tmp_path, "ann_ce", [
        "model.name=resnet20", f"teacher.checkpoint={tmp_path / 'no_such.pt'}"]))
    assert res.teacher_acc is None


def test_missing_data_root_names_the_path(tmp_path):
    missing = tmp_path / "no_such_cifar"
    cfg = tiny_config(tmp_path, "nodata", ["data.name=cifar10", f"data.root={missing}"])
    with pytest.raises(DataError, match=str(missing)):
        run_training(cfg)


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.epoch"):
        tiny_config(tmp_path, "x", ["train.epoch=3"])
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        run_training(tiny_config(tmp_path, "fp16", ["train.amp=fp16"]))
    with pytest.raises(ConfigError, match="fewer than one batch"):
        run_training(tiny_config(tmp_path, "big", ["train.batch_size=1000"]))


def test_named_run_dir_with_checkpoint_is_not_overwritten(tmp_path):
    cfg = tiny_config(tmp_path, "once", ["train.epochs=1", "train.max_steps_per_epoch=1"])
    run_training(cfg)
    before = (tmp_path / "once" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a checkpoint.*--resume"):
        run_training(cfg)
    assert (tmp_path / "once" / "last.pt").read_bytes() == before
    # resuming a finished run trains nothing and reports the saved result
    res = run_training(None, resume=tmp_path / "once")
    assert res.epochs == 1 and res.start_epoch == 1 and len(res.history) == 1


def test_resume_with_a_different_model_is_refused(tmp_path):
    cfg = tiny_config(tmp_path, "m", ["train.epochs=2", "train.max_steps_per_epoch=1"])
    with pytest.raises(SimulatedCrash):
        run_training(cfg, on_epoch_end=crash_after(1))
    other = tiny_config(tmp_path, "m", ["train.epochs=2", "model.width_mult=2"])
    with pytest.raises(CheckpointError, match="does not match the configured model.*width_mult"):
        run_training(other, resume=tmp_path / "m")


def test_diverging_loss_is_reported(tmp_path):
    cfg = tiny_config(tmp_path, "nan", ["train.epochs=1", "train.lr=1.0e+30",
                                        "train.max_steps_per_epoch=3"])
    with pytest.raises(SpikeDistillError, match="diverged"):
        run_training(cfg)


def test_channels_last_bf16_and_other_options_run(tmp_path):
    cfg = tiny_config(tmp_path, "opts", ["train.epochs=1", "train.max_steps_per_epoch=2",
                                         "train.channels_last=true", "train.amp=bf16",
                                         "train.optimizer=adamw", "train.lr=0.001",
                                         "train.scheduler=onecycle", "train.label_smoothing=0.1",
                                         "train.deterministic=true"])
    res = run_training(cfg)
    assert math.isfinite(res.loss_means["ce"]) and 0.0 <= res.last_acc <= 1.0
    ckpt = ck.load_checkpoint(tmp_path / "opts")
    assert "exp_avg" in next(iter(ckpt["optimizer"]["state"].values()))  # AdamW state saved


def test_a_run_leaves_the_determinism_flags_as_it_found_them(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.are_deterministic_algorithms_enabled())
    assert before == (False, False, False)
    seen = {}

    def during(epoch, record):  # inside the run: train.deterministic=true took effect
        seen["flags"] = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
                         torch.are_deterministic_algorithms_enabled(),
                         os.environ.get("CUBLAS_WORKSPACE_CONFIG"))

    run_training(tiny_config(tmp_path, "det", ["train.epochs=1", "train.max_steps_per_epoch=1",
                                               "train.deterministic=true"]),
                 on_epoch_end=during)
    assert seen["flags"] == (False, True, True, ":4096:8")
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled()) == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    run_training(tiny_config(tmp_path, "fast", ["train.epochs=1", "train.max_steps_per_epoch=1"]),
                 on_epoch_end=during)
    assert seen["flags"][:3] == (True, False, False)
    assert torch.backends.cudnn.benchmark is False


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    import io
    import types

    from spikedistill.engine import logging as run_logging
    from spikedistill.engine import callbacks

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(run_logging, "sys", types.SimpleNamespace(stderr=term))
    monkeypatch.setattr(callbacks, "PROGRESS_EVERY", 1)
    cfg = tiny_config(tmp_path, "bar", ["train.epochs=1", "train.max_steps_per_epoch=2",
                                        "run.progress=true"])
    run_training(cfg)
    shown = term.getvalue()
    assert "epoch 1/1" in shown and "loss=" in shown and "acc=" in shown and "img_s=" in shown

    term.seek(0); term.truncate()
    quiet = tiny_config(tmp_path, "quiet", ["train.epochs=1", "train.max_steps_per_epoch=1"])
    run_training(quiet)  # run.progress=false
    assert term.getvalue() == ""
