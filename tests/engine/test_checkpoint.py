"""Checkpoint files: atomic writes, validation of broken files, model rebuilding, RNG state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engine_helpers import state_dicts_equal
from spikedistill.engine import checkpoint as ck
from spikedistill.errors import CheckpointError
from spikedistill.models import create_model


def _tiny_model(**kw):
    args = dict(num_classes=10, in_channels=1, width_mult=1)
    args.update(kw)
    return create_model("resnet20", **args)


def _ckpt(model, epoch=1):
    return ck.make_checkpoint(model=model, config={"model": {"name": model.model_name}},
                              epoch=epoch, best_acc=0.5, best_epoch=epoch,
                              history=[{"epoch": epoch, "test_acc": 0.5}])


def test_round_trip_rebuilds_the_model(tmp_path):
    torch.manual_seed(0)
    model = _tiny_model().eval()
    path = ck.save_checkpoint(_ckpt(model, epoch=3), tmp_path / "best.pt")
    rebuilt, meta = ck.load_model_from_checkpoint(path, "cpu")
    assert type(rebuilt) is type(model) and not rebuilt.training
    assert state_dicts_equal(rebuilt.state_dict(), model.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(rebuilt(x), model(x))
    assert meta["epoch"] == 3 and meta["model_name"] == "resnet20"
    assert meta["model_kwargs"]["num_classes"] == 10
    assert "model" not in meta and "optimizer" not in meta


def test_kwarg_override_on_rebuild(tmp_path):
    student = create_model("spiking_resnet20", num_classes=10, in_channels=1, T=1)
    path = ck.save_checkpoint(_ckpt(student), tmp_path / "s.pt")
    rebuilt, _ = ck.load_model_from_checkpoint(path, "cpu", T=3)
    assert rebuilt.T == 3


def test_crash_during_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.save_checkpoint(_ckpt(_tiny_model(), epoch=1), path)
    before = path.read_bytes()

    real_save = torch.save

    def exploding_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # something reached the temp file
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ck.torch, "save", exploding_save)
    with pytest.raises(OSError, match="simulated"):
        ck.save_checkpoint(_ckpt(_tiny_model(), epoch=2), path)
    monkeypatch.setattr(ck.torch, "save", real_save)
    assert path.read_bytes() == before
    assert list(ck.list_temp_files(tmp_path)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert ck.load_checkpoint(path)["epoch"] == 1


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "best.pt"
    ck.save_checkpoint(_ckpt(_tiny_model()), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        ck.load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "truncated or corrupt, expected a spikedistill checkpoint" in msg
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ck.load_model_from_checkpoint(path)


def test_garbage_and_empty_files(tmp_path):
    for name, payload in (("garbage.pt", b"this is not a checkpoint" * 10), ("empty.pt", b"")):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(CheckpointError, match=f"{name}.*truncated or corrupt"):
            ck.load_checkpoint(path)


def test_missing_file_and_run_dir_without_last(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt' does not exist"):
        ck.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="has no last.pt"):
        ck.load_checkpoint(tmp_path)


def test_wrong_format_version_and_keys(tmp_path):
    model = _tiny_model()
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="bare.pt' is not a spikedistill checkpoint"):
        ck.load_checkpoint(tmp_path / "bare.pt")

    future = _ckpt(model)
    future["format_version"] = ck.FORMAT_VERSION + 1
    ck.save_checkpoint(future, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version"):
        ck.load_checkpoint(tmp_path / "future.pt")

    partial = _ckpt(model)
    del partial["model"], partial["config"]
    ck.save_checkpoint(partial, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks the keys model, config"):
        ck.load_checkpoint(tmp_path / "partial.pt")


def test_model_mismatch(tmp_path):
    ckpt = _ckpt(_tiny_model())
    wider = _tiny_model(width_mult=2)
    with pytest.raises(CheckpointError, match="do not fit the model.*shape mismatch"):
        ck.load_state_checked(wider, ckpt["model"], "model", "x.pt")
    ckpt["path"] = "x.pt"
    with pytest.raises(CheckpointError, match="width_mult: checkpoint 1 vs config 2"):
        ck.check_same_model(ckpt, "resnet20", wider.model_kwargs)
    with pytest.raises(CheckpointError, match="model 'resnet20' vs 'resnet19'"):
        ck.check_same_model(ckpt, "resnet19", wider.model_kwargs)
    ck.check_same_model(ckpt, "resnet20", dict(ckpt["model_kwargs"]))  # same: no error

    # saved weights that do not fit the saved architecture (hand-edited file)
    ckpt = _ckpt(_tiny_model())
    ckpt["model"] = wider.state_dict()
    ck.save_checkpoint(ckpt, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt.*do not fit"):
        ck.load_model_from_checkpoint(tmp_path / "edited.pt")


def test_rng_state_round_trip(tmp_path):
    random.seed(1); np.random.seed(2); torch.manual_seed(3)
    state = ck.capture_rng_state()
    # survives a weights_only save/load
    ck.atomic_torch_save({"rng": state}, tmp_path / "rng.pt")
    state = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    first = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9); np.random.seed(9); torch.manual_seed(9)
    ck.restore_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_unregistered_model_cannot_be_checkpointed():
    with pytest.raises(CheckpointError, match="not built by"):
        ck.make_checkpoint(model=torch.nn.Linear(2, 2), config={}, epoch=0)
