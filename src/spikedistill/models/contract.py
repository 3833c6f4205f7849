"""The model contract: what distillation, analysis and export need from a network.

Every student and teacher, built in or adapted (:class:`~spikedistill.models.taps.FeatureTapModel`),
is a :class:`DistillModel`. In the spec's symbols (``method.md``):

``forward(x, return_features=False, timestep_logits=False)``
    ``x`` is a static image batch ``[B, C, H, W]`` (direct encoding: a student repeats it over
    ``T`` timesteps) or, for a student, a frame sequence ``[T, B, C, H, W]`` (each timestep its
    own input, e.g. event-camera frames). Returns the logits ``z`` ``[B, K]`` (for a student
    ``z_s = mean_t z_s[t]``), or ``(z, [F_1, ..., F_n])`` with the ordered feature taps when
    ``return_features``: ``F_i`` is ``[T, B, C, H, W]`` for a student and ``[B, C, H, W]`` for a
    teacher (token features are ``[(T,) B, N, C]``). With ``timestep_logits`` a student returns
    its per-timestep logits ``z_s[t]`` ``[T, B, K]`` in place of ``z_s`` (temporal KD methods).

``feature_names`` / ``feature_channels``
    one name and one channel count ``C_i`` per tap, in order (any number of stages).

``pool(F_n) -> [B, C]``
    the pre-classifier feature: global average pooling (and for a student the mean over T).

``classifier``
    the module producing the logits from the pooled feature (a ``Linear``); ``classifier_weight()``
    is the ``[K, C]`` matrix from the pooled feature to the logits (biases aside), used for CAMs.

``is_spiking``, ``num_classes``; students also ``T`` (settable) and ``spiking_modules()``
    (every module whose output is a spike tensor: what ``analyze`` counts).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn


class DistillModel(nn.Module):
    """Base class of every network spikedistill trains, distils from, analyses or exports."""

    is_spiking: bool = False
    num_classes: int = 0
    #: ordered names of the feature taps (built-ins: their stage modules)
    feature_names: Tuple[str, ...] = ()
    #: channels ``C_i`` of each tap, same order
    feature_channels: Tuple[int, ...] = ()
    #: timesteps of a student (1 for ANNs)
    T: int = 1

    # -- derived -------------------------------------------------------------------------------
    @property
    def stage_channels(self) -> Tuple[int, ...]:
        """Alias of :attr:`feature_channels` (the name used before taps existed)."""
        return tuple(self.feature_channels)

    @property
    def feature_dim(self) -> int:
        """Size ``C`` of the pooled pre-classifier feature."""
        clf = getattr(self, "classifier", None)
        w = self.classifier_weight() if clf is not None else None
        return int(w.shape[1]) if w is not None else int(self.feature_channels[-1])

    def pool(self, last_feature: torch.Tensor) -> torch.Tensor:
        """Pre-classifier feature ``[B, C]`` from the last tap (:func:`global_pool`)."""
        return global_pool(last_feature, self.is_spiking)

    def classifier_weight(self) -> torch.Tensor:
        """``[K, C]``: the classifier's weight (a product for a head of only Linear layers)."""
        return linear_chain_weight(self.classifier)

    def spiking_modules(self) -> List[Tuple[str, nn.Module]]:
        """``(name, module)`` of every module whose output is spikes, in module order."""
        from spikedistill.neurons import LIF
        return [(n, m) for n, m in self.named_modules() if isinstance(m, LIF)]


def spiking_modules_of(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of every spiking layer of ``model``: ``model.spiking_modules()`` for a
    :class:`DistillModel`; for any other module the contract's default rule plus the declared
    spiking modules of each ``DistillModel`` inside it (names prefixed with its path)."""
    if isinstance(model, DistillModel) or hasattr(model, "spiking_modules"):
        return list(model.spiking_modules())
    found = {id(m): (n, m) for n, m in DistillModel.spiking_modules(model)}
    for prefix, sub in model.named_modules():
        if sub is not model and isinstance(sub, DistillModel):
            for n, m in sub.spiking_modules():
                found.setdefault(id(m), (f"{prefix}.{n}" if n else prefix, m))
    order = {id(m): i for i, (_, m) in enumerate(model.named_modules())}
    return sorted(found.values(), key=lambda nm: order.get(id(nm[1]), len(order)))


def global_pool(feature: torch.Tensor, time_major: bool) -> torch.Tensor:
    """``[B, C]`` from a map ``[(T,) B, C, H, W]`` (mean over H, W) or tokens ``[(T,) B, N, C]``
    (mean over N); for a time-major (student) feature also the mean over T."""
    x = feature
    if time_major:
        x = x.mean(dim=0)
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x.mean(dim=1)
    if x.dim() == 2:
        return x
    raise ValueError(f"cannot pool a feature of shape {tuple(feature.shape)}")


def feature_channel_count(feature: torch.Tensor, time_major: bool) -> int:
    """Channels of a tap: dim 1 of ``[B, C, H, W]`` (dim 2 with a leading T); the last dim of
    tokens ``[(T,) B, N, C]`` or of vectors ``[(T,) B, C]``."""
    d = feature.dim() - (1 if time_major else 0)
    if d == 4:
        return int(feature.shape[-3])
    return int(feature.shape[-1])


def linear_chain_weight(module: nn.Module) -> torch.Tensor:
    """``W_n ... W_1`` of a ``Linear`` or a ``Sequential`` made only of ``Linear`` layers."""
    if isinstance(module, nn.Linear):
        return module.weight
    layers = list(module) if isinstance(module, nn.Sequential) else []
    if layers and all(isinstance(m, nn.Linear) for m in layers):
        w = layers[0].weight
        for layer in layers[1:]:
            w = layer.weight @ w
        return w
    raise TypeError(f"classifier {type(module).__name__} is not a Linear (or a chain of Linears); "
                    "a CAM needs the [K, C] matrix from the pooled feature to the logits")



class DistillationHead(nn.Linear):
    """A classifier ``Linear(C, K)`` with DeiT's second (distillation) head ``kd``
    (Touvron et al., ICML 2021; Spike-driven Transformer V2's ``head_kd``), both fed the same
    pre-classifier feature ``h`` (per timestep or pooled, as the model calls its classifier)::

        training: returns z = W h + b and keeps z_kd = W_kd h + b_kd for the method to read
                  (:meth:`pop_kd`)
        eval:     returns (z + z_kd) / 2, the average of both heads (DeiT's inference)

    It *is* the class head (its ``weight`` / ``bias``, so state-dict keys and
    ``classifier_weight()`` are unchanged), with the distillation head as submodule ``kd``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.kd = nn.Linear(in_features, out_features, bias=bias)
        nn.init.trunc_normal_(self.kd.weight, std=0.02)   # DeiT / SDT-V2 init of the head
        if self.kd.bias is not None:
            nn.init.zeros_(self.kd.bias)
        self._kd_out: Optional[torch.Tensor] = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = nn.functional.linear(h, self.weight, self.bias)
        z_kd = self.kd(h)
        if self.training:
            self._kd_out = z_kd
            return z
        return (z + z_kd) / 2

    def eval_weight_bias(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``((W + W_kd) / 2, (b + b_kd) / 2)``: the single ``Linear`` equal to the eval output
        (both heads are linear in the same input), for exporters."""
        bias = None if self.bias is None else (self.bias + self.kd.bias) / 2
        return (self.weight + self.kd.weight) / 2, bias

    def pop_kd(self, like: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The distillation head's logits of the last training forward (then forgotten). With
        ``like`` (the model's logits ``[B, K]``) a per-timestep output ``[T, B, K]`` or
        ``[T B, K]`` is averaged over T, as the model averages its class head."""
        out, self._kd_out = self._kd_out, None
        if out is None:
            raise RuntimeError("no distillation-head output: run the model in train mode first")
        if like is None or out.shape == like.shape:
            return out
        if out.dim() == like.dim() + 1 and out.shape[1:] == like.shape:
            return out.mean(dim=0)
        if (out.dim() == like.dim() and out.shape[1:] == like.shape[1:]
                and out.shape[0] % like.shape[0] == 0):
            return out.reshape(-1, *like.shape).mean(dim=0)
        raise RuntimeError(f"distillation head output {tuple(out.shape)} does not match the "
                           f"model's logits {tuple(like.shape)}")


def add_distillation_head(model: nn.Module) -> DistillationHead:
    """Replace ``model.classifier`` (a ``Linear``, wherever it sits in the module tree) by a
    :class:`DistillationHead` that keeps its weights and adds the distillation head; returns
    it. ConfigError naming ``model.distill_head`` when the classifier is not a ``Linear``."""
    from spikedistill.errors import ConfigError

    clf = getattr(model, "classifier", None)
    if isinstance(clf, DistillationHead):
        return clf
    if type(clf) is not nn.Linear:
        raise ConfigError("config key 'model.distill_head': the model's classifier must be a "
                          f"Linear to add a distillation head, got {type(clf).__name__}")
    path = next((n for n, m in model.named_modules() if m is clf and n), None)
    if path is None:
        raise ConfigError("config key 'model.distill_head': the classifier is not a submodule "
                          "of the model")
    head = DistillationHead(clf.in_features, clf.out_features, bias=clf.bias is not None)
    head.to(device=clf.weight.device, dtype=clf.weight.dtype)
    head.weight, head.bias = clf.weight, clf.bias
    head.train(clf.training)                # a model already in eval mode stays in eval mode
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attr, head)
    return head


def distillation_head(model: nn.Module) -> Optional[DistillationHead]:
    """The model's :class:`DistillationHead`, or None when it has none."""
    return next((m for m in model.modules() if isinstance(m, DistillationHead)), None)

def is_frames(x: torch.Tensor) -> bool:
    """True for a frame sequence ``[T, B, C, H, W]`` (False for images ``[B, C, H, W]``)."""
    return x.dim() == 5


def time_major_input(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T, B, ...]`` for a student: frames pass unchanged (their T must equal the model's),
    a static batch ``[B, ...]`` is repeated T times (direct encoding)."""
    if is_frames(x):
        if x.shape[0] != T:
            raise ValueError(f"frame input has {x.shape[0]} timesteps but the model runs T={T}; "
                             "set model.T to the number of frames")
        return x
    return x.unsqueeze(0).expand(T, *x.shape)


def contract_problems(model: nn.Module, x: torch.Tensor) -> List[str]:
    """Everything in which ``model`` breaks the contract on input ``x`` (empty if none).

    Checks the attributes, the shapes of the logits, taps and per-timestep logits, that
    ``classifier(pool(F_n))`` (through the head) gives the logits where the head is linear, and
    for students that the mean of the per-timestep logits is the logits."""
    problems: List[str] = []
    for attr in ("is_spiking", "num_classes", "feature_names", "feature_channels", "classifier"):
        if not hasattr(model, attr):
            problems.append(f"missing attribute {attr}")
    if problems:
        return problems
    K = int(model.num_classes)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits, feats = model(x, return_features=True)
            B = x.shape[1] if is_frames(x) else x.shape[0]
            if tuple(logits.shape) != (B, K):
                problems.append(f"logits {tuple(logits.shape)}, expected {(B, K)}")
            if len(feats) != len(model.feature_names) or len(feats) != len(model.feature_channels):
                problems.append(f"{len(feats)} features for names {model.feature_names} and "
                                f"channels {model.feature_channels}")
            for name, f, c in zip(model.feature_names, feats, model.feature_channels):
                lead = (model.T, B) if model.is_spiking else (B,)
                if tuple(f.shape[:len(lead)]) != lead:
                    problems.append(f"feature {name} {tuple(f.shape)} does not start with {lead}")
                if feature_channel_count(f, model.is_spiking) != c:
                    problems.append(f"feature {name} {tuple(f.shape)} has not {c} channels")
            pooled = model.pool(feats[-1])
            if tuple(pooled.shape) != (B, model.feature_dim):
                problems.append(f"pool(F_n) {tuple(pooled.shape)}, expected {(B, model.feature_dim)}")
            W = model.classifier_weight()
            if tuple(W.shape) != (K, model.feature_dim):
                problems.append(f"classifier_weight {tuple(W.shape)}, expected {(K, model.feature_dim)}")
            if model.is_spiking:
                ts = model(x, timestep_logits=True)
                if tuple(ts.shape) != (model.T, B, K):
                    problems.append(f"timestep logits {tuple(ts.shape)}, expected {(model.T, B, K)}")
                elif not torch.allclose(ts.mean(0), logits, atol=1e-4, rtol=1e-4):
                    problems.append("mean over T of the timestep logits differs from the logits")
                if not model.spiking_modules():
                    problems.append("a spiking model without spiking_modules()")
    finally:
        model.train(was)
    return problems


__all__ = ["DistillModel", "DistillationHead", "add_distillation_head", "contract_problems",
           "spiking_modules_of",
           "distillation_head", "feature_channel_count", "global_pool",
           "is_frames", "linear_chain_weight", "time_major_input"]

