"""The linter: ``ruff check`` with the rules of ``[tool.ruff.lint]`` in pyproject.toml finds
nothing in src/, tests/ and benchmarks/ (skipped, saying so, where ruff is not installed: it is
in the ``dev`` extra, pinned in constraints.txt)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    try:
        from ruff.__main__ import find_ruff_bin
        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        if found is None:
            pytest.skip("ruff is not installed (pip install -e '.[dev]' -c constraints.txt)")
        return found


def _check(*paths: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([_ruff(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                           "--output-format", "concise", *paths], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_tree_is_clean():
    proc = _check("src", "tests", "benchmarks")
    assert proc.returncode == 0, f"ruff findings:\n{proc.stdout}{proc.stderr}"


def test_the_rules_catch_what_they_promise(tmp_path):
    """The configured rules are live: an unused import, an undefined name, an unused variable,
    a bare except and a mutable default argument are each reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x=[]):\n    y = 1\n    try:\n        return z\n"
                   "    except:\n        return x\n")
    proc = _check(bad.name, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    codes = {line.split(": ")[1].split()[0] for line in proc.stdout.splitlines()
             if line.startswith("bad.py:")}
    assert codes == {"F401", "F821", "F841", "E722", "B006"}, proc.stdout
