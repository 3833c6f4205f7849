"""The streaming pipeline (``data.pipeline: stream``): decode JPEGs from disk in DataLoader workers.

For data that does not fit in memory (ImageNet-1K is about 150 GB of JPEGs; decoded at 224 x 224
it would be 193 GB of uint8). A dataset is a list of samples, each a file or a member of an
uncompressed tar shard (path, byte offset, size) with its label (:class:`FileList`), indexed
without decoding anything. :class:`StreamDataset` (map-style) reads and decodes one sample in a
worker and applies torchvision's transforms v2 to the uint8 image:

- training: ``RandomResizedCrop(S, scale=data.crop_scale)`` + ``RandomHorizontalFlip()``
  (``data.augment.hflip``), the ImageNet recipe of torchvision's reference scripts;
- evaluation: ``Resize(round(S * 8 / 7))`` + ``CenterCrop(S)`` (256 / 224 for ``S = 224``);

with ``S = data.image_size`` (default: the dataset's registered size, 224 for ImageNet). Only
uint8 ``[C, S, S]`` crosses the worker boundary (4x fewer bytes than float32); on the training
device :class:`StreamLoader` applies the same batch transform as the in-memory
:class:`~spikedistill.data.loader.DeviceLoader` (``augment(x_uint8, generator) -> float32``,
i.e. normalisation ``(x / 255 - mean) / std`` and any on-device augmentation) with the generator
seeded from ``(seed, epoch, rank, 1)``, in one place (:meth:`StreamLoader.finish_batch`).

Order and draws come from :class:`~spikedistill.data.sampler.EpochShardSampler`: the in-memory
path's permutation of ``(seed, epoch)`` sharded over all ranks, each sample with a draw seed of
``(seed, epoch, global position)``; a worker seeds the transform's random draws with it (inside
the trainer's CPU generator state saved and restored around it), hence batches do not
depend on ``data.workers`` and a resumed run sees the same batches.

GPU decode (``data.decode: cuda``): workers only read the bytes; the trainer decodes the batch
with ``torchvision.io.decode_jpeg(list, device="cuda")`` (nvJPEG) and crops on the GPU with the
same seeded draws. Without CUDA it is refused with one line. It stays off by default until it is
measured faster on the target machine (docs/imagenet.md). A file nvJPEG cannot read (one bad
file fails the whole batched call) is retried alone and then on the CPU; a file nothing can read
is named, and refused (``data.on_bad_image: error``, the default) or skipped with a warning
(``skip``: the batch is one sample shorter), on either decode path.

``data.pipeline: auto`` streams when the decoded uint8 splits would exceed
``data.memory_limit_gib`` (:func:`estimate_decoded_bytes`) and the dataset can stream
(its registry entry has a ``stream`` source, :func:`~spikedistill.data.registry.register_dataset`,
written in the dataset's own module: ``imagenet``, ``imagefolder``, and ``cifar10``/``cifar100``
given as an ImageFolder folder); otherwise it keeps the in-memory path. This module is the
generic machinery only: :func:`folder_index` is the ImageFolder listing those modules use.
"""

from __future__ import annotations

import io
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from spikedistill.data.loader import derive_seed
from spikedistill.data.sampler import EpochShardSampler
from spikedistill.data.workers import parent_watch, worker_message
from spikedistill.errors import ConfigError, DataError, SpikeDistillError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size_for(size: int) -> int:
    """The evaluation resize ``round(S * 8 / 7)`` before the centre crop ``S`` (256 for 224)."""
    return int(round(size * 8 / 7))


# --------------------------------------------------------------------------------------------
# the index: files and tar members
# --------------------------------------------------------------------------------------------

@dataclass
class FileList:
    """Samples of one split: ``paths[i]`` (a file, or the tar shard holding it), ``offsets[i]``
    (byte offset of the member's data in the shard, -1 for a plain file), ``sizes[i]`` (bytes,
    -1 for a plain file) and ``labels[i]`` (int64 class id)."""

    paths: List[str]
    offsets: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.sizes = np.asarray(self.sizes, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.paths)
        if not (len(self.offsets) == len(self.sizes) == len(self.labels) == n):
            raise ValueError("paths, offsets, sizes and labels must have one entry per sample")

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_files(cls, files: Sequence[str], labels: Sequence[int]) -> "FileList":
        n = len(files)
        return cls(list(files), np.full(n, -1), np.full(n, -1), np.asarray(labels))

    @classmethod
    def concat(cls, parts: Sequence["FileList"]) -> "FileList":
        parts = list(parts)
        if not parts:
            return cls([], np.zeros(0), np.zeros(0), np.zeros(0))
        return cls([p for part in parts for p in part.paths],
                   np.concatenate([p.offsets for p in parts]),
                   np.concatenate([p.sizes for p in parts]),
                   np.concatenate([p.labels for p in parts]))

    def take(self, positions: np.ndarray) -> "FileList":
        positions = np.asarray(positions, dtype=np.int64)
        return FileList([self.paths[i] for i in positions.tolist()], self.offsets[positions],
                        self.sizes[positions], self.labels[positions])

    def name(self, i: int) -> str:
        """How messages name sample ``i``: the file, or ``shard.tar@offset``."""
        return self.paths[i] if self.offsets[i] < 0 else f"{self.paths[i]}@{int(self.offsets[i])}"


@dataclass
class StreamIndex:
    """What a stream source found: class names (id = position) and the two splits."""

    class_names: List[str]
    train: FileList
    test: FileList
    source: str = ""
    info: Dict[str, Any] = field(default_factory=dict)


def tar_members(path: Path) -> Dict[str, Tuple[int, int]]:
    """``{member name: (data offset, size)}`` of the regular files of an uncompressed tar (and its
    folders as ``name/``, size 0).

    Streaming needs random access, so a compressed shard is refused (DataError naming it).
    """
    from spikedistill.data.archives import check_tar_complete
    from spikedistill.data.readers import scan_tar

    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise DataError(f"cannot read tar shard {path}: {exc.strerror or exc}") from None
    if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic[:6] == b"\xfd7zXZ\x00":
        raise DataError(f"tar shard {path} is compressed; streaming reads members in place and "
                        "needs uncompressed .tar shards (or unpack it to a folder)")
    found = scan_tar(path)
    if found is not None:
        return found
    try:
        with tarfile.open(path, "r:") as tar:
            listed = tar.getmembers()
            check_tar_complete(tar, str(path), listed[-1].name if listed else None)
            out = {m.name: (int(m.offset_data), int(m.size)) for m in listed if m.isfile()}
            out.update({m.name.rstrip("/") + "/": (int(m.offset_data), 0) for m in listed if m.isdir()})
            return out
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read tar shard {path} (corrupt or not a tar?): "
                        f"{type(exc).__name__}: {exc}") from None


def read_sample(files: FileList, i: int, handles: Optional[Dict[str, Any]] = None) -> bytes:
    """The encoded bytes of sample ``i`` (``handles`` caches open shard files per process)."""
    path, offset = files.paths[i], int(files.offsets[i])
    try:
        if offset < 0:
            with open(path, "rb") as handle:
                return handle.read()
        handle = handles.get(path) if handles is not None else None
        if handle is None:
            handle = open(path, "rb")
            if handles is not None:
                handles[path] = handle
        try:
            handle.seek(offset)
            data = handle.read(int(files.sizes[i]))
        finally:
            if handles is None:
                handle.close()
    except OSError as exc:
        raise DataError(f"cannot read image {files.name(i)}: {exc.strerror or exc}") from None
    if len(data) != int(files.sizes[i]):
        raise DataError(f"image {files.name(i)} is truncated ({len(data)} of {int(files.sizes[i])} bytes)")
    return data


def decode_rgb(data: bytes, name: str) -> torch.Tensor:
    """Decode image bytes into uint8 ``[3, H, W]`` RGB: ``torchvision.io.decode_image`` (libjpeg
    / libpng; greyscale and CMYK converted to RGB), Pillow for anything it cannot read."""
    from torchvision.io import ImageReadMode, decode_image

    from spikedistill.data.readers import image_pixels

    image_pixels(data, name)            # a decompression bomb is refused before decoding
    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                            mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        from spikedistill.data.readers import decode_image as pil_decode

        return torch.from_numpy(np.ascontiguousarray(pil_decode(data, name)))


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


BAD_IMAGE_POLICIES = ("error", "skip")


def bad_image(name: str, exc: Exception, on_bad_image: str) -> None:
    """An unreadable image ``name``: DataError naming it (``error``), or one warning naming it
    and the caller drops the sample (``skip``)."""
    if on_bad_image == "skip":
        warnings.warn(f"skipping unreadable image {name} ({exc}; data.on_bad_image=skip)",
                      RuntimeWarning, stacklevel=3)
        return
    raise DataError(f"{exc} (set data.on_bad_image=skip to skip unreadable images)") from None


def decode_batch(data: Sequence[torch.Tensor], names: Sequence[str], device: torch.device,
                 on_bad_image: str = "error") -> List[Optional[torch.Tensor]]:
    """Decode encoded images (uint8 1-D each) into uint8 ``[3, H, W]`` RGB on ``device``: the
    JPEGs in one batched ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA). When that call
    fails (one bad file fails the whole batch) each JPEG is decoded alone; what the device
    decoder cannot read, and every non-JPEG, goes through :func:`decode_rgb` on the CPU. A file
    nothing can read is :func:`bad_image`: a DataError naming it, or None in its place
    (``skip``)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    jpeg = [k for k, d in enumerate(data) if is_jpeg(bytes(d[:3].tolist()))]
    images: List[Optional[torch.Tensor]] = [None] * len(data)
    if jpeg:
        try:
            decoded = decode_jpeg([data[k] for k in jpeg], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = []
            for k in jpeg:
                try:
                    decoded.append(decode_jpeg(data[k], mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    decoded.append(None)
        for k, img in zip(jpeg, decoded):
            images[k] = img
    for k in range(len(data)):
        if images[k] is None:   # PNG or a JPEG the device decoder cannot read: the CPU
            try:
                images[k] = decode_rgb(data[k].numpy().tobytes(), names[k]).to(device)
            except DataError as exc:
                bad_image(names[k], exc, on_bad_image)
    return images


# --------------------------------------------------------------------------------------------
# per-sample transforms (torchvision transforms v2 on uint8)
# --------------------------------------------------------------------------------------------

def build_transform(train: bool, size: int, *, hflip: bool = True,
                    crop_scale: Tuple[float, float] = (0.08, 1.0)):
    """The per-sample transform of uint8 ``[3, H, W]`` to uint8 ``[3, S, S]``: training
    ``RandomResizedCrop(S, scale) + RandomHorizontalFlip`` (the flip only with ``hflip``),
    evaluation ``Resize(round(S * 8 / 7)) + CenterCrop(S)`` (bilinear, antialiased)."""
    from torchvision.transforms import v2

    if train:
        ops = [v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True)]
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
    else:
        ops = [v2.Resize(resize_size_for(size), antialias=True), v2.CenterCrop(size)]
    return v2.Compose(ops)


def seeded(transform, image: torch.Tensor, draw_seed: int) -> torch.Tensor:
    """``transform(image)`` with its random draws (torch's global CPU generator, which
    transforms v2 use) seeded by ``draw_seed``; the caller's generator state is restored."""
    gen = torch.default_generator
    saved = gen.get_state()
    gen.manual_seed(draw_seed)     # only the CPU generator (torch.manual_seed also seeds every
    try:                           # accelerator backend: 1.3 ms a call, measured here)
        return transform(image)
    finally:
        gen.set_state(saved)


class StreamDataset(torch.utils.data.Dataset):
    """Map-style dataset over a :class:`FileList`: ``ds[(i, draw_seed)] -> (uint8 [3, S, S],
    label)`` (``ds[i]`` uses draw seed 0). With ``decode_in_worker=False`` it returns the
    encoded bytes (uint8 1-D) instead, for decoding on the GPU."""

    def __init__(self, files: FileList, transform, *, decode_in_worker: bool = True,
                 on_bad_image: str = "error") -> None:
        self.files = files
        self.transform = transform
        self.decode_in_worker = bool(decode_in_worker)
        self.on_bad_image = on_bad_image
        self._handles: Dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = {}        # open shard files stay in their process
        return state

    def __getitem__(self, key):
        i, draw_seed = key if isinstance(key, tuple) else (key, 0)
        data = read_sample(self.files, int(i), self._handles)
        label = int(self.files.labels[i])
        if not self.decode_in_worker:
            from spikedistill.data.readers import image_pixels

            image_pixels(data, self.files.name(int(i)))       # checked before the GPU decodes it
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, int(draw_seed), int(i)
        try:
            image = decode_rgb(data, self.files.name(int(i)))
        except DataError as exc:
            bad_image(self.files.name(int(i)), exc, self.on_bad_image)
            return None                            # skipped: dropped by _drop_skipped_collate
        return seeded(self.transform, image, int(draw_seed)), label


def _drop_skipped_collate(batch):
    """The CPU-decode collate with ``data.on_bad_image=skip``: skipped samples (None) left out."""
    return torch.utils.data.default_collate([b for b in batch if b is not None])


def _bytes_collate(batch):
    """Collate of the GPU-decode path: a list of encoded images and the other fields stacked."""
    data, labels, seeds, idx = zip(*batch)
    return list(data), torch.tensor(labels, dtype=torch.long), list(seeds), list(idx)


class StreamLoader:
    """Batches ``(x float32 [B, 3, S, S], y int64 [B])`` on ``device`` from a :class:`FileList`.

    A ``torch.utils.data.DataLoader`` (``workers`` processes, ``prefetch_factor``,
    ``persistent_workers``, ``pin_memory`` when the device is CUDA) over :class:`StreamDataset`
    ordered by :class:`~spikedistill.data.sampler.EpochShardSampler`; ``shuffle=True`` drops
    the last short batch so every rank takes the same number of steps. ``augment`` is the
    in-memory loader's batch transform ``(x_uint8 [B, C, S, S], generator) -> float32`` (None:
    ``x / 255``), applied on the device by :meth:`finish_batch`. Call :meth:`set_epoch` before
    each epoch.
    """

    def __init__(self, files: FileList, batch_size: int, *, shuffle: bool, image_size: int,
                 augment: Optional[Callable] = None, device: str | torch.device = "cpu",
                 seed: int = 0, rank: int = 0, world_size: int = 1, workers: int = 0,
                 prefetch_factor: int = 2, persistent_workers: bool = True,
                 pin_memory: bool = True, decode: str = "cpu", hflip: bool = True,
                 crop_scale: Tuple[float, float] = (0.08, 1.0), channels_last: bool = False,
                 drop_last: Optional[bool] = None, on_bad_image: str = "error") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        if decode == "cuda" and (self.device.type != "cuda" or not torch.cuda.is_available()):
            raise ConfigError(f"config key 'data.decode': cuda decodes JPEGs on the GPU but training "
                              f"runs on {self.device}; use data.decode=cpu")
        if decode not in ("cpu", "cuda"):
            raise ConfigError(f"config key 'data.decode': expected cpu or cuda, got {decode!r}")
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"config key 'data.on_bad_image': expected error or skip, got "
                              f"{on_bad_image!r}")
        self.on_bad_image = on_bad_image
        self.files = files
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = self.shuffle if drop_last is None else bool(drop_last)
        self.image_size = int(image_size)
        self.augment = augment
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.channels_last = bool(channels_last)
        self.decode = decode
        self.frames = False
        self.epoch = 0
        self.mix = None      # batch transform that also changes the labels (data.mix.BatchMixer)
        self.transform = build_transform(self.shuffle, self.image_size, hflip=hflip,
                                         crop_scale=crop_scale)
        self.sampler = EpochShardSampler(len(files), shuffle=self.shuffle, seed=self.seed,
                                         rank=self.rank, world_size=self.world_size)
        self.dataset = StreamDataset(files, self.transform, decode_in_worker=decode == "cpu",
                                     on_bad_image=on_bad_image)
        workers = max(0, int(workers))
        kwargs: Dict[str, Any] = {}
        if workers > 0:
            kwargs.update(prefetch_factor=int(prefetch_factor),
                          persistent_workers=bool(persistent_workers))
        # a private generator: the DataLoader's base seed must not consume the trainer's RNG
        gen = torch.Generator()
        gen.manual_seed(derive_seed(self.seed, self.rank, 3))
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=self.sampler,
            drop_last=self.drop_last, num_workers=workers,
            pin_memory=bool(pin_memory) and self.device.type == "cuda",
            collate_fn=_bytes_collate if decode == "cuda" else
            (_drop_skipped_collate if on_bad_image == "skip" else None), generator=gen,
            worker_init_fn=parent_watch() if workers > 0 else None, **kwargs)

    @property
    def num_samples(self) -> int:
        """Samples this rank visits per epoch (including wrap-around padding when shuffling)."""
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def indices(self) -> torch.Tensor:
        """This rank's sample order for the current epoch (CPU int64)."""
        return self.sampler.indices()

    def augment_generator(self) -> torch.Generator:
        """The device generator of the batch transform: ``derive_seed(seed, epoch, rank, 1)``,
        as :meth:`DeviceLoader.augment_generator`."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, self.epoch, self.rank, 1))
        return gen

    def finish_batch(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The on-device part, shared with the in-memory loader's contract: uint8 ``[B, C, S,
        S]`` -> ``augment(x, gen)`` (normalisation and any batch augmentation) -> layout.
        On-device batch transforms that also change the labels hook in here."""
        x = self.augment(x, gen) if self.augment is not None else x.to(torch.float32) / 255.0
        if self.mix is not None:                          # mixup / cutmix: y becomes [B, K]
            x, y = self.mix(x, y, gen, epoch=self.epoch)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _gpu_decode(self, batch) -> Tuple[torch.Tensor, torch.Tensor]:
        data, y, seeds, idx = batch
        images = decode_batch(data, [self.files.name(i) for i in idx], self.device,
                              self.on_bad_image)
        keep = [k for k, img in enumerate(images) if img is not None]
        x = torch.stack([seeded(self.transform, images[k], seeds[k]) for k in keep])
        return x, (y if len(keep) == len(images) else y[keep])

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        gen = self.augment_generator()
        non_blocking = self.device.type == "cuda"
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except SpikeDistillError as exc:     # a worker's error: its one line, not its traceback
                raise type(exc)(worker_message(exc)) from None
            if self.decode == "cuda":
                x, y = self._gpu_decode(batch)
            else:
                x, y = batch
                x = x.to(self.device, non_blocking=non_blocking)
            y = y.to(self.device, non_blocking=non_blocking)
            yield self.finish_batch(x, y, gen)


# --------------------------------------------------------------------------------------------
# splits, sources, choosing the pipeline
# --------------------------------------------------------------------------------------------

@dataclass
class StreamSplit:
    """One streamed split: its files; ``labels`` as int64 tensor (for counts and subsets)."""

    files: FileList

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self.files.labels.copy())


@dataclass
class StreamSplits:
    """A streamed dataset with the fields of :class:`~spikedistill.data.datasets.DatasetSplits`
    that models and the engine read (``train``/``test`` hold files, not pixels)."""

    name: str
    train: StreamSplit
    test: StreamSplit
    num_classes: int
    class_names: List[str]
    in_channels: int
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    source: str = ""
    info: Dict[str, Any] = field(default_factory=dict)
    frames: bool = False
    T: Optional[int] = None
    pipeline: str = "stream"

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)


def stream_source(name: str) -> Optional[Callable]:
    """The stream source (``request -> StreamIndex``) of dataset ``name``'s registry entry
    (``register_dataset(..., stream=...)``); None for a dataset that cannot stream or is not
    registered."""
    from spikedistill.plugins import DATASETS

    return DATASETS.get(name).stream if name in DATASETS else None


def can_stream(name: str) -> bool:
    return stream_source(name) is not None


def streaming_datasets() -> List[str]:
    """Names of the registered datasets that can stream, sorted."""
    from spikedistill.plugins import DATASETS

    return sorted(name for name, entry in DATASETS.items() if entry["obj"].stream is not None)


def _request(data_cfg):
    from spikedistill.data.registry import ReadRequest

    return ReadRequest(name=data_cfg.name, root=data_cfg.root, image_size=data_cfg.image_size,
                       cache_dir=data_cfg.cache_dir, train_subset=data_cfg.train_subset,
                       test_subset=data_cfg.test_subset, subset_seed=data_cfg.subset_seed,
                       options=dict(data_cfg.kwargs or {}))


def index_from_config(data_cfg) -> StreamIndex:
    """The stream source's index of ``data_cfg``'s dataset (ConfigError if it cannot stream)."""
    from spikedistill.plugins import DATASETS

    spec = DATASETS.get(data_cfg.name)
    if spec.stream is None:
        raise ConfigError(f"config key 'data.pipeline': dataset {data_cfg.name!r} cannot stream "
                          f"(stream sources: {', '.join(streaming_datasets())}); use "
                          "data.pipeline=memory")
    if spec.needs_root and not data_cfg.root:
        raise ConfigError(f"config key 'data.root': dataset {data_cfg.name!r} needs "
                          f"{spec.root_hint}")
    return spec.stream(_request(data_cfg))


def _sample_sizes(files: FileList, k: int = 32) -> List[Tuple[int, int]]:
    """``(width, height)`` of up to ``k`` images spread over ``files`` (headers only)."""
    from PIL import Image

    out = []
    n = len(files)
    for i in sorted(set(np.linspace(0, n - 1, min(k, n)).astype(int).tolist())) if n else []:
        try:
            with Image.open(io.BytesIO(read_sample(files, i))) as img:
                out.append(img.size)
        except (OSError, ValueError, DataError):
            continue
    return out


def estimate_decoded_bytes(index: StreamIndex, image_size: Optional[int]) -> int:
    """Bytes of the decoded uint8 splits the memory pipeline would hold: ``N * 3 * S * S`` with
    ``N`` train + test images and ``S = image_size``; without a size, ``N * 3 * mean(H * W)``
    over the headers of 32 images spread over the training split."""
    n = len(index.train) + len(index.test)
    if image_size:
        return int(n * 3 * image_size * image_size)
    sizes = _sample_sizes(index.train) or _sample_sizes(index.test)
    if not sizes:
        return 0
    return int(n * 3 * float(np.mean([w * h for w, h in sizes])))


def choose_pipeline(data_cfg) -> Tuple[str, Optional[StreamIndex]]:
    """``(memory | stream, index)`` for ``data.pipeline`` (``auto``: stream iff the dataset can
    stream and :func:`estimate_decoded_bytes` exceeds ``data.memory_limit_gib`` GiB), with the
    index ``auto`` built to decide (None when none was built), for :func:`load_stream` to reuse."""
    choice = data_cfg.pipeline
    if choice != "auto":
        return choice, None
    if not can_stream(data_cfg.name) or not data_cfg.root:
        return "memory", None
    try:
        index = index_from_config(data_cfg)
    except DataError:
        return "memory", None    # not a streamable layout (e.g. an archive): the memory readers decide
    from spikedistill.plugins import DATASETS

    size = data_cfg.image_size or DATASETS.get(data_cfg.name).image_size
    limit = float(data_cfg.memory_limit_gib) * (1 << 30)
    return ("stream" if estimate_decoded_bytes(index, size) > limit else "memory"), index


def resolve_pipeline(data_cfg) -> str:
    """``memory`` or ``stream`` for ``data.pipeline`` (:func:`choose_pipeline`)."""
    return choose_pipeline(data_cfg)[0]


def _stats_from_sample(files: FileList, size: int, k: int = 256) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean/std of ``k`` training images spread over the split, each through the
    evaluation transform (for a streamed dataset without registered constants)."""
    from spikedistill.data.datasets import channel_stats

    tf = build_transform(False, size)
    n = len(files)
    picks = sorted(set(np.linspace(0, n - 1, min(k, n)).astype(int).tolist()))
    images = np.stack([tf(decode_rgb(read_sample(files, i), files.name(i))).numpy() for i in picks])
    return channel_stats(images)


def load_stream(data_cfg, index: Optional[StreamIndex] = None) -> StreamSplits:
    """The streamed dataset of ``data_cfg``: its index (``index`` when already built, e.g. by
    :func:`choose_pipeline`), class-balanced subsets (``data.train_subset`` / ``test_subset``,
    chosen as the memory path chooses them), the crop size ``S`` and the mean/std (config, else
    registered, else 256 training images)."""
    from spikedistill.data.datasets import class_balanced_indices
    from spikedistill.plugins import DATASETS

    spec = DATASETS.get(data_cfg.name)
    if index is None:
        index = index_from_config(data_cfg)
    k = len(index.class_names)
    if spec.num_classes is not None and k != spec.num_classes:
        raise DataError(f"{index.source} has {k} classes but {spec.name} has {spec.num_classes}")
    if len(index.train) == 0 or len(index.test) == 0:
        raise DataError(f"{index.source}: no {'training' if len(index.train) == 0 else 'test'} images found")
    seed = data_cfg.subset_seed
    train = index.train.take(class_balanced_indices(index.train.labels, data_cfg.train_subset, k,
                                                    seed, what="train_subset"))
    test = index.test.take(class_balanced_indices(index.test.labels, data_cfg.test_subset, k,
                                                  seed + 1, what="test_subset"))
    size = int(data_cfg.image_size or spec.image_size or 224)
    info = dict(index.info, pipeline="stream", source=index.source)
    if data_cfg.mean is not None:
        mean, std = tuple(data_cfg.mean), tuple(data_cfg.std)
        info["normalization"] = "config"
    elif spec.mean is not None:
        mean, std = spec.mean, spec.std
        info["normalization"] = "registered"
    else:
        mean, std = _stats_from_sample(train, size)
        info["normalization"] = "train-sample"
    if len(mean) != 3:
        raise DataError(f"data.mean/data.std: expected 3 values each (RGB), got {mean!r} / {std!r}")
    return StreamSplits(name=data_cfg.name, train=StreamSplit(train), test=StreamSplit(test),
                        num_classes=k, class_names=list(index.class_names), in_channels=3,
                        image_size=size, mean=tuple(mean), std=tuple(std), source=index.source,
                        info=info)


def stream_loader(splits: StreamSplits, split: str, data_cfg, batch_size: int, *,
                  augment, device, seed: int, rank: int, world_size: int,
                  channels_last: bool = False, shuffle: Optional[bool] = None,
                  mix=None) -> StreamLoader:
    """A :class:`StreamLoader` over ``splits.<split>`` with ``data_cfg``'s worker settings
    (``split="train"`` shuffles, crops randomly and drops the last short batch); ``mix``
    (:class:`spikedistill.data.mix.BatchMixer`) mixes each batch after ``augment``."""
    train = split == "train"
    files = getattr(splits, split).files
    loader = StreamLoader(
        files, batch_size, shuffle=train if shuffle is None else shuffle,
        image_size=splits.image_size, augment=augment, device=device, seed=seed, rank=rank,
        world_size=world_size, workers=data_cfg.workers, prefetch_factor=data_cfg.prefetch_factor,
        persistent_workers=data_cfg.persistent_workers, pin_memory=data_cfg.pin_memory,
        decode=data_cfg.decode, hflip=data_cfg.augment.hflip, crop_scale=tuple(data_cfg.crop_scale),
        channels_last=channels_last, drop_last=train, on_bad_image=data_cfg.on_bad_image)
    loader.mix = mix
    if not train:
        loader.transform = build_transform(False, splits.image_size)
        loader.dataset.transform = loader.transform
    return loader


# --------------------------------------------------------------------------------------------
# the generic ImageFolder listing (the stream source of imagefolder, and of cifar10/cifar100
# given as a folder: data/sets/imagefolder.py, data/sets/cifar.py)
# --------------------------------------------------------------------------------------------

def folder_index(root: Path) -> StreamIndex:
    """An ImageFolder folder (``train/<class>/*``, ``test/`` or ``val/``) or an uncompressed
    ``.tar`` of one, as a :class:`StreamIndex` (classes: the sorted folder names)."""
    from spikedistill.data import readers

    root = Path(root).expanduser()
    if root.is_dir():
        idx = readers.index_image_folder(root)
        base = root
        def entry(split):
            names, labels = zip(*idx.members[split]) if idx.members[split] else ((), ())
            return FileList.from_files([str(base / n) for n in names], labels)
        return StreamIndex(list(idx.class_names), entry("train"), entry("test"), source=str(root),
                           info={"format": "imagefolder", "test_split": idx.test_split})
    if root.is_file() and str(root).lower().endswith(".tar"):
        members = tar_members(root)
        idx = readers.build_index(list(members), str(root))
        def entry(split):
            names = [n for n, _ in idx.members[split]]
            return FileList([str(root)] * len(names), [members[n][0] for n in names],
                            [members[n][1] for n in names], [lab for _, lab in idx.members[split]])
        return StreamIndex(list(idx.class_names), entry("train"), entry("test"), source=str(root),
                           info={"format": "imagefolder-tar", "test_split": idx.test_split})
    if not root.exists():
        raise DataError(f"ImageFolder root {root} does not exist (expected a folder with train/ and "
                        "test/ class folders, or an uncompressed .tar of one)")
    raise DataError(f"ImageFolder root {root}: streaming reads a folder or an uncompressed .tar; "
                    "unpack a compressed archive first (tar xzf ARCHIVE -C FOLDER)")
