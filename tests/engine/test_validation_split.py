"""data.val_fraction: a class-balanced, seeded validation split that chooses best.pt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_helpers import SimulatedCrash, crash_after, state_dicts_equal, tiny_config
from spikedistill.analysis.study_summary import selection_sentence
from spikedistill.commands.train import selection_row
from spikedistill.config import build_config
from spikedistill.data import hold_out_validation, load_dataset
from spikedistill.engine import checkpoint as ck
from spikedistill.engine.logging import read_metrics_csv
from spikedistill.engine.trainer import run_training
from spikedistill.errors import ConfigError, DataError


def _rows(split):
    """Each sample as bytes of its image plus its label (to compare sets of samples)."""
    return [split.images[i].numpy().tobytes() + bytes([int(split.labels[i])])
            for i in range(len(split))]


def test_held_out_part_is_class_balanced_disjoint_and_seeded():
    splits = load_dataset("digits", train_subset=200, test_subset=50)
    held = hold_out_validation(splits, 0.25, seed=3)
    assert len(held.val) == 50 and len(held.train) == 150
    assert np.bincount(held.val.labels.numpy(), minlength=10).tolist() == [5] * 10
    # train + val is exactly the original training split, with no sample in both
    assert sorted(_rows(held.train) + _rows(held.val)) == sorted(_rows(splits.train))
    assert not set(_rows(held.train)) & set(_rows(held.val))
    assert torch.equal(held.test.images, splits.test.images)
    again = hold_out_validation(splits, 0.25, seed=3)
    other = hold_out_validation(splits, 0.25, seed=4)
    assert torch.equal(again.val.images, held.val.images)
    assert not torch.equal(other.val.images, held.val.images)
    assert hold_out_validation(splits, 0.0, seed=3) is splits


def test_with_a_training_subset_validation_comes_from_the_images_it_left_out():
    plain = load_dataset("digits", train_subset=135)
    held = load_dataset("digits", train_subset=135, val_fraction=0.5)
    # the training images, their order and the normalisation are those of the run without val
    assert torch.equal(held.train.images, plain.train.images)
    assert torch.equal(held.train.labels, plain.train.labels)
    assert (held.mean, held.std) == (plain.mean, plain.std)
    assert len(held.val) == 68  # round(0.5 * 135); 7 of classes 0-7, 6 of classes 8 and 9
    assert np.bincount(held.val.labels.numpy(), minlength=10).tolist() == [7] * 8 + [6] * 2
    assert not set(_rows(held.val)) & set(_rows(held.train))
    full = load_dataset("digits")
    assert set(_rows(held.val)) <= set(_rows(full.train))


@pytest.mark.parametrize("fraction", [0.001, 0.9999])
def test_a_fraction_holding_out_nothing_or_everything_is_refused(fraction):
    splits = load_dataset("digits", train_subset=100, test_subset=20)
    with pytest.raises(DataError, match="data.val_fraction"):
        hold_out_validation(splits, fraction, seed=0)


def test_val_fraction_outside_0_1_is_a_config_error():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        build_config({}, ["data.val_fraction=1.0"])


def test_best_checkpoint_is_chosen_on_validation_and_reports_its_test_accuracy(tmp_path):
    res = run_training(tiny_config(tmp_path, "val", ["data.val_fraction=0.2", "train.epochs=4"]))
    assert res.selected_on == "val"
    vals = [r["val_acc"] for r in res.history]
    chosen = int(np.argmax(vals))  # the first epoch with the highest validation accuracy
    assert res.best_epoch == chosen + 1 and res.best_val_acc == vals[chosen]
    assert res.best_acc == res.history[chosen]["test_acc"]
    assert ck.load_checkpoint(tmp_path / "val" / "best.pt")["epoch"] == res.best_epoch
    rows = read_metrics_csv(tmp_path / "val" / "metrics.csv")
    assert [float(r["val_acc"]) for r in rows] == pytest.approx(vals)
    label, text = selection_row(res)
    assert "chosen on val" in text and label == "best.pt test acc"


def test_without_validation_the_test_split_chooses_and_says_so(tmp_path):
    res = run_training(tiny_config(tmp_path, "noval", ["train.epochs=2"]))
    assert res.selected_on == "test" and res.best_val_acc is None
    assert "val_acc" not in res.history[0]
    assert res.best_acc == max(r["test_acc"] for r in res.history)
    assert "chosen on test" in selection_row(res)[1]


def test_resume_with_a_validation_split_is_exact(tmp_path):
    extra = ["data.val_fraction=0.2"]
    full = run_training(tiny_config(tmp_path, "full", extra))
    with pytest.raises(SimulatedCrash):
        run_training(tiny_config(tmp_path, "cut", extra), on_epoch_end=crash_after(1))
    resumed = run_training(None, resume=tmp_path / "cut")
    assert [(r["val_acc"], r["test_acc"], r["loss_ce"]) for r in full.history] == \
        [(r["val_acc"], r["test_acc"], r["loss_ce"]) for r in resumed.history]
    assert (full.best_epoch, full.best_acc, full.best_val_acc) == \
        (resumed.best_epoch, resumed.best_acc, resumed.best_val_acc)
    a, b = (ck.load_checkpoint(tmp_path / n / "last.pt") for n in ("full", "cut"))
    assert state_dicts_equal(a["model"], b["model"])


def test_compare_names_the_split_that_chose():
    assert "validation split" in selection_sentence([{"selected_on": "val"}] * 2)
    assert "test split itself" in selection_sentence([{"selected_on": "test"}, {}])
    assert "different splits" in selection_sentence([{"selected_on": "val"}, {}])


def test_with_a_training_subset_the_validation_split_leaves_training_unchanged(tmp_path):
    # evaluating the held-out images between epochs draws no random numbers and touches no
    # training state: losses, test accuracies and weights equal those of the run without them
    plain = run_training(tiny_config(tmp_path, "plain", ["train.epochs=2"]))
    held = run_training(tiny_config(tmp_path, "held", ["train.epochs=2", "data.val_fraction=0.25"]))
    assert [(r["loss_ce"], r["test_acc"]) for r in plain.history] == \
        [(r["loss_ce"], r["test_acc"]) for r in held.history]
    a, b = (ck.load_checkpoint(tmp_path / n / "last.pt") for n in ("plain", "held"))
    assert state_dicts_equal(a["model"], b["model"])
    assert held.selected_on == "val" and "val_acc" in held.history[0]
