"""The exported NIR graph in the real simulators: snnTorch 1.0 (``import_from_nir``),
SpikingJelly 2.0 (``nir_exchange.import_from_nir``) and Norse 1.1 (its node map
``_import_norse_module`` through ``nirtorch.nir_to_torch``; Norse's own ``from_nir`` still goes
through nirtorch's deprecated ``load``). Each loads the default export as it is, runs it step by
step on a batch of many samples, and must give the student's spikes in every layer and its
logits.

The graph has no readout node (no importer maps ``nir.I``): its output at step t is the
per-step logits ``z[t]`` ``[B, K, 1, 1]``, and the logits are computed here the way the student
computes them, ``mean_t z[t]`` flattened to ``[B, K]``. Spikes are counted with forward hooks on
every imported neuron module (named after the NIR node, ``.`` -> ``_``) and compared with hooks
on the student's ``LIF`` modules.

The peers are dev extras (``pip install -e .[dev]``: snntorch, norse, nirtorch); a test whose
peer is missing is skipped with the package named.
"""

from __future__ import annotations

import contextlib
import io
import logging
from functools import partial

import nir
import numpy as np
import pytest
import torch

from spikedistill.analysis.nir_export import export_nir, simulate_nir, to_nir
from spikedistill.data.readers import read_digits
from spikedistill.models import create_model
from spikedistill.neurons import LIF

from _analysis_helpers import randomize_bn

T = 3
BATCH = 24


def _student(decay=0.5, last="lif"):
    torch.manual_seed(0)
    return randomize_bn(create_model("spiking_resnet20", num_classes=10, T=T, in_channels=1,
                                     last_activation=last,
                                     neuron={"threshold": 0.5, "decay": decay,
                                             "backend": "torch"}))


@pytest.fixture(scope="module")
def digits_batch():
    """``BATCH`` real 8x8 digits of the test split, normalised (what a digits student sees)."""
    raw = read_digits()
    x = torch.from_numpy(raw.test_images[:BATCH]).float() / 255.0
    return (x - 0.3) / 0.4


def _reference(model, x):
    """The student's logits and spikes per LIF module (summed over T, samples, neurons)."""
    counts = {}
    hooks = [mod.register_forward_hook(
        lambda mod, i, o, n=n: counts.__setitem__(n.replace(".", "_"), int(o.sum().item())))
        for n, mod in model.named_modules() if isinstance(mod, LIF)]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return logits, counts


def _run_imported(module, x, steps, neuron_types):
    """Step an imported ``torch.fx`` module ``steps`` times on ``x``, passing back the state
    dict it returns (snnTorch's neurons keep theirs inside, ``init_hidden``); return (logits as
    the student computes them, spikes per neuron module of ``neuron_types``)."""
    counts = {}

    def hook(mod, inputs, out, name):
        z = out[0] if isinstance(out, tuple) else out
        counts[name] = counts.get(name, 0) + int(z.sum().item())

    hooks = [mod.register_forward_hook(partial(hook, name=name))
             for name, mod in module.named_children() if isinstance(mod, neuron_types)]
    outputs, state = [], None
    with torch.no_grad():
        for _ in range(steps):
            out, state = module(x, state)                 # nirtorch: (output, state dict)
            outputs.append(out)
    for h in hooks:
        h.remove()
    per_step = torch.stack(outputs)                       # [T, B, K, 1, 1]
    assert per_step.shape == (steps, x.shape[0], 10, 1, 1)
    return per_step.mean(dim=0).flatten(1), counts


def _check(logits, counts, ref_logits, ref_counts, atol=1e-5):
    assert set(counts) == set(ref_counts), set(ref_counts) ^ set(counts)
    assert len(ref_counts) == 19 and min(ref_counts.values()) > 0   # every layer spikes
    bad = {k: (counts[k], v) for k, v in ref_counts.items() if counts[k] != v}
    assert not bad, f"spike counts differ (peer, student): {bad}"
    diff = (logits.double() - ref_logits.double()).abs().max().item()
    assert diff < atol, diff


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits_batch):
    """The default export of a random spiking ResNet-20, read back from its file, and the
    student's reference logits and spikes on the digits batch."""
    model = _student()
    path = export_nir(model, tmp_path_factory.mktemp("nir") / "student.nir", (1, 8, 8))
    ref_logits, ref_counts = _reference(model, digits_batch)
    return path, ref_logits, ref_counts


def test_snntorch_default_importer(exported, digits_batch):
    snntorch = pytest.importorskip("snntorch", reason="snntorch (dev extra)")
    from snntorch.import_nir import import_from_nir
    from snntorch.utils import reset

    path, ref_logits, ref_counts = exported
    with contextlib.redirect_stdout(io.StringIO()):     # it prints a note per rescaled LIF
        net = import_from_nir(nir.read(str(path)))
    reset(net)
    logits, counts = _run_imported(net, digits_batch, T, snntorch.Leaky)
    _check(logits, counts, ref_logits, ref_counts)


def test_spikingjelly_default_importer(exported, digits_batch):
    pytest.importorskip("spikingjelly.activation_based.nir_exchange",
                        reason="spikingjelly (installed with --no-deps by make install)")
    from spikingjelly.activation_based.nir_exchange import from_nir as sj

    path, ref_logits, ref_counts = exported
    net = sj.import_from_nir(str(path))                  # default dt = 1e-4, single-step
    logits, counts = _run_imported(net, digits_batch, T, sj._NIRStatefulModule)
    _check(logits, counts, ref_logits, ref_counts)


def _norse_module(graph):
    """The graph through Norse's node map and ``nirtorch.nir_to_torch`` at dt = 1e-4."""
    pytest.importorskip("norse", reason="norse (dev extra)")
    nirtorch = pytest.importorskip("nirtorch", reason="nirtorch (dev extra)")
    from norse.torch.utils.import_nir import _import_norse_module

    to_norse = partial(_import_norse_module, dt=float(graph.metadata["dt"]))
    kinds = {type(n) for n in graph.nodes.values()} - {nir.Input, nir.Output}
    return nirtorch.nir_to_torch(graph, {kind: to_norse for kind in kinds})


def test_norse_node_map_through_nirtorch(exported, digits_batch, caplog):
    path, ref_logits, ref_counts = exported
    with caplog.at_level(logging.WARNING):
        net = _norse_module(nir.read(str(path)))
    from norse.torch.module.lif_box import LIFBoxCell

    assert not [r for r in caplog.records if "expected to be set" in r.getMessage()]
    logits, counts = _run_imported(net, digits_batch, T, LIFBoxCell)
    _check(logits, counts, ref_logits, ref_counts)


def test_our_interpreter_agrees_with_the_peers_reference(exported, digits_batch):
    """``run_nir`` on the same file, same batch: the spikes and logits the peers must match."""
    path, ref_logits, ref_counts = exported
    run = simulate_nir(nir.read(str(path)), digits_batch)
    _check(run.logits, {k.replace(".", "_"): v for k, v in run.spike_counts.items()},
           ref_logits, ref_counts)


def test_if_neurons_load_in_spikingjelly_and_norse(digits_batch):
    """``decay = 1`` exports ``nir.IF(r = 1/dt)``: SpikingJelly (which requires r = 1/dt) and
    Norse (which adds the input whatever r) reproduce the student. (snnTorch 1.0 refuses
    ``r != 1`` for ``nir.IF`` and maps it to a leaky neuron: not tested, documented.)"""
    pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="spikingjelly")
    from spikingjelly.activation_based.nir_exchange import from_nir as sj

    model = _student(decay=1.0)
    ref_logits, ref_counts = _reference(model, digits_batch)
    graph = to_nir(model, (1, 8, 8))
    logits, counts = _run_imported(sj.import_from_nir(graph), digits_batch, T,
                                   sj._NIRStatefulModule)
    _check(logits, counts, ref_logits, ref_counts)
    net = _norse_module(graph)
    from norse.torch.module.iaf import IAFCell

    logits, counts = _run_imported(net, digits_batch, T, IAFCell)
    _check(logits, counts, ref_logits, ref_counts)


def test_relu_placeholder_is_refused_by_the_peers(digits_batch):
    """The ``--allow-relu`` export is for spikedistill's interpreter only: no importer maps its
    ``nir.Scale`` placeholder, so snnTorch and SpikingJelly refuse the graph."""
    pytest.importorskip("snntorch", reason="snntorch (dev extra)")
    pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="spikingjelly")
    from snntorch.import_nir import import_from_nir
    from spikingjelly.activation_based.nir_exchange import from_nir as sj

    with pytest.warns(UserWarning, match="placeholder"):
        graph = to_nir(_student(last="relu"), (1, 8, 8), allow_relu=True)
    assert isinstance(graph.nodes["layer3.2.act2"], nir.Scale)
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(ValueError, match="Scale"):
        import_from_nir(graph)
    with pytest.raises(ValueError, match="Scale"):
        sj.import_from_nir(graph)
    assert np.isfinite(simulate_nir(graph, digits_batch).logits.numpy()).all()


def test_threshold_rule_at_equality_is_in_the_metadata():
    """Why the graph records ``threshold = strict``: a membrane exactly at the threshold (as a
    spike through an identity residual can make it) does not spike in the student, in snnTorch
    or in Norse, but does in SpikingJelly 2.0, whose Heaviside is ``x >= 0``."""
    pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="spikingjelly")
    from spikingjelly.activation_based.nir_exchange import from_nir as sj

    from spikedistill.analysis.nir_export import lif_node

    lif = LIF(decay=0.5, threshold=1.0, backend="torch")
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])),
                                "n": lif_node(lif, (2,), "n"),
                                "output": nir.Output(output_type=np.array([2]))},
                         edges=[("input", "n"), ("n", "output")],
                         metadata={"dt": 1e-4, "T": 1, "threshold": "strict"})
    x = torch.tensor([[1.0, 1.5]])                       # u = 1.0 (= threshold), u = 1.5
    with torch.no_grad():
        assert lif(x[None]).tolist() == [[[0.0, 1.0]]]
    assert simulate_nir(graph, x).outputs.tolist() == [[[0.0, 1.0]]]
    out, _ = _norse_module(graph)(x)
    assert out.tolist() == [[0.0, 1.0]]
    pytest.importorskip("snntorch", reason="snntorch (dev extra)")
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):
        out, _ = import_from_nir(graph)(x)
    assert out.tolist() == [[0.0, 1.0]]
    out, _ = sj.import_from_nir(graph)(x)
    assert out.tolist() == [[1.0, 1.0]]                  # SpikingJelly fires at equality
