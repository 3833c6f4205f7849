"""NIR export: file round trip, every node's parameters against the model, and the exported
graph run in discrete time equals the PyTorch student."""


import nir
import numpy as np
import pytest
import torch

from spikedistill.analysis.nir_export import (NIRExportError, export_nir, lif_node, run_nir,
                                              simulate_nir, to_nir)
from spikedistill.models import create_model
from spikedistill.neurons import LIF

from _analysis_helpers import randomize_bn


def _student(last="lif", T=3, decay=0.5):
    torch.manual_seed(0)
    return randomize_bn(create_model("spiking_resnet20", num_classes=10, T=T, in_channels=1,
                                     last_activation=last,
                                     neuron={"threshold": 0.5, "decay": decay,
                                             "backend": "torch"}))


def _folded(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (conv.weight * s.view(-1, 1, 1, 1)).detach().numpy(), \
        (bn.bias - s * bn.running_mean).detach().numpy()


def test_round_trip_parameters(tmp_path):
    m = _student()
    path = export_nir(m, tmp_path / "s.nir", (1, 8, 8))
    g = nir.read(str(path))
    convs = {"stem": (m.stem, m.stem_bn, 1.0)}
    lifs = {"stem_lif": m.stem_lif}
    for sname in ("layer1", "layer2", "layer3"):
        for i, blk in enumerate(getattr(m, sname)):
            p = f"{sname}.{i}"
            convs[f"{p}.conv1"] = (blk.conv1, blk.bn1, 1.0)
            convs[f"{p}.conv2"] = (blk.conv2, blk.bn2, 1.0)
            lifs[f"{p}.lif1"], lifs[f"{p}.act2"] = blk.lif1, blk.act2
            if blk.shortcut is not None:
                # the shortcut's AvgPool2d(2) is a SumPool2d(2) with its 1/4 in the 1x1 conv
                convs[f"{p}.shortcut.conv"] = (blk.shortcut[1], blk.shortcut[2], 0.25)
                assert isinstance(g.nodes[f"{p}.shortcut.0"], nir.SumPool2d)
                assert list(g.nodes[f"{p}.shortcut.0"].kernel_size) == [2, 2]
                assert list(g.nodes[f"{p}.shortcut.0"].stride) == [2, 2]
                assert (f"{p}.shortcut.conv", f"{p}.act2") in g.edges
            else:
                prev = "stem_lif" if p == "layer1.0" else None
                if prev:
                    assert (prev, f"{p}.act2") in g.edges        # identity residual
            assert (f"{p}.conv2", f"{p}.act2") in g.edges
    for name, (conv, bn, scale) in convs.items():
        node = g.nodes[name]
        assert isinstance(node, nir.Conv2d), name
        w, b = _folded(conv, bn)
        np.testing.assert_allclose(node.weight, w * scale, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(node.bias, b, rtol=1e-5, atol=1e-6, err_msg=name)
        assert tuple(node.stride) == conv.stride and tuple(node.padding) == conv.padding
    assert not any(isinstance(n, nir.AvgPool2d) for n in g.nodes.values())
    for name in lifs:
        node = g.nodes[name]
        assert isinstance(node, nir.LIF), name
        # u = 0.5 u + I, spike if u > 0.5  <=>  Euler(dt = 1e-4 s) of tau dv/dt = -v + r I with
        # tau = 2e-4 s, r = 1 (v = u / 2), spike if v > 0.25
        assert node.tau.dtype == np.float32
        np.testing.assert_allclose(node.tau, 2e-4, rtol=1e-7)
        assert np.all(1 - np.float32(1e-4) / node.tau == np.float32(0.5))
        assert np.all(node.r == 1.0) and np.all(node.v_threshold == 0.25)
        assert np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
    assert g.nodes["layer3.2.act2"].tau.shape == (64, 2, 2)
    # head: GAP as a sum pool, the two Linears as 1x1 convs (no Flatten: batches > 1 load)
    h0, h1 = g.nodes["head.0"], g.nodes["head.1"]
    assert isinstance(h0, nir.Conv2d) and h0.weight.shape == (256, 64, 1, 1)
    np.testing.assert_allclose(h0.weight[:, :, 0, 0], m.head[0].weight.detach().numpy() / 4,
                               rtol=1e-6)
    np.testing.assert_allclose(h0.bias, m.head[0].bias.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(h1.weight[:, :, 0, 0], m.head[1].weight.detach().numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(h1.bias, m.head[1].bias.detach().numpy(), rtol=1e-6)
    assert isinstance(g.nodes["pool"], nir.SumPool2d) and list(g.nodes["pool"].kernel_size) == [2, 2]
    # no integrator readout (no importer maps nir.I): the output is the per-step logits
    assert not any(isinstance(n, (nir.I, nir.Flatten, nir.Affine)) for n in g.nodes.values())
    assert ("head.1", "output") in g.edges
    assert list(g.nodes["output"].output_type["output"]) == [10, 1, 1]
    assert int(g.metadata["T"]) == 3 and float(g.metadata["dt"]) == 1e-4
    assert str(g.metadata["dtype"]) == "float32"
    assert "v > v_threshold" in str(g.metadata["threshold"])
    assert "strict" in str(g.metadata["threshold"])
    assert "mean over the 3 steps" in str(g.metadata["readout"])


def _lif_counts(model, x):
    """``(logits, {LIF module name: spikes summed over T, samples and neurons})``."""
    counts = {}
    hooks = [mod.register_forward_hook(
        lambda mod, i, o, n=n: counts.__setitem__(n, int(o.sum().item())))
        for n, mod in model.named_modules() if isinstance(mod, LIF)]
    try:
        with torch.no_grad():
            return model(x), counts
    finally:
        for h in hooks:
            h.remove()


def test_graph_runs_like_the_model(tmp_path):
    m = _student().double()
    g = nir.read(str(export_nir(m, tmp_path / "s.nir", (1, 8, 8))))
    assert str(g.metadata["dtype"]) == "float64" and g.nodes["stem"].weight.dtype == np.float64
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    ref, counts = _lif_counts(m, x)
    run = simulate_nir(g, x)
    assert run.logits.dtype == torch.float64 and run.outputs.shape == (3, 5, 10, 1, 1)
    assert torch.allclose(run.logits, ref, atol=1e-10), (run.logits - ref).abs().max()
    assert run.spike_counts == counts and min(counts.values()) > 0
    assert torch.equal(run_nir(g, x), run.logits)


def test_float32_graph_integrates_in_float32(tmp_path):
    """A float32 student gives a float32 graph, integrated in float32: the same spikes in every
    layer and the logits to float32 rounding (the membrane arithmetic is the student's)."""
    m = _student()
    g = nir.read(str(export_nir(m, tmp_path / "s.nir", (1, 8, 8))))
    x = torch.randn(16, 1, 8, 8)
    ref, counts = _lif_counts(m, x)
    run = simulate_nir(g, x)
    assert run.logits.dtype == torch.float32
    assert run.spike_counts == counts and min(counts.values()) > 0
    assert (run.logits - ref).abs().max() < 1e-5
    # asking for float64 integrates in float64 (a different rounding of the same graph)
    assert simulate_nir(g, x, dtype=torch.float64).logits.dtype == torch.float64


def test_run_nir_reads_dt_from_the_metadata():
    """The interpreter integrates with the graph's ``dt``: the same neurons written for
    ``dt = 1`` (tau = 2, the time constants of the old export) run identically, while tau = 2
    under ``dt = 1e-4`` barely integrates and the logits change."""
    m = _student().double()
    g = to_nir(m, (1, 8, 8))
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    ref = run_nir(g, x)
    for n in g.nodes.values():
        if isinstance(n, nir.LIF):
            n.tau = n.tau / 1e-4                               # 2 in units of dt = 1
    assert not torch.allclose(run_nir(g, x), ref, atol=1e-3)   # still read as dt = 1e-4 s
    g.metadata["dt"] = 1.0
    assert torch.allclose(run_nir(g, x), ref, atol=1e-12)
    # a graph with an integrator readout (older spikedistill): the logits are its final state
    g.nodes["readout"] = nir.I(r=np.full((10, 1, 1), 1.0 / m.T))
    g.edges = [e for e in g.edges if e != ("head.1", "output")] + \
        [("head.1", "readout"), ("readout", "output")]
    assert torch.allclose(run_nir(g, x), ref, atol=1e-12)


def test_threshold_is_strict_like_the_student():
    """A membrane exactly at the threshold does not spike, in the student and in the graph:
    with threshold 0.5 and a constant input I = 0.5, u = 0.5 at the first step (no spike)."""
    lif = LIF(decay=0.5, threshold=0.5, backend="torch")
    node = lif_node(lif, (4,), "n")
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([4])), "n": node,
                            "output": nir.Output(output_type=np.array([4]))},
                     edges=[("input", "n"), ("n", "output")],
                     metadata={"dt": 1e-4, "T": 3})
    x = torch.tensor([[0.5, 0.25, 0.5000001, 0.4]])         # constant input, 3 steps
    with torch.no_grad():
        want = lif(x.unsqueeze(0).expand(3, 1, 4).contiguous())   # [T, B, 4]
    run = simulate_nir(g, x)
    assert torch.equal(run.outputs, want)
    # u: 0.5 (=thr, no spike) -> 0.75 (spike); 0.25 -> 0.375 -> 0.4375; 0.5000001 spikes at once
    assert want[:, 0, :].tolist() == [[0, 0, 1, 0], [1, 0, 1, 1], [0, 0, 1, 0]]
    assert run.spike_counts == {"n": int(want.sum())}


def test_decay_one_is_if_neuron():
    g = to_nir(_student(decay=1.0, T=2), (1, 8, 8))
    node = g.nodes["stem_lif"]
    # u = u + I  <=>  Euler(dt = 1e-4) of dv/dt = r I with r = 1/dt (as SpikingJelly writes it)
    assert isinstance(node, nir.IF) and np.allclose(node.r, 1e4) and np.all(node.v_threshold == 0.5)
    m = _student(decay=1.0, T=2).double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(run_nir(to_nir(m, (1, 8, 8)), x, 2).double(), m(x), atol=1e-5)


def test_relu_refused_or_marked(tmp_path):
    m = _student(last="relu")
    with pytest.raises(NIRExportError, match="layer3.2.*ReLU.*--allow-relu"):
        to_nir(m, (1, 8, 8))
    with pytest.warns(UserWarning, match="layer3.2.act2"):
        path = export_nir(m, tmp_path / "r.nir", (1, 8, 8), allow_relu=True)
    g = nir.read(str(path))
    node = g.nodes["layer3.2.act2"]
    assert isinstance(node, nir.Scale) and str(node.metadata["activation"]) == "relu"
    assert "layer3.2.act2" in str(g.metadata["unmapped_blocks"])
    md = m.double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = md(x)
    assert torch.allclose(run_nir(g, x, md.T).double(), ref, atol=1e-5)
    # the placeholder really stands for a ReLU: read as a plain identity the result differs
    assert not torch.allclose(run_nir(g, x, md.T, apply_relu=False).double(), ref, atol=1e-5)


def test_non_student_refused():
    with pytest.raises(NIRExportError, match="resnet20"):
        to_nir(create_model("resnet20", num_classes=10), (3, 32, 32))
    with pytest.raises(NIRExportError, match="channels"):
        to_nir(_student(), (3, 8, 8))


def test_tapped_models_refused_with_what_is_exported():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from _tap_nets import tiny_snn_taps

    with pytest.raises(NIRExportError,
                       match=r"spiking ResNet students only \(spiking_resnet19 / spiking_resnet20.*"
                             r"SEW-ResNet \(connect=ADD, stem=cifar\) and VGGSNN; "
                             r"FeatureTapModel is none of them"):
        to_nir(tiny_snn_taps(), (3, 32, 32))


@pytest.mark.parametrize("option", ["decay_input", "fire_at_threshold"])
def test_spikingjelly_style_neuron_options_refused(option):
    # the graph maps u = decay*u + I with a strict threshold; these options change both
    with pytest.raises(NIRExportError, match=option):
        lif_node(LIF(decay=0.5, threshold=1.0, **{option: True}), (4,), "lif")
    assert lif_node(LIF(decay=0.5, threshold=1.0), (4,), "lif") is not None


def test_distillation_head_exports_as_the_average_of_both_heads(tmp_path):
    """``model.distill_head`` (deit): the eval output averages the class and distillation
    heads; both are linear in the same input, so the graph has one Linear with the averaged
    weights and runs like the model."""
    from spikedistill.models.contract import add_distillation_head

    m = _student()
    head = add_distillation_head(m)
    with torch.no_grad():
        head.kd.weight.normal_(0, 0.5)
        head.kd.bias.normal_(0, 0.5)
    m = m.double()
    g = nir.read(str(export_nir(m, tmp_path / "d.nir", (1, 8, 8))))
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    ref, _ = _lif_counts(m, x)
    plain_w = m.head[1].weight.detach().numpy()
    assert not np.allclose(g.nodes["head.1"].weight[:, :, 0, 0], plain_w)
    assert torch.allclose(simulate_nir(g, x).logits, ref, atol=1e-10)


def test_exportability_is_known_from_the_config_before_training():
    """nir_export_problem says what to_nir would refuse, from the config alone."""
    from spikedistill.analysis.nir_export import nir_export_problem
    from spikedistill.config import build_config, load_config

    ok = build_config(overrides=["model.name=spiking_resnet20", "model.last_activation=lif"])
    assert nir_export_problem(ok.model) is None
    from pathlib import Path
    relu = load_config(Path(__file__).resolve().parents[2] / "configs/cifar10/resnet20_snn_t1.yaml")
    assert "model.last_activation=lif" in nir_export_problem(relu.model)
    vgg = build_config(overrides=["model.name=vggsnn", "model.last_activation=lif"])
    assert nir_export_problem(vgg.model) is None
    spikformer = build_config(overrides=["model.name=spikformer_4_384"])
    assert "Spikformer cannot be written as NIR" in nir_export_problem(spikformer.model)
    sew_and = build_config(overrides=["model.name=sew_resnet18", "model.connect=AND",
                                      "model.kwargs={stem: cifar}"])
    assert "model.connect=ADD" in nir_export_problem(sew_and.model)
    sew_imagenet = build_config(overrides=["model.name=sew_resnet18"])
    assert "model.kwargs.stem=cifar" in nir_export_problem(sew_imagenet.model)
    # the same verdicts as the exporter itself
    from spikedistill.analysis.nir_export import NIRExportError, to_nir
    from spikedistill.models import create_model
    import dataclasses
    for cfg, fails in ((ok, False), (relu, True)):
        m = create_model(cfg.model.name, num_classes=10, in_channels=1, T=1,
                         last_activation=cfg.model.last_activation,
                         neuron=dataclasses.asdict(cfg.model.neuron))
        if fails:
            with pytest.raises(NIRExportError):
                to_nir(m, (1, 8, 8))
        else:
            to_nir(m, (1, 8, 8))


def test_train_warns_at_start_when_the_student_cannot_be_exported(tmp_path, capsys):
    """The warning comes once the run is built (a config error stays the only line)."""
    from spikedistill.cli import main

    common = ["--set", "train.epochs=1", "train.max_steps_per_epoch=1", "train.batch_size=32",
              "data.test_subset=32", "run.progress=false", "run.plots=false",
              "run.tensorboard=false", f"run.out_dir={tmp_path}", "model.T=1"]
    assert main(["train"] + common + ["model.last_activation=relu", "run.name=r"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: this student cannot be exported to NIR: its last block "
                          "ends in a ReLU")
    assert main(["train"] + common + ["model.last_activation=lif", "run.name=l"]) == 0
    assert "NIR" not in capsys.readouterr().err
    assert main(["train"] + common + ["model.last_activation=relu", "train.lr=-1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("overrides", [
    ["model.name=spiking_resnet20", "model.last_activation=lif"],
    ["model.name=spiking_resnet20", "model.last_activation=relu"],
    ["model.name=vggsnn", "model.last_activation=lif", "model.kwargs={head: flatten}"],
    ["model.name=vggsnn", "model.last_activation=relu"],
    ["model.name=sew_resnet18", "model.connect=IAND", "model.kwargs={stem: cifar}"],
    ["model.name=sew_resnet18", "model.connect=ADD"],
    ["model.name=sew_resnet18", "model.connect=ADD", "model.kwargs={stem: cifar}"],
    ["model.name=spikformer_4_384"],
    ["model.name=resnet20"],
])
def test_the_config_and_the_exporter_read_one_rule_table(overrides):
    """nir_export_problem (from the config, before training) and to_nir (from the built model)
    give the same verdict with the same words: one table, export_refusal; only where a ReLU sits
    is named differently (the config knows "its last block", the model the block's path)."""
    from spikedistill.analysis.nir_export import nir_export_problem
    from spikedistill.config import build_config
    from spikedistill.models import build_model

    cfg = build_config(overrides=overrides + ["model.T=1"])
    problem = nir_export_problem(cfg.model)
    model = build_model(cfg.model, 10, 1, input_shape=(1, 32, 32))
    if problem is None:
        assert to_nir(model, (1, 32, 32)) is not None
        return
    with pytest.raises(NIRExportError) as exc:
        to_nir(model, (1, 32, 32))
    said = str(exc.value)
    if " ends in a ReLU" in problem:
        assert problem.startswith("its last block ends") and said.startswith("block ")
        assert said.split(" ends ", 1)[1] == problem.split(" ends ", 1)[1]
    else:
        assert said == problem
