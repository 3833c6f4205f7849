"""The config's sections as dataclasses (``model``, ``teacher``, ``data``, ``train``,
``distill``, ``run``, and :class:`Config`), each with its ``validate(prefix)``; the ``distill``
sub-sections come from the method registry (:func:`method_sections`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from spikedistill.config.checks import (_k, _record, check_choice, check_each_choice,
                                        check_interval, check_range, check_registered, recording)
from spikedistill.config.coerce import _to_plain, from_dict
from spikedistill.config.randaugment import parse_randaugment
from spikedistill.config.vocab import (AMP_MODES, BAD_IMAGE_ACTIONS, BATCH_SIZE_MODES, DECODERS,
                                       LAST_ACTIVATIONS, MAX_IMAGE_SIZE, MAX_T, MODEL_SOURCES,
                                       NEURON_BACKENDS, OPTIMIZERS, PIPELINES,
                                       RANDAUGMENT_ALL_OPS, SCHEDULERS, SEW_CONNECTS, SURROGATES,
                                       TEACHER_FRAMES, TEACHER_MODES, TRANSLATE_FILLS)
from spikedistill.errors import ConfigError
from spikedistill.plugins import DATASETS, METHODS


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
    ``CE(z_s, y)`` in every method), ``warmup_epochs`` (a linear ramp of every other loss
    term, see :func:`spikedistill.engine.loop.distill_scale`) and one sub-section per
    registered method config (``distill.kd``, ``distill.ckd``, ...: see
    :func:`method_sections`).

    ``DistillConfig(method="kd", kd=KDConfig(tau=2))``: sections not given take their defaults.
    """

    def __init__(self, method: str = "ce", ce_weight: float = 1.0, warmup_epochs: float = 0.0,
                 **sections: Any) -> None:
        known = method_sections()
        unknown = [k for k in sections if k not in known]
        if unknown:
            raise ConfigError(f"unknown config key 'distill.{unknown[0]}'; valid keys of "
                              f"'distill': {', '.join(n for n, _ in self.config_fields())}")
        self.method = method
        self.ce_weight = ce_weight
        self.warmup_epochs = warmup_epochs
        for name, cls in known.items():
            setattr(self, name, sections[name] if name in sections else cls())

    @classmethod
    def config_fields(cls) -> List[Tuple[str, Any]]:
        """``(name, type)`` of every key, the method sections included."""
        return [("method", str), ("ce_weight", float), ("warmup_epochs", float),
                *method_sections().items()]

    def validate(self, prefix: str = "") -> None:
        if not check_registered(METHODS, self.method, _k(prefix, "method"), "method"):
            METHODS.entry(self.method)   # "config key 'distill.method': unknown method ..."
        check_range(self.ce_weight, _k(prefix, "ce_weight"), low=0.0)
        check_range(self.warmup_epochs, _k(prefix, "warmup_epochs"), low=0.0)

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
