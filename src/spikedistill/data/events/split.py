"""The train/test split of an event dataset, and its file list.

CIFAR10-DVS has no official split. The convention of most papers is SpikingJelly's
``split_to_train_test_set(0.9, dataset, 10, random_split=False)``
(``spikingjelly/datasets/utils.py``): for every class, the first ``ceil(n_c * 0.9)`` samples in
dataset order are train, the rest test. Dataset order is ``torchvision.datasets.DatasetFolder``'s:
class folders sorted by name, files sorted by name within a class, i.e. *string* order
(``cifar10_airplane_0``, ``cifar10_airplane_1``, ``cifar10_airplane_10``, ``..._100``, ...), so
the test set is not the files numbered 900-999. ``random``: every class permuted by a
``numpy.random.Generator(PCG64(split_seed))`` first (SpikingJelly's ``random_split=True`` uses the
global ``np.random`` state instead, so no seed reproduces it). ``file``: a list written by
:func:`write_split_file` (``data.kwargs.split_file``).

The list format is one line per recording, ``train<TAB><class>/<stem>`` or ``test<TAB>...``, after
``#`` comment lines; :data:`SHIPPED` is the list of the standard release (10 x 1000 recordings
``<class>/cifar10_<class>_<i>``) under the default split.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from spikedistill.atomic import atomic_write_text
from spikedistill.errors import DataError

SPLITS = ("first90", "random", "file")
SHIPPED = Path(__file__).with_name("splits") / "cifar10dvs_first90.txt"
CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                      "ship", "truck")


def split_keys(keys: Sequence[str], *, split: str = "first90", train_fraction: float = 0.9,
               seed: int = 0, split_file: str | None = None) -> Tuple[List[str], List[str]]:
    """``(train keys, test keys)`` of recordings named ``<class>/<stem>`` (module docstring)."""
    if split == "file":
        if not split_file:
            raise DataError("data.kwargs.split=file needs data.kwargs.split_file (a list written by a run)")
        train, test = read_split_file(split_file)
        missing = sorted((set(train) | set(test)) - set(keys))
        if missing:
            raise DataError(f"data.kwargs.split_file {split_file}: {len(missing)} listed recordings "
                            f"are not under data.root (e.g. {missing[0]})")
        return train, test
    if split not in SPLITS:
        raise DataError(f"data.kwargs.split: expected one of {', '.join(SPLITS)}, got {split!r}")
    try:
        fraction = float(train_fraction)
    except (TypeError, ValueError):
        fraction = math.nan
    if not 0.0 < fraction < 1.0:                   # NaN fails too
        raise DataError(f"data.kwargs.train_fraction: expected a number in (0, 1), got {train_fraction!r}")
    by_class: Dict[str, List[str]] = {}
    for k in keys:
        by_class.setdefault(k.split("/", 1)[0], []).append(k)
    train: List[str] = []
    test: List[str] = []
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    for cls in sorted(by_class):
        members = sorted(by_class[cls])
        if split == "random":
            members = [members[i] for i in rng.permutation(len(members))]
        cut = math.ceil(len(members) * fraction)
        train += members[:cut]
        test += members[cut:]
    check_disjoint(train, test)
    return train, test


def check_disjoint(train: Iterable[str], test: Iterable[str], where: str = "the split") -> None:
    both = sorted(set(train) & set(test))
    if both:
        raise DataError(f"{where}: {len(both)} recordings are in train and test (e.g. {both[0]}); "
                        "train/test overlap would report test accuracy on training data")


def format_split(train: Sequence[str], test: Sequence[str], comment: str = "") -> str:
    lines = [f"# spikedistill event-dataset split: {len(train)} train / {len(test)} test"]
    lines += [f"# {c}" for c in comment.splitlines() if c]
    lines += [f"train\t{k}" for k in train] + [f"test\t{k}" for k in test]
    return "\n".join(lines) + "\n"


def write_split_file(path, train: Sequence[str], test: Sequence[str], comment: str = "") -> Path:
    """Write the list atomically (:func:`spikedistill.atomic.atomic_write_text`)."""
    check_disjoint(train, test)
    return atomic_write_text(path, format_split(train, test, comment))


def read_split_file(path) -> Tuple[List[str], List[str]]:
    """``(train, test)`` of a list file; DataError on a bad line or an overlap."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"data.kwargs.split_file {path}: cannot read it ({exc.strerror})") from None
    return parse_split_text(text, path)


def parse_split_text(text: str, path="the split list") -> Tuple[List[str], List[str]]:
    """``(train, test)`` of the text of a list file (``path``: named in errors)."""
    train: List[str] = []
    test: List[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        part, _, key = line.partition("\t")
        if part not in ("train", "test") or "/" not in key:
            raise DataError(f"{path}:{n}: expected 'train<TAB><class>/<name>' or 'test<TAB>...', got {line[:60]!r}")
        (train if part == "train" else test).append(key)
    check_disjoint(train, test, where=str(path))
    return train, test


def standard_release_keys() -> List[str]:
    """``<class>/cifar10_<class>_<i>`` for the 10 x 1000 recordings of the CIFAR10-DVS release."""
    return [f"{c}/cifar10_{c}_{i}" for c in CIFAR10DVS_CLASSES for i in range(1000)]
