"""The teacher zoo: trained ANN teachers shipped with the package, loadable by name.

Each entry is three files in ``spikedistill/models/zoo/teachers/``: ``NAME.safetensors`` (the
state dict), ``NAME.json`` (the index: ``arch``, ``model_kwargs``, ``sha256`` of the weights
file, ``dataset``, ``test_acc``, ``command``, ``spikedistill_version``) and ``NAME.md`` (the
model card). ``teacher.zoo: NAME`` loads one; the file's SHA-256 must equal the recorded one, so a
corrupted or swapped file is refused rather than distilled from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import torch
import torch.nn as nn

from spikedistill.errors import CheckpointError, ConfigError

__all__ = ["ZOO_DIR", "load_zoo_teacher", "zoo_entry", "zoo_names"]

#: where the shipped teachers live (package data)
ZOO_DIR = Path(__file__).resolve().parent / "zoo" / "teachers"
INDEX_KEYS = ("name", "arch", "model_kwargs", "file", "sha256", "dataset", "test_acc", "command",
              "spikedistill_version")


def zoo_names(root: Path = ZOO_DIR) -> List[str]:
    """The names of the shipped teachers (sorted)."""
    return sorted(p.stem for p in Path(root).glob("*.json"))


def zoo_entry(name: str, root: Path = ZOO_DIR) -> Dict[str, Any]:
    """The index record of teacher ``name``; ConfigError naming ``teacher.zoo`` and the
    shipped names for an unknown one, CheckpointError for a broken index."""
    path = Path(root) / f"{name}.json"
    if not str(name) or "/" in str(name) or not path.is_file():
        raise ConfigError(f"config key 'teacher.zoo': no shipped teacher {name!r}; the zoo holds: "
                          f"{', '.join(zoo_names(root)) or '(none)'}")
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the zoo index ({exc})") from None
    missing = [k for k in INDEX_KEYS if k not in entry]
    if missing:
        raise CheckpointError(f"{path}: the zoo index lacks {', '.join(missing)}")
    return entry


def load_zoo_teacher(name: str, device: Union[str, torch.device] = "cpu",
                     root: Path = ZOO_DIR) -> Tuple[nn.Module, Dict[str, Any]]:
    """``(teacher in eval mode on device, provenance)`` of the shipped teacher ``name``.

    The weights file's SHA-256 is checked against the index before it is read (CheckpointError
    naming both digests otherwise); the network is ``create_model(arch, **model_kwargs)`` and
    takes the state dict strictly. Provenance: ``source`` ``zoo``, ``arch``, ``weights``,
    ``sha256``, ``zoo``, ``model_kwargs`` and the card's ``test_acc``.
    """
    from spikedistill.models.external.weights import file_sha256, read_state_dict
    from spikedistill.models.registry import create_model

    entry = zoo_entry(name, root)
    weights = Path(root) / entry["file"]
    if not weights.is_file():
        raise CheckpointError(f"teacher.zoo {name!r}: weights file '{weights}' is missing")
    digest = file_sha256(weights)
    if digest != entry["sha256"]:
        raise CheckpointError(f"teacher.zoo {name!r}: '{weights}' has sha256 {digest}, but the "
                              f"zoo records {entry['sha256']}; the file is corrupted or replaced")
    net = create_model(entry["arch"], **dict(entry["model_kwargs"]))
    state = read_state_dict(weights, key="teacher.zoo")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"teacher.zoo {name!r}: '{weights}' does not fit "
                              f"{entry['arch']} ({str(exc).splitlines()[0][:200]})") from None
    provenance = {"source": "zoo", "zoo": name, "arch": entry["arch"], "weights": str(weights),
                  "sha256": digest, "model_kwargs": dict(entry["model_kwargs"]),
                  "card_test_acc": entry["test_acc"]}
    return net.to(device).eval(), provenance
