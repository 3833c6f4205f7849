"""A dead student is reported: accuracy at chance, silent spiking layers named."""

from __future__ import annotations

import math

import torch

from engine_helpers import tiny_config
from spikedistill.analysis.study_summary import dead_run_lines
from spikedistill.commands.train import summary_lines
from spikedistill.engine.health import (chance_ceiling, dead_student_text, firing_rates,
                                        is_at_chance, silent_layers)
from spikedistill.engine.trainer import run_training
from spikedistill.models import create_model


def _student(threshold: float):
    torch.manual_seed(0)
    return create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1, width_mult=1,
                        neuron={"threshold": threshold})


def test_firing_rates_are_spike_means_and_a_huge_threshold_silences_every_layer():
    x = torch.randn(6, 1, 8, 8)
    live = _student(1.0)
    seen = {}
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, o.detach().clone()))
             for n, m in live.spiking_modules()]
    live.train()
    rates = firing_rates(live, x)
    for h in hooks:
        h.remove()
    assert live.training  # mode restored
    assert list(rates) == [n for n, _ in live.spiking_modules()]
    assert all(math.isclose(rates[n], float(seen[n].float().mean()), rel_tol=1e-6) for n in rates)
    dead = _student(1e9)
    assert silent_layers(firing_rates(dead, x)) == [n for n, _ in dead.spiking_modules()]
    assert firing_rates(create_model("resnet20", num_classes=10, in_channels=1), x) == {}


def test_chance_band_golden_values():
    # 1/10 + 1.96 * sqrt(0.1 * 0.9 / 450) = 0.1 + 1.96 * 0.0141421 = 0.127719
    assert math.isclose(chance_ceiling(10, 450), 0.12771859, rel_tol=1e-6)
    assert is_at_chance(0.1277, 10, 450) and not is_at_chance(0.128, 10, 450)
    assert not is_at_chance(float("nan"), 10, 450) and not is_at_chance(None, 10, 450)


def test_dead_text_names_layers_and_is_empty_for_a_live_student():
    assert dead_student_text(False, [], 18) == ""
    text = dead_student_text(True, ["layer3.2.lif1", "layer3.2.lif2"], 18, 0.1, 10)
    assert text.startswith("DEAD STUDENT") and "10.00 %" in text
    assert "2 of 18 spiking layers never fire: layer3.2.lif1, layer3.2.lif2" in text


def test_a_silent_run_says_so_in_its_summary_and_in_compare(tmp_path):
    cfg = tiny_config(tmp_path, "dead", ["train.epochs=1", "model.neuron.threshold=1e9"])
    res = run_training(cfg)
    names = [n for n, _ in res.model.spiking_modules()]
    assert res.silent_layers == names and res.spiking_layers == len(names)
    assert res.at_chance  # every logit equal: one class predicted for all 80 test images
    status = [line for line in summary_lines(res) if "status" in line]
    assert len(status) == 1 and "DEAD STUDENT" in status[0] and names[0] in status[0]
    rec = {"method": "ce", "seed": 0, "at_chance": res.at_chance,
           "silent_layers": res.silent_layers, "spiking_layers": res.spiking_layers,
           "last_acc": res.last_acc}
    lines = dead_run_lines([rec, dict(rec, seed=1, at_chance=False, silent_layers=[])])
    assert len(lines) == 1 and lines[0].startswith("ce-seed0: DEAD STUDENT")


def test_a_live_ann_run_has_no_status_line(tmp_path):
    res = run_training(tiny_config(tmp_path, "ann", ["train.epochs=1", "model.name=resnet20"]))
    assert res.silent_layers == [] and res.spiking_layers == 0
    assert any("status" in line for line in summary_lines(res)) == res.at_chance
