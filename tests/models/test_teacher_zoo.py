"""The teacher zoo: shipped teachers load by name, sha256-checked, with their card's accuracy."""

from __future__ import annotations

import fnmatch
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from spikedistill.config import build_config
from spikedistill.data import build_augment, load_dataset
from spikedistill.errors import CheckpointError, ConfigError
from spikedistill.models.teacher_zoo import ZOO_DIR, load_zoo_teacher, zoo_entry, zoo_names

REPO = Path(__file__).resolve().parents[2]


def test_digits_teacher_reproduces_its_card_accuracy():
    entry = zoo_entry("digits_resnet20")
    teacher, prov = load_zoo_teacher("digits_resnet20")
    assert prov["sha256"] == entry["sha256"] and prov["source"] == "zoo"
    assert not teacher.training and not getattr(teacher, "is_spiking", False)
    data = load_dataset("digits")
    x = build_augment(False, data.mean, data.std)(data.test.images, None)
    with torch.no_grad():
        correct = int((teacher(x).argmax(1) == data.test.labels).sum())
    # the card's number was measured by the training run's own evaluation (443 / 450)
    assert correct == 443 and round(correct / len(data.test), 6) == entry["test_acc"]
    card = (ZOO_DIR / "digits_resnet20.md").read_text()
    assert entry["sha256"] in card and "98.44 %" in card


@pytest.mark.slow
@pytest.mark.real_data
def test_cifar10_teacher_reproduces_its_card_accuracy(shared_dir, tmp_path):
    archive = shared_dir / "data" / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        # (the real_data marker already skips without ../shared/data; this names the file)
        pytest.skip(f"needs ../shared/data/cifar10-jpeg.tar.gz: {archive} not found")
    entry = zoo_entry("cifar10_resnet20")
    teacher, prov = load_zoo_teacher("cifar10_resnet20")
    assert prov["sha256"] == entry["sha256"] and entry["model_kwargs"]["in_channels"] == 3
    # every test image, one training image a class decoded (the teacher saw all 50,000)
    data = load_dataset("cifar10", archive, train_subset=10, test_subset=0,
                        cache_dir=tmp_path / "cache")
    assert len(data.test) == 10000
    augment = build_augment(False, data.mean, data.std)
    correct = 0
    with torch.no_grad():
        for i in range(0, 10000, 1000):
            x = augment(data.test.images[i:i + 1000], None)
            correct += int((teacher(x).argmax(1) == data.test.labels[i:i + 1000]).sum())
    # the card's number was measured by the training run's own evaluation (7,013 / 10,000)
    assert correct == 7013 and correct / 10000 == entry["test_acc"]
    card = (ZOO_DIR / "cifar10_resnet20.md").read_text()
    assert entry["sha256"] in card and "70.13 %" in card


def test_a_changed_weights_file_is_refused(tmp_path):
    root = tmp_path / "zoo"
    shutil.copytree(ZOO_DIR, root)
    blob = bytearray((root / "digits_resnet20.safetensors").read_bytes())
    blob[-1] ^= 0x01
    (root / "digits_resnet20.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_zoo_teacher("digits_resnet20", root=root)


def test_an_unknown_name_lists_the_zoo():
    with pytest.raises(ConfigError, match="teacher.zoo.*digits_resnet20"):
        zoo_entry("cifar10_resnet2000")
    assert "digits_resnet20" in zoo_names()


def test_zoo_and_checkpoint_together_are_refused():
    with pytest.raises(ConfigError, match="teacher.zoo"):
        build_config({}, ["teacher.zoo=digits_resnet20", "teacher.checkpoint=x.pt"])


def test_the_zoo_files_are_declared_package_data():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib")
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["spikedistill"]
    pkg = REPO / "src" / "spikedistill"
    for f in ZOO_DIR.iterdir():
        rel = f.relative_to(pkg).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


def test_a_run_distils_from_the_zoo_teacher_by_name(tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "engine"))
    from engine_helpers import tiny_config
    from spikedistill.engine.trainer import run_training

    cfg = tiny_config(tmp_path, "zoo", ["train.epochs=1", "distill.method=kd",
                                        "teacher.zoo=digits_resnet20", "data.test_subset=0"])
    res = run_training(cfg)
    assert res.teacher_acc == pytest.approx(443 / 450)
    record = json.loads((tmp_path / "zoo" / "teacher.json").read_text())
    assert record["sha256"] == zoo_entry("digits_resnet20")["sha256"]
