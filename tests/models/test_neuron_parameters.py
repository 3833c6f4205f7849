"""The model builders pass the neuron as one ``LIFParameters`` record to every LIF, and the
record round-trips through a checkpoint's ``model_kwargs`` (a plain mapping, so old checkpoints
and ``torch.load(weights_only=True)`` keep working) (issue 21 part 8)."""

from __future__ import annotations

import pytest
import torch

from spikedistill.engine import checkpoint as ck
from spikedistill.models import create_model
from spikedistill.models.zoo.spikformer import ATTN_THRESHOLD, SPIKFORMER_NEURON
from spikedistill.neurons import LIF, LIFParameters

CUSTOM = LIFParameters(decay=0.25, threshold=0.7, surrogate="atan", alpha=2.0, detach_reset=True,
                       backend="torch", decay_input=True, fire_at_threshold=True)
STUDENTS = {"spiking_resnet20": {"width_mult": 1}, "vggsnn": {"width_mult": 1},
            "sew_resnet18": {"width_mult": 1}}


def _lifs(model):
    return [m for m in model.modules() if isinstance(m, LIF)]


@pytest.mark.parametrize("name", sorted(STUDENTS))
@pytest.mark.parametrize("given", ["record", "mapping"])
def test_every_lif_of_a_student_gets_the_one_record(name, given):
    neuron = CUSTOM if given == "record" else CUSTOM.as_dict()
    model = create_model(name, num_classes=4, T=2, neuron=neuron, **STUDENTS[name])
    lifs = _lifs(model)
    assert len(lifs) > 3 and all(m.params == CUSTOM for m in lifs)
    assert model.model_kwargs["neuron"] == CUSTOM.as_dict()          # plain, for checkpoints
    assert type(model.model_kwargs["neuron"]) is dict


def test_spikformer_preset_takes_only_the_backend_and_the_attention_threshold():
    tiny = {"depth": 1, "dim": 32, "heads": 2, "num_classes": 4, "T": 1}
    m = create_model("spikformer_4_384", neuron=CUSTOM, **tiny)
    attn = {id(b.attn.attn_lif) for b in m.blocks}
    for lif in _lifs(m):
        want = SPIKFORMER_NEURON.replace(backend="torch")
        assert lif.params == (want.replace(threshold=ATTN_THRESHOLD) if id(lif) in attn else want)
    cfg = create_model("spikformer_4_384", neuron=CUSTOM, neuron_preset="config", **tiny)
    assert {lif.params for lif in _lifs(cfg)} == {CUSTOM, CUSTOM.replace(threshold=ATTN_THRESHOLD)}


def test_the_record_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("spiking_resnet20", num_classes=4, T=2, width_mult=1, neuron=CUSTOM)
    path = ck.save_checkpoint(ck.make_checkpoint(model=model, config={}, epoch=1),
                              tmp_path / "last.pt")
    raw = torch.load(path, map_location="cpu", weights_only=True)   # no class in model_kwargs
    assert raw["model_kwargs"]["neuron"] == CUSTOM.as_dict()
    back, _ = ck.load_model_from_checkpoint(path)
    assert all(m.params == CUSTOM for m in _lifs(back))
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(back(x), model.eval()(x))


def test_a_checkpoint_from_before_decay_input_still_rebuilds(tmp_path):
    model = create_model("spiking_resnet20", num_classes=4, T=2, width_mult=1,
                         neuron={"decay": 0.5, "threshold": 1.0, "surrogate": "triangle",
                                 "alpha": 1.0, "detach_reset": False, "backend": "auto"})
    ckpt = ck.make_checkpoint(model=model, config={}, epoch=1)
    assert set(ckpt["model_kwargs"]["neuron"]) == {"decay", "threshold", "surrogate", "alpha",
                                                   "detach_reset", "backend"}
    path = ck.save_checkpoint(ckpt, tmp_path / "old.pt")
    back, _ = ck.load_model_from_checkpoint(path)
    assert all(m.params == LIFParameters() for m in _lifs(back))
