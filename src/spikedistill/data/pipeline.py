"""The data pipeline: the one object a run asks for its data.

    pipe = open_pipeline(data_cfg, T=None)     # MemoryPipeline or StreamPipeline (data.pipeline)
    pipe.splits, pipe.kind, pipe.num_classes, pipe.input_shape     # (C, H, W) of one sample
    pipe.in_channels_for(ann, frames)          # C, or T*C for an ANN shown stacked frames
    pipe.augmentations() -> (train, test);  pipe.mixer() -> BatchMixer | None
    pipe.loaders(batch, eval_batch, device, rank=, world_size=, seed=, channels_last=)
    pipe.eval_loader(batch_size, device, ..., split="test" | "val", shuffle=False)
    pipe.write_split_record(run_dir, resume=False)        # RUN_DIR/data_split.txt

Two implementations: :class:`MemoryPipeline` (uint8 tensors on the CPU,
:class:`~spikedistill.data.loader.DeviceLoader`) and :class:`StreamPipeline` (files decoded in
DataLoader workers, :mod:`spikedistill.data.stream`). What differs between them lives in them:
how a loader is made, whether crop and flip are per-sample worker transforms (streaming) or
part of the batch augmentation (memory), and whether samples can be frames ``[T, C, H, W]``
(memory only). The engine, the analyses and ``eval`` get their data here.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from spikedistill.errors import ConfigError, DataError

#: the file in a run directory that records the train/test split a dataset reader made
DATA_SPLIT_RECORD = "data_split.txt"

#: batch-level ``data.augment`` keys (:class:`~spikedistill.data.mix.BatchMixer`), not part of
#: the per-sample augmentation chain
MIX_KEYS = ("mixup", "cutmix", "mix_prob", "switch_prob", "mix_off_epoch")


def write_data_split(run_dir, splits, *, resume: bool = False) -> Optional[Path]:
    """Copy the exact train/test file list the dataset reader used into ``RUN_DIR/data_split.txt``
    (atomically) and return its path; None for a dataset without one.

    A reader that splits recordings itself (the event datasets, :mod:`spikedistill.data.events.split`)
    names its list in ``splits.info["split_file"]`` (``train<TAB><class>/<name>`` lines); that
    file's text is the record, so ``data.kwargs={split: file, split_file: RUN_DIR/data_split.txt}``
    reproduces the run's split on another machine. ``resume``: the run continues in ``run_dir``,
    and a record there that lists another split is an error (the run would go on with other data).
    """
    from spikedistill.atomic import atomic_write_text

    source = (getattr(splits, "info", None) or {}).get("split_file")
    if not source:
        return None
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{source}: cannot read the split list the dataset wrote ({exc.strerror})") from None
    target = Path(run_dir) / DATA_SPLIT_RECORD
    if resume and target.is_file():
        from spikedistill.data.events.split import parse_split_text

        if parse_split_text(target.read_text(encoding="utf-8"), target) != parse_split_text(text, source):
            raise DataError(f"{target}: the run was trained on another train/test split than the one "
                            f"data.{splits.name} gives now ({source}); resume with the same data.kwargs "
                            f"or pass split: file, split_file: {target}")
    return atomic_write_text(target, text)


class DataPipeline:
    """A loaded dataset (``splits``) with the ``data`` config section it came from.

    Subclasses say how loaders are made (:meth:`train_loader`, :meth:`eval_loader`), the shape
    of one sample (:attr:`input_shape`) and its frames (:attr:`frames_per_sample`), and which
    per-sample augmentations the batch transform still does (:meth:`augment_switches`).
    """

    #: ``data.pipeline`` value this implementation serves
    kind = ""

    def __init__(self, splits: Any, data_cfg: Any = None) -> None:
        self.splits = splits
        self.data_cfg = data_cfg

    # -- the dataset -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.splits.name

    @property
    def num_classes(self) -> int:
        return int(self.splits.num_classes)

    @property
    def in_channels(self) -> int:
        """``C`` of one image (of one frame, for frame data)."""
        return int(self.splits.in_channels)

    @property
    def image_size(self) -> int:
        return int(self.splits.image_size)

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of one training sample (of one frame, for frame data)."""
        raise NotImplementedError

    @property
    def frames_per_sample(self) -> Optional[int]:
        """``T`` of frame samples ``[T, C, H, W]``; None for images."""
        raise NotImplementedError

    def ann_in_channels(self, frames: str) -> int:
        """Input channels of an ANN on this data as ``teacher.frames`` shows it: ``T*C`` for
        ``stack`` on frames ``[N, T, C, H, W]`` (the T frames stacked as channels,
        :func:`spikedistill.distill.base.teacher_input`), else ``C``."""
        T = self.frames_per_sample
        return self.in_channels * T if frames == "stack" and T is not None else self.in_channels

    def in_channels_for(self, ann: bool, frames: str) -> int:
        """Input channels of the network a run trains: :meth:`ann_in_channels` for an ANN
        (``train-teacher``), ``C`` for a spiking student (it sees the frames one per step)."""
        return self.ann_in_channels(frames) if ann else self.in_channels

    # -- augmentation ------------------------------------------------------------------------

    def augment_switches(self) -> Dict[str, Any]:
        """The ``data.augment`` keyword arguments of the train-time batch transform
        (:func:`spikedistill.data.augment.build_augment`), without the batch-level mixing keys."""
        switches = asdict(self.data_cfg.augment)
        switches["erasing_scale"] = tuple(switches["erasing_scale"])
        for key in MIX_KEYS:
            switches.pop(key)
        return switches

    def augmentations(self):
        """``(train transform, test transform)`` from the ``data.augment`` switches and the
        dataset's mean/std: ``x_test = (x / 255 - mean) / std`` (only ``x / 255`` when
        ``data.augment.normalize`` is off)."""
        from spikedistill.data.augment import build_augment

        train_aug = build_augment(True, self.splits.mean, self.splits.std,
                                  **self.augment_switches())
        return train_aug, self.test_augment()

    def test_augment(self):
        """The test transform: ``x_test = (x / 255 - mean) / std`` with the dataset's mean/std
        (only ``x / 255`` when ``data.augment.normalize`` is off), what every evaluation sees."""
        from spikedistill.data.augment import BatchAugment, build_augment

        mean, std = self.splits.mean, self.splits.std
        if self.data_cfg is None or self.data_cfg.augment.normalize:
            return build_augment(False, mean, std)
        return BatchAugment(mean=tuple(mean), std=tuple(std), normalize=False)

    def mixer(self):
        """The train loader's Mixup / CutMix (:class:`spikedistill.data.mix.BatchMixer`) when
        ``data.augment.mixup`` or ``data.augment.cutmix`` is positive, else None."""
        from spikedistill.data.mix import BatchMixer

        if not BatchMixer.enabled(self.data_cfg.augment):
            return None
        return BatchMixer(self.data_cfg.augment, self.num_classes)

    # -- loaders -----------------------------------------------------------------------------

    def train_loader(self, batch_size: int, device: torch.device, *, augment, seed: int,
                     rank: int = 0, world_size: int = 1, channels_last: bool = False, mix=None):
        """The training loader: this rank's shard of the ``(seed, epoch)`` permutation in
        batches of ``batch_size`` (the last short one dropped), augmented, mixed by ``mix``."""
        raise NotImplementedError

    def eval_loader(self, batch_size: int, device: torch.device, rank: int = 0,
                    world_size: int = 1, augment=None, *, channels_last: bool = False,
                    shuffle: bool = False, split: str = "test"):
        """An evaluation loader over this rank's shard of ``splits.test`` (``split="val"``: the
        held-out validation images), with :meth:`test_augment` unless ``augment`` is given: in
        order, or with ``shuffle`` in one fixed permutation (seed 0, epoch 0)."""
        raise NotImplementedError

    def loaders(self, batch_size: int, eval_batch_size: int, device: torch.device, *,
                seed: int, rank: int = 0, world_size: int = 1, channels_last: bool = False):
        """``(train_loader, test_loader)`` on ``device``.

        The train loader shuffles with ``(seed, epoch)``, shards over ranks (equal batch counts),
        augments and mixes; the test loader iterates this rank's disjoint shard of the test set
        in order with the test transform, so all-reduced counts cover every test image once.
        """
        train_aug, test_aug = self.augmentations()
        train = self.train_loader(batch_size, device, augment=train_aug, seed=seed, rank=rank,
                                  world_size=world_size, channels_last=channels_last,
                                  mix=self.mixer())
        test = self.eval_loader(eval_batch_size, device, rank, world_size, test_aug,
                                channels_last=channels_last)
        return train, test

    # -- records -----------------------------------------------------------------------------

    def write_split_record(self, run_dir, *, resume: bool = False) -> Optional[Path]:
        """:func:`write_data_split` of this dataset into ``run_dir``."""
        return write_data_split(run_dir, self.splits, resume=resume)


class MemoryPipeline(DataPipeline):
    """``data.pipeline: memory``: :class:`~spikedistill.data.datasets.DatasetSplits` of uint8
    tensors (images ``[N, C, H, W]`` or frames ``[N, T, C, H, W]``) batched by
    :class:`~spikedistill.data.loader.DeviceLoader`; crop and flip are part of the batch
    transform."""

    kind = "memory"

    @classmethod
    def open(cls, data_cfg, *, T: Optional[int] = None, index=None) -> "MemoryPipeline":
        """Read ``data_cfg``'s dataset into memory (:func:`~spikedistill.data.datasets.
        load_from_config`); ``T``: a frame dataset's number of frames when it takes one."""
        from spikedistill.data.datasets import load_from_config

        return cls(load_from_config(data_cfg, T=T), data_cfg)

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.splits.train.images.shape[-3:])

    @property
    def frames_per_sample(self) -> Optional[int]:
        images = self.splits.train.images
        return int(images.shape[1]) if images.dim() == 5 else None

    def train_loader(self, batch_size, device, *, augment, seed, rank=0, world_size=1,
                     channels_last=False, mix=None):
        from spikedistill.data.loader import DeviceLoader

        train = self.splits.train
        return DeviceLoader(train.images, train.labels, batch_size, shuffle=True, drop_last=True,
                            augment=augment, device=device, seed=seed, rank=rank,
                            world_size=world_size, channels_last=channels_last, mix=mix)

    def eval_loader(self, batch_size, device, rank=0, world_size=1, augment=None, *,
                    channels_last=False, shuffle=False, split="test"):
        from spikedistill.data.loader import DeviceLoader

        part = getattr(self.splits, split)
        return DeviceLoader(part.images, part.labels, batch_size, shuffle=shuffle,
                            drop_last=False,
                            augment=self.test_augment() if augment is None else augment,
                            device=device, seed=0, rank=rank, world_size=world_size,
                            channels_last=channels_last)


class StreamPipeline(DataPipeline):
    """``data.pipeline: stream``: :class:`~spikedistill.data.stream.StreamSplits` (file lists)
    decoded in DataLoader workers (:func:`~spikedistill.data.stream.stream_loader`). Samples are
    RGB images, never frames; the random crop and flip are per-sample worker transforms, so the
    batch transform keeps only the rest (AutoAugment, erasing, normalisation)."""

    kind = "stream"

    @classmethod
    def open(cls, data_cfg, *, T: Optional[int] = None, index=None) -> "StreamPipeline":
        """Index ``data_cfg``'s files (``index``: the one ``auto`` already built); a validation
        split (``data.val_fraction``) is refused."""
        from spikedistill.data.stream import load_stream

        if data_cfg.val_fraction:
            raise ConfigError("config key 'data.val_fraction': a validation split is held out of "
                              "in-memory data only; this dataset streams (data.pipeline)")
        return cls(load_stream(data_cfg, index=index), data_cfg)

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(self.splits.input_shape)

    @property
    def frames_per_sample(self) -> Optional[int]:
        return None

    def augment_switches(self) -> Dict[str, Any]:
        return dict(super().augment_switches(), random_crop=False, hflip=False)

    def train_loader(self, batch_size, device, *, augment, seed, rank=0, world_size=1,
                     channels_last=False, mix=None):
        from spikedistill.data.stream import stream_loader

        return stream_loader(self.splits, "train", self.data_cfg, batch_size, augment=augment,
                             device=device, seed=seed, rank=rank, world_size=world_size,
                             channels_last=channels_last, mix=mix)

    def eval_loader(self, batch_size, device, rank=0, world_size=1, augment=None, *,
                    channels_last=False, shuffle=False, split="test"):
        from spikedistill.data.stream import stream_loader

        if split != "test":
            raise ConfigError(f"config key 'data.val_fraction': a streamed dataset has no {split!r} "
                              "split (validation splits are held out of in-memory data only)")
        return stream_loader(self.splits, "test", self.data_cfg, batch_size,
                             augment=self.test_augment() if augment is None else augment,
                             device=device, seed=0, rank=rank, world_size=world_size,
                             channels_last=channels_last, shuffle=shuffle)


#: ``data.pipeline`` -> implementation
PIPELINES = {cls.kind: cls for cls in (MemoryPipeline, StreamPipeline)}


def open_pipeline(data_cfg, *, T: Optional[int] = None) -> DataPipeline:
    """The dataset described by ``data_cfg`` as a :class:`DataPipeline`: CPU uint8 tensors
    (``data.pipeline: memory``) or an index of files streamed from disk (``stream``).

    ``auto`` is resolved here from the data alone (:func:`~spikedistill.data.stream.
    choose_pipeline`, whose index is reused), so a resume of the same data resolves it the same
    way; the config is left as given (``pipe.kind`` says which one ran). ``T``: the number of
    frames a frame dataset with a ``T`` option is read with (the engine passes the student's
    ``model.T``; None keeps the dataset's own).
    """
    from spikedistill.data.stream import choose_pipeline

    kind, index = choose_pipeline(data_cfg)
    return PIPELINES[kind].open(data_cfg, T=T, index=index)

