"""``imagenet``: ILSVRC2012 (ImageNet-1K) in its usual layouts, streamed or in memory.

``data.root`` holds the training set as ``train/<wnid>/*.JPEG`` or as uncompressed tar shards
``train-*.tar`` (members ``<wnid>/<file>.JPEG``, read in place: no extraction), and the
validation set as one of

- ``val/<wnid>/*.JPEG`` (class folders) or ``val-*.tar`` shards (members ``<wnid>/<file>``);
- ``val/*.JPEG`` flat, with a labels file (``data.kwargs.val_labels``, else searched in the
  root, ``val/`` and the devkit's ``data/`` folder ``ILSVRC2012_devkit_t12/data/``):

  * ``val_labels.txt``: one ``<file> <wnid>`` per line;
  * ``LOC_val_solution.csv`` (the Kaggle ImageNet localisation release): header
    ``ImageId,PredictionString``, the first token of the prediction string is the wnid;
  * ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012 devkit): line ``i`` is the 1-based
    ``ILSVRC2012_ID`` of ``ILSVRC2012_val_{i:08d}.JPEG``; the ids are mapped to wnids by the
    devkit's ``meta.mat`` (``synsets`` records with fields ``ILSVRC2012_ID``, ``WNID``, ...,
    ``num_children``: the 1000 leaves, ``num_children == 0``, are the classes), read with SciPy
    (``data.kwargs.devkit``: the devkit folder or ``meta.mat``; default: beside the file).
    The ILSVRC2012_ID order is *not* the class order (id 1 is n02119789, the sorted first is
    n01440764), as torchvision's ``datasets.ImageNet`` devkit parsing also maps it.

The class index is the sorted wnid order of ``train/`` (torchvision ``ImageFolder``'s, hence
the index torchvision's pre-trained ResNets predict): 1000 classes for the real set, any number
for a smaller tree. Normalisation: ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224,
0.225) (torchvision's reference recipe). Default crop 224 (``data.image_size`` changes it).

With ``data.pipeline: memory`` (small trees only) every image is decoded once, resized
(shorter side ``round(S * 8 / 7)``) and centre-cropped to ``S x S``, and held as uint8.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from spikedistill.data import readers
from spikedistill.data.registry import ReadRequest, register_dataset
from spikedistill.data.stream import (IMAGENET_MEAN, IMAGENET_STD, FileList, StreamIndex,
                                      build_transform, decode_rgb, read_sample, tar_members)
from spikedistill.errors import DataError

DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
LABEL_FILES = ("val_labels.txt", "LOC_val_solution.csv", GROUND_TRUTH)
_WNID = re.compile(r"^n\d{8}$")
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})")


def _images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(readers.IMAGE_EXTENSIONS))


def _class_folders(split: Path) -> Dict[str, List[Path]]:
    """``{class folder: sorted images}`` of ``split/<class>/*``. A class folder without images
    among others that have some is refused (DataError naming it), as torchvision's ImageFolder
    refuses it: skipping it would shift every later class id. ``{}`` when none has images."""
    out, empty = {}, []
    for d in sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _images(d)
        if files:
            out[d.name] = files
        else:
            empty.append(d.name)
    if out and empty:
        raise DataError(f"{split}: class folder(s) without images: {', '.join(empty[:5])}"
                        f"{' ...' if len(empty) > 5 else ''} (torchvision's ImageFolder refuses such "
                        "a tree: the class ids would shift; add images or remove the folder)")
    return out


def _shards(root: Path, split: str) -> List[Path]:
    return sorted(root.glob(f"{split}-*.tar"))


def _shard_members(shards: List[Path]) -> Dict[str, List[Tuple[Path, str, int, int]]]:
    """``{wnid: [(shard, member, offset, size), ...]}`` of ``<wnid>/<file>`` members of the shards."""
    out: Dict[str, List[Tuple[Path, str, int, int]]] = {}
    for shard in shards:
        for name, (offset, size) in tar_members(shard).items():
            parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
            if not readers._is_image_name(parts):
                continue
            if len(parts) != 2:
                raise DataError(f"tar shard {shard}: member {name} is not <wnid>/<file> (ImageFolder "
                                "members one folder deep)")
            out.setdefault(parts[0], []).append((shard, name, offset, size))
    for items in out.values():
        items.sort(key=lambda t: t[1])
    return out


def _files_of(per_class: Dict[str, list], class_id: Dict[str, int], where: str) -> FileList:
    parts = []
    for wnid in sorted(per_class):
        if wnid not in class_id:
            raise DataError(f"{where}: class {wnid} is not among the {len(class_id)} classes of the "
                            "training set")
        items = per_class[wnid]
        label = class_id[wnid]
        if items and isinstance(items[0], tuple):
            parts.append(FileList([str(t[0]) for t in items], [t[2] for t in items],
                                  [t[3] for t in items], [label] * len(items)))
        else:
            parts.append(FileList.from_files([str(p) for p in items], [label] * len(items)))
    return FileList.concat(parts)


def find_label_file(root: Path, options: dict) -> Optional[Path]:
    """The flat validation set's labels file (``data.kwargs.val_labels`` or the first of
    :data:`LABEL_FILES` found in the root, ``val/``, the devkit's ``data/``)."""
    given = options.get("val_labels")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise DataError(f"data.kwargs.val_labels: {path} does not exist (expected one of "
                            f"{', '.join(LABEL_FILES)})")
        return path
    for folder in (root, root / "val", root / DEVKIT / "data", root / "data"):
        for name in LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def _find_meta(gt: Path, root: Path, options: dict) -> Path:
    given = options.get("devkit")
    candidates = []
    if given:
        p = Path(given).expanduser()
        candidates = [p] if p.suffix == ".mat" else [p / "data" / "meta.mat", p / "meta.mat"]
    else:
        candidates = [gt.parent / "meta.mat", root / DEVKIT / "data" / "meta.mat", root / "meta.mat"]
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"{gt} gives ILSVRC2012_IDs, which need the devkit's meta.mat to map them to "
                    f"wnids; none at {', '.join(map(str, candidates))} (set data.kwargs.devkit)")


def read_meta_mat(path: Path) -> Dict[int, str]:
    """``{ILSVRC2012_ID: wnid}`` of the leaf synsets (``num_children == 0``) of a devkit meta.mat."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"reading {path} needs SciPy (pip install scipy), or give the validation "
                        "labels as val_labels.txt ('<file> <wnid>' lines) or LOC_val_solution.csv") from None
    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        ids, wnids, children = (np.atleast_1d(synsets[k]) for k in ("ILSVRC2012_ID", "WNID", "num_children"))
        return {int(i): str(w) for i, w, c in zip(ids, wnids, children) if int(c) == 0}
    except NotImplementedError:          # scipy: "Please use HDF reader for matlab v7.3 files"
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; the ILSVRC2012 devkit's meta.mat is "
                        "v5 (re-save it with save('-v7'), or give val_labels.txt)") from None
    except Exception as exc:             # empty, header only, truncated, another struct: any of
        raise DataError(f"{path} is not an ILSVRC2012 devkit meta.mat (expected a 'synsets' struct "
                        f"with ILSVRC2012_ID, WNID, num_children): {type(exc).__name__}: "
                        f"{str(exc)[:200]}") from None


def read_val_labels(path: Path, root: Path, options: dict) -> Dict[str, str]:
    """``{image file name stem: wnid}`` from one of the supported labels files."""
    out: Dict[str, str] = {}
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read validation labels {path}: {exc}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if name.endswith(".csv"):
        rows = list(csv.reader(lines))
        if not rows or [c.strip() for c in rows[0][:2]] != ["ImageId", "PredictionString"]:
            raise DataError(f"{path}: expected the Kaggle LOC_val_solution.csv header "
                            "'ImageId,PredictionString'")
        for n, row in enumerate(rows[1:], start=2):
            if len(row) < 2 or not row[1].split():
                raise DataError(f"{path} line {n}: expected '<ImageId>,<wnid> x y x y ...'")
            out[Path(row[0].strip()).stem] = row[1].split()[0]
    elif name == GROUND_TRUTH or (lines and all(ln.isdigit() for ln in lines[:5])):
        ids = _find_meta(path, root, options)
        id_to_wnid = read_meta_mat(ids)
        for n, ln in enumerate(lines, start=1):
            if not ln.isdigit() or int(ln) not in id_to_wnid:
                raise DataError(f"{path} line {n}: expected an ILSVRC2012_ID of {ids} "
                                f"(1..{len(id_to_wnid)}), got {ln!r}")
            out[f"ILSVRC2012_val_{n:08d}"] = id_to_wnid[int(ln)]
    else:
        for n, ln in enumerate(lines, start=1):
            parts = ln.split()
            if len(parts) != 2:
                raise DataError(f"{path} line {n}: expected '<file> <wnid>', got {ln!r}")
            out[Path(parts[0]).stem] = parts[1]
    return out


def index_imagenet(root: Path, options: Optional[dict] = None) -> StreamIndex:
    """The :class:`StreamIndex` of an ImageNet root in any of the layouts of the module docstring."""
    options = dict(options or {})
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"imagenet root {root} is not a folder (expected train/<wnid>/*.JPEG or "
                        "train-NNNNNN.tar shards, and val/)")
    # training set
    train_dir, train_shards = root / "train", _shards(root, "train")
    if train_dir.is_dir():
        per_class: dict = _class_folders(train_dir)
        fmt = "folder"
        if not per_class:
            raise DataError(f"imagenet root {root}: train/ holds no <wnid>/ folders with images "
                            f"(expected train/<wnid>/*.JPEG)")
    elif train_shards:
        per_class = _shard_members(train_shards)
        fmt = "tar-shards"
        if not per_class:
            raise DataError(f"imagenet root {root}: the train-*.tar shards hold no <wnid>/<file> images")
    else:
        found = sorted(p.name for p in root.iterdir())[:10]
        raise DataError(f"imagenet root {root}: expected train/<wnid>/*.JPEG or train-NNNNNN.tar "
                        f"shards; found {found or 'nothing'}")
    class_names = sorted(per_class)
    class_id = {w: i for i, w in enumerate(class_names)}
    train = _files_of(per_class, class_id, f"{root}/train")
    # validation set
    val_dir, val_shards = root / "val", _shards(root, "val")
    info = {"format": fmt}
    if val_dir.is_dir() and _class_folders(val_dir):
        test = _files_of(_class_folders(val_dir), class_id, f"{val_dir}")
        info["val"] = "class-folders"
    elif val_dir.is_dir() and _images(val_dir):
        flat = _images(val_dir)
        labels_file = find_label_file(root, options)
        if labels_file is None:
            raise DataError(f"imagenet: {val_dir} holds {len(flat)} images in no class folders and "
                            f"no labels file was found; expected one of {', '.join(LABEL_FILES)} "
                            "in the root, val/ or ILSVRC2012_devkit_t12/data/ (or data.kwargs.val_labels)")
        wnid_of = read_val_labels(labels_file, root, options)
        labels = []
        for p in flat:
            wnid = wnid_of.get(p.stem)
            if wnid is None:
                raise DataError(f"imagenet: {labels_file} has no label for {p}")
            if wnid not in class_id:
                raise DataError(f"imagenet: {labels_file} labels {p.name} as {wnid}, which is not "
                                f"among the {len(class_names)} training classes")
            labels.append(class_id[wnid])
        test = FileList.from_files([str(p) for p in flat], labels)
        info.update(val="flat", val_labels=str(labels_file))
    elif val_shards:
        test = _files_of(_shard_members(val_shards), class_id, f"{root}/val-*.tar")
        info["val"] = "tar-shards"
    else:
        raise DataError(f"imagenet root {root}: expected a validation set: val/<wnid>/*.JPEG, flat "
                        "val/*.JPEG with a labels file, or val-NNNNNN.tar shards")
    if len(test) == 0:
        raise DataError(f"imagenet root {root}: the validation set holds no images")
    return StreamIndex(class_names, train, test, source=str(root), info=info)


def stream_source(request: ReadRequest) -> StreamIndex:
    """The files of the ImageNet tree ``request.root`` (:func:`index_imagenet`)."""
    return index_imagenet(Path(request.root), request.options)


@register_dataset("imagenet", in_channels=3, image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  root_hint="an ImageNet folder (train/<wnid>/*.JPEG or train-*.tar shards, and val/)",
                  options=("val_labels", "devkit"), stream=stream_source,
                  description="ILSVRC2012 / any ImageNet-style tree (folders, flat val, tar shards)")
def read(request: ReadRequest):
    """ImageNet decoded into memory (small trees; the real set streams: data.pipeline=stream)."""
    from spikedistill.data.datasets import class_balanced_indices

    index = index_imagenet(Path(request.root), request.options)
    size = int(request.image_size or 224)
    tf = build_transform(False, size)
    k = len(index.class_names)
    arrays = []
    for files, n, seed, what in ((index.train, request.train_subset, request.subset_seed, "train_subset"),
                                 (index.test, request.test_subset, request.subset_seed + 1, "test_subset")):
        files = files.take(class_balanced_indices(files.labels, n, k, seed, what=what))
        handles: dict = {}
        images = np.zeros((len(files), 3, size, size), dtype=np.uint8)
        for i in range(len(files)):
            images[i] = tf(decode_rgb(read_sample(files, i, handles), files.name(i))).numpy()
        for h in handles.values():
            h.close()
        arrays += [images, files.labels.copy()]
    data = readers.RawDataset(arrays[0], arrays[1], arrays[2], arrays[3], list(index.class_names),
                              source=str(request.root))
    return data, dict(index.info, subset="applied", source=str(request.root), cache="off")
