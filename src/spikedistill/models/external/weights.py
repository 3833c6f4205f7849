"""Local state-dict files: reading, checking against a network, hashing, exporting.

Nothing here downloads anything: a teacher's weights are a file the user names
(``teacher.weights``), read with ``torch.load(weights_only=True)`` (``.pth`` / ``.pt`` / ``.bin``)
or through the ``safetensors`` package (``.safetensors``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import torch
import torch.nn as nn

from spikedistill.atomic import atomic_write
from spikedistill.errors import CheckpointError, ConfigError, torch_load_reason
from spikedistill.run_files import run_checkpoint

PathLike = Union[str, os.PathLike]

#: ``format`` of a spikedistill training checkpoint (``spikedistill.engine.checkpoint.FORMAT``;
#: repeated here because models sit below the engine in the layer order).
SPIKEDISTILL_CHECKPOINT_FORMAT = "spikedistill-checkpoint"
#: wrapper keys under which training scripts store the state dict, tried in this order
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "module")
#: how many key names an error message lists
SHOWN = 5


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes (the provenance of a teacher's weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def resolve_weights_path(path: Optional[PathLike], key: str) -> Path:
    """The absolute path of an existing weights file; ConfigError naming ``key`` otherwise."""
    if path is None or str(path).strip() == "":
        raise ConfigError(f"config key '{key}': an external teacher needs a local state-dict file "
                          "(.pth / .safetensors); nothing is downloaded")
    p = Path(os.path.expanduser(str(path))).resolve()
    if not p.exists():
        raise ConfigError(f"config key '{key}': weights file '{p}' does not exist; expected a "
                          "state-dict file such as resnet18-f37072fd.pth or model.safetensors")
    if not p.is_file():
        raise ConfigError(f"config key '{key}': '{p}' is not a file; expected a state-dict file")
    return p


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_state_dict(path: PathLike, key: str = "teacher.weights") -> Dict[str, torch.Tensor]:
    """The tensors of a weights file: a bare state dict, a wrapper ``{"state_dict": ...}`` /
    ``{"model": ...}`` (also a spikedistill checkpoint, whose ``model`` entry is used) or a
    ``.safetensors`` file. Any problem is a ConfigError naming ``key`` and the file."""
    p = resolve_weights_path(path, key)
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(f"config key '{key}': '{p}' is a .safetensors file; reading it needs "
                              "the safetensors package (pip install 'spikedistill[safetensors]')") from None
        try:
            return dict(load_file(str(p), device="cpu"))
        except Exception as exc:
            raise ConfigError(f"config key '{key}': cannot read safetensors file '{p}' "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # RuntimeError, UnpicklingError, EOFError, ...
        detail, unsafe = torch_load_reason(exc)
        if unsafe:
            raise ConfigError(f"config key '{key}': '{p}' was refused as unsafe: it holds an "
                              "object that torch.load(weights_only=True) does not rebuild "
                              f"({detail}); save the weights alone, "
                              "torch.save(model.state_dict(), path), or as .safetensors") from None
        raise ConfigError(f"config key '{key}': cannot read '{p}' as a torch state-dict file "
                          f"({type(exc).__name__}: {detail})") from None
    if _is_tensor_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for wrapper in WRAPPER_KEYS:
            inner = obj.get(wrapper)
            if _is_tensor_dict(inner):
                state = dict(inner)
                if obj.get("format") == SPIKEDISTILL_CHECKPOINT_FORMAT:
                    state = strip_prefix(state, "net.")
                return state
    what = (f"a dict with keys {', '.join(map(str, list(obj)[:SHOWN]))}" if isinstance(obj, Mapping)
            else type(obj).__name__)
    raise ConfigError(f"config key '{key}': '{p}' holds {what}, not a state dict; expected "
                      "{name: tensor} or a wrapper {'state_dict': ...} / {'model': ...}")


def strip_prefix(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """``state`` with ``prefix`` removed from every key, if every key starts with it."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def state_dict_problems(net: nn.Module, state: Mapping[str, torch.Tensor]) -> List[str]:
    """What keeps ``net.load_state_dict(state, strict=True)`` from working: the first missing
    and unexpected keys and the shape mismatches (empty if it fits)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} file {list(state[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    out = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            out.append(f"{label} ({len(items)}): {', '.join(items[:SHOWN])}{more}")
    return out


def load_weights(net: nn.Module, state: Dict[str, torch.Tensor], *, path: PathLike, what: str,
                 classifier: Optional[str], num_classes: int, key: str = "teacher.weights") -> None:
    """Load ``state`` into ``net`` strictly. A DDP ``module.`` prefix is stripped; a classifier
    whose K differs from ``num_classes`` and any other mismatch are one ConfigError line."""
    own = net.state_dict()
    if not any(k in own for k in state):
        state = strip_prefix(strip_prefix(state, "module."), "net.")
    if classifier:
        wkey = f"{classifier}.weight"
        if wkey in state and wkey in own and state[wkey].dim() >= 1 \
                and state[wkey].shape[0] != own[wkey].shape[0]:
            raise ConfigError(
                f"config key '{key}': '{path}' has a {state[wkey].shape[0]}-class classifier "
                f"({wkey} {list(state[wkey].shape)}) but the dataset has K={num_classes} classes; "
                "use weights trained on this dataset (e.g. train the same architecture with "
                "'spikedistill train-teacher model.source=... model.arch=...' and export it)")
    problems = state_dict_problems(net, state)
    if problems:
        raise ConfigError(f"config key '{key}': '{path}' does not fit {what}: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)


def export_state_dict(checkpoint: PathLike, out_path: PathLike) -> Path:
    """Write a spikedistill checkpoint's network weights as a plain state-dict file.

    The checkpoint's ``model`` entry (a :class:`~spikedistill.models.taps.FeatureTapModel`'s
    keys ``net.<k>``) is saved as ``{<k>: tensor}``, the layout of the original library
    (e.g. torchvision's ``resnet18-*.pth``), so it loads as ``teacher.weights`` with
    ``teacher.source=torchvision``. Built-in models' keys are kept as they are. Written
    atomically (:func:`spikedistill.atomic.atomic_write`)."""
    p = run_checkpoint(checkpoint)
    if not p.is_file():
        raise CheckpointError(f"checkpoint '{p}' does not exist; expected RUN_DIR/best.pt")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint '{p}' is truncated or corrupt "
                              f"({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != SPIKEDISTILL_CHECKPOINT_FORMAT \
            or not _is_tensor_dict(ckpt.get("model")):
        raise CheckpointError(f"checkpoint '{p}' is not a spikedistill checkpoint with model weights")
    state = {k: v.detach().clone().contiguous() for k, v in strip_prefix(ckpt["model"], "net.").items()}
    out = Path(out_path)
    if out.suffix == ".safetensors":
        try:
            from safetensors.torch import save
        except ImportError:
            raise ConfigError(f"'{out}': writing .safetensors needs the safetensors package "
                              "(pip install 'spikedistill[safetensors]')") from None
        blob = save(state)
        return atomic_write(out, lambda handle: handle.write(blob))
    return atomic_write(out, lambda handle: torch.save(state, handle))


__all__ = ["export_state_dict", "file_sha256", "load_weights", "read_state_dict",
           "resolve_weights_path", "state_dict_problems", "strip_prefix"]
