"""Bad input gets one line: every case of issue 12 (part 4) through the CLI ``main([...])``,
exit status 2 and a single ``error: ...`` line naming the key or the file and what was expected.
Crafted files that would run code (a checkpoint, a CIFAR pickle) are refused without running it."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spikedistill.cli import main
from spikedistill.engine.checkpoint import make_checkpoint, save_checkpoint
from spikedistill.models import create_model

SMALL = ["data.train_subset=40", "data.test_subset=20", "train.epochs=1", "train.batch_size=8",
         "train.max_steps_per_epoch=1", "train.eval_batch_size=20", "train.threads=1",
         "train.device=cpu", "model.width_mult=1", "model.T=1", "run.progress=false",
         "run.tensorboard=false", "run.plots=false"]


def _one_line_error(argv, capsys) -> str:
    """Run the CLI; assert exit status 2 and exactly one stderr line ``error: ...``; return it."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert rc == 2, (rc, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def _train(tmp_path, *overrides, config=None):
    argv = ["train"] + (["--config", config] if config else [])
    return argv + ["--set", *SMALL, f"run.out_dir={tmp_path / 'runs'}", "run.name=r", *overrides]


class _RunsCode:
    """Unpickling this calls ``exec`` on a line that writes ``marker``: what a crafted file
    does to ``pickle.load``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory) -> Path:
    """A spiking ResNet-20 student checkpoint for the digits (untrained: no run needed)."""
    from spikedistill.config import build_config

    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    torch.manual_seed(0)
    model = create_model("spiking_resnet20", num_classes=10, T=1, in_channels=1, width_mult=1)
    cfg = build_config({}, ["data.name=digits", "model.T=1", "model.width_mult=1"]).to_dict()
    save_checkpoint(make_checkpoint(model=model, config=cfg, epoch=0), path)
    return path


# ---------------------------------------------------------------------------- train section

@pytest.mark.parametrize("override, expected", [
    ("train.momentum=-1", "'train.momentum': expected a value in [0.0, 1.0), got -1.0"),
    ("train.weight_decay=-1", "'train.weight_decay': expected a value >= 0.0, got -1.0"),
    ("train.label_smoothing=2", "'train.label_smoothing': expected a value in [0.0, 1.0), got 2.0"),
    ("train.label_smoothing=1", "'train.label_smoothing': expected a value in [0.0, 1.0), got 1.0"),
])
def test_train_ranges(tmp_path, capsys, override, expected):
    line = _one_line_error(_train(tmp_path, override), capsys)
    assert expected in line
    assert not (tmp_path / "runs").exists()        # refused before anything was written


# ------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("override, expected", [
    ("data.augment.erasing_scale=[0.3,0.1]",
     "'data.augment.erasing_scale': expected [low, high] with low <= high, got [0.3, 0.1]"),
    ("data.augment.erasing_scale=[0.1,1.5]",
     "'data.augment.erasing_scale[1]': expected a value in (0.0, 1.0], got 1.5"),
    ("data.augment.erasing_scale=[0,0.2]",
     "'data.augment.erasing_scale[0]': expected a value in (0.0, 1.0], got 0.0"),
    ("data.augment.erasing_ratio=[3.3,0.3]",
     "'data.augment.erasing_ratio': expected [low, high] with low <= high, got [3.3, 0.3]"),
    ("data.augment.erasing_ratio=[-1,2]",
     "'data.augment.erasing_ratio[0]': expected a value > 0.0, got -1.0"),
])
def test_erasing_intervals(tmp_path, capsys, override, expected):
    assert expected in _one_line_error(_train(tmp_path, override), capsys)


# --------------------------------------------------------------------------- config files

def test_defaults_that_include_themselves(tmp_path, capsys):
    me = tmp_path / "self.yaml"
    me.write_text("defaults: self.yaml\ntrain: {epochs: 1}\n")
    line = _one_line_error(_train(tmp_path, config=me), capsys)
    assert f"config file '{me}': 'defaults: self.yaml' includes a file already being read" in line
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("defaults: b.yaml\n")
    b.write_text("defaults: a.yaml\ntrain: {epochs: 1}\n")
    line = _one_line_error(_train(tmp_path, config=a), capsys)
    assert f"({a.resolve()} -> {b.resolve()} -> {a.resolve()})" in line
    # a chain that ends is fine, and the same base may be reached twice without a cycle
    (tmp_path / "base.yaml").write_text("train: {epochs: 1}\n")
    (tmp_path / "mid.yaml").write_text("defaults: base.yaml\n")
    (tmp_path / "top.yaml").write_text("defaults: mid.yaml\n")
    from spikedistill.config import load_config
    assert load_config(tmp_path / "top.yaml").train.epochs == 1


def test_config_that_is_not_utf8(tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("run: {name: caf\xe9}\n".encode("latin-1"))
    line = _one_line_error(_train(tmp_path, config=bad), capsys)
    assert f"config file '{bad}' is not UTF-8 text (byte 0xe9 at offset 15)" in line


def _alias_bomb() -> str:
    """Nine levels of nine aliases each: 9**9 = 387 M strings once expanded, in ~330 bytes."""
    names = "abcdefghi"
    rows = ["a: &a [" + ",".join("x" * 9) + "]"]
    for prev, name in zip(names, names[1:]):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(rows) + "\n"


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    text = _alias_bomb()
    assert len(text.encode()) <= 360
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text)
    start = time.perf_counter()
    line = _one_line_error(_train(tmp_path, config=bomb), capsys)
    assert time.perf_counter() - start < 5.0
    assert f"config file '{bomb}': YAML anchor &a at line 1, column 4" in line
    assert "anchors and aliases are not allowed" in line
    # an override value cannot carry one either
    line = _one_line_error(_train(tmp_path, "data.mean=[&m 0.5, *m, *m]"), capsys)
    assert "override 'data.mean=[&m 0.5, *m, *m]': YAML anchor &m" in line


# -------------------------------------------------------------------------------- export

@pytest.mark.parametrize("fmt, example", [("nir", "student.nir"), ("state_dict", "student.pth")])
def test_export_target_that_is_a_directory(tmp_path, capsys, student_ckpt, fmt, example):
    target = tmp_path / "out"
    target.mkdir()
    line = _one_line_error(["export", target, "--checkpoint", student_ckpt, "--format", fmt], capsys)
    assert line == (f"error: export target '{target}' is a directory; expected a file path such "
                    f"as '{target / example}'")
    assert list(target.iterdir()) == []            # no temporary file left behind
    (tmp_path / "file").write_text("x")
    line = _one_line_error(["export", tmp_path / "file" / "s.nir", "--checkpoint", student_ckpt,
                            "--format", fmt], capsys)
    assert f"'{tmp_path / 'file'}' is a file, not a folder" in line


# ------------------------------------------------------------------------------- teacher

def test_student_checkpoint_given_as_teacher(tmp_path, capsys, student_ckpt):
    argv = ["distill", "--teacher", student_ckpt, "--set", *SMALL, "distill.method=kd",
            f"run.out_dir={tmp_path / 'runs'}"]
    line = _one_line_error(argv + ["run.name=refused"], capsys)
    assert (f"error: config key 'teacher': teacher checkpoint '{student_ckpt}' is a spiking "
            "network (spiking_resnet20, a student); a teacher is an ANN") in line
    assert "teacher.allow_spiking=true" in line
    # the explicit opt-in distils from the SNN's logits
    rc = main([str(a) for a in argv + ["run.name=allowed", "teacher.allow_spiking=true"]])
    out = capsys.readouterr().out
    assert rc == 0 and "loss kd (last epoch)" in out
    assert (tmp_path / "runs" / "allowed" / "teacher.json").is_file()


# --------------------------------------------------------------------------- checkpoints

def test_checkpoint_refused_as_unsafe_is_not_called_corrupt(tmp_path, capsys, student_ckpt):
    marker = tmp_path / "ran"
    ckpt = torch.load(student_ckpt, weights_only=True)
    ckpt["history"] = [_RunsCode(marker)]
    evil = tmp_path / "evil.pt"
    torch.save(ckpt, evil)
    line = _one_line_error(["eval", "--checkpoint", evil], capsys)
    assert line.startswith(f"error: checkpoint '{evil}' was refused as unsafe: it holds an "
                           "object that torch.load(weights_only=True) does not rebuild (")
    assert "Unsupported global: GLOBAL exec" in line and "truncated" not in line
    assert not marker.exists()
    # a file cut short is still reported as truncated or corrupt
    cut = tmp_path / "cut.pt"
    cut.write_bytes(student_ckpt.read_bytes()[:5000])
    line = _one_line_error(["eval", "--checkpoint", cut], capsys)
    assert f"checkpoint '{cut}' is truncated or corrupt" in line


# -------------------------------------------------------------------------- CIFAR pickles

def test_cifar_pickle_that_runs_code_is_refused(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 4).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    marker = tmp_path / "ran"
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"x": _RunsCode(marker)}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    line = _one_line_error(_train(tmp_path, "data.name=cifar10", f"data.root={tmp_path}",
                                  f"data.cache_dir={tmp_path / 'cache'}"), capsys)
    assert (f"CIFAR pickle {folder / 'batches.meta'} was refused as unsafe: it references "
            "global __builtin__.exec") in line
    assert not marker.exists()
    # the same file does run its code under pickle.load: the refusal is what kept it out
    pickle.loads((folder / "batches.meta").read_bytes())
    assert marker.read_text() == "ran"
    os.unlink(marker)
