"""The trainer's parts: the step context a method receives, teacher provenance (our own
checkpoints and external teachers through ``spikedistill.models.external.build_external_teacher``), the layer
rule (the engine never imports analysis) and the curves callback of the commands."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from engine_helpers import teacher_checkpoint, tiny_config
from spikedistill.distill import register_method
from spikedistill.plugins import METHODS
from spikedistill.distill.base import CrossEntropy
from spikedistill.distill.context import StepContext
from spikedistill.engine import checkpoint as ck
from spikedistill.data.pipeline import open_pipeline
from spikedistill.engine.trainer import run_training
from spikedistill.errors import CheckpointError, ConfigError

SRC = Path(__file__).resolve().parents[2] / "src" / "spikedistill"

SEEN = []  # (method instance id, StepContext) of every training step of the probe method

class ContextProbe(CrossEntropy):
    """Cross-entropy that records the step context it is given."""

    requires_teacher = False

    def forward_train(self, x, y, ctx=None):
        SEEN.append(ctx)
        logits = self.student(x)
        return logits, {"ce": self.cross_entropy(logits, y)}


@pytest.fixture
def context_probe():
    """``test-ctx-probe`` registered for one test only, so that tests iterating over every
    registered method (tests/distill/test_methods.py) never see it, in whatever order the
    files are collected."""
    register_method("test-ctx-probe")(ContextProbe)
    yield "test-ctx-probe"
    METHODS.unregister("test-ctx-probe")


def _expected(epochs, steps, first_epoch=0):
    """(epoch, step, step_in_epoch, progress) written out from the definitions."""
    total = epochs * steps
    return [(e, e * steps + i, i, (e * steps + i) / total)
            for e in range(first_epoch, epochs) for i in range(steps)]


def _seen():
    return [(c.epoch, c.step, c.step_in_epoch, c.progress) for c in SEEN]


def test_step_context_over_two_epochs_and_after_a_resume(tmp_path, context_probe):
    SEEN.clear()
    run_training(tiny_config(tmp_path, "two", ["distill.method=test-ctx-probe", "train.epochs=2"]))
    assert all(isinstance(c, StepContext) for c in SEEN)
    assert {(c.epochs, c.steps_per_epoch, c.total_steps) for c in SEEN} == {(2, 3, 6)}
    assert _seen() == _expected(2, 3)
    assert SEEN[0].progress == 0.0 and SEEN[-1].progress == pytest.approx(5 / 6)

    # crash after epoch 1 of 3, resume: the numbering continues where it stopped
    SEEN.clear()

    def crash(epoch, record):
        if epoch >= 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated"):
        run_training(tiny_config(tmp_path, "r", ["distill.method=test-ctx-probe"]),
                     on_epoch_end=crash)
    assert _seen() == _expected(3, 3)[:3]
    SEEN.clear()
    run_training(None, resume=tmp_path / "r")
    assert _seen() == _expected(3, 3, first_epoch=1)
    assert SEEN[0].step == 3 and SEEN[-1].step == 8 and SEEN[-1].total_steps == 9


def test_a_method_with_the_two_argument_signature_still_trains(tmp_path):
    res = run_training(tiny_config(tmp_path, "ce", ["train.epochs=1", "train.max_steps_per_epoch=1"]))
    assert set(res.loss_means) == {"ce"}


def test_distiller_gets_teacher_frames(tmp_path, monkeypatch):
    from spikedistill.engine import build

    made = []
    real = build.build_distiller

    def spy(cfg, student, teacher, device):
        d = real(cfg, student, teacher, device)
        made.append(d)
        return d

    monkeypatch.setattr("spikedistill.engine.trainer.build_distiller", spy)
    run_training(tiny_config(tmp_path, "f", ["train.epochs=1", "train.max_steps_per_epoch=1",
                                             "teacher.frames=per_step", "train.label_smoothing=0.1"]))
    assert made[0].teacher_frames == "per_step" and made[0].label_smoothing == 0.1


# --------------------------------------------------------------------------------------------
# teacher provenance
# --------------------------------------------------------------------------------------------

def test_own_teacher_provenance_in_run_dir_result_and_summary(tmp_path):
    from spikedistill.commands.train import summary_lines

    path = teacher_checkpoint(tmp_path / "t.pt", constant_class=3)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    res = run_training(tiny_config(tmp_path, "kd", ["distill.method=kd", "train.epochs=1",
                                                    "train.max_steps_per_epoch=1"]),
                       teacher_checkpoint=str(path))
    record = json.loads((tmp_path / "kd" / "teacher.json").read_text())
    assert record["source"] == "spikedistill" and record["arch"] == "resnet20"
    assert record["checkpoint"] == str(path) == record["weights"]
    assert record["sha256"] == digest
    assert record["test_acc"] == pytest.approx(0.1) == res.teacher_acc
    assert record["dataset"] == "digits" and record["frames"] == "mean"
    assert res.teacher == record
    assert ck.load_checkpoint(tmp_path / "kd")["meta"]["teacher"]["sha256"] == digest
    text = "\n".join(summary_lines(res))
    assert digest in text and "spikedistill resnet20" in text and str(path) in text
    assert list(ck.list_temp_files(tmp_path / "kd")) == []


def test_no_teacher_no_record(tmp_path):
    res = run_training(tiny_config(tmp_path, "ce", ["train.epochs=1", "train.max_steps_per_epoch=1"]))
    assert res.teacher is None and not (tmp_path / "ce" / "teacher.json").exists()


def _torchvision_teacher(num_classes, input_shape):
    """A torchvision ResNet-18 for 1-channel inputs, tapped at its four stages."""
    import torchvision

    from spikedistill.models.taps import FeatureTapModel

    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
    return FeatureTapModel(net, features=["layer1", "layer2", "layer3", "layer4"],
                           classifier="fc", input_shape=input_shape, key="teacher")


@pytest.fixture
def external_teacher(tmp_path, monkeypatch):
    """``spikedistill.models.external.build_external_teacher`` replaced by one that builds a
    tapped torchvision ResNet-18 and loads the weights file the config names; records its calls."""
    import spikedistill.models.external as external

    calls = []
    weights = tmp_path / "resnet18.pth"

    def fake_build_teacher(teacher_cfg, num_classes, input_shape, device="cpu"):
        calls.append((teacher_cfg.source, teacher_cfg.arch, num_classes, tuple(input_shape),
                      str(device)))
        model = _torchvision_teacher(fake_build_teacher.classes or num_classes, input_shape)
        if fake_build_teacher.classes is None:  # a 5-class net keeps its random weights
            model.net.load_state_dict(torch.load(teacher_cfg.weights, weights_only=True))
        fake_build_teacher.model = model
        return model.to(device).eval(), {
            "source": teacher_cfg.source, "arch": teacher_cfg.arch,
            "weights": teacher_cfg.weights,
            "sha256": hashlib.sha256(Path(teacher_cfg.weights).read_bytes()).hexdigest()}

    fake_build_teacher.classes = None
    fake_build_teacher.calls = calls
    fake_build_teacher.weights = weights
    torch.save(_torchvision_teacher(10, (1, 8, 8)).net.state_dict(), weights)
    monkeypatch.setattr(external, "build_external_teacher", fake_build_teacher)
    return fake_build_teacher


def _external_cfg(tmp_path, name, weights, extra=()):
    return tiny_config(tmp_path, name, ["distill.method=kd", "train.epochs=1",
                                        "train.max_steps_per_epoch=2", "teacher.source=torchvision",
                                        "teacher.arch=resnet18", f"teacher.weights={weights}",
                                        *extra])


def _manual_accuracy(model, cfg):
    pipe = open_pipeline(cfg.data)
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for x, y in pipe.eval_loader(17, torch.device("cpu")):
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += int(y.numel())
    return correct / total


def test_external_teacher_is_built_recorded_and_frozen(tmp_path, external_teacher):
    w = external_teacher.weights
    cfg = _external_cfg(tmp_path, "ext", w)
    res = run_training(cfg)
    assert external_teacher.calls == [("torchvision", "resnet18", 10, (1, 8, 8), "cpu")]
    record = json.loads((tmp_path / "ext" / "teacher.json").read_text())
    assert record["source"] == "torchvision" and record["arch"] == "resnet18"
    assert record["weights"] == str(w)
    assert record["sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    fresh = _torchvision_teacher(10, (1, 8, 8))
    fresh.net.load_state_dict(torch.load(w, weights_only=True))
    assert record["test_acc"] == pytest.approx(_manual_accuracy(fresh, cfg)) == res.teacher_acc
    assert res.teacher == record and {"ce", "kd"} <= set(res.loss_means)
    # frozen: the teacher the engine trained against still holds the file's weights
    saved = torch.load(w, weights_only=True)
    now = external_teacher.model.net.state_dict()
    assert all(torch.equal(saved[k], now[k].cpu()) for k in saved)


def test_external_teacher_class_count_and_accuracy_checks(tmp_path, external_teacher):
    external_teacher.classes = 5
    with pytest.raises(ConfigError, match=r"teacher.weights.*torchvision:resnet18.*predicts 5 "
                                          r"classes but dataset 'digits' has 10"):
        run_training(_external_cfg(tmp_path, "k5", external_teacher.weights))
    assert not (tmp_path / "k5").exists()
    external_teacher.classes = None
    with pytest.raises(CheckpointError, match="torchvision:resnet18.*below teacher.min_accuracy"):
        run_training(_external_cfg(tmp_path, "low", external_teacher.weights,
                                   ["teacher.min_accuracy=0.99"]))


# --------------------------------------------------------------------------------------------
# layers and the curves callback
# --------------------------------------------------------------------------------------------

def _imported_modules(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_engine_imports_no_higher_layer():
    higher = ("spikedistill.analysis", "spikedistill.commands", "spikedistill.cli")
    bad = [(p.name, m) for p in sorted((SRC / "engine").glob("*.py"))
           for m in _imported_modules(p) if m.startswith(higher)]
    assert bad == []
    ctx = list(_imported_modules(SRC / "distill" / "context.py"))
    assert not any(m.startswith("torch") for m in ctx)


def test_curves_come_from_the_cli_not_the_engine(tmp_path, capsys):
    from spikedistill.cli import main

    base = ["train", "--set", "data.train_subset=160", "data.test_subset=80", "train.epochs=1",
            "train.batch_size=16", "train.max_steps_per_epoch=1", "train.threads=1",
            "train.device=cpu", "run.progress=false", "run.tensorboard=false",
            f"run.out_dir={tmp_path}"]
    assert main(base + ["run.name=cli", "run.plots=true"]) == 0
    assert (tmp_path / "cli" / "curves.png").is_file()
    assert main(base + ["run.name=noplots", "run.plots=false"]) == 0
    assert not any((tmp_path / "noplots").glob("*.png"))
    # the engine alone draws nothing, whatever run.plots says
    run_training(tiny_config(tmp_path, "engine", ["train.epochs=1", "train.max_steps_per_epoch=1",
                                                  "run.plots=true"]))
    assert not any((tmp_path / "engine").glob("*.png"))
    capsys.readouterr()


def test_evaluate_shows_an_ann_frames_as_teacher_frames_says():
    from spikedistill.engine.loop import evaluate

    class ReluSum(nn.Module):  # logits [sum relu(x), 0.5]: class 0 iff the input has mass > 0.5
        is_spiking = False

        def forward(self, x):
            s = torch.relu(x).flatten(1).sum(1)
            return torch.stack([s, torch.full_like(s, 0.5)], dim=1)

    x = torch.stack([torch.ones(3, 1, 2, 2), -torch.ones(3, 1, 2, 2)])  # [T=2, B=3, C, H, W]
    y = torch.zeros(3, dtype=torch.long)
    # mean frame: relu(0) = 0 -> class 1 (wrong); per step: mean(4, 0) = 2 > 0.5 -> class 0
    assert evaluate(ReluSum(), [(x, y)], "cpu", "fp32", frames="mean") == 0.0
    assert evaluate(ReluSum(), [(x, y)], "cpu", "fp32", frames="per_step") == 1.0


def test_distill_command_accepts_an_external_teacher():
    from spikedistill.commands.train import check_command
    from spikedistill.config import build_config

    ext = build_config({}, ["distill.method=kd", "teacher.source=torchvision",
                            "teacher.arch=resnet18", "teacher.weights=w.pth"])
    check_command("distill", ext)  # no teacher.checkpoint needed
    with pytest.raises(ConfigError, match="distill needs a teacher"):
        check_command("distill", build_config({}, ["distill.method=kd"]))
