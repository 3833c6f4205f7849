"""analyze(): accuracy, counts, teacher energy, accuracy-vs-T table; Markdown/JSON/PNG output."""

import json

import pytest
import torch

from spikedistill.analysis import analyze, write_report
from spikedistill.analysis.report import to_markdown
from spikedistill.errors import ConfigError
from spikedistill.models import create_model

from _analysis_helpers import check_png, randomize_bn


def _data(n_batches=2, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, 1, 8, 8, generator=g), torch.randint(0, 10, (b,), generator=g))
            for _ in range(n_batches)]


def test_analyze_student_with_teacher_and_timesteps(tmp_path):
    torch.manual_seed(0)
    student = randomize_bn(create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1,
                                        last_activation="lif",
                                        neuron={"threshold": 0.5, "backend": "torch"}))
    teacher = randomize_bn(create_model("resnet20", num_classes=10, in_channels=1))
    data = _data(3)
    r = analyze(student, data, batches=2, teacher=teacher, timesteps=[1, 3])
    assert r["T"] == 2 and student.T == 2                    # restored after the sweep
    assert r["images"] == 8                                  # only 2 of the 3 batches
    with torch.no_grad():
        pred = torch.cat([student(x).argmax(1) for x, _ in data[:2]])
    y = torch.cat([y for _, y in data[:2]])
    assert r["top1"] == pytest.approx(100.0 * float((pred == y).float().mean()))
    tot = r["totals"]
    assert tot["energy_mj"] == pytest.approx((4.6 * tot["macs"] + 0.9 * tot["sops"]) * 1e-9)
    assert 0 < tot["firing_rate"] < 1
    t = r["teacher"]
    assert t["macs"] == t["flops"] and t["energy_mj"] == pytest.approx(4.6 * t["flops"] * 1e-9)
    assert r["energy_ratio"] == pytest.approx(t["energy_mj"] / tot["energy_mj"])
    assert [row["T"] for row in r["timesteps"]] == [1, 3]
    # SOPs grow with T (more timesteps of the same spiking layers); stem MACs do not
    assert r["timesteps"][1]["macs"] == pytest.approx(r["timesteps"][0]["macs"])
    paths = write_report(r, tmp_path)
    loaded = json.loads(paths["json"].read_text())
    assert loaded["totals"]["flops"] == tot["flops"] and len(loaded["layers"]) == len(r["layers"])
    md = paths["markdown"].read_text()
    assert "| T | top-1 (%)" in md and "layer1.0.conv1" in md and "teacher resnet20" in md
    check_png(paths["firing_rates"], (300, 200))


def test_analyze_rejects_bad_arguments():
    teacher = create_model("resnet20", num_classes=10, in_channels=1)
    with pytest.raises(ConfigError, match="--timesteps needs a spiking model"):
        analyze(teacher, _data(1), timesteps=[1])
    with pytest.raises(ConfigError, match="--batches"):
        analyze(teacher, _data(1), batches=0)
    with pytest.raises(ConfigError, match="no batches"):
        analyze(teacher, [])


def test_analyze_one_shot_iterator_is_kept_for_the_sweep():
    student = randomize_bn(create_model("spiking_resnet20", num_classes=10, T=1, in_channels=1,
                                        neuron={"backend": "torch"}))
    r = analyze(student, iter(_data(2)), timesteps=[1, 2])
    assert r["images"] == 8 and [row["T"] for row in r["timesteps"]] == [1, 2]
    assert r["timesteps"][0]["top1"] == pytest.approx(r["top1"])   # T = 1 is the model's own T
    assert "Accuracy and energy versus timesteps" in to_markdown(r)


def test_analyze_frames_student_and_mean_frame_teacher(tmp_path):
    torch.manual_seed(0)
    student = randomize_bn(create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1,
                                        neuron={"backend": "torch"}))
    teacher = randomize_bn(create_model("resnet20", num_classes=10, in_channels=1))
    g = torch.Generator().manual_seed(1)
    data = [((torch.rand(2, 4, 1, 8, 8, generator=g) > 0.6).float(),
             torch.randint(0, 10, (4,), generator=g)) for _ in range(2)]
    seen = []
    handle = teacher.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    r = analyze(student, data, teacher=teacher)
    handle.remove()
    assert len(seen) == 2 and all(torch.equal(a, x.mean(0)) for a, (x, _) in zip(seen, data))
    assert r["input"] == "frames" and r["images"] == 8 and r["T"] == 2
    stem = next(row for row in r["layers"] if row["name"] == "stem")
    assert stem["input_kind"] == "spike" and stem["macs"] == 0 and stem["sops"] > 0
    with torch.no_grad():
        t_pred = torch.cat([teacher(x.mean(0)).argmax(1) for x, _ in data])
    y = torch.cat([y for _, y in data])
    assert r["teacher"]["top1"] == pytest.approx(100.0 * float((t_pred == y).float().mean()))
    assert "(frame sequences)" in to_markdown(r)
    paths = write_report(r, tmp_path)
    assert json.loads(paths["json"].read_text())["input"] == "frames"
    with pytest.raises(ConfigError, match="--timesteps.*frame sequences"):
        analyze(student, data, timesteps=[1])
