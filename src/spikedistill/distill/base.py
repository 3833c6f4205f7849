"""The Distiller contract and the method registry.

A method is one small :class:`Distiller` subclass around pure loss functions
(:mod:`spikedistill.distill.functional`). ``forward_train(x, y, ctx=None)`` returns the
student's logits and a dict of *already weighted* named losses whose sum is the training loss,
so logs show every term; ``forward_test(x)`` returns the student's logits. ``ctx`` is the
engine's :class:`spikedistill.distill.context.StepContext` (epoch, step, ``progress``) for
methods whose losses follow a schedule; ``None`` outside the engine.

Inputs are images ``[B, C, H, W]`` or frame sequences ``[T, B, C, H, W]``. A student takes
either; an ANN teacher sees frames as :attr:`Distiller.teacher_frames` says (``teacher.frames``):
``mean`` feeds the mean frame ``x_bar = 1/T sum_t x[t]`` ``[B, C, H, W]``; ``per_step`` runs the
teacher on every frame (the folded ``[T*B, C, H, W]`` batch) and averages its logits and each
feature over T: ``z_t = 1/T sum_t z_t(x[t])``, ``F_t = 1/T sum_t F_t(x[t])``; ``stack`` feeds one
image of ``T*C`` channels, channel ``t*C + c`` holding ``x[t, :, c]`` (the teacher's first conv is
built with ``T*C`` input channels: :meth:`spikedistill.data.pipeline.DataPipeline.ann_in_channels`).

The teacher is frozen by default (``teacher_mode="frozen"``): ``eval()``, ``requires_grad_(False)``
and run under :func:`torch.inference_mode`. ``teacher_mode="released"`` reproduces the released
CKDSNN code, where the teacher stays in train mode (BatchNorm uses batch statistics and updates its
running stats) and outside ``no_grad`` — its parameters are still never updated.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn as nn

from spikedistill.config import TEACHER_FRAMES  # how an ANN teacher sees frames (teacher.frames)
from spikedistill.config import TEACHER_MODES, check_choice, check_range
from spikedistill.distill.functional import hard_labels  # noqa: F401  (class indices of int or soft targets)
from spikedistill.distill.registry import read_section
from spikedistill.errors import ConfigError

Losses = Dict[str, torch.Tensor]



def teacher_input(x: torch.Tensor, frames: str = "mean") -> Tuple[torch.Tensor, Optional[int]]:
    """``(input of the teacher, T to average over or None)`` for an input ``x``.

    Images ``[B, C, H, W]`` pass unchanged (``None``). Frames ``[T, B, C, H, W]``: ``mean`` gives
    the mean frame ``1/T sum_t x[t]`` ``[B, C, H, W]`` (``None``); ``per_step`` gives the folded
    ``[T*B, C, H, W]`` batch and ``T``, whose outputs :func:`time_mean` turns back into ``[B, ...]``;
    ``stack`` gives ``[B, T*C, H, W]`` with channel ``t*C + c`` = ``x[t, :, c]`` (``None``).
    """
    if frames not in TEACHER_FRAMES:
        raise ConfigError(f"config key 'teacher.frames': expected one of "
                          f"{', '.join(TEACHER_FRAMES)}, got {frames!r}")
    if x.dim() != 5:
        return x, None
    if frames == "mean":
        return x.mean(dim=0), None
    if frames == "stack":
        T, B, C, H, W = x.shape
        return x.transpose(0, 1).reshape(B, T * C, H, W), None
    return x.flatten(0, 1), int(x.shape[0])


def time_mean(t: torch.Tensor, T: Optional[int]) -> torch.Tensor:
    """``1/T sum_t t[t]`` of a folded ``[T*B, ...]`` tensor -> ``[B, ...]`` (``t`` itself when
    ``T`` is None)."""
    if T is None:
        return t
    return t.reshape(T, t.shape[0] // T, *t.shape[1:]).mean(dim=0)


def soft_cross_entropy(logits: torch.Tensor, y: torch.Tensor,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of ``logits [B, K]`` against int labels ``y [B]`` or soft targets ``y [B, K]``.

    Int labels: ``torch.nn.functional.cross_entropy(z, y, label_smoothing=eps)``, i.e. the target
    ``(1 - eps) onehot(y) + eps / K``. Soft targets: ``-(1/B) sum_i sum_k y'_ik log softmax(z_i)_k``
    with ``y' = (1 - eps) y + eps / K``, computed in float32. For a mixed target ``y = lam
    onehot(a) + (1 - lam) onehot(b)`` this is exactly timm's ``SoftTargetCrossEntropy`` of
    ``Mixup(label_smoothing=eps)``'s target (timm ``timm/loss/cross_entropy.py``,
    ``timm/data/mixup.py``): the smoothing is applied once, here, and the loader's mixed targets
    are unsmoothed."""
    z = logits.float()
    if y.dim() == 1:
        return nn.functional.cross_entropy(z, y, label_smoothing=label_smoothing)
    if y.shape != z.shape:
        raise ValueError(f"soft targets must be [B, K] like the logits {tuple(z.shape)}, got "
                         f"{tuple(y.shape)}")
    t = y.float()
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + label_smoothing / z.shape[1]
    return -(t * torch.log_softmax(z, dim=1)).sum(dim=1).mean()


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / torch.compile wrapper (or itself)."""
    while True:
        if hasattr(module, "module") and isinstance(module.module, nn.Module):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


class Distiller(nn.Module):
    """Base class: a student, an optional teacher and optional trainable extras.

    Subclasses set ``requires_teacher`` and implement :meth:`forward_train`. A method is
    configured completely by its constructor, and nothing is written onto it afterwards:

    - ``cfg``: the ``distill`` section; the method's own ``distill.<section>`` is read once with
      :func:`~spikedistill.distill.registry.read_section` and a copy kept in :attr:`section`
      (after :meth:`resolve_section`, e.g. CKDSNN's presets), ``cfg.ce_weight`` in
      :attr:`ce_weight`; later changes to ``cfg`` do not reach the method;
    - ``teacher_mode`` (``teacher.mode``), ``label_smoothing`` (``train.label_smoothing``) and
      ``teacher_frames`` (``teacher.frames``): read-only properties.

    A subclass that needs its own constructor takes and forwards them unchanged:
    ``def __init__(self, student, teacher=None, cfg=None, **settings):
    super().__init__(student, teacher, cfg, **settings)``.
    """

    requires_teacher: bool = False

    def __init__(self, student: nn.Module, teacher: Optional[nn.Module] = None, cfg=None,
                 teacher_mode: str = "frozen", *, label_smoothing: float = 0.0,
                 teacher_frames: str = "mean"):
        super().__init__()
        # the config layer's own checks (the same words as a config file's error)
        check_choice(teacher_mode, TEACHER_MODES, "teacher.mode")
        check_choice(teacher_frames, TEACHER_FRAMES, "teacher.frames")
        if isinstance(label_smoothing, bool):
            raise ConfigError("config key 'train.label_smoothing': expected a value in [0.0, 1.0), "
                              f"got {label_smoothing!r}")
        check_range(label_smoothing, "train.label_smoothing", low=0.0, high=1.0, high_open=True)
        if self.requires_teacher and teacher is None:
            raise ConfigError(f"method '{type(self).method_name}' needs a teacher: pass "
                              "--teacher RUN_DIR/best.pt (or set teacher.checkpoint)")
        self.student = student
        self.teacher = teacher
        self.cfg = copy.deepcopy(cfg)
        self._teacher_mode = teacher_mode
        self._teacher_frames = str(teacher_frames)
        self._label_smoothing = float(label_smoothing)
        self._ce_weight = float(getattr(cfg, "ce_weight", 1.0)) if cfg is not None else 1.0
        section = read_section(self.cfg, self.section_method())
        self.section = self.resolve_section(section) if section is not None else None
        self.extras = nn.ModuleDict()
        if teacher is not None:
            for p in teacher.parameters():
                p.requires_grad_(teacher_mode == "released")
            teacher.train(teacher_mode == "released")

    @classmethod
    def section_method(cls) -> str:
        """The registered method whose ``distill.<section>`` this class reads: its own
        :attr:`method_name`, or, for a class registered without a section of its own (a variant
        of a built-in under a new name: ``register_method("mykd")(MyKD)`` with ``MyKD(KD)``),
        the nearest base class's that has one (``kd``, as before methods read it at
        construction)."""
        for klass in cls.__mro__:
            name = vars(klass).get("method_name")
            if name is not None and read_section(None, name) is not None:
                return name
        return cls.method_name

    def resolve_section(self, section):
        """The settings the method runs with, from its ``distill.<section>`` (a private copy):
        the section itself; CKDSNN fills its preset's switches here."""
        return section

    @property
    def teacher_mode(self) -> str:
        """``frozen`` or ``released`` (``teacher.mode``, module doc)."""
        return self._teacher_mode

    @property
    def teacher_frames(self) -> str:
        """How the teacher sees frames ``[T, B, C, H, W]`` (``teacher.frames``, module doc)."""
        return self._teacher_frames

    @property
    def label_smoothing(self) -> float:
        """``eps`` of :meth:`cross_entropy` (``train.label_smoothing``)."""
        return self._label_smoothing

    method_name: str = "base"

    @property
    def ce_weight(self) -> float:
        """The weight of ``CE(z_s, y)`` (``distill.ce_weight``)."""
        return self._ce_weight

    def train(self, mode: bool = True) -> "Distiller":
        """Put the student and extras in ``mode``; a frozen teacher always stays in eval."""
        self.training = mode
        self.student.train(mode)
        self.extras.train(mode)
        if self.teacher is not None:
            self.teacher.train(mode and self.teacher_mode == "released")
        return self

    def trainable_modules(self) -> Dict[str, nn.Module]:
        """Modules whose parameters the optimiser updates: the student and every extra."""
        out = {"student": self.student}
        out.update(dict(self.extras.items()))
        return out

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        for module in self.trainable_modules().values():
            yield from module.parameters()

    def teacher_context(self):
        """``inference_mode`` for a frozen teacher, nothing for the released train-mode teacher."""
        if self.teacher_mode == "frozen":
            return torch.inference_mode()
        return contextlib.nullcontext()

    def run_teacher(self, x: torch.Tensor, return_features: bool = True):
        """Teacher forward under :meth:`teacher_context`; outputs are cloned out of inference
        mode so that losses can use them in autograd (as constants).

        Frames ``[T, B, C, H, W]`` go through :func:`teacher_input` with :attr:`teacher_frames`:
        the mean frame, or every frame with ``z_t = 1/T sum_t z_t(x[t])`` and each feature
        ``F_t = 1/T sum_t F_t(x[t])`` (``per_step``)."""
        xin, T = teacher_input(x, self.teacher_frames)
        with self.teacher_context():
            out = self.teacher(xin, return_features=return_features)
            if T is not None:
                out = map_tensors(lambda t: time_mean(t, T), out)
        if self.teacher_mode == "frozen":
            out = map_tensors(torch.Tensor.clone, out)
        return out

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``ce_weight * CE(z_s, y)`` for int labels ``y [B]`` or soft targets ``y [B, K]``
        (Mixup / CutMix, :mod:`spikedistill.data.mix`): see :func:`soft_cross_entropy`.
        ``train.label_smoothing`` (:attr:`label_smoothing`, given at construction) is applied
        once, to either kind of target."""
        return self.ce_weight * soft_cross_entropy(logits, y, self.label_smoothing)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor,
                      ctx=None) -> Tuple[torch.Tensor, Losses]:
        """``(z_s, {name: weighted loss})`` for a batch ``x`` (images ``[B, C, H, W]`` or frames
        ``[T, B, C, H, W]``) with labels ``y`` ``(B,)`` or soft targets ``[B, K]`` (mixup:
        use :meth:`cross_entropy` and, for class indices, :func:`hard_labels`); the loss is the sum of the
        values. ``ctx``: the engine's ``StepContext`` (``epoch``, ``step``, ``progress = step /
        total_steps``, ...) or None; methods without a schedule ignore it."""
        raise NotImplementedError

    def forward_test(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, ctx=None):
        if self.training:
            return self.forward_train(x, y, ctx)
        return self.forward_test(x)


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], obj):
    """Apply ``fn`` to every tensor in a (nested) list/tuple, keeping the structure."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(fn, o) for o in obj)
    return obj


# --------------------------------------------------------------------------------------------
# registry (lives in spikedistill.distill.registry; re-exported here)
# --------------------------------------------------------------------------------------------

from spikedistill.distill.registry import (build_method, get_method, list_methods,  # noqa: E402,F401
                                           method_requires_teacher, register_method)


@register_method("ce")
class CrossEntropy(Distiller):
    """The student alone: ``L = CE(z_s, y)``. Also trains ANN teachers; an ANN given frames
    ``[T, B, C, H, W]`` sees them as :attr:`teacher_frames` says (:func:`teacher_input`), as it
    will when it teaches."""

    requires_teacher = False

    def forward_train(self, x, y, ctx=None):
        if x.dim() == 5 and not getattr(unwrap(self.student), "is_spiking", True):
            xin, T = teacher_input(x, self.teacher_frames)
            logits = time_mean(self.student(xin), T)
        else:
            logits = self.student(x)
        return logits, {"ce": self.cross_entropy(logits, y)}
