"""The ablation grids of configs/ablations/: each expands to the intended variants x 3 seeds
with the intended switch set, and every variant builds its method (nothing is trained)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spikedistill.commands.ablate import expand_grid, load_grid
from spikedistill.distill import build_method, method_requires_teacher
from spikedistill.errors import ConfigError
from spikedistill.models import create_model

GRIDS = Path(__file__).resolve().parents[2] / "configs" / "ablations"

#: grid -> {variant: (method, {dotted key: expected resolved value})}
EXPECTED = {
    "samd_scaling": {v: ("samd", {"distill.ckd.samd.scaling": v})
                     for v in ("softmax", "zscore", "l2", "none")},
    "samd_stage": {"last": ("ckd", {"distill.ckd.samd.stages": [-1],
                                    "distill.ckd.samd.teacher_map": "gradcam_label"}),
                   "stage1": ("ckd", {"distill.ckd.samd.stages": [1],
                                      "distill.ckd.samd.teacher_map": "gradcam_label"})},
    "cam_sam_vs_cam_cam": {"cam_sam": ("ckd", {"distill.ckd.samd.student_map": "spike_sum"}),
                           "cam_cam": ("ckd", {"distill.ckd.samd.student_map": "cam"}),
                           "e2kd": ("e2kd", {}), "catkd": ("catkd", {})},
    "nld_noise": {"adaptive": ("nld", {"distill.ckd.nld.mode": "paper"}),
                  "fixed_sigma": ("nld", {"distill.ckd.nld.mode": "fixed",
                                          "distill.ckd.nld.sigma": 1.0}),
                  "no_noise": ("nld", {"distill.ckd.nld.mode": "none"})},
}


def _get(cfg, dotted):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_grid_file_is_covered():
    assert sorted(p.stem for p in GRIDS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_grid_expands_to_the_intended_runs(name):
    runs = expand_grid(GRIDS / f"{name}.yaml")
    want = EXPECTED[name]
    assert [(r.variant, r.seed) for r in runs] == [(v, s) for s in (0, 1, 2) for v in want]
    for r in runs:
        method, switches = want[r.variant]
        assert r.method == method and r.config.distill.method == method
        assert r.config.train.seed == r.seed
        assert r.config.data.name == "digits"
        for key, value in switches.items():
            assert _get(r.config, key) == value, (r.variant, key)
    # variants differ only in the method and the named switches (one recipe)
    base = runs[0].config.to_dict()
    for r in runs:
        d = r.config.to_dict()
        assert {k: d[k] for k in ("model", "data", "teacher")} == \
               {k: base[k] for k in ("model", "data", "teacher")}
        assert {k: v for k, v in d["train"].items() if k != "seed"} == \
               {k: v for k, v in base["train"].items() if k != "seed"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_variant_builds_its_method(name):
    runs = [r for r in expand_grid(GRIDS / f"{name}.yaml") if r.seed == 0]
    for r in runs:
        torch.manual_seed(0)
        student = create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1)
        teacher = create_model("resnet20", num_classes=10, in_channels=1)
        d = build_method(r.method, student,
                         teacher if method_requires_teacher(r.method) else None,
                         r.config.distill)
        d.train()
        x = torch.randn(2, 1, 8, 8)
        _, losses = d(x, torch.tensor([0, 1]))
        assert all(torch.isfinite(v) for v in losses.values())


def test_grid_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text("base: x.yaml\nbaseline: a\nvariants: {a: {method: ce}, b: {method: nope}}\n")
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        expand_grid(bad)
    bad.write_text("base: x.yaml\nbaseline: c\nvariants: {a: {method: ce}, b: {method: kd}}\n")
    with pytest.raises(ConfigError, match="baseline 'c' is not one of the variants"):
        load_grid(bad)
    bad.write_text("base: x.yaml\nbaseline: a\nvariants: {a: {method: ce, sett: {}}, b: {method: kd}}\n")
    with pytest.raises(ConfigError, match="variant 'a': unknown key"):
        load_grid(bad)


def test_ablate_command_runs_a_tiny_grid_and_tabulates_variants(tmp_path, capsys):
    from spikedistill.cli import main

    base = GRIDS.parent / "digits" / "compare_all_methods.yaml"
    grid = tmp_path / "tiny.yaml"
    grid.write_text(f"base: {base}\nseeds: [0]\nbaseline: plain\nvariants:\n"
                    "  plain: {method: ce}\n"
                    "  smooth: {method: ce, set: {train.label_smoothing: 0.1}}\n")
    out = tmp_path / "out"
    rc = main(["ablate", "--grid", str(grid), "--out", str(out), "--set", "train.epochs=1",
               "train.max_steps_per_epoch=1", "train.eval_batch_size=512"])
    assert rc == 0
    assert (out / "plain" / "results" / "ce-seed0.json").is_file()
    assert (out / "smooth" / "results" / "ce-seed0.json").is_file()
    import json
    smooth = json.loads((out / "smooth" / "results" / "ce-seed0.json").read_text())
    assert smooth["config"]["train"]["label_smoothing"] == 0.1
    md = (out / "compare.md").read_text()
    assert "| plain |" in md and "| smooth |" in md and "against plain" in md


def test_ablate_without_a_teacher_stops_before_training(tmp_path, capsys):
    # the grid's second variant needs a teacher: one line naming it, and nothing written
    from spikedistill.cli import main

    base = GRIDS.parent / "digits" / "compare_all_methods.yaml"
    grid = tmp_path / "needs_teacher.yaml"
    grid.write_text(f"base: {base}\nseeds: [0, 1]\nbaseline: plain\nvariants:\n"
                    "  plain: {method: ce}\n  kd: {method: kd}\n")
    out = tmp_path / "out"
    assert main(["ablate", "--grid", str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: methods kd need a teacher: pass --teacher" in err
    assert not out.exists()
