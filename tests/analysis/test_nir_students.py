"""NIR export of the other students through the mapper tables (analysis/nir_export.py):
SEW-ResNet (connect=ADD, CIFAR stem) and VGGSNN, checked like the spiking ResNet's export
(test_nir_peers.py): spikes of every neuron and the logits against the PyTorch student, in
spikedistill's run_nir and in the importers of snnTorch 1.0, SpikingJelly 2.0 and Norse 1.1
(through nirtorch); the students NIR cannot express are refused naming the missing node."""

from __future__ import annotations

import contextlib
import io
from functools import partial

import nir
import pytest
import torch

from spikedistill.analysis.nir_export import (SPIKFORMER_REFUSAL, NIRExportError, export_nir,
                                              simulate_nir, to_nir)
from spikedistill.models import create_model

from _analysis_helpers import randomize_bn
from test_nir_peers import _reference  # noqa: F401  (the same spike counts by LIF hooks)
from test_nir_peers import _run_imported as _peers_run_imported

T, K, BATCH = 3, 10, 8
NEURON = {"threshold": 0.5, "decay": 0.5, "backend": "torch"}


def _sew(**kw):
    torch.manual_seed(0)
    return randomize_bn(create_model("sew_resnet18", num_classes=K, T=T, width_mult=1,
                                     in_channels=2, stem="cifar", neuron=NEURON, **kw))


def _vgg():
    torch.manual_seed(0)
    return randomize_bn(create_model("vggsnn", num_classes=K, T=T, in_channels=2,
                                     neuron=NEURON))


STUDENTS = {"sew_resnet18_add": _sew, "vggsnn": _vgg}


def _batch():
    return torch.randn(BATCH, 2, 16, 16, generator=torch.Generator().manual_seed(1)) * 2


def _run_imported(module, x, neuron_types):
    return _peers_run_imported(module, x, T, neuron_types)


def _check(logits, counts, ref_logits, ref_counts, atol=1e-4):
    assert set(counts) == set(ref_counts), set(ref_counts) ^ set(counts)
    assert min(ref_counts.values()) > 0                      # every layer spikes
    bad = {k: (counts[k], v) for k, v in ref_counts.items() if counts[k] != v}
    assert not bad, f"spike counts differ (graph, student): {bad}"
    diff = (logits.double() - ref_logits.double()).abs().max().item()
    assert diff < atol, diff
    return diff


@pytest.fixture(scope="module", params=sorted(STUDENTS))
def exported(request, tmp_path_factory):
    model = STUDENTS[request.param]()
    x = _batch()
    path = export_nir(model, tmp_path_factory.mktemp("nir") / f"{request.param}.nir", (2, 16, 16))
    ref_logits, ref_counts = _reference(model, x)
    return request.param, nir.read(str(path)), x, ref_logits, ref_counts


def test_run_nir_reproduces_the_student(exported):
    name, graph, x, ref_logits, ref_counts = exported
    run = simulate_nir(graph, x)
    _check(run.logits, {k.replace(".", "_"): v for k, v in run.spike_counts.items()},
           ref_logits, ref_counts)
    if name.startswith("sew"):     # ADD: a block's output reaches its consumers by two edges
        assert ("layer1.0.sn2", "layer1.1.conv1") in graph.edges
        assert ("sn1", "layer1.1.conv1") in graph.edges       # through layer1.0's identity
        assert "layer2.0.downsample.1" in graph.nodes
    else:                          # the pools are sum pools, their 1/4 folded into the conv
        assert isinstance(graph.nodes["pool1"], nir.SumPool2d)
        assert graph.nodes["stage2.0.conv"].metadata["pool_folded"] == 1


def test_snntorch_importer(exported):
    snntorch = pytest.importorskip("snntorch", reason="snntorch (dev extra)")
    from snntorch.import_nir import import_from_nir
    from snntorch.utils import reset

    _, graph, x, ref_logits, ref_counts = exported
    with contextlib.redirect_stdout(io.StringIO()):
        net = import_from_nir(graph)
    reset(net)
    _check(*_run_imported(net, x, snntorch.Leaky), ref_logits, ref_counts)


def test_spikingjelly_importer(exported):
    pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="spikingjelly")
    from spikingjelly.activation_based.nir_exchange import from_nir as sj

    _, graph, x, ref_logits, ref_counts = exported
    net = sj.import_from_nir(graph)
    _check(*_run_imported(net, x, sj._NIRStatefulModule), ref_logits, ref_counts)


def test_norse_importer(exported):
    pytest.importorskip("norse", reason="norse (dev extra)")
    nirtorch = pytest.importorskip("nirtorch", reason="nirtorch (dev extra)")
    from norse.torch.module.lif_box import LIFBoxCell
    from norse.torch.utils.import_nir import _import_norse_module

    _, graph, x, ref_logits, ref_counts = exported
    to_norse = partial(_import_norse_module, dt=float(graph.metadata["dt"]))
    kinds = {type(n) for n in graph.nodes.values()} - {nir.Input, nir.Output}
    net = nirtorch.nir_to_torch(graph, {kind: to_norse for kind in kinds})
    _check(*_run_imported(net, x, LIFBoxCell), ref_logits, ref_counts)


@pytest.mark.parametrize("connect, op", [("IAND", r"\(1 - A\) \* S"), ("AND", r"A \* S")])
def test_sew_products_are_refused_naming_the_missing_node(connect, op):
    with pytest.raises(NIRExportError, match=rf"connect={connect}: g\(A, S\) = {op} .*no "
                                             r"element-wise product node") as exc:
        to_nir(_sew(connect=connect), (2, 16, 16))
    assert "\n" not in str(exc.value)


def test_sew_imagenet_stem_and_spikformer_are_refused():
    torch.manual_seed(0)
    sew = create_model("sew_resnet18", num_classes=K, T=T, width_mult=1).eval()
    with pytest.raises(NIRExportError, match=r"MaxPool2d\(3, 2, 1\).*no NIR node"):
        to_nir(sew, (3, 32, 32))
    spikformer = create_model("spikformer_4_384", num_classes=K, T=T, dim=16, heads=2, depth=1)
    with pytest.raises(NIRExportError) as exc:
        to_nir(spikformer.eval(), (3, 16, 16))
    assert str(exc.value) == SPIKFORMER_REFUSAL
    assert "Q K^T" in SPIKFORMER_REFUSAL and "product of two inputs" in SPIKFORMER_REFUSAL


def test_vggsnn_partial_pool_window_is_refused():
    with pytest.raises(NIRExportError, match=r"pool2: AvgPool2d\(ceil_mode=True\) on a 7x7"):
        to_nir(_vgg(), (2, 14, 14))
