"""Shared test fixtures: paths to the read-only shared folder (``../shared``: real data and the
re-created reference step), small threads.

Tests that need ``../shared`` (the ``reference_step`` fixture, the ``real_data`` marker) are
skipped when it is absent, with a reason naming the folder they need, and the summary ends with
one line saying how many were skipped for that and how to point the suite at the folder
(``SPIKEDISTILL_SHARED``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPIKEDISTILL_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
REFERENCE_STEP = SHARED / "bench" / "reference_step.py"
#: every skip reason of a test that needs the shared folder starts with this
NEEDS_SHARED = "needs ../shared"

torch.set_num_threads(1)


def shared_skip_reason(what: str, path: Path) -> str:
    """The skip reason of a test that needs ``path`` (``what``, e.g. ``../shared/data``)."""
    return (f"{NEEDS_SHARED}{what.removeprefix('../shared')}: {path} not found (set "
            "SPIKEDISTILL_SHARED to the shared folder)")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def reference_step():
    """The re-created released CKDSNN step (../shared/bench/reference_step.py), a peer
    implementation; the test is skipped when it is absent."""
    if not REFERENCE_STEP.is_file():
        pytest.skip(shared_skip_reason("../shared/bench/reference_step.py", REFERENCE_STEP))
    sys.path.insert(0, str(REFERENCE_STEP.parent))
    try:
        import reference_step as ref
    finally:
        sys.path.pop(0)
    return ref


def pytest_runtest_setup(item):
    """Skip a ``real_data`` test when ``../shared/data`` is absent (unless its archive is given
    directly with ``SPIKEDISTILL_CIFAR10_ARCHIVE``)."""
    if item.get_closest_marker("real_data") is not None and not SHARED_DATA.is_dir() \
            and not os.environ.get("SPIKEDISTILL_CIFAR10_ARCHIVE"):
        pytest.skip(shared_skip_reason("../shared/data", SHARED_DATA))


def pytest_terminal_summary(terminalreporter):
    """One closing line: how many tests were skipped because ``../shared`` is absent."""
    skipped = terminalreporter.stats.get("skipped", [])
    count = sum(1 for rep in skipped
                if isinstance(rep.longrepr, tuple) and NEEDS_SHARED in str(rep.longrepr[-1]))
    if count:
        terminalreporter.write_line(
            f"{count} test(s) skipped: they need ../shared (real data in ../shared/data, the "
            f"reference step in ../shared/bench), not found at {SHARED}; set "
            "SPIKEDISTILL_SHARED=/path/to/shared to run them", yellow=True)
