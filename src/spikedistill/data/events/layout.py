"""Where the recordings of an event dataset are: the folder layouts people hold, from a folder or
in place from a ``.zip`` / ``.tar`` / ``.tar.gz``.

- the original CIFAR10-DVS release: ``<class>/<stem>.aedat`` (AEDAT 2.0), 10 class folders, as
  extracted (SpikingJelly's ``extract/``) or as the per-class archives of the download
  (``airplane.zip`` ...) in one folder;
- SpikingJelly's converted events ``events_np/<class>/<stem>.npz`` and its frame folders
  ``frames_number_<T>_split_by_<how>/<class>/<stem>.npz`` (used when ``T`` and ``split_by``
  match the request);
- tonic's ``CIFAR10DVS/<class>/<stem>.aedat4`` (AEDAT 4.0, :mod:`spikedistill.data.events.aedat4`).

A recording is named ``<class>/<stem>`` whatever its format, so one split file list serves the
release and SpikingJelly's copies alike. Labels are the positions of the class folders sorted by
name, as ``torchvision.datasets.DatasetFolder`` (which SpikingJelly's datasets are) assigns them.
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

from spikedistill.data.archives import check_member_size, check_tar_complete, is_safe_member
from spikedistill.errors import DataError

EVENT_SUFFIXES = (".aedat", ".npz", ".aedat4")
_FRAMES_DIR = re.compile(r"^frames_number_(\d+)_split_by_(number|time)$")


@dataclass(frozen=True)
class Recording:
    """One recording: ``cls`` its class folder, ``key`` ``<class>/<stem>``, ``kind`` ``events``
    or ``frames``; ``path`` a file, or ``(archive, member)`` with ``member`` inside ``archive``
    (a nested per-class archive is ``(folder/airplane.zip, member)``)."""

    cls: str
    key: str
    kind: str
    path: str
    member: Optional[str] = None

    def read_bytes(self, handle=None) -> bytes:
        if self.member is None:
            with open(self.path, "rb") as f:
                return f.read()
        own = handle is None
        handle = handle or open_archive(self.path)
        try:
            if isinstance(handle, zipfile.ZipFile):
                check_member_size(self.path, self.member, handle.getinfo(self.member).file_size)
                return handle.read(self.member)
            check_member_size(self.path, self.member, handle.getmember(self.member).size)
            f = handle.extractfile(self.member)
            if f is None:
                raise DataError(f"{self.path}: member {self.member} is not a file")
            return f.read()
        finally:
            if own:
                handle.close()


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


def open_archive(path: str):
    try:
        if str(path).lower().endswith(".zip"):
            return zipfile.ZipFile(path)
        return tarfile.open(path, "r:*")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: not a readable zip/tar archive ({type(exc).__name__}: {exc})") from None


def _members(path: Path) -> List[str]:
    """Regular-file members of the archive whose names stay inside it (``../x``, ``/abs`` are
    skipped); DataError when a tar is cut inside a header (later members would be lost)."""
    with open_archive(str(path)) as a:
        if isinstance(a, zipfile.ZipFile):
            names = [n for n in a.namelist() if not n.endswith("/")]
        else:
            try:
                listed = a.getmembers()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(f"{path}: corrupt or truncated tar ({type(exc).__name__}: {exc})") from None
            check_tar_complete(a, str(path), listed[-1].name if listed else None)
            names = [m.name for m in listed if m.isfile()]
    return [n for n in names if is_safe_member(n)]


def _candidates(root: Path) -> List[Tuple[str, str, Optional[str]]]:
    """``(relative posix path, container file, member)`` of every file below ``root``."""
    out: List[Tuple[str, str, Optional[str]]] = []
    if is_archive(root):
        return [(m, str(root), m) for m in _members(root)]
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            f = Path(dirpath) / name
            rel = f.relative_to(root).as_posix()
            if is_archive(f) and f.parent == root:   # per-class archives of the download
                stem = name.split(".")[0]
                for m in _members(f):
                    inner = PurePosixPath(m)
                    rel_m = m if len(inner.parts) > 1 else f"{stem}/{m}"
                    out.append((rel_m, str(f), m))
            else:
                out.append((rel, str(f), None))
    return out


def discover(root: os.PathLike, *, T: Optional[int] = None, split_by: str = "number") -> Tuple[List[Recording], Dict]:
    """The recordings below ``root`` (sorted by class, then name) and ``info`` (``layout``,
    ``format``). DataError when ``root`` holds none of the layouts."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data.root {root} does not exist (expected the CIFAR10-DVS class folders, "
                        "SpikingJelly's events_np/ or frames_number_<T>_split_by_<how>/, or such a folder as .zip/.tar)")
    groups: Dict[Tuple[str, str], List[Tuple[str, str, str, Optional[str]]]] = {}
    for rel, container, member in _candidates(root):
        parts = PurePosixPath(rel).parts
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix not in EVENT_SUFFIXES or len(parts) < 2:
            continue
        prefix = "/".join(parts[:-2])
        groups.setdefault((prefix, suffix), []).append((parts[-2], PurePosixPath(rel).stem, container, member))
    chosen = None
    ranked = []
    for (prefix, suffix), _files in groups.items():
        last = prefix.split("/")[-1] if prefix else ""
        m = _FRAMES_DIR.match(last)
        if m:
            if T is not None and int(m.group(1)) == T and m.group(2) == split_by:
                ranked.append((0, prefix, suffix, "frames", "spikingjelly-frames"))
            continue
        if suffix == ".npz":
            ranked.append((1 if last == "events_np" else 3, prefix, suffix, "events", "spikingjelly-events"))
        elif suffix == ".aedat":
            ranked.append((2, prefix, suffix, "events", "aedat"))
        else:
            ranked.append((4, prefix, suffix, "events", "aedat4"))
    if not ranked:
        frames_dirs = sorted({p.split("/")[-1] for p, _ in groups if _FRAMES_DIR.match(p.split("/")[-1] if p else "")})
        hint = (f"; frame folders here: {', '.join(frames_dirs)} (set data.kwargs.T / split_by to match one)"
                if frames_dirs else "")
        raise DataError(f"data.root {root}: found no event recordings (expected <class>/<name>.aedat, "
                        f"events_np/<class>/<name>.npz or frames_number_<T>_split_by_<how>/<class>/<name>.npz){hint}")
    ranked.sort(key=lambda r: (r[0], -len(groups[(r[1], r[2])])))
    _, prefix, suffix, kind, fmt = chosen = ranked[0]
    recs = [Recording(cls=c, key=f"{c}/{stem}", kind=kind, path=container, member=member)
            for c, stem, container, member in groups[(prefix, suffix)]]
    recs.sort(key=lambda r: (r.cls, r.key))
    keys = [r.key for r in recs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:3]
        raise DataError(f"data.root {root}: recordings named twice: {', '.join(dup)}")
    return recs, {"layout": prefix or ".", "format": fmt, "kind": chosen[3]}
