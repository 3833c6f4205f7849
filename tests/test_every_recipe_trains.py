"""Every shipped recipe starts and takes one optimisation step.

Each config under ``configs/`` (the run recipes, and every variant of the ablation grids) and
the demo's (``src/spikedistill/commands/demo_configs/``) goes through the real
:func:`~spikedistill.engine.run_training` (data -> student -> teacher -> method -> optimiser ->
one step -> evaluation -> checkpoint) with its own model name, method and data kind (images or
event frames, the dataset's channels and classes). Only the sizes shrink: the data are generated
(``open_pipeline`` is replaced by tiny uint8 splits of the recipe's shape), images are 16 px
(32 px for ImageNet's SEW-ResNet), widths and T are cut, and a teacher the recipe expects is a
random one of the recipe's kind (a spikedistill ResNet-20 checkpoint, or a torchvision
state-dict file). So a recipe that cannot start (a key the engine refuses, a model that does not
build with its method) fails here instead of on the user's GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
import torch

from spikedistill.config import Config, load_config
from spikedistill.data.datasets import DatasetSplits, Split
from spikedistill.data.pipeline import MemoryPipeline
from spikedistill.distill import method_requires_teacher
from spikedistill.models import config_role
from spikedistill.plugins import DATASETS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").rglob("*.yaml"))
DEMO = sorted((ROOT / "src" / "spikedistill" / "commands" / "demo_configs").glob("*.yaml"))
GRIDS = [p for p in RECIPES if p.parent.name == "ablations"]
RUNS = [p for p in RECIPES if p not in GRIDS] + DEMO

SMALL = ["train.epochs=1", "train.max_steps_per_epoch=1", "train.batch_size=4",
         "train.batch_size_is=per_gpu", "train.eval_batch_size=4", "train.warmup_epochs=0",
         "train.threads=1", "train.device=cpu", "train.amp=fp32", "data.workers=0",
         "data.pipeline=memory", "data.train_subset=0", "data.test_subset=0",
         "run.progress=false", "run.tensorboard=false", "run.plots=false",
         "teacher.min_accuracy=null"]


def _shrink(cfg: Config) -> List[str]:
    """Overrides that keep the recipe's model, method and data kind but make it tiny."""
    out = []
    if cfg.model.source == "spikedistill":
        out.append("model.width_mult=1")
    if cfg.model.T > 2:
        out.append("model.T=2")
    if cfg.data.kwargs and "T" in cfg.data.kwargs:
        out.append("data.kwargs.T=2")
    out.append(f"data.image_size={32 if cfg.data.name == 'imagenet' else 16}")
    return out


def _fake_load_data(cfg: Config) -> DatasetSplits:
    """Generated uint8 splits of the recipe's shape: 8 training and 4 test samples of the
    registered dataset's channels and classes, frames ``[N, T, C, H, W]`` of event counts 0..3 for
    a frame dataset (T = ``data.kwargs.T`` or the student's ``model.T``)."""
    spec = DATASETS.get(cfg.data.name)
    K = int(spec.num_classes or 1000)
    C, size = int(spec.in_channels or 3), int(cfg.data.image_size)
    g = torch.Generator().manual_seed(0)
    if spec.frames:
        T = int((cfg.data.kwargs or {}).get("T", cfg.model.T))
        shape, high = (T, C, size, size), 4
    else:
        shape, high = (C, size, size), 256

    def split(n: int) -> Split:
        return Split(torch.randint(0, high, (n, *shape), generator=g, dtype=torch.uint8),
                     torch.arange(n) % K)

    mean = tuple(spec.mean[:C]) if spec.mean is not None else (0.5,) * C
    std = tuple(spec.std[:C]) if spec.std is not None else (0.5,) * C
    return DatasetSplits(name=cfg.data.name, train=split(8), test=split(4), num_classes=K,
                         class_names=[str(k) for k in range(K)], in_channels=C, image_size=size,
                         mean=mean, std=std, source="generated", frames=bool(spec.frames),
                         T=shape[0] if spec.frames else None)


def _fake_pipeline(cfg: Config):
    """The trainer's ``open_pipeline(data_cfg, T=...)`` replaced: :func:`_fake_load_data` in a
    memory pipeline (the run's whole config is bound by :func:`_run_one_step`)."""
    return lambda data_cfg, T=None: MemoryPipeline(_fake_load_data(cfg), data_cfg)


def _teacher_overrides(cfg: Config, tmp: Path) -> List[str]:
    """A random teacher of the kind the recipe expects (nothing when its method needs none)."""
    if config_role(cfg.model) == "teacher" or not method_requires_teacher(cfg.distill.method):
        return []
    splits = _fake_load_data(cfg)
    K, C = splits.num_classes, splits.in_channels
    if cfg.teacher.frames == "stack" and splits.frames:
        C *= int(splits.T)
    if cfg.teacher.source == "torchvision":
        import torchvision

        path = tmp / f"{cfg.teacher.arch}.pth"
        net = getattr(torchvision.models, cfg.teacher.arch)(num_classes=K)
        torch.save(net.state_dict(), path)
        return [f"teacher.weights={path}"]
    from spikedistill.engine import checkpoint as ck
    from spikedistill.models import create_model

    teacher = create_model("resnet20", num_classes=K, in_channels=C, width_mult=1)
    path = tmp / "teacher.pt"
    ck.save_checkpoint(ck.make_checkpoint(model=teacher, config={}, epoch=1), path)
    return [f"teacher.checkpoint={path}"]


def _run_one_step(path: Path, tmp: Path, overrides: List[str], monkeypatch) -> None:
    from spikedistill.engine import trainer

    base = load_config(path, overrides)
    ov = overrides + SMALL + _shrink(base) + [f"run.out_dir={tmp}", "run.name=step"]
    cfg = load_config(path, ov)
    cfg = load_config(path, ov + _teacher_overrides(cfg, tmp))
    monkeypatch.setattr(trainer, "open_pipeline", _fake_pipeline(cfg))
    result = trainer.run_training(cfg)
    assert result.epochs == 1 and result.method == base.distill.method
    assert result.model_name == base.model.name or base.model.source != "spikedistill"
    assert all(v == v for v in result.loss_means.values()), result.loss_means   # no NaN
    assert (tmp / "step" / "last.pt").is_file()


@pytest.mark.parametrize("path", RUNS, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipe_takes_one_step(path, tmp_path, monkeypatch):
    _run_one_step(path, tmp_path, [], monkeypatch)


def _grid_variants():
    from spikedistill.commands.ablate import load_grid

    for grid in GRIDS:
        for name, v in load_grid(grid).variants.items():
            ov = [f"distill.method={v['method']}"] + [
                f"{k}={val}" for k, val in (v.get("set") or {}).items()]
            yield pytest.param(load_grid(grid).base, ov, id=f"{grid.stem}:{name}")


@pytest.mark.parametrize("base, overrides", list(_grid_variants()))
def test_ablation_variant_takes_one_step(base, overrides, tmp_path, monkeypatch):
    _run_one_step(Path(base), tmp_path, overrides, monkeypatch)


def test_every_recipe_is_covered():
    """A new recipe file is picked up by the globs above (the lists are not hand-written)."""
    names = {p.name for p in RUNS}
    assert "spikformer_4_384_ce.yaml" in names and "vggsnn_t10.yaml" in names
    assert "sew_resnet34_t4_ckd.yaml" in names and "student.yaml" in names
    assert len(GRIDS) == 4
