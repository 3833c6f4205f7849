"""Limits on what a reader of untrusted bytes may allocate (decompression bombs, absurd headers).

Every reader of event files, archives and images checks the sizes a file *declares* against
these limits before it allocates or decompresses, the way Pillow checks ``MAX_IMAGE_PIXELS``.
Each limit is an environment variable a user can raise (read at every check, so it also reaches
DataLoader and pool workers, which inherit the environment):

======================================  =================  =========================================
variable                                default            bounds
======================================  =================  =========================================
``SPIKEDISTILL_MAX_EVENTS``             16,777,216 (2^24)  events of one recording (AEDAT 2/3.1/4,
                                                           events ``.npz``); 16 B each decompressed
``SPIKEDISTILL_MAX_MEMBER_BYTES``       268,435,456 (256   one archive member (``.zip`` / ``.tar`` /
                                        MiB)               ``.tar.gz``) or one ``.npz`` array, as
                                                           declared by its header
``SPIKEDISTILL_MAX_IMAGE_PIXELS``       89,478,485         width x height of one image, from its
                                        (Pillow's default) header, before it is decoded
======================================  =================  =========================================

Exceeding a limit raises one :class:`~spikedistill.errors.DataError` naming the file, the declared
size, the limit and the variable that raises it.
"""

from __future__ import annotations

import os

from spikedistill.errors import DataError

DEFAULTS = {
    "SPIKEDISTILL_MAX_EVENTS": 1 << 24,
    "SPIKEDISTILL_MAX_MEMBER_BYTES": 1 << 28,
    "SPIKEDISTILL_MAX_IMAGE_PIXELS": 89_478_485,
}


def limit(variable: str) -> int:
    """The positive integer limit ``variable`` (environment, else :data:`DEFAULTS`)."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return DEFAULTS[variable]
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"environment variable {variable}={text!r}: expected a positive integer")
    return value


def max_events() -> int:
    return limit("SPIKEDISTILL_MAX_EVENTS")


def max_member_bytes() -> int:
    return limit("SPIKEDISTILL_MAX_MEMBER_BYTES")


def max_image_pixels() -> int:
    return limit("SPIKEDISTILL_MAX_IMAGE_PIXELS")


def check(name: str, what: str, declared: int, variable: str) -> None:
    """DataError when ``declared`` (a size the file announces) exceeds the limit ``variable``."""
    bound = limit(variable)
    if declared > bound:
        raise DataError(f"{name}: {what} is {declared:,}, above the limit {bound:,} "
                        f"(raise it with the environment variable {variable})")
