"""``spikedistill eval`` gets its data from the data pipeline: a checkpoint of a run on streamed
data evaluates (the command used to read ``splits.train.images``, which a streamed split does
not have), and the input-channel check is the pipeline's rule (``C``, or ``T*C`` for stacked
frames), refusing a checkpoint of another channel count with one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from spikedistill.cli import main
from spikedistill.config import build_config
from spikedistill.engine import checkpoint as ck
from spikedistill.models import create_model, model_kwargs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fake_imagenet import make_tree  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    make_tree(root, per_class=2, val_per_class=2)          # 3 classes, 6 test images
    return root


def _checkpoint(path, pipeline, in_channels=3):
    cfg = build_config({}, ["model.width_mult=1", "model.T=1", "train.device=cpu",
                            "data.name=imagefolder", "data.image_size=16", "data.workers=0",
                            f"data.pipeline={pipeline}", "train.eval_batch_size=4"])
    model = create_model(cfg.model.name, **model_kwargs(cfg.model, 3, in_channels))
    ck.save_checkpoint(ck.make_checkpoint(model=model, config=cfg.to_dict(), epoch=1), path)
    return path


@pytest.mark.parametrize("pipeline", ["stream", "memory"])
def test_eval_reads_memory_and_streamed_data(tree, tmp_path, capsys, pipeline):
    path = _checkpoint(tmp_path / "run.pt", pipeline)
    assert main(["eval", "--checkpoint", str(path), "--json", "--data.root", str(tree),
                 "--data.cache_dir", str(tmp_path / "cache")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["test_images"] == 6 and 0.0 <= info["top1"] <= 1.0


def test_eval_refuses_a_checkpoint_of_other_input_channels(tree, tmp_path, capsys):
    path = _checkpoint(tmp_path / "two.pt", "stream", in_channels=2)
    assert main(["eval", "--checkpoint", str(path), "--data.root", str(tree)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "takes 2-channel images but dataset 'imagefolder' has 3" in err
