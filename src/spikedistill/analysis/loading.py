"""Loading what the analysis commands need: a model from a checkpoint, its run config with
dotted overrides (``--data.root PATH``), the test loader, the run's teacher, the input shape (the device:
:func:`spikedistill.engine.distributed.resolve_device` with ``key="--device"``)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from spikedistill.errors import CheckpointError, ConfigError


def load_model(path, device, **kwarg_overrides):
    """``(model in eval mode, meta)`` from a spikedistill checkpoint (a file, or a run directory:
    its ``best.pt``, else ``last.pt``, :func:`spikedistill.run_files.run_checkpoint`)."""
    from spikedistill.engine import load_model_from_checkpoint
    from spikedistill.run_files import run_checkpoint

    return load_model_from_checkpoint(run_checkpoint(path), device, **kwarg_overrides)


#: ``data`` keys of a stored config that say where data is read and cached: a checkpoint (maybe
#: someone else's) never chooses them; only the user does (``--data.root``, ``--data.cache_dir``)
LOCATION_KEYS = ("root", "cache_dir")


def without_data_location(stored: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(config dict with data.root / data.cache_dir reset to their defaults, the stored
    values that were dropped)``: the default locations apply unless the user passes them."""
    out = dict(stored)
    data = dict(out.get("data") or {})
    dropped = {k: data.pop(k) for k in LOCATION_KEYS if data.get(k) not in (None, "")}
    out["data"] = data
    return out, dropped


def run_config(meta: Dict[str, Any], overrides: Sequence[str] = ()):
    """The run config stored in a checkpoint, with dotted overrides (``data.root=PATH``).

    The stored ``data.root`` and ``data.cache_dir`` are not used (:func:`without_data_location`):
    data is read from where ``overrides`` say, else the defaults (a dataset that needs a root
    asks for ``--data.root``)."""
    from spikedistill.config import build_config

    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint '{meta.get('path', '?')}' holds no run config")
    return build_config(without_data_location(cfg)[0], overrides)


def open_data(cfg):
    """The run config's data pipeline (:func:`spikedistill.data.pipeline.open_pipeline`), a
    frame dataset read with the student's ``model.T`` as training read it."""
    from spikedistill.data.pipeline import open_pipeline
    from spikedistill.models import input_frames

    return open_pipeline(cfg.data, T=input_frames(cfg.model))


def eval_loader(cfg, device, batch_size: Optional[int] = None, *, sample: bool = False):
    """``(normalised test loader, data pipeline)`` of the run config's dataset
    (:class:`~spikedistill.data.pipeline.DataPipeline`; its ``splits`` hold the data).

    In order by default. With ``sample=True`` the test set is visited in one fixed random
    permutation (seed 0): the first few batches are then a representative sample rather than
    the first classes of a class-sorted test split (CIFAR's ImageFolder copies are sorted, so the
    first 2,048 images are two classes).
    """
    pipe = open_data(cfg)
    bs = int(batch_size or cfg.train.eval_batch_size)
    if bs < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {bs}")
    return pipe.eval_loader(bs, device, shuffle=sample), pipe


def input_affine_of(pipe) -> Optional[tuple]:
    """The map from the loader's normalised frames back to event counts
    (:func:`spikedistill.analysis.counting.loader_affine`) when the data pipeline ``pipe``
    holds frames, so that the counter sees the first layer's input as spikes; None for
    images."""
    if pipe.frames_per_sample is None:
        return None
    from spikedistill.analysis.counting import loader_affine

    return loader_affine(pipe.splits.mean, pipe.splits.std)


def load_teacher(cfg, pipe, device, path=None):
    """The teacher of run config ``cfg`` on the data of the pipeline ``pipe``, in eval mode on ``device``,
    built as training builds it (:func:`spikedistill.engine.build.build_teacher`, any source:
    checks of classes, input channels and ``teacher.allow_spiking`` included), or None when the
    config names none. ``path`` replaces the teacher's file (and a ``teacher.zoo`` name): the
    checkpoint (a file, or a run directory: :func:`spikedistill.run_files.run_checkpoint`) for
    ``teacher.source: spikedistill``, else the weights file of the external teacher."""
    from spikedistill.engine.build import build_teacher
    from spikedistill.run_files import run_checkpoint

    if path:
        if getattr(cfg.teacher, "zoo", None):     # an explicit file wins over a shipped teacher
            cfg.teacher.zoo = None
        if cfg.teacher.source == "spikedistill":
            cfg.teacher.checkpoint = str(run_checkpoint(path))
        else:
            cfg.teacher.weights = str(path)
    teacher, _ = build_teacher(cfg, pipe.num_classes, pipe.input_shape, device,
                               pipe.ann_in_channels(cfg.teacher.frames))
    return teacher


KNOWN_SIZES = {"cifar10": 32, "cifar100": 32}


def parse_shape(text: str) -> Tuple[int, int, int]:
    """``"3,32,32"`` -> ``(3, 32, 32)``."""
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input-shape: expected C,H,W (e.g. 3,32,32), got {text!r}")
    return shape


def input_shape(model, cfg, given: Optional[str] = None) -> Tuple[int, int, int]:
    """``(C, H, W)`` of one input image: ``given`` (``C,H,W``), else the channels of the
    model's stem with ``data.image_size`` / the dataset's known size, else read from the
    dataset itself."""
    if given:
        return parse_shape(given)
    c = int(getattr(getattr(model, "stem", None), "in_channels", 0) or
            model.model_kwargs.get("in_channels", 3))
    size = cfg.data.image_size or KNOWN_SIZES.get(cfg.data.name)
    if size is None:
        try:
            size = open_data(cfg).image_size
        except Exception as exc:  # noqa: BLE001 - the dataset is only needed for its size
            raise ConfigError(f"cannot tell the input size of data.name={cfg.data.name!r} "
                              f"({exc}); pass --input-shape C,H,W") from None
    return (c, int(size), int(size))


def parse_int_list(text: Optional[str], what: str):
    """``"1,2,4"`` -> ``[1, 2, 4]`` (None or empty -> [])."""
    if not text:
        return []
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers such as 1,2,4, got "
                          f"{text!r}") from None
    if any(v < 1 for v in vals):
        raise ConfigError(f"{what}: expected positive integers, got {text!r}")
    return vals
