"""Paths and names (issue 17, part 4): ``run.name``, ``compare`` method names and ``ablate``
variant names follow one rule (one plain folder name, nothing leaves ``--out``); integer variant
names work; a variant's ``set: {distill.method: X}`` is refused instead of ignored; ``compare``
continues a run that has ``best.pt`` but no intact ``last.pt`` as ``train --resume`` does."""

from __future__ import annotations

import json

import pytest

from spikedistill.analysis import study as C
from spikedistill.commands import common
from spikedistill.commands.ablate import expand_grid, load_grid
from spikedistill.engine.run_dir import check_folder_name, check_run_name
from spikedistill.errors import ConfigError

RECIPE = """\
model: {name: spiking_resnet20, T: 1, width_mult: 1}
data: {name: digits, test_subset: 100}
train: {epochs: 2, lr: 0.05, batch_size: 32, eval_batch_size: 512, device: cpu, max_steps_per_epoch: 2}
run: {tensorboard: false, plots: false, progress: false}
"""

BAD = ["../../X", "/abs/X", "..", ".", "a/b", "a\\b", "", " ", "x\0y"]


@pytest.mark.parametrize("name", BAD)
def test_one_rule_for_every_folder_name(name):
    with pytest.raises(ConfigError) as e:
        check_folder_name(name, "variant name", "--out")
    assert "variant name" in str(e.value) and "--out" in str(e.value)
    with pytest.raises(ConfigError, match="run.name"):
        check_run_name(name)
    assert check_folder_name(7, "x", "--out") == "7"


@pytest.mark.parametrize("name", ["../../X", "/abs/X"])
def test_ablate_variant_names_cannot_leave_out(tmp_path, name):
    (tmp_path / "base.yaml").write_text(RECIPE)
    grid = tmp_path / "g.yaml"
    grid.write_text(f"base: base.yaml\nbaseline: a\nvariants: {{a: {{method: ce}}, '{name}': {{method: ce}}}}\n")
    with pytest.raises(ConfigError) as e:
        load_grid(grid)
    assert str(grid) in str(e.value) and repr(name) in str(e.value)


def test_a_compare_method_name_that_is_a_path_is_refused(monkeypatch):
    import spikedistill.distill as D

    monkeypatch.setattr(D, "list_methods", lambda: ["ce", "../evil"])
    with pytest.raises(ConfigError, match="'../evil'"):
        common.parse_methods("ce,../evil")


def test_integer_variant_names_are_folder_names(tmp_path):
    (tmp_path / "base.yaml").write_text(RECIPE)
    grid = tmp_path / "g.yaml"
    grid.write_text("base: base.yaml\nseeds: [0]\nbaseline: 1\nvariants: {1: {method: ce}, 2: {method: ce}}\n")
    g = load_grid(grid)
    assert list(g.variants) == ["1", "2"] and g.baseline == "1"
    assert [r.variant for r in expand_grid(grid)] == ["1", "2"]
    grid.write_text("base: base.yaml\nbaseline: 1\nvariants: {1: {method: ce}, '1': {method: kd}}\n")
    with pytest.raises(ConfigError, match="twice"):
        load_grid(grid)


def test_a_variant_setting_distill_method_is_refused_not_ignored(tmp_path):
    (tmp_path / "base.yaml").write_text(RECIPE)
    grid = tmp_path / "g.yaml"
    grid.write_text("base: base.yaml\nbaseline: a\nvariants: {a: {method: ce}, "
                    "b: {method: ce, set: {distill.method: kd}}}\n")
    with pytest.raises(ConfigError) as e:
        load_grid(grid)
    assert "variant 'b'" in str(e.value) and "method: kd" in str(e.value)


def test_compare_continues_a_run_with_best_pt_but_no_intact_last_pt(tmp_path, capsys):
    from spikedistill.config import load_config

    cfg_path = tmp_path / "recipe.yaml"
    cfg_path.write_text(RECIPE)
    base = load_config(cfg_path)
    out = tmp_path / "cmp"
    rows, _ = C.compare(base, ["ce"], [0], out, baseline=None)
    first = json.loads((out / "results" / "ce-seed0.json").read_text())
    run_dir = out / "runs" / "ce-seed0"
    # a kill inside the save window: the result never written, last.pt cut short
    (out / "results" / "ce-seed0.json").unlink()
    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    assert (run_dir / "best.pt").is_file()
    C.compare(base, ["ce"], [0], out, baseline=None)
    printed = capsys.readouterr().out
    assert "continuing the interrupted run" in printed
    again = json.loads((out / "results" / "ce-seed0.json").read_text())
    assert again["config"] == first["config"]
    assert 0.0 <= again["best_acc"] <= 1.0
    # ... and last.pt missing altogether
    (out / "results" / "ce-seed0.json").unlink()
    (run_dir / "last.pt").unlink()
    C.compare(base, ["ce"], [0], out, baseline=None)
    assert (out / "results" / "ce-seed0.json").is_file()
