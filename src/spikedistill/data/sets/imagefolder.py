"""``imagefolder``: any ImageFolder tree (``train/<class>/*``, ``test/`` or ``val/``) as a folder
or a ``.tar``/``.tar.gz``/``.tgz``/``.zip`` archive.

Decoded once and cached as ``.npz`` (:mod:`spikedistill.data.cache`) under a name and key made
from the dataset's name, the source's fingerprint and the options that change the pixels
(``image_size``). With ``train_subset``/``test_subset`` and no full decode cached yet, only the
chosen images are decoded. Normalisation: no constants are registered, so ``load_dataset``
computes the mean/std of the training split (or ``data.mean``/``data.std`` give them).
Streaming (``data.pipeline: stream``): a folder or an uncompressed ``.tar``, listed by
:func:`~spikedistill.data.stream.folder_index` (:func:`stream_source`).
"""

from __future__ import annotations

from pathlib import Path

from spikedistill.data import readers
from spikedistill.data.registry import ReadRequest, register_dataset
from spikedistill.data.sets._folder import read_cached_folder
from spikedistill.data.stream import StreamIndex, folder_index


def stream_source(request: ReadRequest) -> StreamIndex:
    """The files of the ImageFolder tree ``request.root`` (folder or uncompressed ``.tar``)."""
    return folder_index(Path(request.root))


@register_dataset("imagefolder", root_hint="an ImageFolder folder or archive",
                  description="any ImageFolder tree (folder, tar, zip)", stream=stream_source)
def read(request: ReadRequest) -> tuple[readers.RawDataset, dict]:
    """Any ImageFolder tree; the class names are its folder names."""
    root = Path(request.root).expanduser()
    data, info = read_cached_folder(request, root)
    info.update(format="imagefolder", source=str(root))
    return data, info
