"""The layer order (design interface (f)): each layer, imported alone in a fresh interpreter,
pulls in no module of a higher layer; the config layer does not load torch.

    errors / atomic / plugins / run_files / config  <  data  <  neurons  <  models  <  distill
    <  engine  <  analysis  <  commands / cli
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {"errors": 0, "atomic": 0, "plugins": 0, "run_files": 0, "config": 0, "data": 1,
          "neurons": 2,
          "models": 3, "distill": 4, "engine": 5, "analysis": 6, "commands": 7, "cli": 7, "__main__": 7}


def layer_of(module: str) -> int:
    """Layer of ``spikedistill.<part>...`` (the package root itself is layer 0)."""
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


CHECKED = ["spikedistill.config", "spikedistill.plugins", "spikedistill.run_files",
           "spikedistill.data", "spikedistill.neurons",
           "spikedistill.models", "spikedistill.distill", "spikedistill.engine", "spikedistill.analysis"]


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    """``{module: every spikedistill module (and torch) loaded by importing it alone}``: one
    fresh interpreter per module, all started at once."""
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    procs = {}
    for module in CHECKED:
        code = (f"import sys, json; import {module}; "
                "print(json.dumps(sorted(m for m in sys.modules if m == 'spikedistill' or "
                "m.startswith('spikedistill.') or m == 'torch')))")
        procs[module] = subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = {}
    for module, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"import {module} failed: {stderr[-2000:]}"
        out[module] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_every_package_module_has_a_layer():
    tops = {p.stem for p in (SRC / "spikedistill").iterdir()
            if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops - {"__init__"} == set(LAYERS)


@pytest.mark.parametrize("module", ["spikedistill.config", "spikedistill.plugins",
                                    "spikedistill.run_files"])
def test_config_layer_needs_no_torch_and_no_methods(imported, module):
    loaded = imported[module]
    assert "torch" not in loaded
    assert not [m for m in loaded if m.startswith("spikedistill.distill")]
    assert not [m for m in loaded if m != "torch" and layer_of(m) > 0], loaded


@pytest.mark.parametrize("module", CHECKED[3:])
def test_a_layer_imports_no_higher_layer(imported, module):
    own = layer_of(module)
    higher = [m for m in imported[module] if m != "torch" and layer_of(m) > own]
    assert not higher, f"{module} (layer {own}) imports {higher}"
