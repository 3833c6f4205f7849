"""End to end: analyze / visualize / plot / export on real one-epoch digits runs."""

import json

import nir
import pytest
import torch

from spikedistill.cli import main

from _analysis_helpers import check_png


@pytest.mark.slow
def test_analyze_command(digits_runs, tmp_path, capsys):
    student, teacher = digits_runs
    out = tmp_path / "an"
    rc = main(["analyze", "--checkpoint", str(student / "best.pt"), "--teacher",
               str(teacher / "best.pt"), "--batches", "1", "--timesteps", "1,2", "--out",
               str(out), "--device", "cpu", "--data.test_subset", "32"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "# Analysis of spiking_resnet20" in printed and "teacher resnet20" in printed
    r = json.loads((out / "report.json").read_text())
    assert r["images"] == 32 and r["T"] == 2                # test_subset override applied
    assert [row["T"] for row in r["timesteps"]] == [1, 2]
    assert r["teacher"]["flops"] > 0 and r["totals"]["energy_mj"] > 0
    check_png(out / "firing_rates.png", (300, 200))
    assert main(["analyze", "--checkpoint", str(student / "best.pt"), "--timesteps", "0"]) == 2
    assert "--timesteps" in capsys.readouterr().err


@pytest.mark.slow
def test_analyze_builds_its_teacher_as_training_does(digits_runs, tmp_path, capsys):
    """``analyze --teacher`` goes through the training builder
    (:func:`spikedistill.analysis.loading.load_teacher`): a teacher of another dataset (5
    classes for the 10 digits) is one error line, not an energy column of a wrong model."""
    from spikedistill.engine.checkpoint import make_checkpoint, save_checkpoint
    from spikedistill.models import create_model

    student, _ = digits_runs
    bad = tmp_path / "t5.pt"
    save_checkpoint(make_checkpoint(model=create_model("resnet20", num_classes=5, in_channels=1,
                                                       width_mult=1), config={}, epoch=1), bad)
    rc = main(["analyze", "--checkpoint", str(student / "best.pt"), "--teacher", str(bad),
               "--batches", "1", "--out", str(tmp_path / "an"), "--device", "cpu"])
    assert rc == 2
    assert "t5.pt' predicts 5 classes but dataset 'digits' has 10" in capsys.readouterr().err


@pytest.mark.slow
def test_analyze_energy_distribution(digits_runs, tmp_path, capsys):
    student, _ = digits_runs
    out = tmp_path / "en"
    assert main(["analyze", "--checkpoint", str(student / "best.pt"), "--batches", "1",
                 "--energy-images", "6", "--cost-model", "45nm_int8", "--out", str(out),
                 "--device", "cpu", "--data.test_subset", "32"]) == 0
    e = json.loads((out / "energy.json").read_text())
    r = json.loads((out / "report.json").read_text())
    assert e["images"] == 6 and e["cost_model"]["name"] == "45nm_int8"
    assert len(e["per_step"]) == r["T"] and e["totals"]["energy_mj"]["mean"] > 0
    lo, hi = e["totals"]["sops"]["ci95"]
    assert lo <= e["totals"]["sops"]["mean"] <= hi
    assert "45nm_int8" in (out / "energy.md").read_text()
    assert main(["analyze", "--checkpoint", str(student / "best.pt"), "--cost-model", "7nm"]) == 2
    assert "--cost-model" in capsys.readouterr().err


@pytest.mark.slow
def test_visualize_command(digits_runs, tmp_path, capsys):
    student, teacher = digits_runs
    out = tmp_path / "maps.png"
    # no --teacher: the student run's teacher.checkpoint is used
    assert main(["visualize", "--student", str(student / "best.pt"), "--n", "4", "--out",
                 str(out), "--device", "cpu"]) == 0
    check_png(out, (600, 400))
    rc = main(["visualize", "--student", str(teacher / "best.pt"), "--teacher",
               str(teacher / "best.pt")])
    assert rc == 2 and "not a spiking student" in capsys.readouterr().err


@pytest.mark.slow
def test_plot_command(digits_runs, tmp_path):
    student, teacher = digits_runs
    assert main(["plot", str(student)]) == 0
    check_png(student / "curves.png", (900, 300))
    assert main(["plot", str(student), str(teacher), "--out", str(tmp_path / "both.png")]) == 0
    check_png(tmp_path / "both.png", (800, 300))
    assert main(["plot", str(tmp_path / "nothing")]) == 2


@pytest.mark.slow
def test_export_command(digits_runs, tmp_path, capsys):
    from spikedistill.analysis.nir_export import run_nir
    from spikedistill.engine import load_checkpoint, load_model_from_checkpoint
    from spikedistill.engine.checkpoint import make_checkpoint, save_checkpoint
    from spikedistill.models import create_model

    student, teacher = digits_runs
    out = tmp_path / "s.nir"
    assert main(["export", "--checkpoint", str(student / "best.pt"), "--format", "nir",
                 str(out)]) == 0
    g = nir.read(str(out))
    assert list(g.nodes["input"].input_type["input"]) == [1, 8, 8]
    model, _ = load_model_from_checkpoint(student / "best.pt")
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = model.double()(x)
    assert torch.allclose(run_nir(g, x, 2).double(), ref, atol=1e-4)
    # an ANN is refused; a ReLU-last student is refused unless --allow-relu
    assert main(["export", "--checkpoint", str(teacher / "best.pt"), str(tmp_path / "t.nir")]) == 2
    assert "spiking ResNet students only" in capsys.readouterr().err
    cfg = load_checkpoint(student / "best.pt")["config"]
    relu = create_model("spiking_resnet20", num_classes=10, T=2, in_channels=1,
                        last_activation="relu")
    save_checkpoint(make_checkpoint(model=relu, config=cfg, epoch=0), tmp_path / "relu.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "relu.pt"), str(tmp_path / "r.nir")]) == 2
    assert "--allow-relu" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "relu.pt"), "--allow-relu",
                 "--T", "4", str(tmp_path / "r.nir")]) == 0
    assert "warning:" in capsys.readouterr().out
    g = nir.read(str(tmp_path / "r.nir"))
    assert int(g.metadata["T"]) == 4 and str(g.nodes["layer3.2.act2"].metadata["activation"]) == "relu"


def test_export_state_dict_command(digits_runs, tmp_path, capsys):
    """``export --format state_dict``: the teacher's weights as a plain state dict that a fresh
    network of the same architecture loads strictly, with equal outputs."""
    from spikedistill.engine import load_model_from_checkpoint
    from spikedistill.models import create_model

    _, teacher = digits_runs
    out = tmp_path / "teacher.pth"
    assert main(["export", "--checkpoint", str(teacher / "best.pt"), "--format", "state_dict",
                 str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    state = torch.load(out, weights_only=True)
    model, meta = load_model_from_checkpoint(teacher / "best.pt")
    fresh = create_model(meta["model_name"], **meta["model_kwargs"])
    fresh.load_state_dict(state, strict=True)
    fresh.eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--format",
                 "state_dict", str(tmp_path / "x.pth")]) == 2
    assert "missing.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_visualize_takes_an_external_teacher(digits_runs, tmp_path, capsys):
    """The run's teacher given as plain weights through the python source (as a torchvision /
    timm teacher is) draws the same maps as the spikedistill checkpoint it was exported from."""
    import numpy as np
    from PIL import Image

    from spikedistill.models import export_state_dict

    student, teacher = digits_runs
    weights = tmp_path / "teacher.pth"
    export_state_dict(str(teacher / "best.pt"), str(weights))
    same = tmp_path / "from_checkpoint.png"
    assert main(["visualize", "--student", str(student / "best.pt"), "--n", "4", "--out",
                 str(same), "--device", "cpu"]) == 0
    external = tmp_path / "from_weights.png"
    assert main(["visualize", "--student", str(student / "best.pt"), "--n", "4", "--out",
                 str(external), "--device", "cpu", "--set", "teacher.source=python",
                 "teacher.arch=spikedistill.models.zoo.resnet:resnet20",
                 "teacher.features=[layer1, layer2, layer3]", "teacher.classifier=fc",
                 "teacher.kwargs={in_channels: 1}", "teacher.checkpoint=null",
                 f"teacher.weights={weights}"]) == 0, \
        capsys.readouterr().err
    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (same, external))
    assert a.shape == b.shape and np.array_equal(a, b)
    # --teacher replaces the weights file of the run's external teacher
    rc = main(["visualize", "--student", str(student / "best.pt"), "--n", "4", "--out",
               str(tmp_path / "x.png"), "--device", "cpu", "--teacher", str(tmp_path / "no.pth"),
               "--set", "teacher.source=python",
               "teacher.arch=spikedistill.models.zoo.resnet:resnet20",
               "teacher.features=[layer1, layer2, layer3]", "teacher.classifier=fc",
               "teacher.kwargs={in_channels: 1}"])
    assert rc == 2 and "no.pth" in capsys.readouterr().err
