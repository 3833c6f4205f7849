"""Every documented command runs as written: the ``bash`` and ``python`` blocks of
``docs/examples/*.md`` and of the README are executed, in order, in one scratch folder per page,
with the repository's sources and the ``spikedistill`` command on the path and the recipes
(``configs/``) where a checkout has them.

Markers, as comment lines inside a block (a reader sees them as plain comments):

- ``# docs-test: tiny: KEY=VALUE ...``: appended as ``--set KEY=VALUE ...`` to every training
  command of the block (``train``, ``train-teacher``, ``distill``, ``compare``, ``demo``), so that
  it runs in seconds; nothing else of the command changes.
- ``# docs-test: skip: REASON``: the block needs what a test has not (CIFAR-10 at ``PATH``, a
  GPU, the network); the reason is required.
- ``# docs-test: data: CIFAR10``: the block reads CIFAR-10 from ``$CIFAR10``; the test sets it
  to a tiny ImageFolder copy it makes (10 classes of random 32x32 images), so the commands run
  on the real reader and pipeline.
- ``# docs-test: file: PATH``: the block is the content of a new file: ``src/...`` paths go
  into a scratch copy of ``src/`` that the page's later blocks use (e.g. a new method), other
  paths into the folder the commands run in (e.g. ``mynets.py``).

A python block runs after the page's earlier python blocks (in one interpreter), so a page can
build on what an earlier block defined.

``pip install`` lines are not run (the test environment holds the dev extra); the plugin page's
package is what ``tests/plugins/site`` installs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "examples").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```(bash|python)[^\n]*\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"^\s*#\s*docs-test:\s*(tiny|skip|file|data):\s*(.*)$", re.M)
TRAINING = ("train", "train-teacher", "distill", "compare", "demo")
#: what ``pip install`` of a page's own package provides in the test
EXTRA_PATH = {"plugin.md": [ROOT / "tests" / "plugins" / "site"]}


def blocks(page: Path) -> List[Tuple[str, str, dict, int]]:
    """``(language, code, markers, line)`` of every bash / python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        marks = {k: v.strip() for k, v in MARK.findall(m.group(2))}
        out.append((m.group(1), m.group(2), marks, text[:m.start()].count("\n") + 1))
    return out


def tiny_commands(code: str, overrides: str) -> str:
    """``code`` with continuation lines joined, ``pip install`` lines dropped and ``--set
    OVERRIDES`` added to every training command (before a trailing comment or pipe)."""
    code = code.replace("\\\n", " ")
    lines = []
    for line in code.splitlines():
        stripped = line.strip()
        if stripped.startswith("pip install"):
            lines.append(f": skipped in the test: {stripped}")
            continue
        words = stripped.split()
        if overrides and len(words) > 1 and words[0] == "spikedistill" and words[1] in TRAINING:
            cut = min([i for i in (line.find(" #"), line.find(" |")) if i >= 0] or [len(line)])
            line = f"{line[:cut]} --set {overrides}{line[cut:]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def tiny_cifar10(root: Path, train: int = 8, test: int = 4) -> Path:
    """An ImageFolder tree ``train/<class>/*.png``, ``test/<class>/*.png`` of the 10 CIFAR-10
    classes, random 32x32 RGB images (seeded)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
    for split, n in (("train", train), ("test", test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.png")
    return root


def _env(tmp: Path, src: Path, page: Path) -> dict:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "spikedistill"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m spikedistill "$@"\n')
    shim.chmod(0o755)
    paths = [str(src)] + [str(p) for p in EXTRA_PATH.get(page.name, [])]
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
                PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1", MPLBACKEND="Agg",
                SPIKEDISTILL_CACHE=str(tmp / "cache"))


def run_page(page: Path, tmp: Path) -> List[str]:
    """Run every block of ``page`` in ``tmp``; returns what was skipped and why."""
    work = tmp / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")   # the commands run from a checkout's root
    src = ROOT / "src"
    skipped: List[str] = []
    python_so_far: List[str] = []
    for lang, code, marks, line in blocks(page):
        where = f"{page.name}:{line}"
        if "skip" in marks:
            assert marks["skip"], f"{where}: '# docs-test: skip:' needs a reason"
            skipped.append(f"{where}: {marks['skip']}")
            continue
        if "file" in marks:
            if marks["file"].startswith("src/"):
                if src == ROOT / "src":
                    src = tmp / "src"
                    shutil.copytree(ROOT / "src", src,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                target = tmp / marks["file"]
            else:
                target = work / marks["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code)
            continue
        env = _env(tmp, src, page)
        if "data" in marks:
            assert marks["data"] == "CIFAR10", f"{where}: unknown data {marks['data']!r}"
            env["CIFAR10"] = str(tiny_cifar10(tmp / "cifar10"))
        if lang == "bash":
            cmd = ["bash", "-e", "-o", "pipefail", "-c", tiny_commands(code, marks.get("tiny", ""))]
        else:
            python_so_far.append(code)
            cmd = [sys.executable, "-c", "\n\n".join(python_so_far)]
        done = subprocess.run(cmd, cwd=work, env=env, text=True, capture_output=True,
                              timeout=600)
        assert done.returncode == 0, (f"{where}: the {lang} block fails as written:\n"
                                      f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return skipped


def test_blocks_and_markers_are_found(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n```bash\n# docs-test: tiny: train.epochs=1\nspikedistill train \\\n"
                    "    --set a=1   # c\npip install foo\n```\n```python\nprint(1)\n```\n"
                    "```toml\nno\n```\n")
    (lang, code, marks, line), (lang2, _, _, _) = blocks(page)
    assert (lang, lang2, marks, line) == ("bash", "python", {"tiny": "train.epochs=1"}, 2)
    got = tiny_commands(code, marks["tiny"]).splitlines()
    assert got[1] == "spikedistill train      --set a=1   --set train.epochs=1 # c"
    assert got[2] == ": skipped in the test: pip install foo"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_documented_commands_run_as_written(page, tmp_path):
    if not blocks(page):
        pytest.skip(f"{page.name} has no bash or python block")
    run_page(page, tmp_path)
