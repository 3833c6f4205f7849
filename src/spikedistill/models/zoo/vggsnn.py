"""VGGSNN: the CIFAR10-DVS student of TET (Deng et al., "Temporal Efficient Training of Spiking
Neural Network via Gradient Re-weighting", ICLR 2022) and TDD / the SNN-KD DVS rows.

Layer list (github.com/brain-intelligence-lab/temporal_efficient_training, ``models/VGG_models.py``
``VGGSNN``; ``Layer`` = ``Conv2d(k=3, s=1, p=1, bias) -> BN -> LIF``):

    2 -> 64 -> 128, AvgPool 2 | 128 -> 256 -> 256, AvgPool 2 | 256 -> 512 -> 512, AvgPool 2 |
    512 -> 512 -> 512, AvgPool 2 | classifier

TET's classifier is ``Linear(512 * 3 * 3, K)`` on the flattened ``3 x 3`` grid of a 48 x 48 input
(``head="flatten"`` here, applied per timestep, logits averaged over T). The registered ``vggsnn``
uses ``head="gap"``: ``GAP -> Linear(512, K)``, which the model contract needs for the ``[K, C]``
CAM weights and the pooled feature ``[B, C]`` (SAMD's student CAM, EnOF's LAF, KDSNN/BKDSNN);
the convolutional trunk is TET's, layer for layer. The LIF is this package's (the spec's LIF:
``u = decay * u + x``, spike ``u >= threshold``, hard reset; TET's ``LIFSpike`` with tau 0.5,
threshold 1 and its triangle surrogate of width 1 is the default ``model.neuron``).

Time-major: input frames ``[T, B, 2, H, W]`` (each timestep its own input; the first conv runs on
every frame) or images ``[B, C, H, W]`` (direct encoding: the first conv once, repeated T
times). Convs and BN run on the folded ``[T*B, C, H, W]`` view. Taps ``stage1..stage4`` are each
stage's last spike map before its pool, ``[T, B, C, H, W]`` (128 @ 48, 256 @ 24, 512 @ 12,
512 @ 6 px for a 48 x 48 input). The pools use ``ceil_mode`` so that inputs smaller than 16 px
still run (identical to TET's pools on even sizes).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.common import require_images, require_images_or_frames
from spikedistill.models.contract import DistillModel
from spikedistill.models.registry import register_model
from spikedistill.neurons import LIF, LIFParameters, NeuronLike

#: TET's conv widths, two per stage
VGGSNN_WIDTHS = ((64, 128), (256, 256), (512, 512), (512, 512))
#: the grid TET's flattened classifier sees: 48 px / 2^4
TET_GRID = 3


class _SpikingConv(nn.Module):
    """TET's ``Layer``: ``LIF(BN(conv3x3(x)))`` on ``[T, B, C, H, W]`` (conv with bias)."""

    def __init__(self, cin: int, cout: int, neuron: NeuronLike):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(cout)
        self.lif = LIF(neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        y = self.bn(self.conv(x.flatten(0, 1)))
        return self.lif(y.view(T, y.shape[0] // T, *y.shape[1:]))


class VGGSNN(DistillModel):
    """VGGSNN (TET); see the module docstring. ``width_mult`` scales every width (1 = TET)."""

    is_spiking = True
    feature_names = ("stage1", "stage2", "stage3", "stage4")

    def __init__(self, num_classes: int = 10, T: int = 10, in_channels: int = 3,
                 width_mult: Optional[int] = 1, neuron: Optional[NeuronLike] = None,
                 last_activation: str = "lif", head: str = "gap"):
        super().__init__()
        if int(T) < 1:
            raise ConfigError(f"config key 'model.T': expected a positive integer, got {T!r}")
        if last_activation not in ("relu", "lif"):
            raise ConfigError(f"config key 'model.last_activation': expected relu or lif, "
                              f"got {last_activation!r}")
        if head not in ("gap", "flatten"):
            raise ConfigError(f"vggsnn head: expected gap or flatten, got {head!r}")
        wm = 1 if width_mult is None else int(width_mult)
        if wm < 1:
            raise ConfigError(f"config key 'model.width_mult': expected >= 1, got {width_mult!r}")
        neuron = LIFParameters.of(neuron)
        self.T = int(T)
        self.num_classes = int(num_classes)
        self.head_kind = head
        self.last_activation = last_activation
        cin = int(in_channels)
        stages = []
        for widths in VGGSNN_WIDTHS:
            layers = []
            for w in widths:
                layers.append(_SpikingConv(cin, w * wm, neuron))
                cin = w * wm
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        if last_activation == "relu":       # EnOF's RepAct on the very last layer
            self.stage4[-1].lif = nn.ReLU()
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.feature_channels = tuple(w[-1] * wm for w in VGGSNN_WIDTHS)
        c = self.feature_channels[-1]
        if head == "gap":
            self.head = nn.Linear(c, num_classes)
        else:
            self.grid = nn.AdaptiveAvgPool2d(TET_GRID)
            self.head = nn.Linear(c * TET_GRID * TET_GRID, num_classes)
        for m in self.modules():        # TET's initialisation of the convs
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def classifier(self) -> nn.Linear:
        """The layer producing the logits from :meth:`pool`'s feature."""
        return self.head

    def _pool2(self, x: torch.Tensor) -> torch.Tensor:
        """``AvgPool2d(2)`` on a ``[T, B, C, H, W]`` map (folded)."""
        T = x.shape[0]
        y = self.avgpool(x.flatten(0, 1))
        return y.view(T, y.shape[0] // T, *y.shape[1:])

    def _per_step_feature(self, f4: torch.Tensor) -> torch.Tensor:
        """``[T, B, D]`` classifier input per timestep: ``GAP(F_4[t])`` (``gap``), or the
        flattened ``3 x 3`` grid of ``AvgPool2(F_4[t])`` (``flatten``, TET; for a 48 px input the
        adaptive pool to 3 x 3 is the identity)."""
        if self.head_kind == "gap":
            return f4.mean(dim=(3, 4))
        p = self._pool2(f4)
        T = p.shape[0]
        g = self.grid(p.flatten(0, 1))
        return g.flatten(1).view(T, g.shape[0] // T, -1)

    def pool(self, last_stage: torch.Tensor) -> torch.Tensor:
        """Pre-classifier feature ``[B, D]``: the per-timestep feature averaged over T
        (``gap``: ``D = C``, ``mean_t GAP(F_4[t])``)."""
        return self._per_step_feature(last_stage).mean(dim=0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The first layer: frames ``[T, B, C, H, W]`` each through ``conv -> BN`` then LIF;
        images ``[B, C, H, W]``: the conv once, its output repeated T times (direct encoding)."""
        first = self.stage1[0]
        if x.dim() == 5:
            if x.shape[0] != self.T:
                raise ValueError(f"frame input has {x.shape[0]} timesteps but the model runs "
                                 f"T={self.T}; set model.T to the number of frames")
            return first(x)
        y = first.conv(x)
        y = y.unsqueeze(0).expand(self.T, *y.shape).reshape(self.T * y.shape[0], *y.shape[1:])
        y = first.bn(y)
        return first.lif(y.view(self.T, y.shape[0] // self.T, *y.shape[1:]))

    def forward(self, x: torch.Tensor, return_features: bool = False,
                timestep_logits: bool = False):
        """Logits ``z_s = mean_t head(phi(F_4[t]))`` ``[B, K]`` (``phi``: GAP or TET's flattened
        grid); ``timestep_logits``: ``head(phi(F_4[t]))`` ``[T, B, K]`` (mean over t = ``z_s``,
        the head is linear)."""
        require_images_or_frames(x)
        f1 = self.stage1[1](self.encode(x))
        f2 = self.stage2(self._pool2(f1))
        f3 = self.stage3(self._pool2(f2))
        f4 = self.stage4(self._pool2(f3))
        if timestep_logits:
            logits = self.head(self._per_step_feature(f4))
        else:
            logits = self.head(self.pool(f4))
        if return_features:
            return logits, [f1, f2, f3, f4]
        return logits


@register_model("vggsnn", role="student")
def vggsnn(num_classes: int = 10, T: int = 10, in_channels: int = 3, width_mult: Optional[int] = 1,
           last_activation: str = "lif", neuron: Optional[NeuronLike] = None,
           head: str = "gap") -> VGGSNN:
    """VGGSNN (TET, ICLR 2022): convs 64-128 | 256-256 | 512-512 | 512-512, AvgPool 2 after each
    pair, LIF after every BN; ``head="gap"`` (registered default, ``Linear(512, K)``) or TET's
    ``"flatten"`` (``Linear(512 * 3 * 3, K)``)."""
    return VGGSNN(num_classes, T, in_channels, width_mult, neuron, last_activation, head)


class VGGANN(DistillModel):
    """``vgg_dvs``: VGGSNN's ANN twin (every ``BN -> LIF`` a ``BN -> ReLU``, no time axis),
    taps ``stage1..stage4`` ``[B, C, H, W]`` at the student's positions and sizes, head
    ``GAP -> Linear(512, K)``. It lets the feature methods (KDSNN, BKDSNN, CKD's SAMD at any
    stage) pair VGGSNN with a teacher of the same four stages; ``teacher.frames`` says how it
    sees frames (``stack``: build it with ``in_channels = 2T``)."""

    is_spiking = False
    feature_names = ("stage1", "stage2", "stage3", "stage4")

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: Optional[int] = 1):
        super().__init__()
        wm = 1 if width_mult is None else int(width_mult)
        if wm < 1:
            raise ConfigError(f"config key 'model.width_mult': expected >= 1, got {width_mult!r}")
        self.num_classes = int(num_classes)
        cin = int(in_channels)
        stages = []
        for widths in VGGSNN_WIDTHS:
            layers = []
            for w in widths:
                layers += [nn.Conv2d(cin, w * wm, 3, 1, 1, bias=True), nn.BatchNorm2d(w * wm),
                           nn.ReLU(inplace=True)]
                cin = w * wm
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.feature_channels = tuple(w[-1] * wm for w in VGGSNN_WIDTHS)
        self.fc = nn.Linear(self.feature_channels[-1], num_classes)
        self.stem = self.stage1[0]          # the first conv (what stack / counting look at)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: torch.Tensor, return_features: bool = False,
                timestep_logits: bool = False):
        require_images(x)
        f1 = self.stage1(x)
        f2 = self.stage2(self.avgpool(f1))
        f3 = self.stage3(self.avgpool(f2))
        f4 = self.stage4(self.avgpool(f3))
        logits = self.fc(self.pool(f4))
        if return_features:
            return logits, [f1, f2, f3, f4]
        return logits


@register_model("vgg_dvs", role="teacher")
def vgg_dvs(num_classes: int = 10, in_channels: int = 3, width_mult: Optional[int] = 1) -> VGGANN:
    """The ANN twin of ``vggsnn`` (same convs, ReLU, GAP head)."""
    return VGGANN(num_classes, in_channels, width_mult)
