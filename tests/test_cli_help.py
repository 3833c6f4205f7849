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


def _modules_after(argv) -> dict:
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
    out = subprocess.run([sys.executable, "-c", code], env=env, text=True, capture_output=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["config", "--keys"], ["compare", "--help"]])
def test_help_and_keys_load_no_torch(argv):
    got = _modules_after(argv)
    assert got["rc"] == 0 and got["out"]
    assert got["torch"] is False


def test_keys_catalog_is_current():
    """keys_catalog.json equals what the live registries give (regenerate with
    ``python -c "from spikedistill.commands.show_config import write_catalog; write_catalog()"``
    after adding a built-in dataset, model or method)."""
    assert S.read_catalog() == json.loads(json.dumps(S.build_catalog())), (
        "src/spikedistill/commands/keys_catalog.json is stale: run python -c \"from "
        "spikedistill.commands.show_config import write_catalog; write_catalog()\"")


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
