"""SEW-ResNet-18 / 34 / 50 students (Fang et al., "Deep Residual Learning in Spiking Neural
Networks", NeurIPS 2021; structure as in SpikingJelly's
``spikingjelly.activation_based.model.sew_resnet`` and the authors' ``imagenet/sew_resnet.py``
of fangwei123456/Spike-Element-Wise-ResNet).

Time-major throughout: stage outputs are spikes ``[T, B, C, H, W]``; every conv and BatchNorm
runs on the folded ``[T*B, C, H, W]`` view, every neuron is our multi-step
:class:`~spikedistill.neurons.LIF` (``model.neuron``: the spec's LIF ``h[t] = decay * u[t-1] +
x[t]``, hard reset; IF is ``decay: 1.0``).

Spike-element-wise block (paper eq. 9-11): with ``S`` the block's input spikes (through the
spiking downsample ``SN(BN(conv1x1(S)))`` where the shape changes) and ``A = SN(BN(conv(...)))``
the residual branch's output spikes, the block returns ``O = g(A, S)``::

    ADD:   g(A, S) = A + S
    AND:   g(A, S) = A * S
    IAND:  g(A, S) = (1 - A) * S

The IAND operand order is the paper's and the authors' (both blocks). SpikingJelly 2.0's
``Bottleneck`` calls ``sew_function(out, identity)`` and so computes ``A * (1 - S)`` for
SEW-ResNet-50 (its ``BasicBlock`` agrees with the paper); see ``docs/sew_resnet.md``.

Stem (``stem="imagenet"``): ``conv7x7/2 -> BN`` on the static image ``[B, C, H, W]`` once, the
result repeated T times (direct encoding, as the authors' code), then ``SN`` and
``MaxPool(3, 2, 1)`` per timestep; frames ``[T, B, C, H, W]`` run the stem on every frame.
Stages ``layer1..layer4`` (64, 128, 256, 512 channels at ``width_mult=4``, times 4 for the
bottleneck) at strides 1, 2, 2, 2: with the stem's /4 the taps are at H/4, H/8, H/16, H/32, the
same as torchvision's ``resnet18/34/50`` ``layer1..layer4`` (teachers pair stage by stage).
Head: GAP per timestep, ``fc`` (``Linear(C, K)``); ``z_s = mean_t fc(GAP(F_4[t]))``.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.common import require_images_or_frames, student_logits
from spikedistill.models.contract import DistillModel
from spikedistill.models.registry import register_model
from spikedistill.neurons import LIF, LIFParameters, NeuronLike

CONNECTS = ("ADD", "IAND", "AND")
STEMS = ("imagenet", "cifar")
#: blocks per stage and block kind (torchvision / SEW layouts)
SEW_LAYOUTS = {"sew_resnet18": ("basic", (2, 2, 2, 2)),
               "sew_resnet34": ("basic", (3, 4, 6, 3)),
               "sew_resnet50": ("bottleneck", (3, 4, 6, 3))}


def connect_function(a: torch.Tensor, s: torch.Tensor, connect: str) -> torch.Tensor:
    """``g(A, S)``: ``A + S`` (ADD), ``A * S`` (AND), ``(1 - A) * S`` (IAND), with ``A`` the
    residual branch's spikes and ``S`` the shortcut's (Fang et al. 2021, eq. 11)."""
    if connect == "ADD":
        return a + s
    if connect == "AND":
        return a * s
    if connect == "IAND":
        return (1.0 - a) * s
    raise ConfigError(f"config key 'model.connect': expected one of {', '.join(CONNECTS)}, "
                      f"got {connect!r}")


def _fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    return x.flatten(0, 1)


def _unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.view(T, x.shape[0] // T, *x.shape[1:])


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2, bias=False)


class _ConvBN(nn.Sequential):
    """``BN(conv(x))`` on the folded ``[T*B, C, H, W]`` view of ``[T, B, C, H, W]``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(_conv(cin, cout, k, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _unfold(super().forward(_fold(x)), x.shape[0])


class SEWBasicBlock(nn.Module):
    """``A = SN2(BN2(conv3x3(SN1(BN1(conv3x3_s(S))))))``, ``O = g(A, S')`` with ``S' = S`` or
    the spiking downsample ``SN(BN(conv1x1_s(S)))``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, neuron: NeuronLike,
                 connect: str):
        super().__init__()
        self.connect = connect
        self.conv1 = _ConvBN(cin, planes, 3, stride)
        self.sn1 = LIF(neuron)
        self.conv2 = _ConvBN(planes, planes, 3)
        self.sn2 = LIF(neuron)
        self.downsample: Optional[nn.Module] = None
        if stride != 1 or cin != planes * self.expansion:
            self.downsample = nn.Sequential(_ConvBN(cin, planes * self.expansion, 1, stride),
                                            LIF(neuron))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn2(self.conv2(self.sn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.residual(x)
        s = x if self.downsample is None else self.downsample(x)
        return connect_function(a, s, self.connect)

    def extra_repr(self) -> str:
        return f"connect={self.connect}"


class SEWBottleneck(SEWBasicBlock):
    """``A = SN3(BN3(conv1x1(SN2(BN2(conv3x3_s(SN1(BN1(conv1x1(S)))))))))`` with 4x output
    channels (stride on the 3x3 conv: ResNet v1.5, as torchvision), ``O = g(A, S')``."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, neuron: NeuronLike,
                 connect: str):
        nn.Module.__init__(self)
        self.connect = connect
        self.conv1 = _ConvBN(cin, planes, 1)
        self.sn1 = LIF(neuron)
        self.conv2 = _ConvBN(planes, planes, 3, stride)
        self.sn2 = LIF(neuron)
        self.conv3 = _ConvBN(planes, planes * self.expansion, 1)
        self.sn3 = LIF(neuron)
        self.downsample = None
        if stride != 1 or cin != planes * self.expansion:
            self.downsample = nn.Sequential(_ConvBN(cin, planes * self.expansion, 1, stride),
                                            LIF(neuron))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn3(self.conv3(self.sn2(self.conv2(self.sn1(self.conv1(x))))))


class SEWResNet(DistillModel):
    """SEW-ResNet student; taps ``layer1..layer4`` ``[T, B, C, H, W]`` (spikes with AND / IAND;
    with ADD non-negative integers: the identity path sums the spikes of the blocks). Input: images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]``.

    Args:
        arch: ``sew_resnet18`` | ``sew_resnet34`` | ``sew_resnet50``.
        width_mult: stage-1 width ``16 * width_mult`` (4: the paper's 64; 1: a 16-wide model
            for tests and CPU runs).
        connect: the SEW function ``ADD | IAND | AND``.
        stem: ``imagenet`` (conv 7x7/2 + BN + SN + max-pool 3/2) or ``cifar`` (conv 3x3/1 + BN
            + SN, no pool; for 32x32 inputs, taps at H, H/2, H/4, H/8).
        neuron: the LIF parameters (``model.neuron``): a
            :class:`~spikedistill.neurons.LIFParameters` or a mapping of its fields.
    """

    is_spiking = True
    feature_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, arch: str, num_classes: int = 1000, T: int = 4,
                 width_mult: Optional[int] = None, in_channels: int = 3, connect: str = "ADD",
                 stem: str = "imagenet", neuron: Optional[NeuronLike] = None):
        super().__init__()
        if arch not in SEW_LAYOUTS:
            raise ConfigError(f"config key 'model.name': expected one of "
                              f"{', '.join(SEW_LAYOUTS)}, got {arch!r}")
        connect = str(connect).upper()
        if connect not in CONNECTS:
            raise ConfigError(f"config key 'model.connect': expected one of "
                              f"{', '.join(CONNECTS)}, got {connect!r}")
        if stem not in STEMS:
            raise ConfigError(f"config key 'model.kwargs.stem': expected one of "
                              f"{', '.join(STEMS)}, got {stem!r}")
        if int(T) < 1:
            raise ConfigError(f"config key 'model.T': expected a positive integer, got {T!r}")
        wm = 4 if width_mult is None else int(width_mult)
        if wm < 1:
            raise ConfigError(f"config key 'model.width_mult': expected >= 1, got {width_mult!r}")
        neuron = LIFParameters.of(neuron)
        kind, layout = SEW_LAYOUTS[arch]
        block = SEWBottleneck if kind == "bottleneck" else SEWBasicBlock
        self.arch, self.connect, self.stem = arch, connect, stem
        self.T = int(T)
        self.num_classes = int(num_classes)
        c = 16 * wm
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, c, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: Optional[nn.Module] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, c, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = None
        self.bn1 = nn.BatchNorm2d(c)
        self.sn1 = LIF(neuron)
        cin, channels = c, []
        for i, n_blocks in enumerate(layout):
            planes = c * 2 ** i
            blocks = []
            for b in range(n_blocks):
                blocks.append(block(cin, planes, (1 if i == 0 else 2) if b == 0 else 1,
                                    neuron, connect))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            channels.append(cin)
        self.feature_channels = tuple(channels)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def classifier(self) -> nn.Linear:
        """The layer producing the logits: ``fc``."""
        return self.fc

    @property
    def head(self) -> nn.Linear:
        """The head from the pooled feature to the logits (``fc``; one Linear)."""
        return self.fc

    def checkpoint_modules(self) -> List[Tuple[str, nn.Module]]:
        """The stages ``train.checkpoint_stages`` numbers (1-based): ``layer1..layer4``."""
        return [(n, getattr(self, n)) for n in self.feature_names]

    @staticmethod
    def pool(last_stage: torch.Tensor) -> torch.Tensor:
        """Pre-classifier feature ``[B, C]``: GAP per timestep, then the mean over T."""
        return last_stage.mean(dim=(3, 4)).mean(dim=0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Stem spikes ``[T, B, C, H', W']``: images get ``BN(conv1(x))`` once, repeated T
        times, then ``SN`` (and the max-pool per step); frames get the stem on every frame."""
        if x.dim() == 5:
            if x.shape[0] != self.T:
                raise ValueError(f"frame input has {x.shape[0]} timesteps but the model runs "
                                 f"T={self.T}; set model.T to the number of frames")
            y = _unfold(self.bn1(self.conv1(_fold(x))), self.T)
        else:
            y = self.bn1(self.conv1(x))
            y = y.unsqueeze(0).expand(self.T, *y.shape)
        s = self.sn1(y)
        if self.maxpool is not None:
            s = _unfold(self.maxpool(_fold(s)), self.T)
        return s

    def forward(self, x: torch.Tensor, return_features: bool = False,
                timestep_logits: bool = False):
        """Logits ``z_s = fc(mean_t GAP(F_4[t]))`` ``[B, K]``; with ``timestep_logits``
        ``z_s[t] = fc(GAP(F_4[t]))`` ``[T, B, K]`` (their mean over t is ``z_s``)."""
        require_images_or_frames(x)
        f1 = self.layer1(self.encode(x))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        logits = student_logits(self.fc, self.pool, f4, timestep_logits)
        if return_features:
            return logits, [f1, f2, f3, f4]
        return logits


_SJ_CONV_BN = re.compile(r"^(layer\d+\.\d+\.)conv(\d)\.([01])\.(.+)$")
_SJ_DOWN = re.compile(r"^(layer\d+\.\d+\.downsample\.)0\.([01])\.(.+)$")


def spikingjelly_key(key: str) -> str:
    """The key of SpikingJelly's ``SEWResNet`` state dict for one of ours (imagenet stem):
    ``layerI.J.convK.0.*`` (conv) -> ``layerI.J.convK.*``, ``layerI.J.convK.1.*`` (BN) ->
    ``layerI.J.bnK.*``, ``layerI.J.downsample.0.{0,1}.*`` -> ``layerI.J.downsample.{0,1}.*``;
    the stem (``conv1``, ``bn1``) and ``fc`` are named alike."""
    m = _SJ_DOWN.match(key)
    if m:
        return f"{m.group(1)}{m.group(2)}.{m.group(3)}"
    m = _SJ_CONV_BN.match(key)
    if m:
        kind = "conv" if m.group(3) == "0" else "bn"
        return f"{m.group(1)}{kind}{m.group(2)}.{m.group(4)}"
    return key


def load_spikingjelly_state_dict(model: "SEWResNet", state: Dict[str, torch.Tensor]) -> None:
    """Load the state dict of SpikingJelly's ``sew_resnet18/34/50`` (same depth, width and
    classes) into ``model`` (strict: every key must map, see :func:`spikingjelly_key`)."""
    ours = model.state_dict()
    mapped = {k: state[spikingjelly_key(k)] for k in ours if spikingjelly_key(k) in state}
    missing = sorted(set(ours) - set(mapped))
    extra = sorted(set(state) - {spikingjelly_key(k) for k in ours})
    if missing or extra:
        raise ValueError(f"SpikingJelly state dict does not fit {model.arch}: missing "
                         f"{missing[:3]}, unexpected {extra[:3]}")
    model.load_state_dict(mapped, strict=True)


def _factory(arch: str):
    def build(num_classes: int = 1000, T: int = 4, width_mult: Optional[int] = None,
              in_channels: int = 3, connect: str = "ADD", stem: str = "imagenet",
              neuron: Optional[NeuronLike] = None) -> SEWResNet:
        return SEWResNet(arch, num_classes, T, width_mult, in_channels, connect, stem, neuron)

    kind, layout = SEW_LAYOUTS[arch]
    build.__name__ = arch
    build.__doc__ = (f"{arch.replace('sew_resnet', 'SEW-ResNet-')}: {kind} blocks {list(layout)}, "
                     "stage widths 16 * width_mult * (1, 2, 4, 8) (x4 for bottlenecks); "
                     "width_mult None = 4, the paper's 64.")
    return register_model(arch, role="student")(build)


sew_resnet18 = _factory("sew_resnet18")
sew_resnet34 = _factory("sew_resnet34")
sew_resnet50 = _factory("sew_resnet50")

__all__ = ["CONNECTS", "SEWBasicBlock", "SEWBottleneck", "SEWResNet", "connect_function",
           "load_spikingjelly_state_dict", "spikingjelly_key", "sew_resnet18", "sew_resnet34", "sew_resnet50"]
