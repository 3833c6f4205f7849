"""Plugins (issue 17, part 7): a plugin that calls ``sys.exit()`` on import, or registers a name
a built-in has (even in a registry whose built-ins were not loaded yet), gives one warning naming
it; the built-ins and the other plugins keep working."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

PLUGINS = {
    "exitplug": "import sys\nsys.exit(3)\n",
    "dataclash": ("from spikedistill.data.registry import register_dataset\n"
                  "@register_dataset('digits', num_classes=2, needs_root=False)\n"
                  "def read(request):\n    raise AssertionError('the plugin took digits')\n"),
    "modelclash": ("from spikedistill.models import register_model\n"
                   "@register_model('resnet20', 'teacher')\n"
                   "def build(**kw):\n    raise AssertionError('the plugin took resnet20')\n"),
    "goodplug": ("from spikedistill.distill.registry import register_method\n"
                 "from spikedistill.distill.methods.kd import KD\n"
                 "register_method('goodmethod')(type('Good', (KD,), {}))\n"),
}


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    for name, code in PLUGINS.items():
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(code)
    info = site / "hostileplugs-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hostileplugs\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[spikedistill.plugins]\n" + "".join(f"{n} = {n}\n" for n in PLUGINS))
    return site


def test_exit_and_clashing_plugins_warn_once_each_and_the_rest_works(tmp_path):
    code = textwrap.dedent(r"""
    import warnings
    warnings.simplefilter("always")
    from spikedistill.config import build_config
    with warnings.catch_warnings(record=True) as caught:
        cfg = build_config({}, ["distill.method=goodmethod", "data.name=digits"])
        from spikedistill.models.registry import MODELS
        factory = MODELS.get("resnet20")
    msgs = sorted(str(w.message) for w in caught if "plugin" in str(w.message))
    from spikedistill.plugins import DATASETS
    spec = DATASETS.get("digits")
    print("RESULT", len(msgs))
    for m in msgs:
        print("MSG", m)
    print("DIGITS", getattr(spec, "num_classes", None), "MODEL", factory.__module__)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(_site(tmp_path))]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "RESULT 3" in lines, proc.stdout
    msgs = [ln[4:] for ln in lines if ln.startswith("MSG ")]
    assert msgs[0].startswith("spikedistill plugin 'dataclash' (dataclash) failed to load: "
                              "ValueError: dataset 'digits' is registered twice")
    assert msgs[1].startswith("spikedistill plugin 'exitplug' (exitplug) failed to load: SystemExit: 3")
    assert msgs[2].startswith("spikedistill plugin 'modelclash' (modelclash) failed to load: "
                              "ValueError: model 'resnet20' is registered twice")
    assert "DIGITS 10 MODEL spikedistill.models.zoo." in proc.stdout
