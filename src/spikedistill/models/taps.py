"""Feature taps by module path: any ``nn.Module`` as a student or teacher, without surgery.

:class:`FeatureTapModel` wraps a network and captures the outputs of the modules named in
``features`` (dotted paths as in ``named_modules()``, e.g. ``layer1``, ``layer4.1.conv2``) with
forward hooks, so the wrapped network runs unchanged and its state dict keeps its own keys under
``net.``. ``classifier`` names the module producing the logits.

A spiking wrapped network must be multi-step and time-major (SpikingJelly's ``step_mode='m'``):
it takes ``[T, B, ...]`` and returns ``[T, B, K]``; a static batch is repeated over T (direct
encoding) and frames ``[T, B, C, H, W]`` are passed as they are. ``reset(net)`` (SpikingJelly's
``functional.reset_net``) runs after every forward, so no membrane state leaks between batches.

Token outputs (``tokens``): a tap whose output is a token tensor ``X`` ``[B, N, C]`` (``[T, B, N,
C]`` for a spiking net), e.g. a block of a timm ViT, can be laid out on its patch grid: with
``p`` prefix tokens (class / distillation / register tokens: timm's ``num_prefix_tokens``)
dropped and the ``h x w`` grid of ``patch_embed.grid_size`` (else ``h = w = sqrt(N - p)``)::

    F[b, c, i, j] = X[b, p + i w + j, c]          ([B, C, h, w]; row-major patch order)

The hook hands the network back ``X`` rebuilt from ``F`` (the same numbers: a permutation), so
the rest of the network runs on ``F``: ``F`` is in the autograd graph, and Grad-CAM of a grid
tap, ``a_c = 1/(h w) sum_ij dy/dF[c, i, j]``, is the mean gradient over the patch tokens (the
prefix tokens' gradients are not part of it). ``tokens="auto"`` (the default) does this when
``net`` has ``patch_embed.grid_size`` (timm's ViT family), ``"grid"`` always, ``"keep"`` never.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.contract import (DistillModel, feature_channel_count, is_frames,
                                          time_major_input)


def find_module(net: nn.Module, path: str, key: str) -> nn.Module:
    """The submodule of ``net`` at dotted ``path``; ConfigError naming ``key`` and listing the
    top-level modules when there is none."""
    try:
        return net.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in net.named_children()]
        raise ConfigError(f"config key '{key}': {type(net).__name__} has no module {path!r}; "
                          f"its top-level modules are: {', '.join(names)} (nested ones by dotted "
                          "path, e.g. layer1.0.conv1)") from None


TOKEN_LAYOUTS = ("auto", "grid", "keep")


def tokens_to_grid(x: torch.Tensor, prefix: int = 0, grid: Optional[Tuple[int, int]] = None,
                   what: str = "tap") -> torch.Tensor:
    """``F[..., c, i, j] = X[..., prefix + i w + j, c]``: tokens ``[..., N, C]`` without the
    ``prefix`` leading tokens, laid out on the ``h x w`` patch grid -> ``[..., C, h, w]``
    (``grid`` None: square, ``h = w = sqrt(N - prefix)``)."""
    n = x.shape[-2] - int(prefix)
    if grid is None:
        side = int(round(n ** 0.5))
        grid = (side, side)
    h, w = int(grid[0]), int(grid[1])
    if n != h * w:
        raise RuntimeError(f"feature tap {what!r}: {x.shape[-2]} tokens minus {prefix} prefix "
                           f"tokens do not fill a {h} x {w} patch grid (shape {tuple(x.shape)})")
    patches = x[..., int(prefix):, :]
    return patches.transpose(-1, -2).reshape(*x.shape[:-2], x.shape[-1], h, w)


def grid_to_tokens(grid: torch.Tensor, prefix_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Inverse of :func:`tokens_to_grid`: ``[..., C, h, w]`` -> ``[..., p + h w, C]`` with the
    ``prefix_tokens`` ``[..., p, C]`` put back in front."""
    tokens = grid.flatten(-2).transpose(-1, -2)
    if prefix_tokens is not None and prefix_tokens.shape[-2] > 0:
        tokens = torch.cat([prefix_tokens, tokens], dim=-2)
    return tokens


class FeatureTapModel(DistillModel):
    """A :class:`DistillModel` around ``net`` with feature taps at the named modules.

    Args:
        net: the network (ANN: ``[B, C, H, W] -> [B, K]``; spiking: ``[T, B, ...] -> [T, B, K]``).
        features: dotted module paths of the taps, in order.
        classifier: dotted path of the module producing the logits.
        num_classes: K (default: the classifier's ``out_features``).
        is_spiking, T: a student and its timesteps.
        reset: called with ``net`` after every forward (stateful neurons).
        spike_types: module classes whose outputs are spikes (besides spikedistill's LIF).
        input_shape: ``(C, H, W)`` of one input; a probe forward of two such inputs records the
            taps' channel counts at construction (needed by methods that build adapters).
        key: the config section named in errors (``model`` or ``teacher``).
        tokens: ``auto`` / ``grid`` / ``keep``: lay token outputs out on the patch grid (module
            docstring).
    """

    def __init__(self, net: nn.Module, *, features: Sequence[str], classifier: str,
                 num_classes: Optional[int] = None, is_spiking: bool = False, T: int = 1,
                 reset: Optional[Callable[[nn.Module], None]] = None,
                 spike_types: Tuple[type, ...] = (),
                 input_shape: Optional[Sequence[int]] = None, key: str = "model",
                 tokens: str = "auto"):
        super().__init__()
        if tokens not in TOKEN_LAYOUTS:
            raise ConfigError(f"config key '{key}.tokens': expected one of "
                              f"{', '.join(TOKEN_LAYOUTS)}, got {tokens!r}")
        if not features:
            raise ConfigError(f"config key '{key}.features': name at least one module to tap, "
                              "e.g. [layer1, layer2, layer3]")
        self.net = net
        self.is_spiking = bool(is_spiking)
        self.T = int(T)
        self.feature_names = tuple(str(f) for f in features)
        self._classifier_path = str(classifier)
        self._reset = reset
        self._spike_types = tuple(spike_types)
        self._captured: Optional[Dict[str, torch.Tensor]] = None
        grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
        self._grid: Optional[Tuple[int, int]] = (
            (int(grid[0]), int(grid[1])) if grid is not None else None)
        self._prefix_tokens = int(getattr(net, "num_prefix_tokens", 0) or 0)
        self.tokens = ("grid" if self._grid is not None else "keep") if tokens == "auto" else tokens
        clf = find_module(net, self._classifier_path, f"{key}.classifier")
        if num_classes is None:
            num_classes = getattr(clf, "out_features", None)
            if num_classes is None:
                raise ConfigError(f"config key '{key}.classifier': {self._classifier_path!r} is a "
                                  f"{type(clf).__name__}, not a Linear; set num_classes")
        self.num_classes = int(num_classes)
        for i, path in enumerate(self.feature_names):
            find_module(net, path, f"{key}.features[{i}]").register_forward_hook(self._hook(path))
        self.feature_channels: Tuple[int, ...] = ()
        if input_shape is not None:
            self.probe(input_shape)

    # -- hooks ---------------------------------------------------------------------------------
    def _hook(self, path: str):
        def hook(_module, _inputs, output):
            if self._captured is None:
                return None
            out = output[0] if isinstance(output, (tuple, list)) else output
            token_dim = 4 if self.is_spiking else 3
            if self.tokens == "grid" and isinstance(out, torch.Tensor) and out.dim() == token_dim:
                grid = tokens_to_grid(out, self._prefix_tokens, self._grid, path)
                self._captured[path] = grid
                rebuilt = grid_to_tokens(grid, out[..., :self._prefix_tokens, :])
                if isinstance(output, tuple):
                    return (rebuilt,) + tuple(output[1:])
                if isinstance(output, list):
                    return [rebuilt] + list(output[1:])
                return rebuilt
            self._captured[path] = out
            return None
        return hook

    @property
    def classifier(self) -> nn.Module:
        return self.net.get_submodule(self._classifier_path)

    def spiking_modules(self) -> List[Tuple[str, nn.Module]]:
        from spikedistill.neurons import LIF
        kinds = (LIF,) + self._spike_types
        return [(n, m) for n, m in self.named_modules() if isinstance(m, kinds)]

    @torch.no_grad()
    def probe(self, input_shape: Sequence[int]) -> Tuple[int, ...]:
        """Run two inputs of shape ``input_shape`` (eval mode) and record the taps' channels."""
        was = self.training
        self.eval()
        try:
            p = next(self.parameters(), None)
            x = torch.zeros(2, *[int(s) for s in input_shape],
                            device=p.device if p is not None else None)
            _, feats = self(x, return_features=True)
        finally:
            self.train(was)
        self.feature_channels = tuple(feature_channel_count(f, self.is_spiking) for f in feats)
        return self.feature_channels

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, return_features: bool = False,
                timestep_logits: bool = False):
        if self.is_spiking:
            x = time_major_input(x, self.T)
        elif is_frames(x):
            raise ValueError(f"ANN {type(self.net).__name__} got frames {tuple(x.shape)}; an ANN "
                             "takes [B, C, H, W] (see teacher.frames for how a teacher sees frames)")
        self._captured = {} if return_features else None
        try:
            out = self.net(x)
            feats = []
            if return_features:
                missing = [p for p in self.feature_names if p not in self._captured]
                if missing:
                    raise RuntimeError(f"feature tap(s) {missing} did not run in "
                                       f"{type(self.net).__name__}.forward")
                feats = [self._captured[p] for p in self.feature_names]
        finally:
            self._captured = None
            if self._reset is not None:
                self._reset(self.net)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if self.is_spiking:
            if out.dim() != 3 or out.shape[0] != self.T:
                raise RuntimeError(f"spiking {type(self.net).__name__} returned "
                                   f"{tuple(out.shape)}, expected [T={self.T}, B, K] (multi-step)")
            logits = out if timestep_logits else out.mean(dim=0)
        else:
            logits = out
        return (logits, feats) if return_features else logits


__all__ = ["FeatureTapModel", "TOKEN_LAYOUTS", "find_module", "grid_to_tokens", "tokens_to_grid"]
