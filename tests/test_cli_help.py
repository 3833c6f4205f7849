"""Fast, discoverable command line: ``--help`` and ``config --keys`` load no torch; every key
has a description and the allowed values the validators check; every sub-command has a
description and an example that parses."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from spikedistill import config as C
from spikedistill.cli import EXAMPLES, build_parser, main
from spikedistill.commands import show_config as S
from spikedistill.errors import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules_after(argv, cache=None) -> dict:
    code = ("import sys, json, contextlib, io\n"
            "from spikedistill.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try:\n"
            f"        rc = main({argv!r})\n"
            "    except SystemExit as e:\n"
            "        rc = e.code\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'rc': rc, "
            "'out': buf.getvalue()}))\n")
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    if cache is not None:
        env["SPIKEDISTILL_CACHE"] = str(cache)
    out = subprocess.run([sys.executable, "-c", code], env=env, text=True, capture_output=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"]])
def test_help_loads_no_torch(argv):
    got = _modules_after(argv)
    assert got["rc"] == 0 and got["out"]
    assert got["torch"] is False


def test_keys_load_no_torch_once_the_catalogue_matches_the_sources(tmp_path):
    """The first ``config --keys`` after a built-in module changed builds the catalogue (with
    torch) and caches it; the next one, like one whose shipped catalogue matches, loads no
    torch and prints the same."""
    first = _modules_after(["config", "--keys"], cache=tmp_path)
    again = _modules_after(["config", "--keys"], cache=tmp_path)
    assert again["rc"] == 0 and again["torch"] is False
    assert again["out"] == first["out"]
    cached = json.loads((tmp_path / "keys_catalog.json").read_text()) if (
        tmp_path / "keys_catalog.json").exists() else json.loads(S.CATALOG.read_text())
    assert cached["fingerprint"] == S.sources_fingerprint()


def test_catalogue_is_the_live_registries_and_follows_the_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEDISTILL_CACHE", str(tmp_path))
    live = json.loads(json.dumps(S.build_catalog()))
    got = S.read_catalog()
    assert {k: v for k, v in got.items() if k != "fingerprint"} == live
    # a changed built-in module (here: a stale fingerprint) is noticed and rebuilt
    monkeypatch.setattr(S, "CATALOG", tmp_path / "shipped.json")
    (tmp_path / "shipped.json").write_text(json.dumps({**live, "fingerprint": "old",
                                                       "methods": {}}))
    (tmp_path / "keys_catalog.json").unlink(missing_ok=True)
    rebuilt = S.read_catalog()
    assert rebuilt["methods"] == live["methods"] and rebuilt["fingerprint"] != "old"
    assert json.loads((tmp_path / "keys_catalog.json").read_text())["fingerprint"] == \
        S.sources_fingerprint()


def test_every_key_is_listed_with_a_description(capsys):
    assert main(["config", "--keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {ln.split(":")[0]: ln for ln in lines if ln and not ln.startswith(" ")
              and " = " in ln}
    every = [ln.split(":")[0] for ln in C.describe_keys()]   # the loader's own schema
    assert sorted(listed) == sorted(every)
    assert [k for k, ln in listed.items() if "  -- " not in ln] == []
    assert listed["train.optimizer"].endswith("[one of " + " | ".join(C.OPTIMIZERS) + "]")
    assert listed["train.lr"].endswith("[>= 0.0]")
    assert listed["distill.kd.tau"].endswith("[> 0.0]")
    assert "[a registered dataset (listed at the end)]" in listed["data.name"]
    from spikedistill.data.registry import list_datasets
    from spikedistill.distill import list_methods
    from spikedistill.models.registry import list_models
    text = "\n".join(lines)
    for title, names in (("datasets (data.name; a dataset's own data.augment defaults replace "
                          "the ones above for the keys a config does not set):", list_datasets()),
                         ("models (model.name; role):", list_models()),
                         ("methods (distill.method):", list_methods())):
        block = text.split(title)[1].split("\n\n")[0]
        assert sorted(ln.split(":")[0].strip() for ln in block.strip().splitlines()) == \
            sorted(names)


def test_listed_choices_are_what_the_validation_enforces():
    """Every key listed as 'one of A | B' accepts each value and rejects any other, with the
    one-line error naming the key: the listing and the validation are one source."""
    constraints = S.core_constraints()
    constraints.update({r["key"]: r["allowed"] for r in S.read_catalog()["keys"]})
    choices = {k: v[len("one of "):].split(" | ") for k, v in constraints.items()
               if v.startswith("one of ")}
    assert choices["train.amp"] == list(C.AMP_MODES)
    assert choices["model.neuron.surrogate"] == list(C.SURROGATES)
    assert len(choices) >= 12
    for key, values in choices.items():
        if key.endswith("source"):
            continue  # needs arch etc.; its vocabulary is MODEL_SOURCES, checked below
        with pytest.raises(ConfigError, match=f"config key '{key}'"):
            C.build_config(overrides=[f"{key}=not-a-choice"])
        value = values[-1]
        C.build_config(overrides=[f"{key}={value}"] + (
            ["data.augment.autoaugment=false"] if key == "data.augment.translate_fill" else []))
    assert choices["model.source"] == list(C.MODEL_SOURCES)


#: every vocabulary of the config layer (the allowed values of its keys)
VOCABULARIES = ("SURROGATES", "NEURON_BACKENDS", "LAST_ACTIVATIONS", "TEACHER_MODES",
                "TRANSLATE_FILLS", "PIPELINES", "DECODERS", "BAD_IMAGE_ACTIONS",
                "BATCH_SIZE_MODES", "OPTIMIZERS", "SCHEDULERS", "AMP_MODES",
                "CKD_NORMALIZE_CHOICES", "CKD_SCALING_CHOICES", "CKD_TEACHER_MAP_CHOICES",
                "CKD_STUDENT_MAP_CHOICES", "CKD_NLD_MODE_CHOICES", "CKD_PRESET_CHOICES",
                "MODEL_SOURCES", "TEACHER_FRAMES", "SEW_CONNECTS", "RANDAUGMENT_ALL_OPS")


def test_keys_print_every_vocabulary_and_optional_keys_accept_null():
    """``config --keys`` shows each vocabulary beside a key (also for keys whose default is
    null, and for lists, each element); a listed optional choice accepts null and each value
    and rejects any other."""
    constraints = S.core_constraints()
    constraints.update({r["key"]: r["allowed"] for r in S.read_catalog()["keys"]})
    shown = set(constraints.values())
    for name in VOCABULARIES:
        values = " | ".join(map(str, getattr(C, name)))
        assert {f"one of {values}", f"null or one of {values}", f"each one of {values}"} & shown, name
    assert constraints["model.connect"] == "null or one of ADD | IAND | AND"
    assert constraints["data.augment.randaugment_ops"].startswith("each one of AutoContrast | ")
    optional = {k: v[len("null or one of "):].split(" | ") for k, v in constraints.items()
                if v.startswith("null or one of ")}
    assert {"model.connect", "distill.ckd.preset", "distill.ckd.samd.teacher_map",
            "distill.ckd.nld.mode", "distill.catkd.pair"} <= set(optional)
    for key, values in optional.items():
        with pytest.raises(ConfigError, match=f"config key '{key}': expected one of"):
            C.build_config(overrides=[f"{key}=not-a-choice"])
        C.build_config(overrides=[f"{key}=null"])
        C.build_config(overrides=[f"{key}={values[0]}"])
    with pytest.raises(ConfigError, match=r"'data.augment.randaugment_ops\[1\]': expected one of"):
        C.build_config(overrides=["data.augment.randaugment_ops=[Rotate, Twist]"])


def test_vocabularies_match_their_consumers():
    from spikedistill.neurons.lif import BACKENDS
    from spikedistill.neurons.surrogate import SURROGATES
    assert tuple(SURROGATES) == C.SURROGATES and BACKENDS == C.NEURON_BACKENDS


def test_every_subcommand_has_a_description_and_an_example_that_parses():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(EXAMPLES)
    for name, p in sub.choices.items():
        assert p.description, name
        assert f"example:\n  {EXAMPLES[name]}" in p.format_help(), name
        argv = shlex.split(EXAMPLES[name])[1:]
        args, extra = parser.parse_known_args(argv)
        assert args.command == name and not extra, (name, extra)
