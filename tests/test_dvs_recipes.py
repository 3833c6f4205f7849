"""The CIFAR10-DVS recipes (``configs/cifar10dvs/``) load and say what the paper row needs:
T = 10, 2 x 48 x 48 frames, the TET flip + roll augmentation, the registered models and
methods, teacher.frames per_step. Validated against the real ``cifar10dvs`` dataset once it is
registered; skipped (with the reason) before."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikedistill.config import load_config
from spikedistill.distill import list_methods
from spikedistill.models import list_models, model_role
from spikedistill.plugins import DATASETS

RECIPES = Path(__file__).resolve().parents[1] / "configs" / "cifar10dvs"
FILES = sorted(RECIPES.glob("*.yaml"))
EXPECTED = {"teacher_resnet20.yaml": ("resnet20", "ce"),
            "resnet20_snn_t10.yaml": ("spiking_resnet20", "ce"),
            "ckd_resnet20_t10.yaml": ("spiking_resnet20", "ckd"),
            "kd_resnet20_t10.yaml": ("spiking_resnet20", "kd"),
            "enof_resnet20_t10.yaml": ("spiking_resnet20", "enof"),
            "vggsnn_t10.yaml": ("vggsnn", "ce"),
            "compare_resnet20_t10.yaml": ("spiking_resnet20", "ce")}


def test_every_recipe_is_there():
    assert {f.name for f in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_recipe_loads_for_cifar10dvs(path):
    if "cifar10dvs" not in DATASETS:
        pytest.skip("dataset cifar10dvs is not registered on this branch (issue 9 part 1 adds it); "
                    "the recipes are validated after the merge")
    cfg = load_config(str(path))
    model, method = EXPECTED[path.name]
    assert cfg.data.name == "cifar10dvs" and cfg.model.name == model
    assert cfg.distill.method == method and method in list_methods()
    assert model in list_models()
    assert cfg.model.T == 10 and int(cfg.data.kwargs["T"]) == 10
    assert DATASETS.get("cifar10dvs").image_size == 48 and DATASETS.get("cifar10dvs").in_channels == 2
    aug = cfg.data.augment
    assert (aug.hflip, aug.translate, aug.translate_fill) == (True, 5, "wrap")
    assert not (aug.random_crop or aug.autoaugment or aug.random_erasing)
    assert cfg.teacher.frames == "per_step"
    if model_role(model) == "student" and model == "vggsnn":
        assert cfg.train.optimizer == "adamw" and cfg.train.lr == 0.001
        assert cfg.model.last_activation == "lif"
