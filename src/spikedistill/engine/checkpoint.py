"""Checkpoints: atomic writes, validated loads, RNG capture, model rebuilding.

A spikedistill checkpoint is a ``dict`` written with :func:`torch.save` that holds

- ``format`` (``"spikedistill-checkpoint"``) and ``format_version``,
- ``model_name`` / ``model_kwargs`` / ``model_role`` (enough to rebuild the network with
  :func:`spikedistill.models.create_model`) and ``model`` (the *unwrapped* state dict),
- ``extras`` (state dicts of the method's trainable extras), ``optimizer``, ``scheduler``,
  ``scaler`` (GradScaler, fp16 only),
- ``epoch`` (number of completed epochs), ``best_acc``, ``best_epoch``, ``history``,
- ``rng`` (python, numpy, torch CPU and CUDA states, one entry per rank),
- ``config`` (the resolved run config as a plain dict).

Only plain containers, numbers, strings and tensors are stored, so checkpoints load with
``torch.load(weights_only=True)``. Files are written atomically (temporary file in the same
directory, ``fsync``, :func:`os.replace`): a crash while saving leaves the previous file intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from spikedistill.atomic import atomic_write, list_temp_files  # noqa: F401 (re-exported)
from spikedistill.errors import CheckpointError, torch_load_reason
from spikedistill.run_files import BEST_NAME, LAST_NAME  # noqa: F401 (re-exported)

FORMAT = "spikedistill-checkpoint"
FORMAT_VERSION = 1

#: Keys every checkpoint must carry.
REQUIRED_KEYS = ("format", "format_version", "model_name", "model_kwargs", "model", "epoch",
                 "config")

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------------------------

def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (:func:`spikedistill.atomic.atomic_write`)."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


# --------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------

def capture_rng_state() -> Dict[str, Any]:
    """The state of every random generator a training step may touch (python, numpy, torch CPU
    and, when CUDA is initialised, the current CUDA device: under DDP each rank drives one
    GPU, and touching the others would create CUDA contexts on them), as tensors and plain
    values."""
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": str(np_state[0]), "key": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    npd = state["numpy"]
    np.random.set_state((npd["name"], npd["key"].numpy().astype(np.uint32), npd["pos"],
                         npd["has_gauss"], npd["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # older layout: one state per device
            cuda = cuda[torch.cuda.current_device()] if len(cuda) > torch.cuda.current_device() else cuda[0]
        torch.cuda.set_rng_state(cuda.cpu(), torch.cuda.current_device())


# --------------------------------------------------------------------------------------------
# building, saving and loading
# --------------------------------------------------------------------------------------------

def model_identity(model: nn.Module) -> Tuple[str, Dict[str, Any], Optional[str]]:
    """``(name, kwargs, role)`` recorded by :func:`spikedistill.models.create_model`."""
    name = getattr(model, "model_name", None)
    kwargs = getattr(model, "model_kwargs", None)
    if name is None or kwargs is None:
        raise CheckpointError(f"cannot checkpoint {type(model).__name__}: it was not built by "
                              "spikedistill.models.create_model (no model_name/model_kwargs)")
    return name, dict(kwargs), getattr(model, "model_role", None)


def make_checkpoint(*, model: nn.Module, config: Dict[str, Any], epoch: int,
                    extras: Optional[Dict[str, nn.Module]] = None,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Any = None, scaler: Any = None,
                    best_acc: Optional[float] = None, best_epoch: Optional[int] = None,
                    history: Optional[List[Dict[str, Any]]] = None,
                    rng: Optional[List[Dict[str, Any]]] = None,
                    teacher_acc: Optional[float] = None,
                    extra_meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Assemble a checkpoint dict. ``model`` and the ``extras`` must be *unwrapped* modules
    (no DDP / torch.compile wrappers), so that the keys carry no ``module.`` prefixes."""
    name, kwargs, role = model_identity(model)
    ckpt: Dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": name,
        "model_kwargs": kwargs,
        "model_role": role,
        "model": model.state_dict(),
        "extras": {k: m.state_dict() for k, m in (extras or {}).items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "best_acc": best_acc,
        "best_epoch": best_epoch,
        "history": list(history or []),
        "rng": rng if rng is not None else [capture_rng_state()],
        "config": config,
        "teacher_acc": teacher_acc,
        "torch_version": str(torch.__version__),
    }
    if extra_meta:
        ckpt["meta"] = dict(extra_meta)
    return ckpt


def save_checkpoint(ckpt: Dict[str, Any], path: PathLike) -> Path:
    """Write a checkpoint dict atomically (see :func:`atomic_torch_save`)."""
    return atomic_torch_save(ckpt, path)


def resolve_checkpoint_path(path: PathLike, default_name: str = LAST_NAME) -> Path:
    """A checkpoint file, or ``DIR/default_name`` when ``path`` is a run directory."""
    p = Path(path)
    if p.is_dir():
        p = p / default_name
    return p


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read and validate a checkpoint; any problem is a :class:`CheckpointError` naming the file.

    ``path`` may be a run directory (then ``last.pt`` inside it is read).
    """
    p = resolve_checkpoint_path(path)
    if not p.exists():
        where = f" (run directory '{path}' has no {LAST_NAME})" if Path(path).is_dir() else ""
        raise CheckpointError(f"checkpoint '{p}' does not exist{where}; expected a spikedistill "
                              "checkpoint such as RUN_DIR/best.pt or RUN_DIR/last.pt")
    if not p.is_file():
        raise CheckpointError(f"checkpoint '{p}' is not a file; expected a spikedistill checkpoint")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        detail, unsafe = torch_load_reason(exc)
        if unsafe:
            raise CheckpointError(f"checkpoint '{p}' was refused as unsafe: it holds an object "
                                  "that torch.load(weights_only=True) does not rebuild ("
                                  f"{detail}); a spikedistill checkpoint holds only "
                                  "tensors, numbers, strings and containers, so this file was "
                                  "not written by spikedistill (or was altered)") from None
        raise CheckpointError(f"checkpoint '{p}' is truncated or corrupt, expected a spikedistill "
                              f"checkpoint ({type(exc).__name__}: {detail})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint '{p}' is not a spikedistill checkpoint (expected a dict "
                              f"with format={FORMAT!r}; a bare state_dict cannot be used)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(f"checkpoint '{p}' has format version {version!r}; this spikedistill "
                              f"reads versions 1..{FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint '{p}' lacks the keys {', '.join(missing)}; expected a "
                              "complete spikedistill checkpoint")
    ckpt["path"] = str(p)
    return ckpt


def checkpoint_meta(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """Everything in a checkpoint except the (large) state dicts."""
    heavy = {"model", "extras", "optimizer", "scheduler", "scaler", "rng"}
    return {k: v for k, v in ckpt.items() if k not in heavy}


def load_state_checked(module: nn.Module, state: Dict[str, torch.Tensor], what: str,
                       path: str) -> None:
    """``module.load_state_dict(state)`` (strict); a mismatch is a CheckpointError naming
    ``what`` and the file, with the first missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        if shapes:
            parts.append(f"shape mismatch {'; '.join(shapes[:3])}{' ...' if len(shapes) > 3 else ''}")
        raise CheckpointError(f"checkpoint '{path}': the {what} weights do not fit the model "
                              f"({'; '.join(parts)})")
    module.load_state_dict(state, strict=True)


def load_model_from_checkpoint(path: PathLike, device: Union[str, torch.device] = "cpu",
                               **kwarg_overrides: Any) -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild a registered model from a checkpoint and load its weights.

    ``kwarg_overrides`` replace saved constructor arguments that do not change the weights'
    shapes (e.g. ``T=4`` to evaluate a student at another number of timesteps). Returns
    ``(model in eval mode on device, meta)`` where ``meta`` is :func:`checkpoint_meta`.
    """
    from spikedistill.models import create_model  # late import: models are optional for I/O

    ckpt = load_checkpoint(path)
    name, kwargs = ckpt["model_name"], dict(ckpt["model_kwargs"])
    kwargs.update(kwarg_overrides)
    try:
        model = create_model(name, **kwargs)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"checkpoint '{ckpt['path']}': cannot rebuild model {name!r} with "
                              f"{kwargs}: {exc}") from None
    load_state_checked(model, ckpt["model"], "model", ckpt["path"])
    model.to(device).eval()
    return model, checkpoint_meta(ckpt)


def check_same_model(ckpt: Dict[str, Any], name: str, kwargs: Dict[str, Any]) -> None:
    """CheckpointError unless the checkpoint was made for model ``name`` built with ``kwargs``."""
    saved = (ckpt["model_name"], _plain(ckpt["model_kwargs"]))
    wanted = (name, _plain(kwargs))
    if saved != wanted:
        diff = [k for k in sorted(set(saved[1]) | set(wanted[1]))
                if saved[1].get(k) != wanted[1].get(k)]
        what = (f"model {saved[0]!r} vs {wanted[0]!r}" if saved[0] != wanted[0] else
                "; ".join(f"{k}: checkpoint {saved[1].get(k)!r} vs config {wanted[1].get(k)!r}"
                          for k in diff))
        raise CheckpointError(f"checkpoint '{ckpt.get('path', '?')}' does not match the configured "
                              f"model ({what})")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
