"""Surrogate gradients of the Heaviside spike function, by name.

The forward pass of every surrogate is the exact step ``s = H(v) = 1[v > 0]`` with
``v = u - V_th``; only the backward pass uses a smooth stand-in ``ds/dv = g(v)``:

- ``triangle`` (the spec's, alpha = gamma = 1): ``g(v) = max(0, 1/alpha - |v| / alpha^2)``;
  non-zero only for ``|v| < alpha``.
- ``sigmoid``: ``g(v) = alpha * sig(alpha v) * (1 - sig(alpha v))`` (alpha ~ 4).
- ``atan``: ``g(v) = (alpha / 2) / (1 + (pi/2 * alpha * v)^2)`` (alpha ~ 2).
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch

from spikedistill.errors import ConfigError


def triangle(v: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``g(v) = max(0, 1/alpha - |v| / alpha^2)``."""
    return (1.0 / alpha - v.abs() / (alpha * alpha)).clamp_min(0.0)


def sigmoid(v: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """``g(v) = alpha * sig(alpha v) * (1 - sig(alpha v))``."""
    sg = torch.sigmoid(alpha * v)
    return alpha * sg * (1.0 - sg)


def atan(v: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """``g(v) = (alpha / 2) / (1 + (pi/2 * alpha * v)^2)``."""
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * v) ** 2)


SURROGATES: Dict[str, Callable[..., torch.Tensor]] = {
    "triangle": triangle,
    "sigmoid": sigmoid,
    "atan": atan,
}


def get_surrogate(name: str) -> Callable[..., torch.Tensor]:
    """The surrogate derivative ``g(v, alpha)`` registered under ``name``."""
    try:
        return SURROGATES[name]
    except KeyError:
        raise ConfigError(f"unknown surrogate {name!r}; expected one of "
                          f"{', '.join(SURROGATES)}") from None


class SpikeFunction(torch.autograd.Function):
    """``s = 1[v > 0]`` (``1[v >= 0]`` when ``inclusive``) forward; ``ds/dv = g(v)`` backward,
    with ``g`` a named surrogate."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, surrogate: str, alpha: float,
                inclusive: bool = False) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        ctx.alpha = alpha
        return ((v >= 0) if inclusive else (v > 0)).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (v,) = ctx.saved_tensors
        g = SURROGATES[ctx.surrogate](v.to(torch.promote_types(v.dtype, torch.float32)), ctx.alpha)
        return (grad_out * g).to(v.dtype), None, None, None


def spike(v: torch.Tensor, surrogate: str = "triangle", alpha: float = 1.0,
          inclusive: bool = False) -> torch.Tensor:
    """Heaviside spike ``1[v > 0]`` with surrogate gradient ``g(v)``; ``inclusive``:
    ``1[v >= 0]`` (SpikingJelly's ``heaviside``, which fires at ``v = 0``)."""
    get_surrogate(surrogate)
    return SpikeFunction.apply(v, surrogate, alpha, bool(inclusive))
