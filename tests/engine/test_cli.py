"""The train-teacher / distill / train / eval sub-commands on the embedded digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikedistill.cli import main
from spikedistill.engine import checkpoint as ck

SRC = Path(__file__).resolve().parents[2] / "src"

SMALL = ["data.train_subset=160", "data.test_subset=80", "train.epochs=2",
         "train.batch_size=16", "train.max_steps_per_epoch=3", "train.eval_batch_size=40",
         "run.progress=false", "run.tensorboard=false", "run.plots=false", "train.threads=1", "train.device=cpu"]


def _run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_teacher_distill_eval_round_trip(tmp_path, capsys):
    rc, out, err = _run(["train-teacher", "--set", "model.name=resnet20", "model.width_mult=1",
                         *SMALL, f"run.out_dir={tmp_path}", "run.name=teacher"], capsys)
    assert rc == 0, err
    assert "best test acc" in out and "loss ce (last epoch)" in out and "- (ANN)" in out
    teacher = ck.load_checkpoint(tmp_path / "teacher" / "best.pt")
    assert teacher["model_name"] == "resnet20"

    # eval of the run directory (best.pt) reproduces the recorded best accuracy
    rc, out, err = _run(["eval", "--checkpoint", str(tmp_path / "teacher"), "--json"], capsys)
    assert rc == 0, err
    info = json.loads(out)
    assert info["model"] == "resnet20" and info["test_images"] == 80
    assert info["top1"] == pytest.approx(teacher["best_acc"])

    # distill from it (--teacher takes the run directory), dotted flags work
    rc, out, err = _run(["distill", "--teacher", str(tmp_path / "teacher"), "--set",
                         "distill.method=kd", *SMALL, f"run.out_dir={tmp_path}",
                         "--run.name", "student", "--model.T", "2"], capsys)
    assert rc == 0, err
    assert "loss kd (last epoch)" in out and "teacher acc" in out and "(T=2)" in out
    student = ck.load_checkpoint(tmp_path / "student" / "last.pt")
    assert student["config"]["teacher"]["checkpoint"].endswith("best.pt")
    assert student["teacher_acc"] == pytest.approx(teacher["best_acc"])

    # eval at another T
    rc, out, err = _run(["eval", "--checkpoint", str(tmp_path / "student" / "best.pt"),
                         "--set", "model.T=3"], capsys)
    assert rc == 0, err
    assert "spiking_resnet20, T=3" in out and "top-1" in out


def test_resume_from_the_cli(tmp_path, capsys):
    base = ["train", "--set", *SMALL, "train.epochs=1", f"run.out_dir={tmp_path}", "run.name=r"]
    assert _run(base, capsys)[0] == 0
    rc, out, err = _run(["train", "--resume", str(tmp_path / "r"), "--train.epochs", "2"], capsys)
    assert rc == 0, err
    assert "resumed at 1" in out
    assert ck.load_checkpoint(tmp_path / "r")["epoch"] == 2


def test_commands_refuse_the_wrong_model_or_method(tmp_path, capsys):
    common = ["--set", *SMALL, f"run.out_dir={tmp_path}"]
    rc, _, err = _run(["train-teacher", *common], capsys)  # default model is a student
    assert rc == 2 and "train-teacher trains an ANN teacher" in err
    rc, _, err = _run(["train", *common, "model.name=resnet20"], capsys)
    assert rc == 2 and "use 'spikedistill train-teacher'" in err
    rc, _, err = _run(["distill", *common], capsys)  # method ce does not use a teacher
    assert rc == 2 and "distill needs a method that learns from a teacher" in err
    rc, _, err = _run(["distill", *common, "distill.method=kd"], capsys)
    assert rc == 2 and "--teacher" in err
    rc, _, err = _run(["distill", "--teacher", str(tmp_path / "none.pt"), *common,
                       "distill.method=kd"], capsys)
    assert rc == 2 and "none.pt' does not exist" in err
    assert not any(tmp_path.glob("*/last.pt"))


def test_eval_errors_exit_2_through_the_entry_point(tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "spikedistill", "eval", "--checkpoint",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: checkpoint") and "truncated or corrupt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_commands_take_the_role_from_model_source(tmp_path, capsys):
    """train-teacher trains a torchvision ANN (its role comes from model.source, not from the
    default model.name); train refuses it, and train-teacher refuses a SpikingJelly student."""
    pytest.importorskip("torchvision")
    tv = ["model.source=torchvision", "model.arch=resnet18", *SMALL, "train.epochs=1",
          "train.max_steps_per_epoch=1", f"run.out_dir={tmp_path}"]
    rc, out, err = _run(["train-teacher", "--set", *tv, "run.name=tv"], capsys)
    assert rc == 0, err
    assert ck.load_checkpoint(tmp_path / "tv" / "last.pt")["model_name"] == "torchvision/resnet18"
    rc, out, err = _run(["train", "--set", *tv, "run.name=tv2"], capsys)
    assert rc == 2 and "torchvision/resnet18 is an ANN teacher" in err
    rc, out, err = _run(["train-teacher", "--set", "model.source=spikingjelly",
                         "model.arch=spiking_resnet18", *SMALL, f"run.out_dir={tmp_path}"], capsys)
    assert rc == 2 and "spikingjelly/spiking_resnet18 is a spiking student" in err
