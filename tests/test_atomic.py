"""The atomic writer: no half-written file under its name, no temporary file left on any exit
path, and a file-system error (a full disk) as one line naming the file."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from spikedistill import atomic
from spikedistill.atomic import (WriteError, atomic_write, atomic_write_text, list_temp_files,
                                 sweep_temp_files)
from spikedistill.errors import SpikeDistillError


class _FullDisk:
    """A binary file whose writes fail with ENOSPC once ``limit`` bytes went through."""

    def __init__(self, handle, limit):
        self._handle, self._left = handle, limit

    def write(self, data):
        n = len(memoryview(data))
        if n > self._left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= n
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _disk_fills_after(monkeypatch, limit):
    real = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: _FullDisk(real(fd, mode), limit))


def test_text_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert list_temp_files(target.parent) == []


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_inside_the_writer_keeps_the_old_file_and_no_temp(tmp_path, exc):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")

    def write(handle):
        handle.write(b"partial new content")
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


def test_full_disk_during_fsync_is_one_line_naming_the_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    target.write_text("old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(WriteError) as info:
        atomic_write_text(target, "new")
    msg = str(info.value)
    assert msg == f"cannot write '{target}': No space left on device (ENOSPC)"
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, SpikeDistillError) and isinstance(info.value, OSError)
    assert target.read_text() == "old" and list_temp_files(tmp_path) == []


@pytest.mark.parametrize("writer", ["torch", "numpy"])
def test_full_disk_inside_torch_save_or_savez_names_the_file(tmp_path, monkeypatch, writer):
    """torch and numpy wrap the OSError of write() in their own errors; the one line still
    says what happened to which file."""
    target = tmp_path / "last.pt"
    _disk_fills_after(monkeypatch, 4096)
    big = torch.arange(100_000, dtype=torch.float32)
    if writer == "torch":
        def write(handle):
            torch.save({"w": big}, handle)
    else:
        def write(handle):
            np.savez(handle, w=big.numpy())
    with pytest.raises(WriteError, match=r"cannot write '.*last\.pt': No space left on device "
                                         r"\(ENOSPC\)$"):
        atomic_write(target, write)
    assert not target.exists() and list_temp_files(tmp_path) == []


def test_destination_folder_is_a_file(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=r"cannot write '.*out/r\.txt'"):
        atomic_write_text(blocker / "r.txt", "hello")


def test_sweep_removes_only_temporary_files(tmp_path):
    (tmp_path / ".last.pt.abcd1234.tmp").write_bytes(b"half")
    (tmp_path / ".metrics.csv.x.tmp").write_text("half")
    (tmp_path / "last.pt").write_bytes(b"whole")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".deep.tmp").write_text("other folder")
    removed = sweep_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".last.pt.abcd1234.tmp", ".metrics.csv.x.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp", "sub"]
    assert (tmp_path / "sub" / ".deep.tmp").exists()
    assert sweep_temp_files(tmp_path / "missing") == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_new_file_gets_the_mode_a_plain_open_gives_under_the_umask(tmp_path, umask):
    """Not mkstemp's 0600: colleagues sharing a server read results as the umask allows."""
    import stat

    from spikedistill.atomic import atomic_write_text, current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
    finally:
        os.umask(old)
    plain = stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    assert plain == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode) == plain


def test_a_replaced_file_keeps_its_mode_as_with_a_plain_open(tmp_path):
    import stat

    from spikedistill.atomic import atomic_write_text

    target = tmp_path / "kept.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(os.stat(target).st_mode) == 0o640
