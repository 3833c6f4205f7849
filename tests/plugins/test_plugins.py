"""Plugins through entry points: a tiny plugin package (``site/toyplug``, found through its
``toyplug-0.1.dist-info/entry_points.txt`` on ``sys.path``) registers a model, a method with
its own ``distill.toyconf`` section and a frames dataset; a subprocess builds a config that
uses them and runs the method one step on the plugin model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def run_python(code: str, *paths: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), *map(str, paths)]),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=240)


STEP = r"""
import json, sys, warnings
import spikedistill.config as C
assert "torch" not in sys.modules and "toyplug" not in sys.modules
cfg = C.build_config({}, ["distill.method=toyconf", "distill.toyconf.weight=0.25",
                          "data.name=toyframes", "data.augment.autoaugment=false",
                          "data.kwargs={n_train: 8}", "model.name=toy_snn", "model.T=3"])
import toyplug
out = {"calls": list(toyplug.CALLS), "section": C._to_plain(cfg.distill.toyconf)}
keys = C.describe_keys()
out["keys"] = [k for k in keys if k.startswith("distill.toyconf.")]
again = C.build_config(cfg.to_dict())
out["round_trip"] = again == cfg
for bad in (["distill.toyconf.nope=1"], ["distill.toyconf.tau=0"], ["data.name=toyframes"],
            ["data.name=mnist"], ["distill.method=nope"]):
    try:
        C.build_config({}, bad)
        out.setdefault("errors", []).append(None)
    except Exception as exc:
        out.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")

import torch
from spikedistill.data import DeviceLoader, build_augment, load_from_config
from spikedistill.distill import build_method, list_methods
from spikedistill.models import create_model, list_models
from spikedistill.models.contract import contract_problems
splits = load_from_config(cfg.data, use_cache=False)
out["splits"] = [splits.frames, splits.T, list(splits.train.images.shape), splits.info["normalization"]]
aug = build_augment(True, splits.mean, splits.std, autoaugment=False)
loader = DeviceLoader(splits.train.images, splits.train.labels, 4, shuffle=True, drop_last=True,
                      augment=aug, seed=0)
x, y = next(iter(loader))
out["batch"] = list(x.shape)
torch.manual_seed(0)
model = create_model("toy_snn", num_classes=4, in_channels=1, T=cfg.model.T)
out["contract"] = contract_problems(model, x)
out["listed"] = ["toyconf" in list_methods(), "toy_snn" in list_models("student")]
from spikedistill.models import MODELS
last, entry = MODELS.items()[-1]         # the one Registry: built-ins first, then the plugin's
out["model_entry"] = [last, entry["role"], entry["module"], "T" in entry["params"]]
method = build_method(cfg.distill.method, model, None, cfg.distill)
method.train()
before = [p.detach().clone() for p in method.trainable_parameters()]
opt = torch.optim.SGD(list(method.trainable_parameters()), lr=0.5)
logits, losses = method(x, y)
z = logits.detach()
p = torch.softmax(z / 2.0, 1)
expected = 0.25 * (p * p.log()).sum(1).mean()
out["losses"] = sorted(losses)
out["conf_err"] = abs(float(losses["conf"]) - float(expected))
out["ce_err"] = abs(float(losses["ce"]) - float(torch.nn.functional.cross_entropy(z, y)))
sum(losses.values()).backward()
opt.step()
out["moved"] = any(not torch.equal(a, b.detach()) for a, b in zip(before, method.trainable_parameters()))
print("RESULT" + json.dumps(out))
"""


def _result(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_plugin_model_method_and_frames_dataset_one_step():
    out = _result(run_python(STEP, HERE / "site"))
    assert out["calls"] == ["register"]                    # loaded once, lazily
    assert out["section"] == {"tau": 2.0, "weight": 0.25}
    assert out["keys"] == ["distill.toyconf.tau: float = 2.0", "distill.toyconf.weight: float = 0.5"]
    assert out["round_trip"] is True
    unknown_key, bad_tau, frames_aa, unknown_data, unknown_method = out["errors"]
    assert unknown_key.startswith("ConfigError: unknown config key 'distill.toyconf.nope'")
    assert "valid keys of 'distill.toyconf': tau, weight" in unknown_key
    assert "'distill.toyconf.tau': expected a value > 0.0" in bad_tau
    assert "'data.augment.autoaugment'" in frames_aa and "toyframes" in frames_aa
    assert "unknown dataset 'mnist'" in unknown_data and "toyframes" in unknown_data
    assert "'distill.method': unknown method 'nope'" in unknown_method and "toyconf" in unknown_method
    assert out["splits"] == [True, 3, [8, 3, 1, 6, 6], "train-split"]
    assert out["batch"] == [3, 4, 1, 6, 6]                 # time-major [T, B, C, H, W]
    assert out["contract"] == [] and out["listed"] == [True, True]
    assert out["model_entry"] == ["toy_snn", "student", "toyplug", True]
    assert out["losses"] == ["ce", "conf"]
    assert out["conf_err"] < 1e-6 and out["ce_err"] < 1e-6
    assert out["moved"] is True


def test_broken_plugin_warns_once_naming_it_and_the_rest_works():
    code = r"""
    import warnings
    warnings.simplefilter("always")
    from spikedistill.config import build_config
    with warnings.catch_warnings(record=True) as caught:
        cfg = build_config({}, ["distill.method=kd", "data.name=digits"])
        build_config({}, ["distill.method=ce"])
    msgs = [str(w.message) for w in caught if "plugin" in str(w.message)]
    print("RESULT", len(msgs), msgs[0] if msgs else "", cfg.distill.kd.tau)
    """
    proc = run_python(code, HERE / "broken")
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    assert line.startswith("RESULT 1 spikedistill plugin 'brokenplug' (brokenplug) failed to load: "
                           "ImportError: brokenplug needs a library that is not installed")
    assert line.endswith(" 4.0")
