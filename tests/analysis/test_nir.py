"""NIR export: file round trip, every node's parameters against the model, and the exported
graph run in discrete time equals the PyTorch student."""


import nir
import numpy as np
import pytest
import torch

from spikedistill.analysis.nir_export import NIRExportError, export_nir, run_nir, to_nir
from spikedistill.models import create_model

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
    convs = {"stem": (m.stem, m.stem_bn)}
    lifs = {"stem_lif": m.stem_lif}
    for sname in ("layer1", "layer2", "layer3"):
        for i, blk in enumerate(getattr(m, sname)):
            p = f"{sname}.{i}"
            convs[f"{p}.conv1"] = (blk.conv1, blk.bn1)
            convs[f"{p}.conv2"] = (blk.conv2, blk.bn2)
            lifs[f"{p}.lif1"], lifs[f"{p}.act2"] = blk.lif1, blk.act2
            if blk.shortcut is not None:
                convs[f"{p}.shortcut.conv"] = (blk.shortcut[1], blk.shortcut[2])
                assert isinstance(g.nodes[f"{p}.shortcut.0"], nir.AvgPool2d)
                assert list(g.nodes[f"{p}.shortcut.0"].kernel_size) == [2, 2]
                assert (f"{p}.shortcut.conv", f"{p}.act2") in g.edges
            else:
                prev = "stem_lif" if p == "layer1.0" else None
                if prev:
                    assert (prev, f"{p}.act2") in g.edges        # identity residual
            assert (f"{p}.conv2", f"{p}.act2") in g.edges
    for name, (conv, bn) in convs.items():
        node = g.nodes[name]
        assert isinstance(node, nir.Conv2d), name
        w, b = _folded(conv, bn)
        np.testing.assert_allclose(node.weight, w, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(node.bias, b, rtol=1e-5, atol=1e-6, err_msg=name)
        assert tuple(node.stride) == conv.stride and tuple(node.padding) == conv.padding
    for name, lif in lifs.items():
        node = g.nodes[name]
        assert isinstance(node, nir.LIF), name
        # u = 0.5 u + I  <=>  Euler(dt=1) of tau dv/dt = -v + r I with tau = 2, r = 2
        assert np.all(node.tau == 2.0) and np.all(node.r == 2.0)
        assert np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
        assert np.all(node.v_threshold == lif.threshold)
    assert g.nodes["layer3.2.act2"].tau.shape == (64, 2, 2)
    h0, h1 = g.nodes["head.0"], g.nodes["head.1"]
    np.testing.assert_allclose(h0.weight, m.head[0].weight.detach().numpy() / 4, rtol=1e-6)
    np.testing.assert_allclose(h0.bias, m.head[0].bias.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(h1.weight, m.head[1].weight.detach().numpy(), rtol=1e-6)
    assert isinstance(g.nodes["pool"], nir.SumPool2d) and list(g.nodes["pool"].kernel_size) == [2, 2]
    assert np.allclose(g.nodes["readout"].r, 1 / 3)
    assert int(g.metadata["T"]) == 3 and float(g.metadata["dt"]) == 1.0


def test_graph_runs_like_the_model(tmp_path):
    m = _student().double()
    g = nir.read(str(export_nir(m, tmp_path / "s.nir", (1, 8, 8))))
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = m(x)
    out = run_nir(g, x, m.T).double()
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_decay_one_is_if_neuron():
    g = to_nir(_student(decay=1.0, T=2), (1, 8, 8))
    assert isinstance(g.nodes["stem_lif"], nir.IF) and np.all(g.nodes["stem_lif"].r == 1)
    m = _student(decay=1.0, T=2).double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(run_nir(g, x, 2).double(), m(x), atol=1e-5)


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
                             r"FeatureTapModel is not one"):
        to_nir(tiny_snn_taps(), (3, 32, 32))
