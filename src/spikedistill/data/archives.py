"""Checks shared by the readers of ``.zip`` / ``.tar`` / ``.tar.gz`` data: member names that stay
inside the archive, member sizes within :mod:`spikedistill.data.limits`, and tars that end where
their last member ends (``tarfile`` stops without a word at a header cut short after the first
member, which would silently drop every later member)."""

from __future__ import annotations

import tarfile
from pathlib import PurePosixPath

from spikedistill.data import limits
from spikedistill.errors import DataError


def is_safe_member(name: str) -> bool:
    """True for a relative member path without ``..`` (``a/b.png``); False for ``/abs``, ``C:\\x``,
    ``../x`` or ``a/../../x``, which name nothing inside the archive's tree."""
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return False
    return ".." not in PurePosixPath(text).parts


def check_member_size(archive: str, member: str, size: int) -> None:
    """DataError when the member's declared (uncompressed) ``size`` exceeds
    ``SPIKEDISTILL_MAX_MEMBER_BYTES`` (checked before a byte of it is read)."""
    limits.check(f"{archive}: member {member}", "its declared size in bytes", int(size),
                 "SPIKEDISTILL_MAX_MEMBER_BYTES")


def check_tar_complete(tar: tarfile.TarFile, path: str, last: str | None) -> None:
    """DataError naming ``path`` and the last member read when anything but zero padding follows
    the members ``tar.getmembers()`` returned: a header cut short or corrupt there (``tarfile``
    ends its listing at it silently unless it is the first one)."""
    handle = tar.fileobj
    handle.seek(tar.offset)
    while True:
        chunk = handle.read(1 << 20)
        if not chunk:
            return
        if chunk.count(0) != len(chunk):
            raise DataError(f"{path}: tar archive truncated or corrupt at byte {tar.offset} "
                            f"(a member header after {last or 'the start'} cannot be read); the "
                            "members after it would be lost")
