"""Values (issue 17, part 5): NaN and inf are refused for every float config key (one generic
check), memory-exploding sizes have upper bounds, and the events CLI arguments are checked
before any work, each as one line naming the key or flag."""

from __future__ import annotations

import pytest

from spikedistill.cli import main
from spikedistill.config import MAX_IMAGE_SIZE, MAX_T, describe_keys, load_config
from spikedistill.errors import ConfigError, DataError


def _float_keys():
    keys = []
    for line in describe_keys():
        key, rest = line.split(": ", 1)
        kind = rest.split(" = ")[0]
        if kind in ("float", "float or null"):
            keys.append(key)
    return keys


def test_there_are_float_keys_to_check():
    keys = _float_keys()
    assert "train.lr" in keys and "model.neuron.decay" in keys and len(keys) > 15


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", "-inf", ".inf", "-.inf"])
def test_every_float_key_refuses_nan_and_inf(value):
    for key in _float_keys():
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"{key}={value}"])
        text = str(e.value)
        assert f"'{key}'" in text and "finite" in text and "\n" not in text, (key, text)


def test_finite_floats_still_load():
    cfg = load_config(None, ["model.neuron.decay=0.5", "train.lr=1e-3"])
    assert cfg.model.neuron.decay == 0.5 and cfg.train.lr == 1e-3


@pytest.mark.parametrize("override, key", [
    (f"data.image_size={MAX_IMAGE_SIZE + 1}", "data.image_size"),
    ("data.image_size=100000", "data.image_size"),
    (f"model.T={MAX_T + 1}", "model.T"),
    ("model.T=100000", "model.T"),
    ("data.subset_seed=-1", "data.subset_seed"),
])
def test_upper_bounds_and_seeds(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])
    load_config(None, [override.split("=")[0] + "=" + ("0" if "seed" in key else "16")])


@pytest.mark.parametrize("fraction", ["abc", None, float("nan"), 0, 1.5])
def test_train_fraction_is_one_line(fraction):
    from spikedistill.data.events.split import split_keys

    with pytest.raises(DataError, match="train_fraction"):
        split_keys(["a/1", "a/2", "b/1", "b/2"], train_fraction=fraction)
    assert split_keys(["a/1", "a/2", "b/1", "b/2"], train_fraction="0.5") == (["a/1", "b/1"], ["a/2", "b/2"])


@pytest.mark.parametrize("flag, value, word", [
    ("--radius", "nan", "finite"), ("--radius", "inf", "finite"), ("--radius", "1e6", "sensor"),
    ("--threshold", "nan", "finite"), ("--threshold", "0", "threshold"),
])
def test_events_emulate_arguments_are_checked_first(tmp_path, capsys, flag, value, word):
    rc = main(["events", "emulate", "--out", str(tmp_path / "ev"), flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: emulate:") and word in err and err.count("\n") == 1
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("flag, value", [("--size", "0"), ("--size", "-5"), ("--size", "100000"),
                                         ("--T", "0"), ("--T", "100000")])
def test_events_convert_arguments_are_checked_first(tmp_path, capsys, flag, value):
    rc = main(["events", "convert", str(tmp_path), flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {flag}: expected an integer in [1, ") and err.count("\n") == 1
