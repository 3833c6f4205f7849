"""Shared test fixtures: paths to the read-only shared data and reference step, small threads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPIKEDISTILL_SHARED", REPO.parent / "shared"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def reference_step():
    """The re-created released CKDSNN step (../shared/bench/reference_step.py), a peer
    implementation; the test is skipped when it is absent."""
    path = SHARED / "bench" / "reference_step.py"
    if not path.is_file():
        pytest.skip(f"reference implementation not found at {path}")
    sys.path.insert(0, str(path.parent))
    try:
        import reference_step as ref
    finally:
        sys.path.pop(0)
    return ref
