"""``spikedistill compare``: argument checks, the summary numbers, and a tiny real comparison on
the embedded digits (1 epoch, a few steps) that is then resumed."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from spikedistill.cli import main
from spikedistill.commands import compare as C
from spikedistill.config import load_config
from spikedistill.errors import ConfigError

RECIPE = """\
model: {name: spiking_resnet20, T: 1, width_mult: 1}
data:
  name: digits
  test_subset: 100
  augment: {random_crop: true, crop_padding: 1, hflip: false, autoaugment: false, random_erasing: 0.0}
train: {epochs: 1, lr: 0.05, batch_size: 32, eval_batch_size: 512, device: cpu, max_steps_per_epoch: 2}
run: {tensorboard: false, plots: false, progress: false}
"""


def test_parse_methods_and_seeds():
    assert C.parse_methods("ce, kd,ckd") == ["ce", "kd", "ckd"]
    assert C.parse_seeds("0,1, 2") == [0, 1, 2]
    with pytest.raises(ConfigError, match="--methods: unknown method 'kdd'"):
        C.parse_methods("ce,kdd")
    with pytest.raises(ConfigError, match="--methods: a method is listed twice"):
        C.parse_methods("ce,ce")
    with pytest.raises(ConfigError, match="--seeds: expected comma-separated integers"):
        C.parse_seeds("0,one")
    with pytest.raises(ConfigError, match="--seeds: a seed is listed twice"):
        C.parse_seeds("1,1")


def test_teacher_required_and_checked(tmp_path, capsys):
    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(RECIPE)
    assert main(["compare", "--config", str(cfg_path), "--methods", "ce,kd", "--seeds", "0",
                 "--out", str(tmp_path / "o")]) == 2
    assert "kd need a teacher" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="does not exist"):
        C.resolve_teacher(str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="neither best.pt nor last.pt"):
        C.resolve_teacher(str(tmp_path))
    assert not (tmp_path / "o" / "runs").exists()


def test_summary_numbers_and_files(tmp_path):
    records = [
        {"method": "ce", "seed": 0, "best_acc": 0.80, "last_acc": 0.70, "teacher_acc": None,
         "loss_means": {"ce": 1.0}},
        {"method": "ce", "seed": 1, "best_acc": 0.90, "last_acc": 0.75, "teacher_acc": None,
         "loss_means": {"ce": 2.0}},
        {"method": "ckd", "seed": 0, "best_acc": 0.85, "last_acc": 0.85, "teacher_acc": 0.95,
         "loss_means": {"ce": 0.5, "samd": 0.01, "nld": 0.3}},
    ]
    rows = C.summarize(records, ["ce", "ckd"])
    ce, ckd = rows
    assert ce["n"] == 2 and ce["seeds"] == [0, 1]
    assert ce["best_mean"] == pytest.approx(85.0)
    assert ce["best_std"] == pytest.approx(((80 - 85) ** 2 + (90 - 85) ** 2) ** 0.5)  # ddof 1
    assert ce["last_mean"] == pytest.approx(72.5)
    assert ce["losses"] == {"ce": pytest.approx(1.5)}
    assert ckd["n"] == 1 and ckd["best_std"] == 0.0 and ckd["teacher_acc"] == pytest.approx(95.0)
    table = C.markdown_table(rows)
    assert "| ce | 2 | 85.00 ± 7.07 | 72.50 ± 3.54 | 1.5000 | - | - |" in table
    assert "| ckd | 1 | 85.00 ± 0.00 | 85.00 ± 0.00 | 0.5000 | 0.0100 | 0.3000 |" in table
    paths = C.write_summary(rows, records, tmp_path, "t")
    with open(paths["csv"]) as fh:
        got = list(csv.DictReader(fh))
    assert [r["method"] for r in got] == ["ce", "ckd"]
    assert float(got[0]["best_acc_std"]) == pytest.approx(7.0711, abs=1e-4)
    assert got[1]["loss_samd"] == "0.010000" and got[0]["loss_samd"] == "-"
    assert paths["png"].stat().st_size > 1000
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_digits_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    from spikedistill.engine import run_training

    cfg_path = tmp_path / "recipe.yaml"
    cfg_path.write_text(RECIPE)
    teacher = run_training(load_config(cfg_path, ["model.name=resnet20", f"run.out_dir={tmp_path}",
                                                  "run.name=teacher"]))
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(cfg_path), "--methods", "ce,ckd-released",
            "--seeds", "0,1", "--teacher", teacher.run_dir, "--out", str(out),
            "--set", "distill.ckd.nld.weight=0.2", "--train.lr", "0.04"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| ce | 2 |" in printed and "| ckd-released | 2 |" in printed
    for name in ("compare.md", "compare.csv", "runs.csv", "compare.png"):
        assert (out / name).is_file(), name

    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert sorted(results) == ["ce-seed0", "ce-seed1", "ckd-released-seed0", "ckd-released-seed1"]
    for key, rec in results.items():
        assert 0.0 <= rec["best_acc"] <= 1.0 and rec["best_acc"] >= rec["last_acc"] - 1e-12
        cfg = rec["config"]
        assert cfg["train"]["seed"] == rec["seed"] and cfg["train"]["lr"] == 0.04
        assert cfg["distill"]["method"] == rec["method"]
        assert cfg["distill"]["ckd"]["nld"]["weight"] == 0.2
    # same seed: the configs differ only in the method and the teacher
    a, b = results["ce-seed0"]["config"], results["ckd-released-seed0"]["config"]
    assert a["train"] == b["train"] and a["data"] == b["data"] and a["model"] == b["model"]
    assert a["teacher"]["checkpoint"] is None
    assert b["teacher"]["checkpoint"].endswith("best.pt")
    assert set(results["ckd-released-seed0"]["loss_means"]) == {"ce", "samd", "nld"}

    with open(out / "compare.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    accs = [100 * results[f"ce-seed{s}"]["best_acc"] for s in (0, 1)]
    assert float(rows["ce"]["best_acc_mean"]) == pytest.approx(statistics.fmean(accs), abs=1e-3)
    assert float(rows["ce"]["best_acc_std"]) == pytest.approx(statistics.stdev(accs), abs=1e-3)
    assert rows["ckd-released"]["n"] == "2"

    # resumable: finished runs are skipped ...
    def boom(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("spikedistill.engine.run_training", boom)
    (out / "compare.md").unlink()
    assert main(argv) == 0
    assert (out / "compare.md").is_file()
    assert capsys.readouterr().out.count("finished earlier, skipped") == 4
    # ... a run whose result is missing continues from its checkpoint ...
    monkeypatch.undo()
    (out / "results" / "ce-seed1.json").unlink()
    assert main(argv) == 0
    assert "continuing the interrupted run" in capsys.readouterr().out
    again = json.loads((out / "results" / "ce-seed1.json").read_text())
    assert again["best_acc"] == results["ce-seed1"]["best_acc"]
    # ... and a changed recipe is refused instead of mixed into the table
    assert main(argv[:-2] + ["--train.lr", "0.03"]) == 2
    assert "train.lr" in capsys.readouterr().err
