"""Typed run configuration: dataclasses, YAML loading, dotted overrides, validation.

A run is described by one :class:`Config` with the sections ``model``, ``teacher``, ``data``,
``train``, ``distill`` and ``run``. The ``distill`` sub-sections are not written here: every
registered method brings the dataclass of its own section (:class:`DistillConfig`), and
``data.name`` is checked against the registered datasets; both vocabularies are looked up when
a config is built (:mod:`spikedistill.plugins`), so importing this module needs no torch. Configs are loaded from YAML (:func:`load_config`), changed
with dotted overrides such as ``train.epochs=3`` (values parsed as YAML scalars), validated
field by field (:class:`~spikedistill.errors.ConfigError` names the dotted key and the expected
type), and saved fully resolved next to every run (:meth:`Config.to_dict`, :func:`save_config`).

The defaults are the CIFAR recipe of the released CKDSNN code (``method.md``, "Training recipe").
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from spikedistill.atomic import atomic_write_text
from spikedistill.errors import ConfigError
from spikedistill.plugins import DATASETS, METHODS


#: upper bounds of keys whose memory grows with them (a typo such as 100000 is one line, not an
#: allocator traceback): model.T timesteps, data.image_size pixels per side
MAX_T = 1024
MAX_IMAGE_SIZE = 4096


# --------------------------------------------------------------------------------------------
# Vocabularies: the allowed values of config keys, in one place. The validators below, the
# code that acts on a key and ``spikedistill config --keys`` all use these constants.
# --------------------------------------------------------------------------------------------
SURROGATES = ("triangle", "sigmoid", "atan")            # model.neuron.surrogate
NEURON_BACKENDS = ("torch", "triton", "auto")           # model.neuron.backend
LAST_ACTIVATIONS = ("relu", "lif")                      # model.last_activation
TEACHER_MODES = ("frozen", "released")                  # teacher.mode
TRANSLATE_FILLS = ("wrap", "zero")                      # data.augment.translate_fill
PIPELINES = ("memory", "stream", "auto")                # data.pipeline
DECODERS = ("cpu", "cuda")                              # data.decode
BAD_IMAGE_ACTIONS = ("error", "skip")                   # data.on_bad_image
BATCH_SIZE_MODES = ("per_gpu", "global")                # train.batch_size_is
OPTIMIZERS = ("sgd", "adamw")                           # train.optimizer
SCHEDULERS = ("cosine", "onecycle", "constant")         # train.scheduler
AMP_MODES = ("auto", "bf16", "fp16", "fp32")            # train.amp
# distill.ckd.* (CKDSNN's switches; spikedistill.distill.methods.ckd re-exports them)
CKD_NORMALIZE_CHOICES = ("batch_minmax", "sample_minmax", "none")   # distill.ckd.samd.normalize
CKD_SCALING_CHOICES = ("softmax", "zscore", "l2", "none")           # distill.ckd.samd.scaling
CKD_TEACHER_MAP_CHOICES = ("cam", "gradcam_label", "gradcam_pred")  # distill.ckd.samd.teacher_map
CKD_STUDENT_MAP_CHOICES = ("spike_sum", "cam")                      # distill.ckd.samd.student_map
CKD_NLD_MODE_CHOICES = ("released", "paper", "fixed", "none")       # distill.ckd.nld.mode
CKD_PRESET_CHOICES = ("released", "paper")                          # distill.ckd.preset

#: while :func:`record_constraints` runs: ``{dotted key: allowed values / range}`` of every
#: check the validators make (the text ``config --keys`` prints); None otherwise
_RECORDED: Optional[Dict[str, str]] = None


def record_constraints(validate: Any) -> Dict[str, str]:
    """Call ``validate()`` and return ``{key: constraint}`` for every :func:`check_choice`,
    :func:`check_range` and :func:`check_interval` it made (registry look-ups are recorded,
    not made, so this loads no torch). The listing of allowed values is therefore the
    validation itself."""
    global _RECORDED
    previous, _RECORDED = _RECORDED, {}
    try:
        validate()
        return dict(_RECORDED)
    finally:
        _RECORDED = previous


def recording() -> bool:
    """True inside :func:`record_constraints` (validators skip registry look-ups)."""
    return _RECORDED is not None


def _record(key: str, text: str) -> None:
    if _RECORDED is not None:
        _RECORDED.setdefault(key, text)


def _range_text(low: Optional[float], high: Optional[float], low_open: bool = False,
                high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_registered(registry: Any, value: Any, key: str, what: str) -> bool:
    """``value in registry`` (the look-up loads the registry's modules); while recording,
    records "a registered WHAT" for ``key`` and returns True without looking."""
    if recording():
        _record(key, f"a registered {what} (listed at the end)")
        return True
    return value in registry


def check_choice(value: Any, choices: Sequence[Any], key: str, *, optional: bool = False) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices`` (or None, with ``optional``)."""
    _record(key, ("null or " if optional else "") + "one of " + " | ".join(map(str, choices)))
    if optional and value is None:
        return
    if value not in choices:
        raise ConfigError(f"config key '{key}': expected one of {', '.join(map(str, choices))}, "
                          f"got {value!r}")


def check_each_choice(values: Sequence[Any], choices: Sequence[Any], key: str) -> None:
    """Raise ConfigError naming ``key[i]`` unless every ``values[i]`` is one of ``choices``."""
    _record(key, "each one of " + " | ".join(map(str, choices)))
    for i, value in enumerate(values):
        check_choice(value, choices, f"{key}[{i}]")


def check_range(value: Any, key: str, *, low: Optional[float] = None,
                high: Optional[float] = None, low_open: bool = False,
                high_open: bool = False) -> None:
    """Raise ConfigError unless ``low <= value <= high`` (``low < value`` with ``low_open``,
    ``value < high`` with ``high_open``)."""
    _record(key, _range_text(low, high, low_open, high_open))
    if value is None:
        return
    below = low is not None and (value < low or (low_open and value == low))
    above = high is not None and (value > high or (high_open and value == high))
    if not (below or above):
        return
    if low is not None and high is not None:
        want = _range_text(low, high, low_open, high_open)
    elif below:
        want = _range_text(low, None, low_open)
    else:
        want = _range_text(None, high, high_open=high_open)
    raise ConfigError(f"config key '{key}': expected a value {want}, got {value!r}")


def check_interval(pair: Sequence[float], key: str, *, low: float, high: Optional[float] = None,
                   low_open: bool = True) -> None:
    """Raise ConfigError unless ``pair = (lo, hi)`` is an interval with ``lo <= hi`` and both
    ends in ``(low, high]`` (``[low, high]`` with ``low_open=False``; no upper end when
    ``high`` is None)."""
    _record(key, f"[low, high], low <= high, each {_range_text(low, high, low_open)}")
    lo, hi = pair
    for i, v in enumerate((lo, hi)):
        check_range(v, f"{key}[{i}]", low=low, high=high, low_open=low_open)
    if lo > hi:
        raise ConfigError(f"config key '{key}': expected [low, high] with low <= high, got "
                          f"[{lo}, {hi}]")


def _k(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass
class NeuronConfig:
    """LIF neuron of the student: ``u = decay * u + I``, spike if ``u > threshold``, hard reset.

    ``decay_input: true`` scales the input, ``u = decay * u + (1 - decay) * I`` (SpikingJelly's
    ``decay_input=True`` with ``tau = 1 / (1 - decay)``; Spikformer's neuron)."""

    decay: float = 0.5
    threshold: float = 1.0
    surrogate: str = "triangle"      # triangle | sigmoid | atan
    alpha: float = 1.0               # surrogate width/sharpness (triangle: gamma = 1 in the spec)
    detach_reset: bool = False
    backend: str = "auto"            # torch | triton | auto (Triton on CUDA when available)
    decay_input: bool = False        # scale the input by 1 - decay (SpikingJelly decay_input)
    fire_at_threshold: bool = False  # spike at h >= threshold (SpikingJelly), not h > threshold

    def validate(self, prefix: str = "") -> None:
        check_choice(self.surrogate, SURROGATES, _k(prefix, "surrogate"))
        check_choice(self.backend, NEURON_BACKENDS, _k(prefix, "backend"))
        check_range(self.decay, _k(prefix, "decay"), low=0.0, high=1.0)
        check_range(self.threshold, _k(prefix, "threshold"), low=0.0, low_open=True)
        check_range(self.alpha, _k(prefix, "alpha"), low=0.0, low_open=True)


MODEL_SOURCES = ("spikedistill", "spikingjelly", "torchvision", "timm", "python")
TEACHER_FRAMES = ("mean", "per_step", "stack")
SEW_CONNECTS = ("ADD", "IAND", "AND")   # spike-element-wise functions g(A, S) of SEW-ResNets


def _check_source(cfg, prefix: str) -> None:
    """Shared checks of ``source`` / ``arch`` / ``features`` / ``classifier``."""
    check_choice(cfg.source, MODEL_SOURCES, _k(prefix, "source"))
    if cfg.source != "spikedistill" and not cfg.arch:
        raise ConfigError(f"config key '{_k(prefix, 'arch')}': {prefix}.source={cfg.source} needs "
                          "the architecture's name, e.g. resnet18 (python: 'package.module:factory')")
    if cfg.source == "python" and ":" not in str(cfg.arch):
        raise ConfigError(f"config key '{_k(prefix, 'arch')}': expected 'package.module:factory' "
                          f"for source python, got {cfg.arch!r}")


@dataclass
class ModelConfig:
    """The network being trained (an SNN student or, for ``train-teacher``, an ANN).

    ``source: spikedistill`` builds the registered model ``name``; another source builds
    ``arch`` from that library (``spikingjelly``: ``spikingjelly.activation_based.model``,
    ``torchvision``/``timm``: their model factories, ``python``: ``package.module:factory``)
    with ``kwargs``, tapped at the modules ``features`` (dotted paths) with ``classifier``
    the module producing the logits. A registered model takes ``kwargs`` too (its factory's
    extra arguments, e.g. ``stem: cifar`` of the SEW-ResNets; unknown ones are a ConfigError).
    ``connect`` is the SEW-ResNets' residual function ``g(A, S)`` (``ADD | IAND | AND``; a
    field rather than a ``kwargs`` entry so that it is validated when the config is loaded).
    """

    name: str = "spiking_resnet20"
    source: str = "spikedistill"     # spikedistill | spikingjelly | torchvision | timm | python
    arch: Optional[str] = None       # architecture of an external source
    kwargs: Dict[str, Any] = field(default_factory=dict)  # its extra constructor arguments
    features: List[str] = field(default_factory=list)     # tapped module paths (external models)
    classifier: Optional[str] = None  # module producing the logits (external models)
    T: int = 1                       # timesteps (students only)
    width_mult: Optional[int] = None  # None: the architecture's default (resnet19: 8, resnet20: 1)
    last_activation: str = "relu"    # relu (released code, EnOF's RepAct) | lif
    connect: Optional[str] = None    # SEW-ResNet residual g(A, S): ADD | IAND | AND (None: ADD)
    distill_head: bool = False       # DeiT's second (distillation) head; eval averages both (deit)
    neuron: NeuronConfig = field(default_factory=NeuronConfig)

    def validate(self, prefix: str = "") -> None:
        check_range(self.T, _k(prefix, "T"), low=1)
        check_range(self.T, _k(prefix, "T"), high=MAX_T)
        check_range(self.width_mult, _k(prefix, "width_mult"), low=1)
        check_choice(self.last_activation, LAST_ACTIVATIONS, _k(prefix, "last_activation"))
        check_choice(self.connect, SEW_CONNECTS, _k(prefix, "connect"), optional=True)
        if self.connect is not None:
            if self.source != "spikedistill":
                raise ConfigError(f"config key '{_k(prefix, 'connect')}': model.connect is for "
                                  "the registered SEW-ResNets; a network of another library takes "
                                  "its own argument in model.kwargs (SpikingJelly: cnf)")
        _check_source(self, prefix or "model")


@dataclass
class TeacherConfig:
    """The ANN teacher for distillation.

    ``source: spikedistill``: our own checkpoint (``checkpoint``; its architecture is read from
    it). ``torchvision`` / ``timm`` / ``python``: ``arch`` built offline with ``kwargs`` and its
    weights from the local state-dict file ``weights`` (``.pth`` / ``.safetensors``); nothing is
    downloaded. ``features`` / ``classifier`` name its taps (defaults per architecture family).
    ``frames``: how an ANN sees a frame sequence ``[T, B, C, H, W]``: ``mean`` (one image, the
    mean frame), ``per_step`` (every frame, logits and features averaged over T) or ``stack``
    (the T frames as ``T*C`` channels of one image; the ANN's first conv takes ``T*C`` channels).
    A teacher checkpoint must hold an ANN; ``allow_spiking: true`` accepts a spiking one (e.g. a
    larger SNN distilled into a smaller one: its time-mean logits are the teacher's logits, and
    its feature taps are ``[T, B, C, H, W]``, which the feature methods do not expect).
    """

    checkpoint: Optional[str] = None
    source: str = "spikedistill"     # spikedistill | torchvision | timm | python
    arch: Optional[str] = None
    weights: Optional[str] = None    # state-dict file of an external teacher
    kwargs: Dict[str, Any] = field(default_factory=dict)
    features: List[str] = field(default_factory=list)
    classifier: Optional[str] = None
    frames: str = "mean"             # mean | per_step | stack (configs/cifar10dvs use per_step)
    mode: str = "frozen"             # frozen: eval + inference_mode | released: train-mode BN, as released
    min_accuracy: Optional[float] = None  # refuse a teacher below this test accuracy (None: warn below chance)
    allow_spiking: bool = False      # accept a spiking checkpoint as teacher (its mean logits; SNN -> SNN)
    zoo: Optional[str] = None        # a shipped teacher by name (spikedistill.models.teacher_zoo), sha256-checked

    def validate(self, prefix: str = "") -> None:
        check_choice(self.mode, TEACHER_MODES, _k(prefix, "mode"))
        check_choice(self.frames, TEACHER_FRAMES, _k(prefix, "frames"))
        _check_source(self, prefix or "teacher")
        if self.source == "spikingjelly":
            raise ConfigError(f"config key '{_k(prefix or 'teacher', 'source')}': a teacher is an "
                              "ANN; spikingjelly models are students (model.source)")
        if self.zoo and (self.checkpoint or self.source != "spikedistill"):
            raise ConfigError(f"config key '{_k(prefix or 'teacher', 'zoo')}': a zoo teacher "
                              "replaces teacher.checkpoint / teacher.source; give one of them")


#: timm's RandAugment ops (``timm/data/auto_augment.py``: ``_RAND_TRANSFORMS`` and, for ``inc1``,
#: ``_RAND_INCREASING_TRANSFORMS``), in timm's order
RANDAUGMENT_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                   "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                   "TranslateXRel", "TranslateYRel")
RANDAUGMENT_INC_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                       "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                       "TranslateXRel", "TranslateYRel")
RANDAUGMENT_ALL_OPS = tuple(dict.fromkeys(RANDAUGMENT_OPS + RANDAUGMENT_INC_OPS))


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed RandAugment string: ``magnitude`` M (0..``magnitude_max``), ``num_ops`` N per
    image, ``magnitude_std`` (Gaussian noise of M per application; ``inf``: M ~ U(0, M)),
    ``magnitude_max`` (clip bound, timm's ``_LEVEL_DENOM`` = 10 unless ``mmax``) and
    ``increasing`` (``inc1``: the ops whose severity grows with M)."""

    magnitude: float = 10.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0
    increasing: bool = False


def parse_randaugment(text: str, key: str = "data.augment.randaugment") -> RandAugmentSpec:
    """Read timm's RandAugment string (``rand_augment_transform`` in ``timm/data/auto_augment.py``):
    ``rand`` then ``-``-separated sections ``m<int>`` (magnitude, default 10), ``n<int>`` (ops per
    image, default 2), ``mstd<float>`` (magnitude noise; > 100 means uniform), ``mmax<int>``
    (magnitude bound, default 10), ``inc<0|1>`` (increasing ops). ``w<int>`` (op weights) is not
    supported. E.g. ``rand-m9-n1-mstd0.4-inc1``: M = 9, one op, noise 0.4, increasing ops."""
    import math
    import re

    parts = str(text).split("-")
    if parts[0] != "rand":
        raise ConfigError(f"config key '{key}': expected a RandAugment string like "
                          f"'rand-m9-n1-mstd0.4-inc1' (starting with 'rand'), got {text!r}")
    vals: Dict[str, Any] = {}
    for part in parts[1:]:
        m = re.fullmatch(r"(mstd|mmax|inc|m|n)(\d+(?:\.\d*)?)", part)
        if m is None:
            raise ConfigError(f"config key '{key}': unknown section {part!r} in {text!r}; "
                              "expected m<int>, n<int>, mstd<float>, mmax<int> or inc<0|1>")
        name, num = m.group(1), m.group(2)
        if name in ("m", "n", "mmax", "inc") and "." in num:
            raise ConfigError(f"config key '{key}': section {part!r} needs an integer")
        vals[name] = float(num) if name == "mstd" else int(num)
    mstd = vals.get("mstd", 0.0)
    spec = RandAugmentSpec(magnitude=float(vals.get("m", 10)), num_ops=int(vals.get("n", 2)),
                           magnitude_std=math.inf if mstd > 100 else mstd,
                           magnitude_max=float(vals.get("mmax", 10)),
                           increasing=bool(vals.get("inc", 0)))
    if spec.num_ops < 1:
        raise ConfigError(f"config key '{key}': n (ops per image) must be >= 1 in {text!r}")
    return spec


@dataclass
class AugmentConfig:
    """Per-sample training augmentation, applied on the training device (spec order)."""

    random_crop: bool = True
    crop_padding: int = 4
    hflip: bool = True
    autoaugment: bool = True         # CIFAR-10 policy (also used for CIFAR-100, as released)
    random_erasing: float = 0.5      # probability; 0 disables
    erasing_scale: Tuple[float, float] = (0.02, 0.2)
    erasing_ratio: Tuple[float, float] = (0.3, 3.3)
    erasing_value: Union[float, str] = 0.0   # fill after normalisation: a number, or "random" (N(0, 1))
    normalize: bool = True
    # RandAugment (data/randaugment.py): timm's string, e.g. "rand-m9-n1-mstd0.4-inc1" (None: off)
    randaugment: Optional[str] = None
    randaugment_ops: List[str] = field(default_factory=list)  # op subset ([]: timm's set for inc)
    # Mixup / CutMix per batch (data/mix.py): Beta alphas (0: off), timm's mix_prob/switch_prob
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    mix_off_epoch: int = 0           # no mixing from this 0-based epoch on (0: never off)
    # event frames (the TET / SNN-KD CIFAR10-DVS recipe): roll each sample by (dy, dx), each
    # uniform on -translate..translate pixels, the same for all its frames; 0 disables
    translate: int = 0
    translate_fill: str = "wrap"     # wrap (torch.roll, as TET) | zero (shift, zero border)

    def validate(self, prefix: str = "") -> None:
        check_range(self.crop_padding, _k(prefix, "crop_padding"), low=0)
        check_range(self.translate, _k(prefix, "translate"), low=0)
        check_choice(self.translate_fill, TRANSLATE_FILLS, _k(prefix, "translate_fill"))
        for name in ("mixup", "cutmix"):
            check_range(getattr(self, name), _k(prefix, name), low=0.0)
        for name in ("mix_prob", "switch_prob"):
            check_range(getattr(self, name), _k(prefix, name), low=0.0, high=1.0)
        check_range(self.mix_off_epoch, _k(prefix, "mix_off_epoch"), low=0)
        if self.randaugment is not None:
            parse_randaugment(self.randaugment, _k(prefix, "randaugment"))
            if self.autoaugment:
                raise ConfigError(f"config key '{_k(prefix, 'autoaugment')}': RandAugment "
                                  f"({_k(prefix, 'randaugment')}={self.randaugment!r}) replaces "
                                  "AutoAugment; set data.augment.autoaugment=false")
        check_each_choice(self.randaugment_ops, RANDAUGMENT_ALL_OPS, _k(prefix, "randaugment_ops"))
        check_range(self.random_erasing, _k(prefix, "random_erasing"), low=0.0, high=1.0)
        # the area fraction of the erased box lies in (0, 1]; its aspect ratio is positive
        check_interval(self.erasing_scale, _k(prefix, "erasing_scale"), low=0.0, high=1.0)
        check_interval(self.erasing_ratio, _k(prefix, "erasing_ratio"), low=0.0)
        if isinstance(self.erasing_value, str) and self.erasing_value != "random":
            raise ConfigError(f"config key '{_k(prefix, 'erasing_value')}': expected a number or "
                              f"'random', got {self.erasing_value!r}")


@dataclass
class DataConfig:
    """Which dataset, where it lives, and how it is cut and augmented."""

    name: str = "digits"             # a registered dataset: digits | cifar10 | cifar100 | imagefolder | plugins
    root: Optional[str] = None       # folder or archive; not needed for the embedded digits
    train_subset: int = 0            # class-balanced subset size (0: everything)
    test_subset: int = 0
    subset_seed: int = 0
    # fraction of the (subset) training split held out, class-balanced and chosen by subset_seed,
    # to choose best.pt on (0: none; best.pt is then chosen on the test split)
    val_fraction: float = 0.0
    image_size: Optional[int] = None  # resize images to a square of this side (None: keep)
    mean: Optional[List[float]] = None  # per-channel normalisation (None: the dataset's own)
    std: Optional[List[float]] = None
    kwargs: Dict[str, Any] = field(default_factory=dict)  # options of the dataset's reader
    cache_dir: Optional[str] = None   # decoded uint8 cache (None: $SPIKEDISTILL_CACHE or ~/.cache/spikedistill)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # the streaming pipeline (docs/imagenet.md): decode from disk in DataLoader workers
    pipeline: str = "auto"           # memory | stream | auto (stream above memory_limit_gib decoded)
    memory_limit_gib: float = 4.0    # auto: the decoded uint8 splits' size above which it streams
    workers: int = 4                 # DataLoader worker processes (stream; 0: decode in the trainer)
    prefetch_factor: int = 2         # batches each worker keeps ready
    persistent_workers: bool = True  # keep the workers between epochs
    pin_memory: bool = True          # page-locked batches for asynchronous copies (CUDA only)
    decode: str = "cpu"              # cpu | cuda (torchvision.io.decode_jpeg on the GPU)
    on_bad_image: str = "error"      # error | skip: an unreadable image file (stream), named either way
    crop_scale: Tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area fraction (stream train)

    def validate(self, prefix: str = "") -> None:
        check_choice(self.pipeline, PIPELINES, _k(prefix, "pipeline"))
        check_choice(self.decode, DECODERS, _k(prefix, "decode"))
        check_choice(self.on_bad_image, BAD_IMAGE_ACTIONS, _k(prefix, "on_bad_image"))
        check_range(self.memory_limit_gib, _k(prefix, "memory_limit_gib"), low=0.0)
        check_range(self.workers, _k(prefix, "workers"), low=0)
        check_range(self.prefetch_factor, _k(prefix, "prefetch_factor"), low=1)
        check_interval(self.crop_scale, _k(prefix, "crop_scale"), low=0.0, high=1.0)
        key = _k(prefix, "name")
        if not check_registered(DATASETS, self.name, key, "dataset"):
            raise ConfigError(f"config key '{key}': unknown dataset {self.name!r}; registered "
                              f"datasets: {', '.join(DATASETS.names())}")
        if (not recording() and getattr(DATASETS.get(self.name), "frames", False)
                and self.augment.autoaugment):
            raise ConfigError(f"config key '{_k(prefix, 'augment.autoaugment')}': dataset "
                              f"{self.name!r} holds frame sequences and AutoAugment is for single "
                              "images; set data.augment.autoaugment=false")
        for name in ("train_subset", "test_subset"):
            check_range(getattr(self, name), _k(prefix, name), low=0)
        check_range(self.val_fraction, _k(prefix, "val_fraction"), low=0.0, high=1.0, high_open=True)
        check_range(self.image_size, _k(prefix, "image_size"), low=1)
        check_range(self.image_size, _k(prefix, "image_size"), high=MAX_IMAGE_SIZE)
        check_range(self.subset_seed, _k(prefix, "subset_seed"), low=0)
        if (self.mean is None) != (self.std is None):
            raise ConfigError(f"config key '{_k(prefix, 'mean' if self.mean is None else 'std')}': "
                              "data.mean and data.std are given together (or both null)")
        if self.mean is not None:
            if len(self.mean) != len(self.std) or not self.mean:
                raise ConfigError(f"config key '{_k(prefix, 'std')}': expected one value per "
                                  f"channel like data.mean ({len(self.mean)}), got {self.std!r}")
            for i, v in enumerate(self.std):
                check_range(v, f"{_k(prefix, 'std')}[{i}]", low=0.0, low_open=True)


@dataclass
class TrainConfig:
    """Optimiser, schedule, precision and the training loop."""

    epochs: int = 400
    batch_size: int = 128
    batch_size_is: str = "per_gpu"   # per_gpu | global (divided by the world size)
    optimizer: str = "sgd"           # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    scheduler: str = "cosine"        # cosine (to 0, per step) | onecycle | constant
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    amp: str = "auto"                # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    seed: int = 0
    eval_every: int = 1
    eval_batch_size: int = 512
    max_steps_per_epoch: int = 0     # 0: the whole epoch (a cap is for smoke runs and benchmarks)
    threads: int = 1                 # torch CPU threads per run (0: torch's default, all cores; 1 is fast on a shared machine)
    find_unused_parameters: bool = False  # DDP: only for methods that skip parameters in a step
    deterministic: bool = False      # deterministic CUDA kernels (bitwise-reproducible resume on GPU, slower)
    checkpoint_stages: Union[str, List[int]] = field(default_factory=list)  # recompute these stages (1-based, or all) in backward

    def validate(self, prefix: str = "") -> None:
        check_range(self.epochs, _k(prefix, "epochs"), low=1)
        check_range(self.batch_size, _k(prefix, "batch_size"), low=1)
        check_range(self.eval_batch_size, _k(prefix, "eval_batch_size"), low=1)
        check_range(self.lr, _k(prefix, "lr"), low=0.0)
        check_range(self.momentum, _k(prefix, "momentum"), low=0.0, high=1.0, high_open=True)
        check_range(self.weight_decay, _k(prefix, "weight_decay"), low=0.0)
        check_range(self.label_smoothing, _k(prefix, "label_smoothing"), low=0.0, high=1.0,
                    high_open=True)
        check_range(self.warmup_epochs, _k(prefix, "warmup_epochs"), low=0.0)
        check_range(self.max_steps_per_epoch, _k(prefix, "max_steps_per_epoch"), low=0)
        check_range(self.threads, _k(prefix, "threads"), low=0)
        check_range(self.eval_every, _k(prefix, "eval_every"), low=1)
        check_choice(self.batch_size_is, BATCH_SIZE_MODES, _k(prefix, "batch_size_is"))
        check_choice(self.optimizer, OPTIMIZERS, _k(prefix, "optimizer"))
        check_choice(self.scheduler, SCHEDULERS, _k(prefix, "scheduler"))
        check_choice(self.amp, AMP_MODES, _k(prefix, "amp"))
        _check_checkpoint_stages(self.checkpoint_stages, _k(prefix, "checkpoint_stages"))


def _check_checkpoint_stages(value: Any, key: str) -> None:
    """``train.checkpoint_stages``: ``all`` or distinct stage numbers >= 1 (the upper bound,
    the model's stage count, is checked when the model is built)."""
    _record(key, "all, or distinct stage numbers >= 1")
    if isinstance(value, str):
        if value != "all":
            raise ConfigError(f"config key '{key}': expected 'all' or a list of stage numbers "
                              f"(1-based, e.g. [2, 3]), got {value!r}")
        return
    for i, s in enumerate(value):
        check_range(s, f"{key}[{i}]", low=1)
        if s in value[:i]:
            raise ConfigError(f"config key '{key}[{i}]': stage {s} is listed twice")


@dataclass
class RunConfig:
    """Where and how a run is recorded."""

    out_dir: str = "runs"
    name: Optional[str] = None       # run directory = out_dir/name (None: a timestamped name)
    tensorboard: bool = True
    progress: bool = True
    save_every: int = 1              # write last.pt every N epochs (always at the end)
    plots: bool = True               # loss/accuracy curves as PNG at the end


def method_sections() -> Dict[str, type]:
    """``{section: config dataclass}`` of every registered method, in registration order
    (the vocabulary of ``distill.<section>``; loads the methods and plugins on first use)."""
    out: Dict[str, type] = {}
    for _, entry in METHODS.items():
        if entry.get("section") is not None:
            out.setdefault(entry["section"], entry["config"])
    return out


class DistillConfig:
    """The ``distill`` section: ``method`` (a registered method), ``ce_weight`` (weight of
    ``CE(z_s, y)`` in every method) and one sub-section per registered method config
    (``distill.kd``, ``distill.ckd``, ...: see :func:`method_sections`).

    ``DistillConfig(method="kd", kd=KDConfig(tau=2))``: sections not given take their defaults.
    """

    def __init__(self, method: str = "ce", ce_weight: float = 1.0, **sections: Any) -> None:
        known = method_sections()
        unknown = [k for k in sections if k not in known]
        if unknown:
            raise ConfigError(f"unknown config key 'distill.{unknown[0]}'; valid keys of "
                              f"'distill': {', '.join(n for n, _ in self.config_fields())}")
        self.method = method
        self.ce_weight = ce_weight
        for name, cls in known.items():
            setattr(self, name, sections[name] if name in sections else cls())

    @classmethod
    def config_fields(cls) -> List[Tuple[str, Any]]:
        """``(name, type)`` of every key, the method sections included."""
        return [("method", str), ("ce_weight", float), *method_sections().items()]

    def validate(self, prefix: str = "") -> None:
        if not check_registered(METHODS, self.method, _k(prefix, "method"), "method"):
            METHODS.entry(self.method)   # "config key 'distill.method': unknown method ..."
        check_range(self.ce_weight, _k(prefix, "ce_weight"), low=0.0)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _to_plain(self) == _to_plain(other)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n, _ in self.config_fields())
        return f"DistillConfig({inner})"


@dataclass
class Config:
    """A complete, resolved run configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict (tuples become lists) suitable for YAML and checkpoints."""
        return _to_plain(self)

    def copy(self) -> "Config":
        return from_dict(Config, self.to_dict())


# --------------------------------------------------------------------------------------------
# dict <-> dataclass with type checking
#
# Why not pydantic v2 (2.13, installed) here (measured for issue part 9): a prototype of this
# block on pydantic (StrictInt/StrictBool/StrictStr, a lax float, extra="forbid" and a translator
# from ValidationError to our one-line messages) took 51 non-blank lines against the 119 below,
# and reproduced only the unknown-key, int/float/bool and non-mapping messages (5 cases of
# tests/test_config_loading.py::test_errors_name_the_dotted_key, plus lr='fast'); tuple lengths ("expected 2 values"), list indices ("stages[1]", pydantic says
# "stages.1"), unions ("a number or 'random'") and validate() hooks (pydantic wraps them as
# "Value error, ...") need about 35 more lines, the registry-built distill sections a
# create_model() per build, and every method config (plugins' too) would have to become a
# BaseModel. The saving (~30 of ~560 lines) costs `import pydantic` (135-175 ms measured, more
# than the 70-125 ms `import spikedistill.config` takes today) and a new hard dependency.
# OmegaConf is not installed. So the dataclasses stay.
# --------------------------------------------------------------------------------------------

def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and (dataclasses.is_dataclass(tp) or hasattr(tp, "config_fields"))


def _schema(cls: type) -> List[Tuple[str, Any]]:
    """``(name, type)`` of a section class: a dataclass's fields, or the class's own
    ``config_fields()`` (sections whose keys come from a registry, like :class:`DistillConfig`)."""
    if hasattr(cls, "config_fields"):
        return cls.config_fields()
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _to_plain(obj: Any) -> Any:
    if _is_section(type(obj)):
        return {name: _to_plain(getattr(obj, name)) for name, _ in _schema(type(obj))}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (int -> float,
    list -> tuple); raise ConfigError naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1 and "finite" in str(errors[0]):   # Optional[float]: say why
            raise errors[0]
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if _is_section(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {tp.__name__} fields, "
                              f"got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list ({_type_name(tp)}), got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{key}': expected {len(args)} values "
                                  f"({_type_name(tp)}), got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):   # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        if not math.isfinite(number):  # every float key: NaN / inf would train silently at chance
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: Dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (partial) dict; missing fields keep their defaults.

    Raises ConfigError for an unknown key (listing the valid ones) or a value of the wrong type.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or '<root>'}': expected a mapping, got {data!r}")
    schema = _schema(cls)
    hints = dict(schema)
    names = [name for name, _ in schema]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"'{prefix}.{unknown[0]}'" if prefix else f"'{unknown[0]}'"
        raise ConfigError(f"unknown config key {where}; valid keys"
                          f"{' of ' + repr(prefix) if prefix else ''}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(data[name], hints[name], key)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(prefix)
    return obj


# --------------------------------------------------------------------------------------------
# overrides, files
# --------------------------------------------------------------------------------------------

def parse_override(text: str) -> Tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; the value is parsed as a YAML scalar
    (so ``true``, ``0.1``, ``null``, ``[1, 2]`` work; anything else stays a string)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = safe_yaml_load(raw) if raw.strip() != "" else ""
    except YAMLAliasRefused as exc:
        raise ConfigError(f"override {text!r}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(data: Dict[str, Any], key: str, value: Any) -> None:
    """Set ``data["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, creating mappings on the way."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override '{key}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = nxt
    node[parts[-1]] = value


class YAMLAliasRefused(Exception):
    """A YAML anchor (``&name``) or alias (``*name``) in a config (see :func:`safe_yaml_load`)."""


class _ConfigYAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases.

    An alias makes the composer reuse a node, so a few hundred bytes of nested aliases expand
    to millions of elements when the document is constructed (a "billion laughs" file). A
    config needs neither (``defaults:`` is the way to share settings), so the first anchor or
    alias event is refused before anything is composed from it.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            mark = event.start_mark
            raise YAMLAliasRefused(f"YAML {kind}{event.anchor} at line {mark.line + 1}, column "
                                   f"{mark.column + 1}: anchors and aliases are not allowed in "
                                   "configs (write the values out, or share them with defaults:)")
        return super().compose_node(parent, index)


def safe_yaml_load(text: str) -> Any:
    """``yaml.safe_load(text)`` that raises :class:`YAMLAliasRefused` on any anchor or alias."""
    loader = _ConfigYAMLLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Union[str, os.PathLike], _chain: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """Read a YAML mapping, following ``defaults: other.yaml`` (relative to the file) to the
    base config it extends; a missing, unreadable, non-UTF-8 or malformed file, an anchor or
    alias, or a ``defaults:`` chain that comes back to a file already in it is a ConfigError
    naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist (expected a YAML file)")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{p}' is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                          f"at offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file '{p}' cannot be read: {exc.strerror or exc}") from None
    try:
        data = safe_yaml_load(text)
    except YAMLAliasRefused as exc:
        raise ConfigError(f"config file '{p}': {exc}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file '{p}' is not valid YAML: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}': expected a mapping at the top level")
    base = data.pop("defaults", None)  # optional inheritance: `defaults: other.yaml`
    if base:
        if not isinstance(base, str):
            raise ConfigError(f"config file '{p}': 'defaults' must name one YAML file (relative "
                              f"to this one), got {base!r}")
        here = p.resolve()
        chain = _chain + (here,)
        parent_path = p.parent / base
        if parent_path.resolve() in chain:
            loop = " -> ".join(str(c) for c in chain[chain.index(parent_path.resolve()):])
            raise ConfigError(f"config file '{p}': 'defaults: {base}' includes a file already "
                              f"being read ({loop} -> {parent_path.resolve()}); a defaults chain "
                              "must end in a file without defaults")
        parent = read_yaml(parent_path, chain)
        deep_merge(parent, data)
        return parent
    return data


def deep_merge(dst: Dict[str, Any], src: Dict[str, Any]) -> None:
    """Merge mapping ``src`` into ``dst`` recursively (``src`` wins): ``dst[k] = merge(dst[k],
    src[k])`` where both are dicts, else ``dst[k] = src[k]``. A nested dict of ``dst`` is copied
    before it is merged into, so mappings ``dst`` shares with others are left unchanged."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            dst[k] = dict(dst[k])
            deep_merge(dst[k], v)
        else:
            dst[k] = v


def build_config(data: Optional[Dict[str, Any]] = None,
                 overrides: Sequence[Union[str, Tuple[str, Any]]] = ()) -> Config:
    """Config from a (partial) dict plus overrides (``"a.b=v"`` strings or ``(key, value)``)."""
    merged: Dict[str, Any] = _to_plain(data or {})
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        set_dotted(merged, key, value)
    apply_dataset_augment(merged)
    return from_dict(Config, merged)


def apply_dataset_augment(merged: Dict[str, Any]) -> None:
    """Fill the ``data.augment`` keys ``merged`` does not set with the chosen dataset's own
    defaults (its registration's ``augment``: digits none of CIFAR's, CIFAR10-DVS TET's); the
    keys set keep their values, and the rest keep the dataclass defaults (the CIFAR recipe).
    An unknown or malformed ``data`` is left for the validation to report."""
    section = merged.get("data", {})
    if not isinstance(section, dict):
        return
    name = section.get("name", DataConfig.name)
    if not isinstance(name, str) or name not in DATASETS:
        return
    defaults = getattr(DATASETS.get(name), "augment", None) or {}
    augment = section.get("augment", {})
    if not defaults or not isinstance(augment, dict):
        return
    merged["data"] = {**section, "augment": {**defaults, **augment}}


def load_config(path: Optional[Union[str, os.PathLike]] = None,
                overrides: Sequence[Union[str, Tuple[str, Any]]] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    return build_config(read_yaml(path) if path else {}, overrides)


def save_config(cfg: Config, path: Union[str, os.PathLike]) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe_keys(cls: type = Config, prefix: str = "") -> List[str]:
    """All dotted keys with their types and defaults (for ``--help`` style listings)."""
    out = []
    default = cls()
    for name, tp in _schema(cls):
        key = f"{prefix}.{name}" if prefix else name
        if _is_section(tp):
            out.extend(describe_keys(tp, key))
        else:
            out.append(f"{key}: {_type_name(tp)} = {getattr(default, name)!r}")
    return out
