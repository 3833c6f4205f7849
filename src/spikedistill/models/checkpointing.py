"""Activation checkpointing of model stages (``train.checkpoint_stages``).

A checkpointed stage keeps only its input during the forward pass and runs its forward again
in the backward pass to rebuild the activations its gradient needs
(:func:`torch.utils.checkpoint.checkpoint`, non-reentrant), trading one extra forward of that
stage for its activation memory (``O(T * B * C * H * W)`` per layer for an SNN: the time axis
multiplies it, hence SEW-ResNet-34 at T = 4 and 224x224).

**Which modules are stages** (the contract): a model's ``checkpoint_modules()``, a list of
``(name, module)`` in forward order, when it defines one (:class:`~spikedistill.models.zoo.
sew_resnet.SEWResNet`: ``layer1..layer4``); otherwise the modules of its feature taps
``feature_names`` (built-in ResNets: ``layer1..layer3``; a
:class:`~spikedistill.models.taps.FeatureTapModel`: its dotted paths inside ``net``). Stage
numbers are 1-based, as ``distill.ckd.samd.stages``; ``"all"`` checkpoints every stage.

**Exactly the same step**: the recompute sees the same inputs, parameters, autocast state and
RNG state (``preserve_rng_state``), so gradients equal those of the unchecked run. BatchNorm
layers normalise with the batch statistics in the recompute as in the forward, but their
running statistics (and ``num_batches_tracked``) are updated only once, by the forward: the
recompute runs the very same code (so autograd saves the same tensors) and the buffers of every
``_BatchNorm`` of the stage are restored to their values from before the recompute.
Stateful neurons of other libraries (a tapped ``spikingjelly/...`` student) are reset with the
model's ``reset`` after the recompute, as after every forward: the recompute leaves their
membrane ``v`` as a tensor of the backward graph, and the next batch would start from it.
Without grad (evaluation) a stage runs plainly.

The wrapping sets an instance ``forward`` on the stage module: parameters, buffers, state-dict
keys and forward hooks (feature taps) are unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from spikedistill.errors import ConfigError

KEY = "train.checkpoint_stages"


def stage_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of the stages of ``model`` in forward order (see the module doc)."""
    own = getattr(model, "checkpoint_modules", None)
    if callable(own):
        return list(own())
    names = tuple(getattr(model, "feature_names", ()) or ())
    root = getattr(model, "net", model)
    out = []
    for name in names:
        try:
            out.append((name, root.get_submodule(name)))
        except AttributeError:
            raise ConfigError(f"config key '{KEY}': {type(model).__name__} has no module "
                              f"{name!r} for its feature tap; it cannot be checkpointed by "
                              "stage") from None
    return out


def resolve_stages(spec: Union[str, Sequence[int], None], n_stages: int,
                   key: str = KEY) -> List[int]:
    """0-based indices of the stages named by ``spec``: ``"all"``, or 1-based stage numbers
    (each in ``1..n_stages``, no repeats); ``None`` / ``[]``: none."""
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec == "all":
            return list(range(n_stages))
        raise ConfigError(f"config key '{key}': expected 'all' or a list of stage numbers "
                          f"1..{n_stages}, got {spec!r}")
    out: List[int] = []
    for i, s in enumerate(spec):
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= n_stages:
            raise ConfigError(f"config key '{key}[{i}]': stage {s!r} does not exist; the model "
                              f"has {n_stages} stages (1..{n_stages}, or 'all')")
        if s - 1 in out:
            raise ConfigError(f"config key '{key}[{i}]': stage {s} is listed twice")
        out.append(s - 1)
    return sorted(out)


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module):
    """Inside, the ``_BatchNorm`` layers of ``module`` run as usual (train mode: batch
    statistics, the same saved tensors as the forward); on exit their running statistics and
    ``num_batches_tracked`` are put back to the values they had on entry (an exact copy)."""
    saved = [(b, b.detach().clone()) for m in module.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
             for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def checkpoint_module(module: nn.Module, after_recompute: Optional[Callable[[], None]] = None
                      ) -> nn.Module:
    """Make ``module`` recompute its forward in backward (non-reentrant checkpoint), with the
    BatchNorm running statistics updated once per step (see the module doc); ``after_recompute``
    runs after each recompute (the model's neuron reset). Idempotent."""
    if getattr(module, "_sd_checkpointed", False):
        return module
    inner = module.forward

    def forward(*args, **kwargs):
        if not torch.is_grad_enabled():
            return inner(*args, **kwargs)
        calls = [0]

        def run(*a, **k):
            calls[0] += 1
            if calls[0] == 1:          # the forward pass
                return inner(*a, **k)
            try:
                with frozen_batchnorm_stats(module):   # the recompute in backward
                    return inner(*a, **k)
            finally:
                if after_recompute is not None:
                    after_recompute()

        return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)

    module.forward = forward
    module._sd_checkpointed = True
    return module


def apply_checkpointing(model: nn.Module, spec: Union[str, Sequence[int], None]) -> List[str]:
    """Checkpoint the stages of ``model`` named by ``spec`` (``train.checkpoint_stages``);
    returns their names. ConfigError for a stage number the model does not have. Nothing is
    looked up when ``spec`` names no stage (``None`` / ``[]``): a model whose stages cannot be
    found trains as long as none is asked for."""
    if spec is None or (not isinstance(spec, str) and len(spec) == 0):
        return []
    stages = stage_modules(model)
    chosen = resolve_stages(spec, len(stages))
    if chosen and not stages:
        raise ConfigError(f"config key '{KEY}': {type(model).__name__} exposes no stages "
                          "(no checkpoint_modules() and no feature_names)")
    reset, net = getattr(model, "_reset", None), getattr(model, "net", None)
    after = (lambda: reset(net)) if callable(reset) and net is not None else None
    for i in chosen:
        checkpoint_module(stages[i][1], after)
    return [stages[i][0] for i in chosen]


__all__ = ["apply_checkpointing", "checkpoint_module", "frozen_batchnorm_stats",
           "resolve_stages", "stage_modules"]
