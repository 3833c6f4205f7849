"""``spikedistill compare``: argument checks, the summary numbers, and a tiny real comparison on
the embedded digits (1 epoch, a few steps) that is then resumed."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from spikedistill.cli import main
from spikedistill import run_files
from spikedistill.analysis import study as C
from spikedistill.analysis import study_summary as S
from spikedistill.commands import common
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
    assert common.parse_methods("ce, kd,ckd") == ["ce", "kd", "ckd"]
    assert common.parse_seeds("0,1, 2") == [0, 1, 2]
    with pytest.raises(ConfigError, match="--methods: unknown method 'kdd'"):
        common.parse_methods("ce,kdd")
    with pytest.raises(ConfigError, match="--methods: a method is listed twice"):
        common.parse_methods("ce,ce")
    with pytest.raises(ConfigError, match="--seeds: expected comma-separated integers"):
        common.parse_seeds("0,one")
    with pytest.raises(ConfigError, match="--seeds: a seed is listed twice"):
        common.parse_seeds("1,1")


def test_baseline_checked_before_any_run(tmp_path, capsys):
    assert C.parse_baseline("ce", ["kd", "ce"]) == "ce"
    with pytest.raises(ConfigError, match=r"--baseline: 'ce' is not one of --methods \(kd, ckd\)"):
        C.parse_baseline("ce", ["kd", "ckd"])
    with pytest.raises(ConfigError, match="--baseline: 'nope' is not a registered method"):
        C.parse_baseline("nope", ["ce", "kd"])
    with pytest.raises(ConfigError, match="--jobs: expected a positive integer"):
        C.parse_jobs(0)
    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(RECIPE)
    assert main(["compare", "--config", str(cfg_path), "--methods", "ce", "--seeds", "0",
                 "--baseline", "kd", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --baseline: 'kd' is not one of --methods (ce); add it to --methods "
                   "or pass --baseline METHOD"]
    assert not (tmp_path / "o").exists()


def _paired_records():
    """Three seeds of ce and ckd, two of kd (seed 2 missing), one of enof; accuracies chosen so
    that the paired differences are round numbers."""
    acc = {"ce": {0: (0.80, 0.78), 1: (0.84, 0.80), 2: (0.90, 0.85)},
           "ckd": {0: (0.81, 0.83), 1: (0.86, 0.81), 2: (0.93, 0.82)},   # best d = 1, 2, 3
           "kd": {0: (0.70, 0.70), 1: (0.80, 0.718)},                    # best d = -10, -4
           "enof": {1: (0.85, 0.85)}}
    return [{"method": m, "seed": s, "best_acc": b, "last_acc": l, "teacher_acc": 0.99,
             "loss_means": {"ce": 0.1}} for m, by in acc.items() for s, (b, l) in by.items()]


def test_paired_differences_by_hand(tmp_path):
    import math

    records = _paired_records()
    rows = {r["method"]: r for r in S.summarize(records, ["ce", "ckd", "kd", "enof"], "ce")}
    assert rows["ce"]["is_baseline"] and rows["ce"]["paired"] == {}
    # ckd - ce, best: d = [1, 2, 3] points: mean 2, sd 1, half-width t_{0.975,2} / sqrt 3
    t2 = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2))      # 4.302652729749464
    d = rows["ckd"]["paired"]["best"]
    assert rows["ckd"]["paired_seeds"] == [0, 1, 2]
    assert d.mean == pytest.approx(2.0) and d.sd == pytest.approx(1.0)
    assert d.half_width == pytest.approx(t2 / math.sqrt(3), rel=1e-9)
    assert d.excludes_zero is False
    # ckd - ce, last: d = [5, 1, -3]: mean 1, sd 4
    dl = rows["ckd"]["paired"]["last"]
    assert dl.mean == pytest.approx(1.0) and dl.sd == pytest.approx(4.0)
    assert dl.half_width == pytest.approx(t2 * 4 / math.sqrt(3), rel=1e-9)
    # kd pairs with ce on seeds 0 and 1 only: d = [-10, -4], df 1
    k = rows["kd"]["paired"]["best"]
    assert rows["kd"]["paired_seeds"] == [0, 1] and k.n == 2
    assert k.mean == pytest.approx(-7.0) and k.sd == pytest.approx(math.sqrt(18))
    assert k.half_width == pytest.approx(12.706204736174707 * math.sqrt(18) / math.sqrt(2))
    kl = rows["kd"]["paired"]["last"]  # d = [-8, -8.2]: mean -8.1, sd 0.1 sqrt 2
    assert kl.mean == pytest.approx(-8.1) and kl.sd == pytest.approx(0.1 * math.sqrt(2))
    assert kl.half_width == pytest.approx(12.706204736174707 * 0.1, rel=1e-9)
    assert kl.high < 0 and kl.excludes_zero is True
    # enof: one pair, no interval
    e = rows["enof"]["paired"]["best"]
    assert e.n == 1 and e.mean == pytest.approx(1.0) and not e.has_interval

    table = S.paired_table(list(rows.values()))
    assert "| ckd | 3 | +2.00 [-0.48, +4.48] | 0.0742 | +1.00 [-8.94, +10.94] |" in table
    assert "| kd | 2 | -7.00 [-45.12, +31.12] |" in table and "| last |" in table
    assert "| enof | 1 | +1.00 (n=1: no interval) | - | +5.00 (n=1: no interval) | - | " \
           "no interval (n<2) | none (1 seed pair) |" in table
    assert table.startswith("Accuracy compared: best = highest test accuracy over the epochs "
                            "(chosen on the test set itself")
    # kd's last-acc interval excludes 0 but rests on 2 pairs: the table and verdict claim nothing
    assert "| last | none (only 2 seed pairs) |" in table
    verdicts = S.verdict_lines(list(rows.values()))
    assert ("kd - ce, last acc: -8.10 [-9.37, -6.83] points; only 2 seed pairs (at least 3 are "
            "needed to claim a difference): no order can be claimed") in verdicts
    assert not any("is lower" in v or "is higher" in v for v in verdicts)
    assert any(v.startswith("ckd - ce, best acc: +2.00") and "includes 0" in v for v in verdicts)
    assert any(v.startswith("enof - ce, best acc") and "no order can be claimed" in v
               for v in verdicts)

    paths = S.write_summary(list(rows.values()), records, tmp_path, "t")
    md = paths["md"].read_text()
    assert "## Paired differences against ce" in md and table in md
    with open(paths["csv"]) as fh:
        got = {r["method"]: r for r in csv.DictReader(fh)}
    assert got["ce"]["baseline"] == "ce" and got["ce"]["best_diff_mean"] == "-"
    assert got["ckd"]["paired_n"] == "3" and float(got["ckd"]["best_diff_mean"]) == 2.0
    assert float(got["ckd"]["best_diff_ci_low"]) == pytest.approx(2 - t2 / math.sqrt(3), abs=1e-4)
    assert float(got["ckd"]["best_diff_ci_high"]) == pytest.approx(2 + t2 / math.sqrt(3), abs=1e-4)
    assert float(got["ckd"]["best_diff_p"]) == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-6)
    assert got["ckd"]["best_diff_excludes_0"] == "false"
    assert got["kd"]["last_diff_excludes_0"] == "true"
    assert got["enof"]["best_diff_ci_low"] == "-" and got["enof"]["best_diff_excludes_0"] == "-"


def test_no_claim_from_two_seeds_or_equal_differences():
    """The issue's two cases: 2 seeds with equal differences (kd - ce = -2.40 on both) and two
    dead students with a constant gap; neither may be called higher or lower."""
    def rec(m, s, acc):
        return {"method": m, "seed": s, "best_acc": acc, "last_acc": acc, "teacher_acc": None,
                "loss_means": {"samd": 0.002731}}
    records = [rec("ce", 0, 0.5), rec("ce", 1, 0.8), rec("kd", 0, 0.476), rec("kd", 1, 0.776),
               rec("ckd", 0, 0.104), rec("ckd", 1, 0.104)]
    rows = S.summarize(records, ["ce", "kd", "ckd"], "ce")
    by = {r["method"]: r for r in rows}
    assert not by["kd"]["paired"]["best"].has_interval
    verdicts = S.verdict_lines(rows)
    assert ("kd - ce, best acc: -2.40 points; all 2 paired differences are equal (zero "
            "variance): no interval can be computed: no order can be claimed") in verdicts
    assert not any("higher" in v or "lower" in v for v in verdicts)
    table = S.paired_table(rows)
    assert "| kd | 2 | -2.40 (sd 0: no interval) | - | -2.40 (sd 0: no interval) | - | " \
           "no interval (sd 0) | none (all 2 paired differences are equal) |" in table
    # loss terms keep their significant digits
    assert "| 0.002731 |" in S.markdown_table(rows)


def test_caption_names_validation_selection():
    recs = [{"method": "ce", "seed": s, "best_acc": 0.5, "last_acc": 0.4, "teacher_acc": None,
             "loss_means": {}, "config": {"data": {"val_fraction": 0.1}}} for s in (0, 1)]
    rows = S.summarize(recs, ["ce"], "ce")
    assert S.markdown_table(rows).splitlines()[0] == (
        "Accuracy compared: best = test accuracy of the epoch with the best validation accuracy;"
        " last = test accuracy after the last epoch.")
    recs[1]["config"]["data"]["val_fraction"] = 0.0
    assert "chosen on the test set" in S.markdown_table(S.summarize(recs, ["ce"], "ce"))


def test_worker_output_is_printed_from_its_log_as_it_comes(tmp_path):
    """The parent prints each run's new complete lines from logs/KEY.log, prefixed KEY:, as
    the file grows (a partial line waits for its end; \\r ends a line too)."""
    got = []
    tail = C._LogTail(tmp_path, ["kd-seed0", "ce-seed1"], got.append)
    tail.poll()                                              # no file yet: nothing, no error
    with open(tmp_path / "kd-seed0.log", "w", buffering=1) as fh:
        fh.write("epoch 1/3  lr 0.1")
        fh.flush()
        tail.poll()
        assert got == []                                     # no complete line yet
        fh.write("  ce 0.5\n\nepoch 2/3\rprogress\n")
    tail.poll()
    assert got == ["kd-seed0: epoch 1/3  lr 0.1  ce 0.5", "kd-seed0: epoch 2/3",
                   "kd-seed0: progress"]
    tail.poll()
    assert len(got) == 3                                     # each line once


def test_chart_draws_the_paired_intervals():
    from matplotlib.container import ErrorbarContainer

    rows = S.summarize(_paired_records(), ["ce", "ckd", "kd", "enof"], "ce")
    fig = S.chart_figure(rows, "t")
    try:
        assert len(fig.axes) == 2
        ax = fig.axes[1]
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert [c.get_label() for c in bars] == ["best acc (95 % CI)", "last acc (95 % CI)"]
        by = {r["method"]: r for r in rows}
        for c, prefix in zip(bars, ("best", "last")):
            segs = c.lines[2][0].get_segments()          # one vertical segment per interval
            want = [by[m]["paired"][prefix] for m in ("ckd", "kd")]
            assert len(segs) == 2
            for seg, d in zip(segs, want):
                assert sorted(seg[:, 1]) == [pytest.approx(d.low), pytest.approx(d.high)]
        # the single pair (enof) is a lone marker, no bar; the zero line is drawn
        lone = [ln for ln in ax.lines if ln.get_label().endswith("(no interval)")]
        assert len(lone) == 2 and all(ln.get_ydata()[0] == pytest.approx(
            by["enof"]["paired"][p].mean) for ln, p in zip(lone, ("best", "last")))
        assert any(list(ln.get_ydata()) == [0.0, 0.0] for ln in ax.lines)
        assert [t.get_text() for t in ax.texts] == ["no\ninterval\n(n=1)"] * 2
        assert fig.axes[0].get_ylim()[0] == 0.0  # accuracy from 0 %
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)


def test_teacher_required_and_checked(tmp_path, capsys):
    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(RECIPE)
    assert main(["compare", "--config", str(cfg_path), "--methods", "ce,kd", "--seeds", "0",
                 "--out", str(tmp_path / "o")]) == 2
    assert "kd need a teacher" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="does not exist"):
        run_files.resolve_teacher(str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="neither best.pt nor last.pt"):
        run_files.resolve_teacher(str(tmp_path))
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
    rows = S.summarize(records, ["ce", "ckd"])
    ce, ckd = rows
    assert ce["n"] == 2 and ce["seeds"] == [0, 1]
    assert ce["best_mean"] == pytest.approx(85.0)
    assert ce["best_std"] == pytest.approx(((80 - 85) ** 2 + (90 - 85) ** 2) ** 0.5)  # ddof 1
    assert ce["last_mean"] == pytest.approx(72.5)
    assert ce["losses"] == {"ce": pytest.approx(1.5)}
    assert ckd["n"] == 1 and ckd["best_std"] == 0.0 and ckd["teacher_acc"] == pytest.approx(95.0)
    table = S.markdown_table(rows)
    assert "| ce | 2 | 85.00 ± 7.07 | 72.50 ± 3.54 | 1.500 | - | - |" in table
    assert "| ckd | 1 | 85.00 ± 0.00 | 85.00 ± 0.00 | 0.5000 | 0.01000 | 0.3000 |" in table
    paths = S.write_summary(rows, records, tmp_path, "t")
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
    assert "| ckd-released | 2 | " in printed.split("Δ best vs ce")[1]
    for name in ("compare.md", "compare.csv", "runs.csv", "compare.png"):
        assert (out / name).is_file(), name

    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert sorted(results) == ["ce-seed0", "ce-seed1", "ckd-released-seed0", "ckd-released-seed1"]
    for rec in results.values():
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
    # the paired column: ckd-released - ce, matched by seed, from the runs' own results
    import math

    from spikedistill.analysis.stats import t_quantile
    for key, col in (("best_acc", "best"), ("last_acc", "last")):
        d = [100 * (results[f"ckd-released-seed{s}"][key] - results[f"ce-seed{s}"][key])
             for s in (0, 1)]
        mean, half = statistics.fmean(d), t_quantile(0.975, 1) * statistics.stdev(d) / math.sqrt(2)
        r = rows["ckd-released"]
        assert r["baseline"] == "ce" and r["paired_n"] == "2"
        assert float(r[f"{col}_diff_mean"]) == pytest.approx(mean, abs=1e-3)
        if half > 0:
            assert float(r[f"{col}_diff_ci_low"]) == pytest.approx(mean - half, abs=1e-3)
            assert float(r[f"{col}_diff_ci_high"]) == pytest.approx(mean + half, abs=1e-3)
    assert "## Paired differences against ce" in (out / "compare.md").read_text()

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
    # the energy column (default: 16 test images, cost model 45nm_fp32): every run's best.pt
    # counted on the same images, E = 4.6 pJ MACs + 0.9 pJ SOPs per image, tabulated with the
    # paired statistics of the accuracy
    with open(out / "compare.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    energy = {}
    for key, rec in results.items():
        e = rec["energy"]
        assert e["images"] == 16 and e["cost_model"] == "45nm_fp32"
        assert e["sops"] > 0 and e["macs"] > 0
        assert e["energy_mj"] == pytest.approx((4.6 * e["macs"] + 0.9 * e["sops"]) * 1e-9,
                                               rel=1e-12)
        assert e["energy_mj_ci95"][0] <= e["energy_mj"] <= e["energy_mj_ci95"][1]
        energy[key] = e["energy_mj"]
    ce_e = [energy[f"ce-seed{s}"] for s in (0, 1)]
    assert float(rows["ce"]["energy_mj_mean"]) == pytest.approx(statistics.fmean(ce_e), rel=1e-3)
    assert float(rows["ce"]["energy_mj_std"]) == pytest.approx(statistics.stdev(ce_e), rel=1e-3,
                                                               abs=1e-12)
    d = [energy[f"ckd-released-seed{s}"] - energy[f"ce-seed{s}"] for s in (0, 1)]
    assert float(rows["ckd-released"]["energy_diff_mean"]) == pytest.approx(statistics.fmean(d),
                                                                            rel=1e-3, abs=1e-12)
    assert rows["ce"]["cost_model"] == "45nm_fp32" and rows["ce"]["energy_images"] == "16"
    assert "energy mJ/image" in printed and "cost model 45nm_fp32 (4.6 pJ / MAC" in printed
    assert "Δ energy vs ce mJ [95 % CI]" in printed
    # another cost model or number of images: the runs are counted again (not retrained), on
    # the same images for every run
    monkeypatch.setattr("spikedistill.engine.run_training", boom)
    assert main(argv + ["--cost-model", "45nm_int8", "--energy-images", "4"]) == 0
    monkeypatch.undo()
    assert "cost model 45nm_int8 (0.23 pJ / MAC, 0.03 pJ / AC" in capsys.readouterr().out
    for key in results:
        e = json.loads((out / "results" / f"{key}.json").read_text())["energy"]
        assert e["images"] == 4 and e["cost_model"] == "45nm_int8"
        assert e["energy_mj"] == pytest.approx((0.23 * e["macs"] + 0.03 * e["sops"]) * 1e-9,
                                               rel=1e-12)
    # ... and a changed recipe is refused instead of mixed into the table
    assert main(argv[:-2] + ["--train.lr", "0.03"]) == 2
    assert "train.lr" in capsys.readouterr().err

    # --jobs 2: the same runs in two worker processes give the same numbers, each run's output
    # kept in logs/
    out2 = tmp_path / "cmp2"
    argv2 = [a if a != str(out) else str(out2) for a in argv]
    argv2[argv2.index("ce,ckd-released")] = "ce"
    assert main(argv2 + ["--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 runs in 2 worker processes" in printed
    # every run's epoch lines are streamed to the console, prefixed with the run
    assert "ce-seed0: epoch 1/1" in printed and "ce-seed1: epoch 1/1" in printed
    assert printed.index("ce-seed0: epoch 1/1") < printed.index("compare: ce-seed0: best")
    for s in (0, 1):
        rec = json.loads((out2 / "results" / f"ce-seed{s}.json").read_text())
        assert rec["best_acc"] == results[f"ce-seed{s}"]["best_acc"]
        assert rec["last_acc"] == results[f"ce-seed{s}"]["last_acc"]
        assert rec["loss_means"] == results[f"ce-seed{s}"]["loss_means"]
        assert "epoch 1/1" in (out2 / "logs" / f"ce-seed{s}.log").read_text()


def test_timestep_columns_in_the_summary(tmp_path):
    records = [
        {"method": "ce", "seed": 0, "best_acc": 0.8, "last_acc": 0.8, "teacher_acc": None,
         "loss_means": {}, "top1_by_timestep": [50.0, 70.0, 80.0]},
        {"method": "ce", "seed": 1, "best_acc": 0.9, "last_acc": 0.9, "teacher_acc": None,
         "loss_means": {}, "top1_by_timestep": [60.0, 80.0, 90.0]},
        {"method": "s2w", "seed": 0, "best_acc": 0.85, "last_acc": 0.85, "teacher_acc": None,
         "loss_means": {}, "top1_by_timestep": [75.0, 80.0, 85.0]},
    ]
    rows = S.summarize(records, ["ce", "s2w"])
    assert rows[0]["by_timestep"] == [55.0, 75.0, 85.0]
    table = S.markdown_table(rows)
    assert "| method | n | best acc % | last acc % | T'=1 % | T'=2 % | T'=3 % |" in table
    assert "| ce | 2 | 85.00 ± 7.07 | 85.00 ± 7.07 | 55.00 | 75.00 | 85.00 |" in table
    paths = S.write_summary(rows, records, tmp_path, "t")
    with open(paths["csv"]) as fh:
        got = {r["method"]: r for r in csv.DictReader(fh)}
    assert got["s2w"]["top1_T1_mean"] == "75.0000" and got["ce"]["top1_T3_mean"] == "85.0000"
    # without the curves (a plain compare) there are no such columns
    plain = [{k: v for k, v in r.items() if k != "top1_by_timestep"} for r in records]
    assert "T'=1" not in S.markdown_table(S.summarize(plain, ["ce", "s2w"]))


def test_compare_every_timestep_end_to_end(tmp_path, capsys):
    cfg_path = tmp_path / "recipe.yaml"
    cfg_path.write_text(RECIPE.replace("T: 1", "T: 2"))
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(cfg_path), "--methods", "ce,s2w", "--seeds", "0",
            "--out", str(out), "--every-timestep"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "T'=1 %" in printed and "T'=2 %" in printed
    for key in ("ce-seed0", "s2w-seed0"):
        rec = json.loads((out / "results" / f"{key}.json").read_text())
        curve = rec["top1_by_timestep"]
        assert len(curve) == 2
        # T' = T is the run's own evaluation of best.pt on the same test images, T' = 1 the
        # checkpoint rebuilt with model.T = 1 (eval --set model.T=1)
        assert curve[-1] == pytest.approx(100 * rec["best_acc"], abs=1e-6)
        assert main(["eval", "--checkpoint", rec["run_dir"], "--json", "--set", "model.T=1"]) == 0
        one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert curve[0] == pytest.approx(100 * one["top1"], abs=1e-6)
    with open(out / "compare.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert float(rows["s2w"]["top1_T2_mean"]) == pytest.approx(
        100 * json.loads((out / "results" / "s2w-seed0.json").read_text())["best_acc"], abs=1e-3)
    assert main(argv) == 0                       # stored curves are reused, nothing re-evaluated
    assert "top-1 at T'" not in capsys.readouterr().out


def test_deit_runs_get_the_distillation_head_and_the_others_do_not(tmp_path, monkeypatch):
    from types import SimpleNamespace

    seen = {}

    def fake(cfg, callbacks=None):
        seen[cfg.distill.method] = cfg.model.distill_head
        return SimpleNamespace(**{k: None for k in C.RESULT_KEYS})

    monkeypatch.setattr("spikedistill.engine.run_training", fake)
    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(RECIPE)
    base = load_config(cfg_path)
    for method in ("ce", "deit"):
        C.run_one(base, method, 0, "teacher.pt", tmp_path / "o", log=lambda *a: None)
    assert seen == {"ce": False, "deit": True} and base.model.distill_head is False


def test_energy_beside_the_accuracy_by_hand(tmp_path):
    """Each method's energy per image: mean +- sample std over seeds, and its paired difference
    against the baseline with the accuracy's statistics (energies chosen so that the differences
    ckd - ce are 1, 2, 3 uJ: the p-value is the accuracy case's, 1 - sqrt(12/14))."""
    import math

    records = _paired_records()
    mj = {("ce", 0): 0.010, ("ce", 1): 0.012, ("ce", 2): 0.014,
          ("ckd", 0): 0.011, ("ckd", 1): 0.014, ("ckd", 2): 0.017}
    for r in records:
        if (r["method"], r["seed"]) in mj:
            r["energy"] = {"requested": 8, "images": 8, "cost_model": "45nm_fp32",
                           "e_mac_pj": 4.6, "e_ac_pj": 0.9, "source": "Horowitz ISSCC 2014",
                           "energy_mj": mj[r["method"], r["seed"]], "sops": 1.0, "macs": 1.0,
                           "not_counted": {"aten.max_pool2d": 2}}
    rows = {r["method"]: r for r in S.summarize(records, ["ce", "ckd", "kd", "enof"], "ce")}
    assert rows["ce"]["energy_mean"] == pytest.approx(0.012)
    assert rows["ce"]["energy_std"] == pytest.approx(0.002)
    assert rows["ckd"]["energy_mean"] == pytest.approx(0.014)
    assert rows["ckd"]["energy_std"] == pytest.approx(0.003)
    assert rows["kd"]["energy_n"] == 0 and rows["kd"]["paired_energy"] is None
    t2 = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2))      # t_{0.975, 2}
    d = rows["ckd"]["paired_energy"]
    assert d.n == 3 and d.mean == pytest.approx(0.002) and d.sd == pytest.approx(0.001)
    assert d.half_width == pytest.approx(t2 * 0.001 / math.sqrt(3), rel=1e-9)
    assert d.p_value == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-6)

    table = S.markdown_table(list(rows.values()))
    assert "| method | n | best acc % | last acc % | energy mJ/image |" in table
    assert "| ce | 3 | 84.67 ± 5.03 | 81.00 ± 3.61 | 0.012 ± 0.002 |" in table
    assert "| kd | 2 | 75.00 ± 7.07 | 70.90 ± 1.27 | - |" in table
    assert ("cost model 45nm_fp32 (4.6 pJ / MAC, 0.9 pJ / AC: Horowitz ISSCC 2014)" in table
            and "on 8 test images" in table and "Not counted: aten.max_pool2d (2)." in table)
    paired = S.paired_table(list(rows.values()))
    assert "Δ energy vs ce mJ [95 % CI] | p (energy) |" in paired
    assert "| +0.002 [-0.0004841, +0.004484] | 0.0742 |" in paired
    assert any(v.startswith("ckd - ce, energy per image: +0.002 [") and "includes 0" in v
               for v in S.energy_verdict_lines(list(rows.values())))

    paths = S.write_summary(list(rows.values()), records, tmp_path, "t")
    with open(paths["csv"]) as fh:
        got = {r["method"]: r for r in csv.DictReader(fh)}
    assert float(got["ckd"]["energy_mj_mean"]) == pytest.approx(0.014)
    assert float(got["ckd"]["energy_diff_mean"]) == pytest.approx(0.002)
    assert float(got["ckd"]["energy_diff_ci_low"]) == pytest.approx(
        0.002 - t2 * 0.001 / math.sqrt(3), rel=1e-3)
    assert float(got["ckd"]["energy_diff_p"]) == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-6)
    assert got["ce"]["energy_diff_mean"] == "-" and got["kd"]["energy_mj_mean"] == "-"
    assert got["ckd"]["cost_model"] == "45nm_fp32" and got["ckd"]["energy_images"] == "8"
    with open(paths["runs_csv"]) as fh:
        runs = [r for r in csv.DictReader(fh) if r["method"] == "ckd"]
    assert [float(r["energy_mj"]) for r in runs] == [0.011, 0.014, 0.017]
    # without energy, no energy column anywhere
    plain = S.summarize(_paired_records(), ["ce", "ckd"], "ce")
    assert "energy" not in S.markdown_table(plain) and "energy" not in S.paired_table(plain)
    S.write_summary(plain, _paired_records(), tmp_path / "plain", "t")
    assert "energy" not in (tmp_path / "plain" / "compare.csv").read_text()


def test_energy_settings_checked_before_any_run(tmp_path):
    base = load_config(overrides=["data.name=digits"])
    with pytest.raises(ConfigError, match="--energy-images: expected a non-negative integer"):
        C.compare(base, ["ce"], [0], tmp_path, baseline=None, energy_images=-1)
    with pytest.raises(ConfigError, match="--cost-model: expected one of 45nm_fp32"):
        C.compare(base, ["ce"], [0], tmp_path, baseline=None, energy_images=4,
                  cost_model="7nm")
    assert not (tmp_path / "runs").exists()


def test_energy_images_0_reports_no_energy_stored_by_an_earlier_compare(tmp_path, monkeypatch):
    """``--energy-images 0`` (the help: "no energy column") leaves out the energies an earlier
    compare stored in the result files; with a count they are reported."""
    def stored(*args, **kwargs):
        records = _paired_records()
        for r in records:
            r["energy"] = {"requested": 8, "images": 8, "cost_model": "45nm_fp32",
                           "e_mac_pj": 4.6, "e_ac_pj": 0.9, "source": "Horowitz ISSCC 2014",
                           "energy_mj": 0.01 + r["seed"] / 1000, "sops": 1.0, "macs": 1.0,
                           "not_counted": {}}
        return records

    monkeypatch.setattr(C, "run_all", stored)
    (tmp_path / "t.pt").write_bytes(b"")
    base = load_config(overrides=["data.name=digits"])
    C.compare(base, ["ce", "ckd"], [0, 1, 2], tmp_path / "off", teacher=str(tmp_path / "t.pt"),
              energy_images=0)
    off = (tmp_path / "off" / "compare.md").read_text()
    assert "energy" not in off and "energy" not in (tmp_path / "off" / "compare.csv").read_text()
    C.compare(base, ["ce", "ckd"], [0, 1, 2], tmp_path / "on", teacher=str(tmp_path / "t.pt"),
              energy_images=8)                    # the stored counts match: reused, not recounted
    assert "energy mJ/image" in (tmp_path / "on" / "compare.md").read_text()
