"""Typed config: YAML, overrides, validation errors that name the key, round trips."""

import pytest
import yaml

from spikedistill.commands.common import parse_dotted_flags
from spikedistill.config import Config, describe_keys, load_config, parse_override, save_config
from spikedistill.errors import ConfigError


def test_defaults_are_the_released_recipe():
    cfg = Config()
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay) == (0.1, 0.9, 1e-4)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.scheduler) == (400, 128, "cosine")
    assert (cfg.model.neuron.decay, cfg.model.neuron.threshold) == (0.5, 1.0)
    assert cfg.teacher.mode == "frozen" and cfg.model.last_activation == "relu"
    assert cfg.data.augment.erasing_scale == (0.02, 0.2)


def test_yaml_plus_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: spiking_resnet19, T: 4}\ntrain: {epochs: 10}\n")
    cfg = load_config(p, ["train.epochs=3", "train.lr=0.05", "model.neuron.surrogate=atan",
                          "data.augment.erasing_scale=[0.1, 0.3]", "data.root=null"])
    assert (cfg.model.name, cfg.model.T, cfg.train.epochs, cfg.train.lr) == ("spiking_resnet19", 4, 3, 0.05)
    assert cfg.model.neuron.surrogate == "atan"
    assert cfg.data.augment.erasing_scale == (0.1, 0.3)
    assert isinstance(cfg.train.lr, float)


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    assert load_config(None, ["train.weight_decay=1e-4"]).train.weight_decay == 1e-4
    with pytest.raises(ConfigError, match="'train.lr': expected a number, got 'fast'"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="'train.epochs': expected an integer, got 2.5"):
        load_config(None, ["train.epochs=2.5"])


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown config key 'train.epoch'.*valid keys.*epochs"),
    ("modle.T=3", "unknown config key 'modle'"),
    ("train.epochs=three", "'train.epochs': expected an integer, got 'three'"),
    ("run.tensorboard=maybe", "'run.tensorboard': expected true or false"),
    ("train.amp=fp8", "'train.amp': expected one of auto, bf16, fp16, fp32"),
    ("model.T=0", "'model.T': expected a value >= 1"),
    ("data.augment.erasing_scale=[0.1]", "'data.augment.erasing_scale': expected 2 values"),
    ("model.neuron.backend=cuda", "'model.neuron.backend'"),
    ("train=3", "'train': expected a mapping"),
    ("epochs", "expected KEY=VALUE"),
])
def test_errors_name_the_dotted_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml' is not valid YAML") as info:
        load_config(bad)
    assert "\n" not in str(info.value)          # PyYAML's multi-line report on one line
    listed = tmp_path / "listed.yaml"
    listed.write_text("defaults: [a.yaml, b.yaml]\n")
    with pytest.raises(ConfigError, match=r"listed.yaml': 'defaults' must name one YAML file"):
        load_config(listed)
    with pytest.raises(ConfigError, match=r"config file '.*' does not exist"):
        load_config(tmp_path)                    # a folder is not a config file


def test_anchors_and_aliases_are_refused_but_plain_yaml_is_the_same(tmp_path):
    from spikedistill.config import YAMLAliasRefused, safe_yaml_load

    text = "train: {epochs: 3, lr: 1e-2}\nmodel: {kwargs: {a: [1, 2.5, null, true, x]}}\n"
    assert safe_yaml_load(text) == yaml.safe_load(text)
    with pytest.raises(YAMLAliasRefused, match=r"YAML anchor &x at line 2, column 8"):
        safe_yaml_load("a: 1\nb: {c: &x 2}\n")
    with pytest.raises(YAMLAliasRefused, match=r"alias \*x at line 1"):
        safe_yaml_load("a: *x\n")                # refused before PyYAML's own 'undefined alias'
    p = tmp_path / "anchored.yaml"
    p.write_text("train: &t {epochs: 2}\n")
    with pytest.raises(ConfigError, match=r"anchored.yaml': YAML anchor &t at line 1"):
        load_config(p)


def test_range_messages_name_the_interval():
    from spikedistill.config import check_interval, check_range

    with pytest.raises(ConfigError, match=r"^config key 'k': expected a value in \[0, 1\), got 1$"):
        check_range(1, "k", low=0, high=1, high_open=True)
    with pytest.raises(ConfigError, match=r"^config key 'k': expected a value in \(0, 1\], got 0$"):
        check_range(0, "k", low=0, high=1, low_open=True)
    with pytest.raises(ConfigError, match=r"^config key 'k': expected a value >= 2, got 1$"):
        check_range(1, "k", low=2)
    for ok in (0, 0.5, 0.999):
        check_range(ok, "k", low=0, high=1, high_open=True)
    check_interval((0.5, 0.5), "k", low=0.0, high=1.0)   # a single point is an interval
    with pytest.raises(ConfigError, match=r"'k': expected \[low, high\] with low <= high"):
        check_interval((0.6, 0.5), "k", low=0.0, high=1.0)


def test_defaults_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {epochs: 7, lr: 0.2}\nmodel: {T: 2}\n")
    (tmp_path / "child.yaml").write_text("defaults: base.yaml\ntrain: {epochs: 9}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.T) == (9, 0.2, 2)


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["model.T=2", "data.name=cifar10", "data.root=/x", "train.seed=5"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["T"] == 2


def test_parse_override_and_dotted_flags():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=/some/path") == ("a.b", "/some/path")
    assert parse_dotted_flags(["--data.root", "/d", "--train.epochs=3"]) == ["data.root=/d",
                                                                             "train.epochs=3"]
    with pytest.raises(ConfigError, match="unrecognised argument '--verbose'"):
        parse_dotted_flags(["--verbose"])
    with pytest.raises(ConfigError, match="needs a value"):
        parse_dotted_flags(["--data.root"])


def test_describe_keys_lists_every_leaf():
    keys = describe_keys()
    assert any(k.startswith("train.lr: float = 0.1") for k in keys)
    assert any(k.startswith("model.neuron.decay") for k in keys)


def test_deep_merge_is_the_one_merge():
    """``config.deep_merge`` (defaults chains and ``eval --config``): ``src`` wins key by key,
    dicts merge recursively, and a nested dict ``dst`` shares with another mapping is copied."""
    from spikedistill.config import deep_merge

    shared = {"lr": 0.1, "opt": {"name": "sgd", "momentum": 0.9}}
    dst = {"train": shared, "model": {"T": 2}, "tags": [1]}
    deep_merge(dst, {"train": {"opt": {"momentum": 0.8}, "epochs": 3}, "tags": {"a": 1}, "x": None})
    assert dst == {"train": {"lr": 0.1, "epochs": 3, "opt": {"name": "sgd", "momentum": 0.8}},
                   "model": {"T": 2}, "tags": {"a": 1}, "x": None}
    assert shared == {"lr": 0.1, "opt": {"name": "sgd", "momentum": 0.9}}
    deep_merge(dst, {"model": 5})
    assert dst["model"] == 5
    import spikedistill.commands.evaluate as E
    assert not hasattr(E, "_deep_merge") and E.deep_merge is deep_merge
