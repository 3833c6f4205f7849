"""``cifar10`` / ``cifar100``: the canonical pickle folders, or an ImageFolder copy.

``root`` is the pickle folder (``cifar-10-batches-py`` / ``cifar-100-python``) or its parent, or
an ImageFolder tree as a folder or archive (e.g. the JPEG copy ``cifar10-jpeg.tar.gz``), or a
folder holding such an archive. Normalisation: CIFAR's constants (as released), for both.
Streaming (``data.pipeline: stream``): the ImageFolder copy, given as a folder or an uncompressed
``.tar`` (:func:`stream_source`); the pickles are always read into memory.
"""

from __future__ import annotations

from pathlib import Path

from spikedistill.data import readers
from spikedistill.data.registry import ReadRequest, register_dataset
from spikedistill.data.sets._folder import read_cached_folder
from spikedistill.data.stream import StreamIndex, folder_index
from spikedistill.errors import DataError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR10_ARCHIVE_NAMES = ("cifar10-jpeg.tar.gz",)


def detect_source(name: str, root: Path) -> tuple[str, Path]:
    """Decide whether a cifar10/cifar100 root is a pickle folder or an ImageFolder (dir/archive)."""
    folder = readers.CIFAR10_FOLDER if name == "cifar10" else readers.CIFAR100_FOLDER
    archive_hint = " or the archive cifar10-jpeg.tar.gz" if name == "cifar10" else ""
    if not root.exists():
        raise DataError(f"{name} root {root} does not exist (expected a folder holding {folder}/{archive_hint}, "
                        f"or an ImageFolder tree/archive with train/ and test/)")
    if root.is_file():
        return "imagefolder", root
    found = readers.find_cifar_folder(root, folder)
    if found is not None:
        return "pickle", found
    if (root / "train").is_dir():
        return "imagefolder", root
    if name == "cifar10":
        for archive in CIFAR10_ARCHIVE_NAMES:
            if (root / archive).is_file():
                return "imagefolder", root / archive
    archives = sorted(p.name for p in root.iterdir() if readers.is_archive(p))
    raise DataError(f"{name} root {root} holds neither {folder}/{archive_hint} nor an ImageFolder train/ "
                    f"folder (expected a folder holding {folder}/, that folder itself, or an ImageFolder "
                    f"folder/.tar/.tar.gz/.zip){'; archives here: ' + ', '.join(archives) if archives else ''}")


def _read(request: ReadRequest, pickles) -> tuple[readers.RawDataset, dict]:
    kind, path = detect_source(request.name, Path(request.root).expanduser())
    if kind == "pickle":
        return pickles(path), {"format": "cifar-pickle", "source": str(path)}
    data, info = read_cached_folder(request, path)
    info.update(format="imagefolder", source=str(path))
    return data, info


def stream_source(request: ReadRequest) -> StreamIndex:
    """The files of a CIFAR ImageFolder copy (:func:`~spikedistill.data.stream.folder_index`);
    DataError for the pickled batches, which have no files to stream."""
    kind, path = detect_source(request.name, Path(request.root).expanduser())
    if kind != "imagefolder":
        raise DataError(f"{request.name} root {path} holds the pickled batches; they are read into "
                        "memory (data.pipeline=memory), streaming needs an ImageFolder folder")
    return folder_index(path)


@register_dataset("cifar10", num_classes=10, in_channels=3, image_size=32, mean=CIFAR_MEAN,
                  std=CIFAR_STD, root_hint=f"a folder holding {readers.CIFAR10_FOLDER}/ or the "
                  "archive cifar10-jpeg.tar.gz", description="CIFAR-10 (pickles or ImageFolder)",
                  stream=stream_source)
def read_cifar10(request: ReadRequest):
    """CIFAR-10: 50,000 train / 10,000 test 32x32 colour images of 10 classes."""
    return _read(request, readers.read_cifar10_pickles)


@register_dataset("cifar100", num_classes=100, in_channels=3, image_size=32, mean=CIFAR_MEAN,
                  std=CIFAR_STD, root_hint=f"a folder holding {readers.CIFAR100_FOLDER}/",
                  description="CIFAR-100 (pickles or ImageFolder)", stream=stream_source)
def read_cifar100(request: ReadRequest):
    """CIFAR-100: 50,000 train / 10,000 test 32x32 colour images of 100 fine classes."""
    return _read(request, readers.read_cifar100_pickles)
