"""The model registry is the one :class:`spikedistill.plugins.Registry` (issue 21, part 5): an
entry carries the factory, role, module and parameters; unknown names give one error listing
the registered models and the external sources; ``"<source>/<arch>"`` names resolve without
being listed; a name is registered once."""

from __future__ import annotations

import inspect

import pytest

from spikedistill.errors import ConfigError
from spikedistill.models import (MODELS, create_model, list_models, model_entry, model_params,
                                 model_role, register_model)
from spikedistill.plugins import Registry


def test_models_live_in_the_one_registry_class():
    assert type(MODELS) is Registry
    assert (MODELS.kind, MODELS.key, MODELS.packages) == ("model", "model.name",
                                                          ("spikedistill.models.zoo",))
    assert list_models() == MODELS.names()
    assert list_models("student") == sorted(n for n, e in MODELS.items() if e["role"] == "student")
    assert {"spiking_resnet20", "resnet20"} <= set(MODELS)


def test_an_entry_carries_everything_about_a_model():
    entry = model_entry("spiking_resnet20")
    assert entry["role"] == "student" and model_role("spiking_resnet20") == "student"
    assert entry["module"] == "spikedistill.models.zoo.spiking_resnet"
    assert entry["params"] == tuple(inspect.signature(entry["obj"]).parameters)
    assert {"T", "neuron", "last_activation", "num_classes"} <= set(entry["params"])
    teacher = model_entry("resnet20")
    assert teacher["role"] == "teacher" and "T" not in teacher["params"]
    assert model_params("resnet20") == teacher["params"]
    for name, e in MODELS.items():                 # every built-in: the same record
        assert set(e) == {"obj", "role", "module", "params"}, name
        assert e["module"] == e["obj"].__module__


def test_unknown_model_error_lists_registered_models_and_external_sources():
    with pytest.raises(ConfigError) as err:
        model_entry("no_such_net")
    assert str(err.value) == (
        "config key 'model.name': unknown model 'no_such_net'; registered models: "
        f"{', '.join(list_models())} (or '<source>/<arch>' with source spikingjelly, "
        "torchvision, timm, python)")
    with pytest.raises(ConfigError, match="unknown model 'keras/resnet'"):
        create_model("keras/resnet")               # not an external source


def test_external_names_resolve_but_are_not_listed():
    assert model_role("torchvision/resnet18") == "teacher"
    assert model_role("timm/resnet10t") == "teacher"
    assert model_role("spikingjelly/sew_resnet18") == "student"
    assert model_role("python/pkg.mod:factory") is None
    entry = model_entry("torchvision/resnet18")
    assert entry["params"][:2] == ("num_classes", "in_channels")
    assert "torchvision/resnet18" not in MODELS and "torchvision/resnet18" not in list_models()


def test_a_name_is_registered_once_and_roles_are_checked():
    with pytest.raises(ValueError, match="role must be one of"):
        register_model("tmp_registry_test", role="ann")
    with pytest.raises(ValueError, match="model 'resnet20' is registered twice"):
        register_model("resnet20", "teacher")(lambda num_classes=10: None)
    try:
        register_model("tmp_registry_test", "teacher")(lambda num_classes=10, width_mult=None: None)
        assert model_entry("tmp_registry_test")["params"] == ("num_classes", "width_mult")
        with pytest.raises(ValueError, match="model 'tmp_registry_test' is registered twice"):
            register_model("tmp_registry_test", "student")(lambda: None)
        assert model_role("tmp_registry_test") == "teacher"      # the first one stays
        with pytest.raises(ConfigError, match="model 'tmp_registry_test' does not take T; it "
                                              "accepts: num_classes, width_mult"):
            create_model("tmp_registry_test", T=4)
    finally:
        MODELS.unregister("tmp_registry_test")
    assert "tmp_registry_test" not in list_models()
