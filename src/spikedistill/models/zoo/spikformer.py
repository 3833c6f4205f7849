"""Spikformer students for CIFAR-sized inputs (Zhou et al., "Spikformer: When Spiking Neural
Network Meets Transformer", ICLR 2023; the CIFAR model of ``ZK-Zhou/spikformer``,
``cifar10/model.py``). Registered: ``spikformer_4_384``, ``spikformer_8_384``,
``spikformer_8_512`` (``spikformer_L_D``: L encoder blocks of width D).

Time-major throughout (``[T, B, ...]``); convolutions and BatchNorms run on the folded
``[T*B, ...]`` view. With ``LIF`` the multi-step neuron and ``BN`` BatchNorm over T*B samples
(BatchNorm1d over T*B*N tokens for the token layers), for an input ``[B, C_in, H, W]``:

**SPS** (spiking patch splitting; H, W divisible by 4)::

    s1 = LIF(BN(conv3x3(x, D/8)));  s2 = LIF(BN(conv3x3(s1, D/4)))
    s3 = MaxPool(3, 2, 1)(LIF(BN(conv3x3(s2, D/2))))                 (H/2 x W/2)
    f  = MaxPool(3, 2, 1)(LIF(BN(conv3x3(s3, D))))                    (h x w = H/4 x W/4)
    X0 = LIF(BN(conv3x3(f, D))) + f     (the relative position embedding), N = h w tokens

The stem conv runs once on the image and is repeated T times (direct encoding; the repo repeats
the image, which gives the same numbers); frames ``[T, B, C, H, W]`` go through it frame by frame.

**Spiking self-attention (SSA)** on ``X`` ``[T, B, N, D]``, ``heads`` heads of width d = D/heads::

    Q = LIF(BN(X W_q + b_q)),  K = LIF(BN(X W_k + b_k)),  V = LIF(BN(X W_v + b_v))   (spikes)
    A = LIF_0.5( (Q K^T) V * 0.125 )        (per head; no softmax; threshold 0.5)
    SSA(X) = LIF(BN(A W_o + b_o))

**Block**: ``X' = X + SSA(X)``, ``X'' = X' + MLP(X')`` with ``MLP(X) = LIF(BN(LIF(BN(X W_1 +
b_1)) W_2 + b_2))`` (hidden width ``mlp_ratio * D``). The residual stream is a sum of spike
tensors (integers, not 0/1). **Head**: ``z[t] = Linear(mean_n X_L[t, :, n])``,
``z = mean_t z[t]``.

**Neurons** (``neuron_preset="spikformer"``, the default): SpikingJelly's
``MultiStepLIFNode(tau=2.0, detach_reset=True)`` with its default ``Sigmoid(alpha=4)``
surrogate and ``v_reset=0``: in our API ``decay=0.5, decay_input=True`` (``h = 0.5 u + 0.5 x``),
``detach_reset=True``, ``surrogate="sigmoid", alpha=4``, threshold 1 (the attention LIF 0.5),
``fire_at_threshold=True`` (SpikingJelly fires at ``h >= V_th``; the attention LIF's input is a
multiple of 1/8, so ``h`` hits 0.5 exactly);
only ``model.neuron.backend`` is taken from the config. ``neuron_preset="config"`` uses
``model.neuron`` as given (the attention LIF at ``attn_threshold``).

**Feature taps** (for SAMD and every feature method): any of ``sps`` and ``block1..blockL``
(``taps``; default ``sps``, the middle and the last block, three like the ResNets' stages), the
token tensors ``[T, B, N, D]`` laid out on the patch grid, ``F[t, b, c, i, j] = X[t, b, i w +
j, c]`` (``[T, B, D, h, w]``, row-major as the tokens were flattened). So the spike activation
map is, for a token grid, the spike count per patch summed over time and channels::

    M_s[b, i, j] = sum_t sum_c F[t, b, c, i, j] = sum_t sum_c X[t, b, i w + j, c]

and ``pool(F_L)`` (mean over the grid and T) is the head's token mean.

Size: ``depth``, ``dim``, ``heads`` (default ``dim // 32``, the CIFAR config's 12 heads at 384),
``mlp_ratio`` through ``model.kwargs``; ``width_mult`` w sets ``dim = 32 w`` (the registry tests'
small variant: ``width_mult=1`` is ``dim=32``, one head). ``qkv_bias=False`` gives the ImageNet
model's bias-free Q/K/V projections (``imagenet/model.py``); the CIFAR model has biases.
Parameter counts: ``docs/spikformer.md``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.common import require_images_or_frames
from spikedistill.models.contract import DistillModel
from spikedistill.models.registry import register_model
from spikedistill.neurons import LIF, LIFParameters, NeuronLike

#: Spikformer's neuron in our API (SpikingJelly MultiStepLIFNode(tau=2.0, detach_reset=True)).
SPIKFORMER_NEURON = LIFParameters(decay=0.5, decay_input=True, threshold=1.0, detach_reset=True,
                                  surrogate="sigmoid", alpha=4.0, fire_at_threshold=True)
NEURON_PRESETS = ("spikformer", "config")
#: The attention LIF's threshold (``attn_lif = MultiStepLIFNode(v_threshold=0.5, ...)``).
ATTN_THRESHOLD = 0.5
#: ``Q K^T V`` is scaled by this constant (the repo's ``self.scale = 0.125``), not by 1/sqrt(d).
ATTN_SCALE = 0.125


def _fold(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    return x.view(T, x.shape[0] // T, *x.shape[1:])


def tokens_to_grid(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[..., N, C]`` tokens (N = h w, row-major) -> ``[..., C, h, w]``."""
    return x.transpose(-1, -2).reshape(*x.shape[:-2], x.shape[-1], h, w)


class _TokenLinearBNLIF(nn.Module):
    """``LIF(BN1d(X W + b))`` on tokens ``[T, B, N, C_in] -> [T, B, N, C_out]``; BN over T*B*N."""

    def __init__(self, cin: int, cout: int, neuron: NeuronLike, bias: bool = True,
                 threshold: Optional[float] = None):
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=bias)
        self.bn = nn.BatchNorm1d(cout)
        self.lif = LIF(neuron) if threshold is None else LIF(neuron, threshold=threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        y = self.linear(_fold(x))                               # [TB, N, C]
        y = self.bn(y.transpose(-1, -2)).transpose(-1, -2)
        return self.lif(_unfold(y.contiguous(), T))


class SpikingSelfAttention(nn.Module):
    """SSA: ``LIF(BN(LIF_0.5((Q K^T) V * 0.125) W_o + b_o))`` with spike Q, K, V (no softmax)."""

    def __init__(self, dim: int, heads: int, neuron: NeuronLike, qkv_bias: bool = True,
                 attn_threshold: float = ATTN_THRESHOLD, scale: float = ATTN_SCALE):
        super().__init__()
        self.heads = int(heads)
        self.scale = float(scale)
        self.q = _TokenLinearBNLIF(dim, dim, neuron, bias=qkv_bias)
        self.k = _TokenLinearBNLIF(dim, dim, neuron, bias=qkv_bias)
        self.v = _TokenLinearBNLIF(dim, dim, neuron, bias=qkv_bias)
        self.attn_lif = LIF(neuron, threshold=float(attn_threshold))
        self.proj = _TokenLinearBNLIF(dim, dim, neuron, bias=True)

    def _split(self, s: torch.Tensor) -> torch.Tensor:
        T, B, N, C = s.shape
        return s.reshape(T, B, N, self.heads, C // self.heads).permute(0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        a = ((q @ k.transpose(-2, -1)) * self.scale) @ v        # [T, B, heads, N, d]
        a = a.transpose(2, 3).reshape(T, B, N, C)
        return self.proj(self.attn_lif(a.contiguous()))


class SpikformerMLP(nn.Module):
    """``LIF(BN(LIF(BN(X W_1 + b_1)) W_2 + b_2))`` on tokens."""

    def __init__(self, dim: int, hidden: int, neuron: NeuronLike):
        super().__init__()
        self.fc1 = _TokenLinearBNLIF(dim, hidden, neuron)
        self.fc2 = _TokenLinearBNLIF(hidden, dim, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class SpikformerBlock(nn.Module):
    """``X' = X + SSA(X)``, ``X'' = X' + MLP(X')`` (no LayerNorm: the repo's norm1/norm2 are built
    but never called, so they are left out)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron: NeuronLike,
                 qkv_bias: bool = True, attn_threshold: float = ATTN_THRESHOLD):
        super().__init__()
        self.attn = SpikingSelfAttention(dim, heads, neuron, qkv_bias, attn_threshold)
        self.mlp = SpikformerMLP(dim, int(dim * mlp_ratio), neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class SPS(nn.Module):
    """Spiking patch splitting of the CIFAR model: four conv3x3-BN-LIF (D/8, D/4, D/2, D),
    max-pools after the third and fourth, then the relative position embedding
    ``LIF(BN(conv3x3(f))) + f``. ``[T, B, C, H, W]`` (or the stem output) -> grid
    ``[T, B, D, H/4, W/4]``."""

    def __init__(self, in_channels: int, dim: int, neuron: NeuronLike):
        super().__init__()
        if dim % 8:
            raise ConfigError(f"config key 'model.kwargs.dim': Spikformer's SPS widths are D/8, "
                              f"D/4, D/2, D, so dim must be a multiple of 8, got {dim}")
        widths = [dim // 8, dim // 4, dim // 2, dim]
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.lifs = nn.ModuleList()
        cin = in_channels
        for c in widths:
            self.convs.append(nn.Conv2d(cin, c, 3, 1, 1, bias=False))
            self.bns.append(nn.BatchNorm2d(c))
            self.lifs.append(LIF(neuron))
            cin = c
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe_conv = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        self.rpe_lif = LIF(neuron)

    def forward(self, x: torch.Tensor, T: int, stem_done: bool = False) -> torch.Tensor:
        """``x``: folded ``[T*B, C, H, W]`` input, or with ``stem_done`` the first conv's
        output (direct encoding)."""
        for i, (conv, bn, lif) in enumerate(zip(self.convs, self.bns, self.lifs)):
            if not (i == 0 and stem_done):
                x = conv(x)
            x = _fold(lif(_unfold(bn(x), T)))
            if i >= 2:
                x = self.pool(x)
        rpe = self.rpe_lif(_unfold(self.rpe_bn(self.rpe_conv(x)), T))
        return rpe + _unfold(x, T)


class Spikformer(DistillModel):
    """Spikformer-L-D for CIFAR-sized inputs (module docstring). Taps ``sps, block1..blockL`` as
    patch grids ``[T, B, D, H/4, W/4]``; classifier ``head`` (``Linear(D, K)``)."""

    is_spiking = True

    def __init__(self, num_classes: int = 10, T: int = 4, in_channels: int = 3, depth: int = 4,
                 dim: int = 384, heads: Optional[int] = None, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, attn_threshold: float = ATTN_THRESHOLD,
                 neuron: Optional[NeuronLike] = None, neuron_preset: str = "spikformer",
                 taps: Optional[Sequence[str]] = None):
        super().__init__()
        if int(T) < 1:
            raise ConfigError(f"config key 'model.T': expected a positive integer, got {T!r}")
        if int(depth) < 1:
            raise ConfigError(f"config key 'model.kwargs.depth': expected >= 1, got {depth!r}")
        heads = max(1, int(dim) // 32) if heads is None else int(heads)
        if heads < 1 or int(dim) % heads:
            raise ConfigError(f"config key 'model.kwargs.heads': dim {dim} must split into "
                              f"heads of equal width, got heads={heads}")
        if not float(mlp_ratio) > 0:
            raise ConfigError(f"config key 'model.kwargs.mlp_ratio': expected > 0, got "
                              f"{mlp_ratio!r}")
        if neuron_preset not in NEURON_PRESETS:
            raise ConfigError(f"config key 'model.kwargs.neuron_preset': expected one of "
                              f"{', '.join(NEURON_PRESETS)}, got {neuron_preset!r}")
        given = LIFParameters.of(neuron)
        if neuron_preset == "spikformer":     # only the backend is taken from model.neuron
            neuron = SPIKFORMER_NEURON.replace(backend=given.backend)
        else:
            neuron = given
        self.neuron = neuron
        self.neuron_preset = neuron_preset
        self.T = int(T)
        self.num_classes = int(num_classes)
        self.depth, self.dim, self.heads = int(depth), int(dim), heads
        self.mlp_ratio = float(mlp_ratio)
        self.sps = SPS(in_channels, self.dim, neuron)
        self.blocks = nn.ModuleList(
            SpikformerBlock(self.dim, heads, self.mlp_ratio, neuron, qkv_bias, attn_threshold)
            for _ in range(self.depth))
        self.head = nn.Linear(self.dim, num_classes)
        names = ("sps",) + tuple(f"block{i + 1}" for i in range(self.depth))
        taps = default_taps(self.depth) if taps is None else tuple(str(t) for t in taps)
        bad = [t for t in taps if t not in names]
        if bad or not taps:
            raise ConfigError(f"config key 'model.kwargs.taps': {bad or 'none'} not among the "
                              f"Spikformer's token outputs {', '.join(names)}")
        self.feature_names = taps
        self._tap_index = tuple(names.index(t) for t in taps)
        self.feature_channels = (self.dim,) * len(taps)
        self._init_weights()

    def _init_weights(self) -> None:
        """The repo's init: Linear weights truncated normal (std 0.02), biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def classifier(self) -> nn.Linear:
        return self.head

    def checkpoint_modules(self) -> List[Tuple[str, nn.Module]]:
        """The stages ``train.checkpoint_stages`` numbers (1-based): ``sps``, ``block1`` ..
        ``blockL`` (the modules computing the named token outputs, whether tapped or not)."""
        return [("sps", self.sps)] + [(f"block{i + 1}", b) for i, b in enumerate(self.blocks)]

    def classifier_weight(self) -> torch.Tensor:
        """``[K, D]``: the head's weight (CAMs on the last block's grid)."""
        return self.head.weight

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """SPS of images (stem conv once, repeated T times) or frames -> ``[T, B, D, h, w]``."""
        if x.dim() == 5:
            if x.shape[0] != self.T:
                raise ValueError(f"frame input has {x.shape[0]} timesteps but the model runs "
                                 f"T={self.T}; set model.T to the number of frames")
            return self.sps(_fold(x), self.T)
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"Spikformer's SPS halves H and W twice: input {tuple(x.shape)} "
                             "needs H and W divisible by 4")
        y = self.sps.convs[0](x)
        y = y.unsqueeze(0).expand(self.T, *y.shape).reshape(self.T * y.shape[0], *y.shape[1:])
        return self.sps(y, self.T, stem_done=True)

    def forward(self, x: torch.Tensor, return_features: bool = False,
                timestep_logits: bool = False):
        """Logits ``z = head(mean_t mean_n X_L[t, :, n])`` ``[B, K]``; with ``timestep_logits``
        ``z[t]`` ``[T, B, K]``; taps: the token grids (module docstring)."""
        require_images_or_frames(x)
        grid = self.encode(x)                                   # [T, B, D, h, w]
        T, B, D, h, w = grid.shape
        outs: List[torch.Tensor] = [grid]
        tokens = grid.flatten(3).transpose(-1, -2)              # [T, B, N, D], n = i w + j
        for blk in self.blocks:
            tokens = blk(tokens)
            if return_features:
                outs.append(tokens_to_grid(tokens, h, w))
        per_t = tokens.mean(dim=2)                              # [T, B, D]
        logits = self.head(per_t) if timestep_logits else self.head(per_t.mean(dim=0))
        if return_features:
            return logits, [outs[i] for i in self._tap_index]
        return logits


def default_taps(depth: int) -> Tuple[str, ...]:
    """Three taps like the ResNets' three stages (so that stage-wise methods pair them with a
    three-stage teacher): ``sps``, the middle block and the last block (two for depth 1)."""
    if depth == 1:
        return ("sps", "block1")
    return ("sps", f"block{(depth + 1) // 2}", f"block{depth}")


def _build(depth: int, dim: int, num_classes: int, T: int, in_channels: int,
           width_mult: Optional[int], heads: Optional[int], mlp_ratio: float, qkv_bias: bool,
           attn_threshold: float, last_activation: str, neuron, neuron_preset: str,
           taps) -> Spikformer:
    if last_activation != "relu":
        raise ConfigError(f"config key 'model.last_activation': Spikformer has no last "
                          f"activation to choose (its residual stream feeds the head), got "
                          f"{last_activation!r}; leave it at relu")
    if width_mult is not None:
        if int(width_mult) < 1:
            raise ConfigError(f"config key 'model.width_mult': expected >= 1, got {width_mult!r}")
        dim = 32 * int(width_mult)
    return Spikformer(num_classes=num_classes, T=T, in_channels=in_channels, depth=depth,
                      dim=dim, heads=heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                      attn_threshold=attn_threshold, neuron=neuron, neuron_preset=neuron_preset,
                      taps=taps)


def _factory(name: str, default_depth: int, default_dim: int, doc: str):
    def factory(num_classes: int = 10, T: int = 4, in_channels: int = 3,
                width_mult: Optional[int] = None, depth: int = default_depth,
                dim: int = default_dim, heads: Optional[int] = None, mlp_ratio: float = 4.0,
                qkv_bias: bool = True, attn_threshold: float = ATTN_THRESHOLD,
                last_activation: str = "relu", neuron: Optional[NeuronLike] = None,
                neuron_preset: str = "spikformer",
                taps: Optional[Sequence[str]] = None) -> Spikformer:
        return _build(depth, dim, num_classes, T, in_channels, width_mult, heads, mlp_ratio,
                      qkv_bias, attn_threshold, last_activation, neuron, neuron_preset, taps)

    factory.__name__ = name
    factory.__doc__ = doc
    return register_model(name, role="student")(factory)


spikformer_4_384 = _factory(
    "spikformer_4_384", 4, 384,
    "Spikformer-4-384 (CIFAR): 4 blocks, D = 384, 12 heads; 9,324,730 parameters at K = 10 "
    "(the paper's 9.32 M), 9,359,380 at K = 100.")
spikformer_8_384 = _factory(
    "spikformer_8_384", 8, 384,
    "Spikformer-8-384 for 32x32 inputs: 8 blocks, D = 384, 12 heads (the paper's ImageNet "
    "size, 16.81 M parameters there with K = 1000 and bias-free Q/K/V).")
spikformer_8_512 = _factory(
    "spikformer_8_512", 8, 512,
    "Spikformer-8-512 for 32x32 inputs: 8 blocks, D = 512, 16 heads (the paper's ImageNet "
    "size, 29.68 M parameters there with K = 1000 and bias-free Q/K/V).")

__all__ = ["ATTN_SCALE", "ATTN_THRESHOLD", "SPIKFORMER_NEURON", "SPS", "Spikformer",
           "SpikformerBlock", "SpikformerMLP", "SpikingSelfAttention", "spikformer_4_384",
           "spikformer_8_384", "spikformer_8_512", "tokens_to_grid"]
