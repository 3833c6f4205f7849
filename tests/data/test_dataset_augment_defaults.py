"""A dataset's registration carries its default augmentation: ``data.name=digits`` alone gets
none of CIFAR's, CIFAR keeps the spec's, CIFAR10-DVS gets TET's; keys a config sets win."""

from __future__ import annotations

import dataclasses

import pytest

from spikedistill.config import AugmentConfig, build_config, load_config
from spikedistill.data.registry import get_dataset
from spikedistill.errors import ConfigError

CIFAR = dataclasses.asdict(AugmentConfig())


def _augment(*overrides):
    return dataclasses.asdict(build_config(overrides=list(overrides)).data.augment)


def test_digits_alone_gets_none_of_cifars_augmentation():
    aug = _augment("data.name=digits")
    assert aug["hflip"] is False and aug["autoaugment"] is False
    assert aug["random_erasing"] == 0.0 and aug["crop_padding"] == 1
    assert aug == {**CIFAR, "crop_padding": 1, "hflip": False, "autoaugment": False,
                   "random_erasing": 0.0}
    assert _augment() == aug  # digits is the default dataset


def test_cifar_keeps_the_spec_recipe_and_events_get_tets():
    assert _augment("data.name=cifar10") == CIFAR
    assert _augment("data.name=cifar100") == CIFAR
    dvs = _augment("data.name=cifar10dvs")
    assert dvs == {**CIFAR, "random_crop": False, "hflip": True, "autoaugment": False,
                   "random_erasing": 0.0, "translate": 5, "translate_fill": "wrap"}
    assert get_dataset("cifar10dvs").augment["translate"] == 5


def test_keys_a_config_sets_win_and_the_rest_come_from_the_dataset():
    aug = _augment("data.name=digits", "data.augment.hflip=true", "data.augment.translate=2")
    assert aug["hflip"] is True and aug["translate"] == 2 and aug["autoaugment"] is False
    with pytest.raises(ConfigError, match="data.augment.autoaugment"):
        build_config(overrides=["data.name=cifar10dvs", "data.augment.autoaugment=true"])


def test_resolved_config_round_trips_and_the_demo_recipe_is_unchanged():
    cfg = build_config(overrides=["data.name=digits"])
    assert build_config(cfg.to_dict()) == cfg
    # a saved CIFAR-recipe config on digits (every key explicit) keeps its values
    explicit = build_config(overrides=["data.name=digits"]
                            + [f"data.augment.{k}={v}" for k, v in
                               (("hflip", "true"), ("autoaugment", "true"),
                                ("random_erasing", 0.5), ("crop_padding", 4))])
    assert dataclasses.asdict(explicit.data.augment) == CIFAR
    from importlib import resources
    student = resources.files("spikedistill.commands") / "demo_configs" / "student.yaml"
    aug = dataclasses.asdict(load_config(str(student)).data.augment)
    assert aug == {**CIFAR, "random_crop": False, "crop_padding": 1, "hflip": False,
                   "autoaugment": False, "random_erasing": 0.0}
