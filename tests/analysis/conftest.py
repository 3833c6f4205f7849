"""Fixtures of the analysis tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _analysis_helpers import make_digits_runs  # noqa: E402


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory):
    """``(student_run_dir, teacher_run_dir)`` trained for one short epoch on digits."""
    return make_digits_runs(tmp_path_factory.mktemp("runs"))
