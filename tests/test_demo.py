"""``spikedistill demo``, shrunk to a few steps (the shipped recipe is timed by hand, see the
README): a teacher row, mean ± std of ce / kd / ckd over the seeds and the paired differences
against ce, every printed number recomputed from the runs' own result files."""

from __future__ import annotations

import json
import math
import statistics

from spikedistill.analysis.stats import paired_difference
from spikedistill.cli import main

TINY = ["--epochs", "1", "--seeds", "0,1", "--jobs", "1", "--set",
        "train.max_steps_per_epoch=2", "data.test_subset=90", "run.tensorboard=false",
        "run.plots=false"]


def test_demo_prints_teacher_methods_and_paired_differences(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)] + TINY) == 0
    printed = capsys.readouterr().out
    report = printed[printed.index("spikedistill demo: embedded digits"):]

    teacher = json.loads((out / "students" / "results" / "kd-seed0.json").read_text())["teacher"]
    assert f"ANN teacher resnet20: best {100 * teacher['test_acc']:.2f} %" in report
    results = {p.stem: json.loads(p.read_text())
               for p in (out / "students" / "results").glob("*.json")}
    assert sorted(results) == [f"{m}-seed{s}" for m in ("ce", "ckd", "kd") for s in (0, 1)]
    for method in ("ce", "kd", "ckd"):
        best = [100 * results[f"{method}-seed{s}"]["best_acc"] for s in (0, 1)]
        last = [100 * results[f"{method}-seed{s}"]["last_acc"] for s in (0, 1)]
        row = (f"| {method} | 2 | {statistics.fmean(best):.2f} ± {statistics.stdev(best):.2f} | "
               f"{statistics.fmean(last):.2f} ± {statistics.stdev(last):.2f} |")
        assert row in report, row

    shown = []
    for method in ("kd", "ckd"):
        hits = []
        for key, label in (("best_acc", "best"), ("last_acc", "last")):
            d = paired_difference([100 * results[f"{method}-seed{s}"][key] for s in (0, 1)],
                                  [100 * results[f"ce-seed{s}"][key] for s in (0, 1)])
            cell = (f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]" if d.has_interval
                    else f"{d.mean:+.2f} (sd 0: no interval)")  # 2 equal differences
            assert cell in report.split(f"| {method} | 2 | ")[-1].splitlines()[0]
            said = cell if d.has_interval else f"{d.mean:+.2f} points;"
            assert f"{method} - ce, {label} acc: {said}" in report
            if d.claim():
                hits.append(label)
        if hits:
            shown.append(f"{method} ({', '.join(hits)} acc)")
    expected = ", ".join(shown) if shown else "none; at these seeds no method is shown"
    assert f"differences the seeds support (95 % interval excludes 0, at least 3 pairs): {expected}" in report
    assert "| method | paired seeds | Δ best vs ce [95 % CI] |" in report
    # demo_configs/student.yaml holds out a validation split: it, not the test split, chose best.pt
    assert all(r["selected_on"] == "val" for r in results.values())
    assert "best acc: test accuracy of best.pt, chosen on the held-out validation split" in report
    for name in ("compare.md", "compare.csv", "runs.csv", "compare.png"):
        assert (out / "students" / name).is_file()
    assert math.isfinite(float(report.split("total wall time ")[1].split()[0]))


def test_demo_rejects_bad_seeds_before_training(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--seeds", "0,zero"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --seeds: expected comma-separated "
                                               "integers, e.g. 0,1,2; got 'zero'")
    assert not (tmp_path / "d").exists()


def test_demo_names_only_the_differences_whose_interval_excludes_0():
    from spikedistill.analysis import study_summary as S
    from spikedistill.commands.demo import excluding_line

    def rec(method, seed, best, last):
        return {"method": method, "seed": seed, "best_acc": best, "last_acc": last,
                "teacher_acc": None, "loss_means": {}}

    # kd - ce: best d = [+2.0, +2.2, +1.8] (excludes 0), last d = [+3, -3, 0] (includes 0);
    # ckd - ce: d = [+1, -1, +0.5] on both (includes 0)
    ce = [(0.90, 0.90), (0.91, 0.91), (0.92, 0.92)]
    kd = [(0.92, 0.93), (0.932, 0.88), (0.938, 0.92)]
    ckd = [(0.91, 0.91), (0.90, 0.90), (0.925, 0.925)]
    records = [rec(m, s, b, l) for m, accs in (("ce", ce), ("kd", kd), ("ckd", ckd))
               for s, (b, l) in enumerate(accs)]
    rows = S.summarize(records, ["ce", "kd", "ckd"], "ce")
    assert excluding_line(rows) == "differences the seeds support (95 % interval excludes 0, at least 3 pairs): kd (best acc)"
    rows = S.summarize([r for r in records if r["method"] != "kd"], ["ce", "ckd"], "ce")
    assert excluding_line(rows) == ("differences the seeds support (95 % interval excludes 0, at least 3 pairs): none; at these "
                                    "seeds no method is shown better or worse than ce")
