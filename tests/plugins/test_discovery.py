"""Built-ins are discovered, not listed: a method, a dataset or a model is ONE new file in its
package (``distill/methods/``, ``data/sets/``, ``models/zoo/``), which registers itself.

The proof writes such files into temporary packages on ``sys.path`` and points the discovery
at them, with no other edit anywhere: the names appear in ``list_methods()``, ``DATASETS`` and
``list_models()`` (and work), ``_private`` modules are skipped, and nothing is imported before
the first query."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


from spikedistill.plugins import import_submodules

SRC = Path(__file__).resolve().parents[2] / "src"


def write_package(root: Path, name: str, files: dict) -> None:
    pkg = root / name
    pkg.mkdir(parents=True)
    for fname, text in {"__init__.py": "", **files}.items():
        (pkg / fname).write_text(textwrap.dedent(text))


def test_a_fresh_registry_discovers_every_public_module_lazily(tmp_path, monkeypatch):
    write_package(tmp_path, "sd_disc_pkg", {
        "__init__.py": """
            from spikedistill.plugins import Registry
            REG = Registry("thing", "x.thing", packages=("sd_disc_pkg",))
        """,
        "alpha.py": "from sd_disc_pkg import REG\nREG.register('alpha', 1)\n",
        "beta.py": "from sd_disc_pkg import REG\nREG.register('beta', 2)\nREG.register('gamma', 3)\n",
        "_private.py": "raise RuntimeError('a _private module must not be imported by discovery')\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    import sd_disc_pkg
    try:
        assert "sd_disc_pkg.alpha" not in sys.modules        # lazy: nothing before the query
        assert sd_disc_pkg.REG.names() == ["alpha", "beta", "gamma"]
        assert sd_disc_pkg.REG.get("gamma") == 3
        assert "sd_disc_pkg._private" not in sys.modules
        assert [m.__name__ for m in import_submodules("sd_disc_pkg")] == ["sd_disc_pkg.alpha",
                                                                           "sd_disc_pkg.beta"]
    finally:
        for mod in [m for m in sys.modules if m == "sd_disc_pkg" or m.startswith("sd_disc_pkg.")]:
            del sys.modules[mod]


def test_the_builtin_registries_discover_their_packages():
    from spikedistill.models import registry as model_registry
    from spikedistill.plugins import DATASETS, METHODS
    assert METHODS.packages == ("spikedistill.distill.methods",)
    assert DATASETS.packages == ("spikedistill.data.sets",)
    assert model_registry.MODELS.packages == ("spikedistill.models.zoo",)
    # every public module of those packages registered something
    MODELS = model_registry.MODELS
    registered = {
        "spikedistill.distill.methods": {e["obj"].__module__ for _, e in METHODS.items()},
        "spikedistill.data.sets": {e["obj"].reader.__module__ for _, e in DATASETS.items()},
        "spikedistill.models.zoo": {e["obj"].__module__ for _, e in MODELS.items()},
    }
    for package, modules in registered.items():
        public = {m.__name__ for m in import_submodules(package)}
        assert public and public <= modules, (package, public - modules)


ONE_FILE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import spikedistill.config as C
from spikedistill import plugins
# the only "edit": point each registry at one more package, holding ONE file each
plugins.METHODS.packages += ("sd_extra_methods",)
plugins.DATASETS.packages += ("sd_extra_sets",)
out = {"torch_before": "torch" in sys.modules}
from spikedistill.models import registry as model_registry
model_registry.MODELS.packages += ("sd_extra_zoo",)
out["imported_before"] = sorted(m for m in sys.modules if m.startswith("sd_extra"))
cfg = C.build_config({}, ["distill.method=onefile", "distill.onefile.weight=0.5",
                          "data.name=onefile_set", "model.name=onefile_net"])
from spikedistill.distill import build_method, list_methods
from spikedistill.data import list_datasets, load_dataset
from spikedistill.models import create_model, list_models
import torch
out["methods"] = list_methods()
out["datasets"] = list_datasets()
out["models"] = list_models()
out["section"] = C._to_plain(cfg.distill.onefile)
splits = load_dataset("onefile_set")
net = create_model("onefile_net", num_classes=3, in_channels=1)
method = build_method("onefile", net, None, cfg.distill)
x = torch.as_tensor(splits.train.images[:4], dtype=torch.float32)
y = torch.as_tensor(splits.train.labels[:4])
_, losses = method(x, y)
out["losses"] = sorted(losses)
print("RESULT" + json.dumps(out))
"""

FILES = {
    "sd_extra_methods": {"onefile.py": """
        from dataclasses import dataclass
        from spikedistill.distill import Distiller, register_method

        @dataclass
        class OneFileConfig:
            weight: float = 1.0

        @register_method("onefile", config=OneFileConfig)
        class OneFile(Distiller):
            requires_teacher = False

            def forward_train(self, x, y, ctx=None):
                logits = self.student(x)
                return logits, {"ce": self.cross_entropy(logits, y),
                                "l2": self.section.weight * logits.pow(2).mean()}
    """},
    "sd_extra_sets": {"onefile_set.py": """
        import numpy as np
        from spikedistill.data.readers import RawDataset
        from spikedistill.data.registry import register_dataset

        @register_dataset("onefile_set", num_classes=3, in_channels=1, image_size=4,
                          needs_root=False)
        def read(request):
            rng = np.random.default_rng(0)
            img = lambda n: rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8)
            lab = lambda n: np.arange(n) % 3
            return RawDataset(img(12), lab(12), img(6), lab(6), [str(i) for i in range(3)])
    """},
    "sd_extra_zoo": {"onefile_net.py": """
        import torch.nn as nn
        from spikedistill.models.registry import register_model

        @register_model("onefile_net", role="teacher")
        def onefile_net(num_classes=3, in_channels=1, width_mult=None):
            return nn.Sequential(nn.Flatten(), nn.Linear(16 * in_channels, num_classes))
    """},
}


def test_one_new_file_adds_a_method_a_dataset_and_a_model(tmp_path):
    for package, files in FILES.items():
        write_package(tmp_path, package, files)
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", ONE_FILE, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    assert out["torch_before"] is False and out["imported_before"] == []    # lazy
    assert "onefile" in out["methods"] and {"kd", "ckd", "ce"} <= set(out["methods"])
    assert "onefile_set" in out["datasets"] and "digits" in out["datasets"]
    assert "onefile_net" in out["models"] and "spiking_resnet20" in out["models"]
    assert out["section"] == {"weight": 0.5}
    assert out["losses"] == ["ce", "l2"]
