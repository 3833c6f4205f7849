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


def _golden_counts(model, data, real_layers):
    """Per-image ``(macs, sops, firing rate)`` of ``model`` on ``data``, counted here: every
    Conv2d / Linear call is re-run under torch's own ``FlopCounterMode`` (2 FLOPs per
    multiply-accumulate), the layers named in ``real_layers`` (None: all) count their MACs, every other layer
    ``mean(input != 0)`` times its MACs (synaptic operations of a spike-driven layer); spikes are
    summed over the model's LIF layers."""
    from torch.utils.flop_counter import FlopCounterMode

    calls, spikes = [], []
    handles = [m.register_forward_hook(lambda m, a, o, n=n: calls.append((n, m, a[0].detach())))
               for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    handles += [m.register_forward_hook(lambda m, a, o: spikes.append(o.detach()))
                for _, m in model.spiking_modules()]
    images = 0
    with torch.no_grad():
        for x, _ in data:
            model(x)
            images += x.shape[0]
    for h in handles:
        h.remove()
    macs = sops = 0.0
    with torch.no_grad():
        for name, module, inp in calls:
            with FlopCounterMode(display=False) as counter:
                module(inp)
            dense = counter.get_total_flops() / 2
            if real_layers is None or name in real_layers:
                macs += dense
            else:
                # spikes, or 2x2 averages of spikes before the shortcut's 1x1 conv
                assert bool(((inp * 4) == torch.round(inp * 4)).all()) and 0 <= inp.min() <= inp.max() <= 1
                sops += float((inp != 0).float().mean()) * dense
    fired = sum(float(s.sum()) for s in spikes) / max(1, sum(s.numel() for s in spikes))
    return macs / images, sops / images, fired


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
    # the student's counts against the independent count: stem and head real-valued, the rest
    # spike-driven; energy = 4.6 pJ per MAC + 0.9 pJ per SOP (1 pJ = 1e-9 mJ)
    real = {"stem", "head.0", "head.1"}
    macs, sops, fired = _golden_counts(student, data[:2], real)
    tot = r["totals"]
    assert tot["macs"] == pytest.approx(macs, rel=1e-9)
    assert tot["sops"] == pytest.approx(sops, rel=1e-6) and sops > 0
    assert tot["firing_rate"] == pytest.approx(fired, rel=1e-6) and 0 < fired < 1
    assert tot["energy_mj"] == pytest.approx((4.6 * macs + 0.9 * sops) * 1e-9, rel=1e-6)
    # the teacher: every layer real-valued, its MACs are torch's FLOPs / 2
    t_macs, t_sops, _ = _golden_counts(_AnnWithSpikingModules(teacher), data[:2], None)
    t = r["teacher"]
    assert t_sops == 0 and t["macs"] == t["flops"] == pytest.approx(t_macs, rel=1e-9)
    assert t["energy_mj"] == pytest.approx(4.6 * t_macs * 1e-9, rel=1e-9)
    assert r["energy_ratio"] == pytest.approx(4.6 * t_macs / (4.6 * macs + 0.9 * sops), rel=1e-6)
    # the T sweep: each row is the model counted at that T; SOPs grow with T, stem MACs do not
    assert [row["T"] for row in r["timesteps"]] == [1, 3]
    for row in r["timesteps"]:
        student.T = row["T"]
        g_macs, g_sops, g_fired = _golden_counts(student, data[:2], real)
        assert row["macs"] == pytest.approx(g_macs, rel=1e-9)
        assert row["sops"] == pytest.approx(g_sops, rel=1e-6)
        assert row["firing_rate"] == pytest.approx(g_fired, rel=1e-6)
        assert row["energy_mj"] == pytest.approx((4.6 * g_macs + 0.9 * g_sops) * 1e-9, rel=1e-6)
    student.T = 2
    t1, t3 = r["timesteps"]
    assert t3["sops"] > 2 * t1["sops"] > 0 and t3["sops"] > tot["sops"] > t1["sops"]
    assert t3["macs"] == pytest.approx(t1["macs"]) == pytest.approx(tot["macs"])
    paths = write_report(r, tmp_path)
    loaded = json.loads(paths["json"].read_text())
    assert loaded["totals"]["flops"] == tot["flops"] and len(loaded["layers"]) == len(r["layers"])
    md = paths["markdown"].read_text()
    assert "| T | top-1 (%)" in md and "layer1.0.conv1" in md and "teacher resnet20" in md
    check_png(paths["firing_rates"], (300, 200))


class _AnnWithSpikingModules(torch.nn.Module):
    """An ANN seen through :func:`_golden_counts`: no spiking modules."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def spiking_modules(self):
        return []

    def forward(self, x):
        return self.net(x)


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


def test_analyze_marks_a_silent_network_and_its_energy():
    torch.manual_seed(0)
    model = create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1, width_mult=1,
                         neuron={"threshold": 1e9}).eval()
    res = analyze(model, _data(n_batches=2, b=8))
    names = [n for n, _ in model.spiking_modules()]
    assert res["dead"]["silent_layers"] == names and res["dead"]["spiking_layers"] == len(names)
    md = to_markdown(res)
    assert "DEAD STUDENT" in md and names[-1] in md
    energy_line = next(line for line in md.splitlines() if line.startswith("- energy per image"))
    assert f"SILENT network ({len(names)} of {len(names)} spiking layers never fire)" in energy_line


def test_analyze_of_a_live_network_carries_no_dead_mark():
    torch.manual_seed(0)
    model = create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1, width_mult=1,
                         neuron={"threshold": 1e-6}).eval()  # every positive input fires
    res = analyze(model, _data(n_batches=1, b=64))
    assert res["dead"]["silent_layers"] == [] and "SILENT" not in to_markdown(res)
    assert res["dead"]["at_chance"] == (res["top1"] <= 100 * (0.1 + 1.96 * (0.09 / 64) ** 0.5))
