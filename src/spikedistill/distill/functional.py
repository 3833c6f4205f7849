"""Pure losses and activation maps of the distillation methods.

Symbols follow ``shared/docs/method.md``: B batch, T timesteps, K classes, C channels, H x W the
spatial size of a stage; ``z_s``, ``z_t`` student / teacher logits ``(B, K)``; ``F_s`` a student
stage output (time-major ``[T, B, C, H, W]``), ``F_t`` a teacher stage output ``[B, C, H, W]``.

Every loss casts its inputs to float32 first, so the functions are safe under bf16/fp16 autocast,
and returns a 0-dim float32 tensor; the CAMs are computed with autocast off (float32 even
inside an autocast region). Nothing here holds state or touches a model's parameters,
except :func:`grad_cam` which differentiates a given graph.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMALIZE_MODES = ("batch_minmax", "sample_minmax", "none")
SCALING_MODES = ("softmax", "zscore", "l2", "none")
NLD_MODES = ("released", "paper", "fixed", "none")

#: the released code's ``1e-3`` added to the maximum in min-max normalisation
MINMAX_EPS = 1e-3
#: the released code's ``1e-10`` added to both probabilities before the log in SAMD
RELEASED_LOG_EPS = 1e-10
#: guards divisions by zero in the z-score / L2 / sum normalisations
_DIV_EPS = 1e-8


# --------------------------------------------------------------------------------------------
# activation maps
# --------------------------------------------------------------------------------------------

def time_average(stage_output_tmajor: torch.Tensor) -> torch.Tensor:
    """``mean_t F_s[t]``: a time-major ``[T, B, ...]`` tensor averaged over T -> ``[B, ...]``."""
    if stage_output_tmajor.dim() < 2:
        raise ValueError(f"expected a time-major tensor [T, B, ...], got shape "
                         f"{tuple(stage_output_tmajor.shape)}")
    return stage_output_tmajor.mean(dim=0)


def spike_activation_map(stage_output_tmajor: torch.Tensor) -> torch.Tensor:
    """Student spike activation map (SAM): ``M_s[b, h, w] = sum_t sum_c F_s[t, b, c, h, w]``.

    Input ``[T, B, C, H, W]`` (time-major), output ``(B, H, W)`` in float32.
    """
    if stage_output_tmajor.dim() != 5:
        raise ValueError(f"spike_activation_map expects a time-major stage output [T, B, C, H, W], "
                         f"got shape {tuple(stage_output_tmajor.shape)}")
    return stage_output_tmajor.float().sum(dim=(0, 2))


def _fp32(t: torch.Tensor):
    """Autocast off on ``t``'s device: a CAM's ``einsum`` under bf16/fp16 autocast would run
    (and round its output) in the low precision even on float32 inputs."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _check_cam_inputs(features: torch.Tensor, fc_weight: torch.Tensor, what: str) -> None:
    """ValueError unless ``features`` is ``[B, C, H, W]`` and ``fc_weight`` is ``[K, C]``."""
    if features.dim() != 4:
        raise ValueError(f"{what} expects features [B, C, H, W], got shape "
                         f"{tuple(features.shape)}")
    if fc_weight.dim() != 2 or fc_weight.shape[1] != features.shape[1]:
        raise ValueError(f"classifier weight of shape {tuple(fc_weight.shape)} does not fit "
                         f"features with {features.shape[1]} channels (expected [K, C])")


def class_activation_map(features: torch.Tensor, fc_weight: torch.Tensor,
                         classes: torch.Tensor) -> torch.Tensor:
    """Class activation map (CAM): ``M_t[b] = ReLU( sum_c w[k_b, c] * F_t[b, c] )``.

    ``features`` ``[B, C, H, W]``, ``fc_weight`` ``[K, C]`` (the classifier's weight; its bias is
    not part of a CAM), ``classes`` ``(B,)`` long: the class ``k_b`` of each sample.
    Output ``(B, H, W)`` in float32.
    """
    _check_cam_inputs(features, fc_weight, "class_activation_map")
    w = fc_weight.float()[classes.long()]                      # (B, C)
    with _fp32(features):
        return F.relu(torch.einsum("bc,bchw->bhw", w, features.float()))


def grad_cam(class_scores: torch.Tensor, activation: torch.Tensor,
             classes: torch.Tensor, *, retain_graph: bool = False) -> torch.Tensor:
    """Grad-CAM of ``activation`` for the chosen classes.

    ``class_scores`` ``(B, K)`` must have been computed from ``activation`` ``[B, C, H, W]`` in an
    autograd graph (e.g. a teacher forward with ``torch.enable_grad()`` and an input that
    requires grad; frozen parameters are fine). With ``y_k = class_scores[b, k_b]``::

        a[b, c] = 1/(H W) * sum_{h,w} d y_k / d A[b, c, h, w]
        M[b]    = ReLU( sum_c a[b, c] * A[b, c] )

    Only ``activation`` is differentiated (``torch.autograd.grad``), so no gradient is
    accumulated into any parameter. The map is detached, in float32, shape ``(B, H, W)``.
    ``retain_graph=True`` keeps the graph for a further call (another stage).
    For a GAP + Linear head, Grad-CAM equals the CAM divided by ``H * W``.
    """
    if activation.dim() != 4:
        raise ValueError(f"grad_cam expects an activation [B, C, H, W], got shape "
                         f"{tuple(activation.shape)}")
    if not activation.requires_grad:
        raise ValueError("grad_cam: the activation is not part of an autograd graph; run the "
                         "network under torch.enable_grad() with an input that requires grad")
    selected = class_scores.gather(1, classes.long().view(-1, 1)).sum()
    (grads,) = torch.autograd.grad(selected, activation, retain_graph=retain_graph)
    alpha = grads.float().mean(dim=(2, 3))                     # (B, C)
    with _fp32(activation):
        return F.relu(torch.einsum("bc,bchw->bhw", alpha, activation.detach().float()))


# --------------------------------------------------------------------------------------------
# map normalisation and scaling to distributions
# --------------------------------------------------------------------------------------------

def normalize_map(m: torch.Tensor, mode: str = "batch_minmax") -> torch.Tensor:
    """Normalise maps ``(B, H, W)`` before the scaling.

    - ``batch_minmax`` (released code): ``m' = m - min(m)`` with the minimum over the *whole
      batch*, then ``m' / (max(m') + 1e-3)``: values in ``[0, 1)``.
    - ``sample_minmax``: the same per sample (min and max over H, W of each map).
    - ``none``: ``m`` unchanged.
    """
    m = m.float()
    if mode == "none":
        return m
    if mode == "batch_minmax":
        shifted = m - m.min()
        return shifted / (shifted.max() + MINMAX_EPS)
    if mode == "sample_minmax":
        flat = m.reshape(m.shape[0], -1)
        shifted = flat - flat.min(dim=1, keepdim=True).values
        return (shifted / (shifted.max(dim=1, keepdim=True).values + MINMAX_EPS)).view_as(m)
    raise ValueError(f"unknown map normalisation {mode!r}; expected one of {', '.join(NORMALIZE_MODES)}")


def _scaled_logits(flat: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "softmax":
        return flat
    if mode == "zscore":
        mean = flat.mean(dim=1, keepdim=True)
        std = flat.std(dim=1, keepdim=True, unbiased=False)
        return (flat - mean) / (std + _DIV_EPS)
    if mode == "l2":
        return flat / (flat.norm(dim=1, keepdim=True) + _DIV_EPS)
    raise ValueError(f"unknown map scaling {mode!r}; expected one of {', '.join(SCALING_MODES)}")


def log_scale_map(m: torch.Tensor, mode: str = "softmax", tau: float = 2.0) -> torch.Tensor:
    """``log P`` of :func:`scale_map` computed stably, shape ``(B, H*W)``."""
    flat = m.float().reshape(m.shape[0], -1)
    if mode == "none":
        pos = flat.clamp_min(0) + _DIV_EPS
        return pos.log() - pos.sum(dim=1, keepdim=True).log()
    return F.log_softmax(_scaled_logits(flat, mode) / tau, dim=1)


def scale_map(m: torch.Tensor, mode: str = "softmax", tau: float = 2.0) -> torch.Tensor:
    """Turn maps ``(B, H, W)`` into distributions ``P`` over the ``H*W`` positions, ``(B, H*W)``.

    With ``v = vec(m)`` per sample:

    - ``softmax``: ``P = softmax(v / tau)`` (the method's scaling).
    - ``zscore``: ``P = softmax(((v - mean(v)) / (std(v) + 1e-8)) / tau)`` (population std).
    - ``l2``: ``P = softmax((v / (||v||_2 + 1e-8)) / tau)``.
    - ``none``: no scaling, only sum-normalisation: ``P = (max(v, 0) + 1e-8) / sum(max(v, 0) + 1e-8)``
      (``tau`` unused; an all-zero map becomes uniform).
    """
    return log_scale_map(m, mode, tau).exp()


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------

def _kl_from_log(log_p_t: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``sum_i p_t,i (log p_t,i - log q_i)`` averaged over the batch (rows)."""
    p_t = log_p_t.exp()
    return (p_t * (log_p_t - log_q)).sum() / log_p_t.shape[0]


def samd_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, *, tau: float = 2.0,
              normalize: str = "batch_minmax", scaling: str = "softmax",
              tau_squared: bool = False, log_eps: float = RELEASED_LOG_EPS) -> torch.Tensor:
    """Saliency-scaled activation map distillation.

    ``P_s = scale(normalize(M_s))``, ``P_t = scale(normalize(M_t))`` (see :func:`normalize_map`,
    :func:`scale_map`, temperature ``tau``), then::

        L_SAMD = (tau^2 if tau_squared else 1) * 1/B * sum_b KL(P_t[b] || P_s[b])

    With ``log_eps > 0`` (the released code, 1e-10) the KL is
    ``sum (P_t + eps) * (log(P_t + eps) - log(P_s + eps))``; with ``log_eps = 0`` it uses exact
    log-probabilities. Maps ``(B, H, W)`` of different size raise ``ValueError``.
    """
    if student_map.shape != teacher_map.shape:
        raise ValueError(f"SAMD: student map {tuple(student_map.shape)} and teacher map "
                         f"{tuple(teacher_map.shape)} differ in shape (B, H, W); the two stages "
                         "must have the same spatial resolution")
    s = normalize_map(student_map, normalize)
    t = normalize_map(teacher_map.detach(), normalize)
    log_p_s = log_scale_map(s, scaling, tau)
    log_p_t = log_scale_map(t, scaling, tau)
    if log_eps > 0:
        p_t = log_p_t.exp() + log_eps
        p_s = log_p_s.exp() + log_eps
        loss = (p_t * (p_t.log() - p_s.log())).sum() / p_t.shape[0]
    else:
        loss = _kl_from_log(log_p_t, log_p_s)
    return loss * (tau * tau) if tau_squared else loss


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
            tau: float = 4.0) -> torch.Tensor:
    """Hinton KD: ``tau^2 * 1/B * sum_b KL( softmax(z_t/tau) || softmax(z_s/tau) )``."""
    log_p_t = F.log_softmax(teacher_logits.detach().float() / tau, dim=1)
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    return (tau * tau) * _kl_from_log(log_p_t, log_p_s)


def nld_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, tau: float = 2.0,
             mode: str = "released", weight: float = 0.1, noise: Optional[torch.Tensor] = None,
             sigma: Optional[float] = None) -> torch.Tensor:
    """Noise-smoothed logits distillation.

    Per sample ``mu = mean_k z_s`` and ``sigma_s = std_k z_s`` (unbiased, over the K classes);
    ``n ~ N(0, I)`` of shape ``(B, K)`` (``noise`` when given, else fresh ``randn``); ``w = weight``:

    - ``released``: ``eps = mu + sigma_s^2 * n``;
      ``y_soft = (1 - w) softmax(z_s / tau) + w softmax(eps / tau)``
    - ``paper``:    ``eps = mu + sigma_s * n``;  ``y_soft = softmax((z_s + w eps) / tau)``
    - ``fixed``:    ``eps = mu + sigma * n`` with the given constant ``sigma``; applied like ``paper``
    - ``none``:     ``y_soft = softmax(z_s / tau)`` (plain KD)

    ``L_NLD = tau^2 * 1/B * sum_b KL( softmax(z_t / tau) || y_soft )``. Gradients flow through
    ``mu`` and ``sigma_s`` (reparameterised noise).
    """
    z_s = student_logits.float()
    log_p_t = F.log_softmax(teacher_logits.detach().float() / tau, dim=1)
    if mode == "none":
        log_y = F.log_softmax(z_s / tau, dim=1)
        return (tau * tau) * _kl_from_log(log_p_t, log_y)
    if noise is None:
        n = torch.randn_like(z_s)
    else:
        if noise.shape != z_s.shape:
            raise ValueError(f"NLD noise has shape {tuple(noise.shape)}, expected {tuple(z_s.shape)}")
        n = noise.float()
    mu = z_s.mean(dim=1, keepdim=True)
    if mode == "released":
        var = z_s.var(dim=1, keepdim=True, unbiased=True)
        eps = mu + var * n
        y = (1.0 - weight) * F.softmax(z_s / tau, dim=1) + weight * F.softmax(eps / tau, dim=1)
        log_y = y.log()
    elif mode in ("paper", "fixed"):
        if mode == "paper":
            std = z_s.std(dim=1, keepdim=True, unbiased=True)
        else:
            if sigma is None:
                raise ValueError("NLD mode 'fixed' needs a noise standard deviation (sigma)")
            std = torch.full_like(mu, float(sigma))
        eps = mu + std * n
        log_y = F.log_softmax((z_s + weight * eps) / tau, dim=1)
    else:
        raise ValueError(f"unknown NLD mode {mode!r}; expected one of {', '.join(NLD_MODES)}")
    return (tau * tau) * _kl_from_log(log_p_t, log_y)


FEATURE_REDUCTIONS = ("batch_sum", "mean")


def feature_mse_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor,
                     reduction: str = "mean") -> torch.Tensor:
    """KDSNN feature loss between the time-averaged (and adapted) student feature ``F_s'`` and
    the teacher's ``F_t``, both ``[B, C, H, W]``:

    - ``mean``: ``mean((F_s' - F_t)^2)`` over all ``B C H W`` elements;
    - ``batch_sum``: ``1/B sum((F_s' - F_t)^2)`` (BKDSNN's ``KDSNNLoss``: ``MSELoss(sum) / N``),
      ``C H W`` times the ``mean``.
    """
    s, t = student_feature.float(), teacher_feature.detach().float()
    if s.shape != t.shape:
        raise ValueError(f"feature KD: student feature {tuple(s.shape)} and teacher feature "
                         f"{tuple(t.shape)} differ in shape (use an adapter for channels)")
    if reduction == "batch_sum":
        return ((s - t) ** 2).sum() / s.shape[0]
    if reduction == "mean":
        return F.mse_loss(s, t, reduction="mean")
    raise ValueError(f"unknown feature reduction {reduction!r}; expected one of "
                     f"{', '.join(FEATURE_REDUCTIONS)}")


def channel_mask(batch: int, channels: int, ratio: float, *, device=None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """BKDSNN's random channel mask ``(B, C, 1, 1)``: each channel of each sample is dropped
    (0) with probability ``ratio`` and kept (1) otherwise."""
    u = torch.rand(batch, channels, 1, 1, device=device, generator=generator)
    return (u >= ratio).float()


def blurred_feature_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor,
                         generator: nn.Module, mask: torch.Tensor,
                         align: Optional[nn.Module] = None) -> torch.Tensor:
    """BKDSNN blurred KD: ``1/B * sum( (G(A(F_s) * mask) - F_t)^2 )``.

    ``student_feature`` ``[B, C_s, H, W]`` (time-averaged); ``A`` the optional ``align`` module
    (BKDSNN's 1x1 conv with bias, ``C_s -> C_t``, used when the widths differ; identity
    otherwise); ``mask`` ``(B, C, 1, 1)`` of 0/1 over the channels of ``A(F_s)`` (the *aligned*
    channels, as ``BRDLoss`` masks after aligning); ``generator`` ``G`` restores a
    ``[B, C_t, H, W]`` feature (conv3x3 - ReLU - conv3x3 at teacher width).
    """
    f = student_feature.float()
    if align is not None:
        f = align(f).float()
    masked = f * mask.to(f.device, torch.float32)
    restored = generator(masked).float()
    t = teacher_feature.detach().float()
    if restored.shape != t.shape:
        raise ValueError(f"BKDSNN: restored feature {tuple(restored.shape)} and teacher feature "
                         f"{tuple(t.shape)} differ in shape")
    return ((restored - t) ** 2).sum() / t.shape[0]


def wsld_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
              tau: float = 2.0) -> torch.Tensor:
    """Weighted soft-label distillation (WSLD, Zhou et al., ICLR 2021), BKDSNN's logit term
    (``get_logits_loss`` of the released code)::

        CE_soft[b] = - sum_k softmax(z_t[b] / tau)_k log softmax(z_s[b] / tau)_k
        r_b = CE(z_s[b], y_b) / (CE(z_t[b], y_b) + 1e-7)      (temperature 1, detached)
        w_b = 1 - exp(-max(r_b, 0))
        L   = tau^2 * 1/B sum_b w_b CE_soft[b]

    ``labels`` class indices ``(B,)`` or soft / one-hot targets ``[B, K]`` (used as given, as
    the code's ``one_hot_label``). The weight is a constant; the soft term is a cross-entropy
    (not a KL: it includes the teacher's entropy, which has no gradient).
    """
    z_s, z_t = student_logits.float(), teacher_logits.detach().float()
    soft = -(F.softmax(z_t / tau, dim=1) * F.log_softmax(z_s / tau, dim=1)).sum(dim=1)
    target = (F.one_hot(labels.long(), z_s.shape[1]).float() if labels.dim() == 1
              else labels.float())
    ce_s = -(target * F.log_softmax(z_s.detach(), dim=1)).sum(dim=1)
    ce_t = -(target * F.log_softmax(z_t, dim=1)).sum(dim=1)
    w = 1.0 - torch.exp(-(ce_s / (ce_t + 1e-7)).clamp_min(0.0))
    return (tau * tau) * (w * soft).mean()


def laf_loss(student_pooled: torch.Tensor, teacher_logits: torch.Tensor,
             classifier_weight: torch.Tensor, classifier_bias: Optional[torch.Tensor] = None, *,
             tau: float = 1.0) -> torch.Tensor:
    """EnOF's LAF loss: the student's pre-classifier feature ``f_s = pool(F_s)`` ``(B, C)`` goes
    through the *teacher's* classifier, ``z_laf = W_t f_s + b_t``, and
    ``L_LAF = tau^2 * 1/B * sum_b KL( softmax(z_t / tau) || softmax(z_laf / tau) )``.

    The classifier's weight and bias are detached: no gradient reaches the teacher.
    """
    w = classifier_weight.detach().float()
    b = None if classifier_bias is None else classifier_bias.detach().float()
    z_laf = F.linear(student_pooled.float(), w, b)
    return kd_loss(z_laf, teacher_logits, tau=tau)


# --------------------------------------------------------------------------------------------
# e2KD (Parchami-Araghi et al., "Good Teachers Explain: Explanation-Enhanced Knowledge
# Distillation", ECCV 2024; github.com/m-parchami/GoodTeachersExplain)
# --------------------------------------------------------------------------------------------

def resize_maps(m: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of maps ``(B, H, W)`` to ``size = (H', W')`` (``align_corners=False``, as
    torchvision's ``resize`` of a tensor when upsampling), float32 ``(B, H', W')``."""
    return F.interpolate(m.float().unsqueeze(1), size=tuple(int(v) for v in size), mode="bilinear",
                         align_corners=False, antialias=False).squeeze(1)


def explanation_cosine_loss(student_map: torch.Tensor, teacher_map: torch.Tensor,
                            size=None) -> torch.Tensor:
    """e2KD's explanation term: ``1/B sum_b (1 - cos(vec(R(E_s[b])), vec(R(E_t[b]))))``.

    ``E_s``, ``E_t`` ``(B, H, W)`` are the student's and the teacher's explanations of the same
    class (the teacher's prediction); the teacher's is a constant. ``R`` is the identity, or with
    ``size = (H', W')`` a bilinear resize to that size (:func:`resize_maps`; the released code
    resizes both Grad-CAMs to the input image size before the cosine, so the two maps may then
    differ in H, W). The cosine is taken between the flattened maps, so it ignores their scale
    (a Grad-CAM and the CAM it equals up to ``1 / (H W)`` give the same loss; the resize is
    linear). An all-zero map has cosine 0 (torch's ``1e-8`` guard). Without ``size``, maps of
    different shape raise ``ValueError``.
    """
    if size is not None:
        student_map, teacher_map = resize_maps(student_map, size), resize_maps(teacher_map.detach(), size)
    if student_map.shape != teacher_map.shape:
        raise ValueError(f"e2KD: student explanation {tuple(student_map.shape)} and teacher "
                         f"explanation {tuple(teacher_map.shape)} differ in shape (B, H, W)")
    s = student_map.float().reshape(student_map.shape[0], -1)
    t = teacher_map.detach().float().reshape(teacher_map.shape[0], -1)
    return (1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()


# --------------------------------------------------------------------------------------------
# CAT-KD (Guo, Yan, Li, Lin, "Class Attention Transfer Based Knowledge Distillation", CVPR 2023;
# github.com/GzyAftermath/CAT-KD, mdistiller/distillers/CAT_KD.py)
# --------------------------------------------------------------------------------------------

def class_activation_maps(features: torch.Tensor, fc_weight: torch.Tensor) -> torch.Tensor:
    """The CAMs of every class, without ReLU: ``A[b, k] = sum_c W[k, c] F[b, c]``.

    ``features`` ``[B, C, H, W]``, ``fc_weight`` ``[K, C]`` -> ``[B, K, H, W]`` in float32 (CAT-KD
    turns the classifier into a 1x1 convolution applied before the pooling).
    """
    _check_cam_inputs(features, fc_weight, "class_activation_maps")
    with _fp32(features):
        return torch.einsum("kc,bchw->bkhw", fc_weight.float(), features.float())


def cat_loss(student_cams: torch.Tensor, teacher_cams: torch.Tensor, *, resolution: int = 2,
             normalize: bool = False) -> torch.Tensor:
    """CAT-KD's class attention transfer: ``MSE(N(P(A_s)), N(P(A_t)))``.

    ``A_s``, ``A_t`` ``[B, K, H, W]`` (the spatial sizes may differ), ``P`` adaptive average
    pooling to ``resolution x resolution``, ``N`` (``normalize=True``) divides each pooled map by
    its L2 norm over the positions (``F.normalize`` over H, W), and the MSE is the mean over all
    ``B K r^2`` elements, as in ``CAT_loss`` of the released code.
    """
    if student_cams.shape[:2] != teacher_cams.shape[:2]:
        raise ValueError(f"CAT-KD: student CAMs {tuple(student_cams.shape)} and teacher CAMs "
                         f"{tuple(teacher_cams.shape)} differ in batch or class count")
    size = (int(resolution), int(resolution))
    s = F.adaptive_avg_pool2d(student_cams.float(), size)
    t = F.adaptive_avg_pool2d(teacher_cams.detach().float(), size)
    if normalize:
        s = s / s.flatten(2).norm(dim=2).clamp_min(1e-12)[..., None, None]
        t = t / t.flatten(2).norm(dim=2).clamp_min(1e-12)[..., None, None]
    return F.mse_loss(s, t, reduction="mean")


# --------------------------------------------------------------------------------------------
# per-timestep logits [T, B, K]
# --------------------------------------------------------------------------------------------

def _check_timesteps(z: torch.Tensor, what: str) -> None:
    if z.dim() != 3:
        raise ValueError(f"{what} expects per-timestep logits [T, B, K], got shape "
                         f"{tuple(z.shape)}")


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """Class indices ``[B]`` of a target: ``y`` itself for int labels ``[B]``, the dominant
    class ``argmax_k y_k`` of soft targets ``[B, K]`` (for a Mixup / CutMix target, the label
    with weight ``max(lam, 1 - lam)``; at ``lam = 1/2`` the lower class index)."""
    return y if y.dim() == 1 else y.argmax(dim=1)


# TKS (Dong, Zhao, Zeng, "Temporal Knowledge Sharing enable Spiking Neural Network Learning
# from Past and Future", IEEE TAI 2024, arXiv:2304.06540; code: the TKS repository on
# BrainCog, model ``metarightsltet`` and ``Custom_CrossEntropy_PSKD`` in train_main.py)

def tks_target_logits(timestep_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """TKS's temporal self-teacher: ``S[b] = sum_t m[t, b] z[t, b]`` with
    ``m[t, b] = 1[argmax_k z[t, b, k] = y_b]``: the sum of the logits of the timesteps that
    classify the sample correctly (all zeros, hence a uniform target, when none does).
    ``y`` class indices ``(B,)`` or soft targets ``[B, K]`` (their argmax). Output ``[B, K]``;
    the gradient flows through ``S`` as in the released code (detach it for a constant target).
    """
    _check_timesteps(timestep_logits, "tks_target_logits")
    z = timestep_logits.float()
    cls = hard_labels(y)
    mask = (z.argmax(dim=-1) == cls.view(1, -1)).float()        # [T, B]
    return (z * mask.unsqueeze(-1)).sum(dim=0)


def tks_loss(timestep_logits: torch.Tensor, target_logits: torch.Tensor, *,
             tau: float = 3.0) -> torch.Tensor:
    """TKS's sharing term, as the released code computes it::

        L_TKS = 1/T sum_t tau^2 * 1/B sum_b sum_k -softmax(S[b] / tau)_k * log softmax(z[t, b])_k

    a soft cross-entropy of each timestep's (unsoftened) prediction against the softened
    self-teacher ``S`` (:func:`tks_target_logits`). The paper's total loss is
    ``alpha_e * CE(mean_t z[t], y) + (1 - alpha_e) * L_TKS``.
    """
    _check_timesteps(timestep_logits, "tks_loss")
    z = timestep_logits.float()
    target = F.softmax(target_logits.float() / tau, dim=-1)       # [B, K]
    log_q = F.log_softmax(z, dim=-1)                               # [T, B, K]
    per_t = -(target.unsqueeze(0) * log_q).sum(dim=-1).mean(dim=1)  # [T]
    return (tau * tau) * per_t.mean()


# TDD (Yu, Zhao, Liu, Yang, Wang, Li, Wang, "Efficient Logit-based Knowledge Distillation of Deep
# Spiking Neural Networks for Full-Range Timestep Deployment", ICML 2025, arXiv:2501.15925; code
# github.com/Intelli-Chip-Lab/snn_temporal_decoupling_distillation, model/layer.py make_teacher)

def tdd_target_logits(timestep_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """TDD's temporal self-teacher: the *mean* of the logits of the timesteps that classify
    the sample correctly, ``S[b] = sum_t m[t, b] z[t, b] / (sum_t m[t, b] + 1e-8)`` with
    ``m[t, b] = 1[argmax_k z[t, b, k] = y_b]`` (all zeros, a uniform target, when none does).
    ``y`` class indices ``(B,)`` or soft targets ``[B, K]`` (their argmax). Output ``[B, K]``
    with gradient; the method detaches it, as the released code does."""
    _check_timesteps(timestep_logits, "tdd_target_logits")
    z = timestep_logits.float()
    mask = (z.argmax(dim=-1) == hard_labels(y).view(1, -1)).float()   # [T, B]
    total = (z * mask.unsqueeze(-1)).sum(dim=0)
    return total / (mask.sum(dim=0).unsqueeze(-1) + 1e-8)


# SeAl-KD (arXiv:2605.14252; code github.com/KaiSUN1/SeAl, model/layer.py
# align_teacher_student_logits (ELA) and time_step_kd_loss (STA))

def error_aware_align(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      y: torch.Tensor):
    """SeAl-KD's error-aware logit alignment (ELA) of one timestep ``[B, K]``: for every sample
    the student gets wrong (``w = argmax z_s != y``) the student's logit of ``w`` is replaced by
    its logit of ``y`` (so the gradient of that slot flows to ``z_s[y]``) and the teacher's
    logits of ``y`` and ``w`` both become ``min(z_t[y], z_t[w])``; correct samples are unchanged.
    Returns ``(s', t')``."""
    z_s, z_t = student_logits.float(), teacher_logits.float()
    cls = hard_labels(y).long()
    pred = z_s.argmax(dim=1)
    wrong = (pred != cls).float().unsqueeze(1)                         # [B, 1]
    k = z_s.shape[1]
    m_w = F.one_hot(pred, k).float() * wrong                           # the wrong class slot
    m_y = F.one_hot(cls, k).float() * wrong
    s_y = z_s.gather(1, cls.view(-1, 1))
    s_al = z_s * (1.0 - m_w) + m_w * s_y
    t_min = torch.minimum(z_t.gather(1, cls.view(-1, 1)), z_t.gather(1, pred.view(-1, 1)))
    both = ((m_w + m_y) > 0).float()
    t_al = z_t * (1.0 - both) + both * t_min
    return s_al, t_al


def similarity_temporal_targets(timestep_logits: torch.Tensor) -> torch.Tensor:
    """SeAl-KD's similarity-aware temporal alignment (STA) targets ``[T, B, K]`` (detached)::

        c[t]      = (ln K - H(softmax(z[t]))) / ln K          (confidence; H with p log(p + 1e-8))
        s[i, j]   = c[j] * cos(z[i], z[j])                      (i != j)
        w[i, :]   = softmax_j s[i, j]   over j != i
        target[i] = sum_j w[i, j] z[j]
    """
    _check_timesteps(timestep_logits, "similarity_temporal_targets")
    z = timestep_logits.detach().float()
    t, _, k = z.shape
    p = F.softmax(z, dim=-1)
    conf = (math.log(k) + (p * torch.log(p + 1e-8)).sum(dim=-1)) / math.log(k)   # [T, B]
    zn = F.normalize(z, p=2, dim=-1)
    cos = torch.einsum("ibk,jbk->ijb", zn, zn)                                   # [T, T, B]
    score = conf.unsqueeze(0) * cos
    eye = torch.eye(t, dtype=torch.bool, device=z.device).unsqueeze(-1)
    w = F.softmax(score.masked_fill(eye, float("-inf")), dim=1)
    return torch.einsum("ijb,jbk->ibk", w, z)


def similarity_temporal_loss(timestep_logits: torch.Tensor, *, tau: float = 3.0) -> torch.Tensor:
    """STA: ``tau^2 * 1/(T B) sum_{t,b} KL(softmax(target[t, b] / tau) || softmax(z[t, b] / tau))``
    with the targets of :func:`similarity_temporal_targets`; 0 for T = 1."""
    _check_timesteps(timestep_logits, "similarity_temporal_loss")
    if timestep_logits.shape[0] <= 1:
        return timestep_logits.float().sum() * 0.0
    return temporal_kl_loss_per_step(timestep_logits, similarity_temporal_targets(timestep_logits),
                                     tau=tau)


def temporal_kl_loss_per_step(timestep_logits: torch.Tensor, targets: torch.Tensor, *,
                              tau: float) -> torch.Tensor:
    """``tau^2 * mean_{t,b} KL(softmax(targets[t, b] / tau) || softmax(z[t, b] / tau))`` with a
    (detached) target per timestep ``[T, B, K]``."""
    log_p = F.log_softmax(targets.detach().float() / tau, dim=-1)
    log_q = F.log_softmax(timestep_logits.float() / tau, dim=-1)
    return (tau * tau) * (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()


# TSER-KD (Yu et al., "Temporal Separation with Entropy Regularization for Knowledge
# Distillation in Spiking Neural Networks", CVPR 2025, arXiv:2503.03144). NOT VERIFIED against
# the paper's equations (only its abstract was reachable); the terms follow public unofficial
# TSERKDLoss implementations, see distill/methods/tser_kd.py and docs/methods.md.

def temporal_kl_loss(timestep_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
                     tau: float = 4.0) -> torch.Tensor:
    """Temporal-separation KL: ``tau^2 * 1/T sum_t 1/B sum_b KL(softmax(z_t/tau) || softmax(z_s[t]/tau))``
    between the (static) teacher ``[B, K]`` and every timestep of the student ``[T, B, K]``.
    With T = 1 it is :func:`kd_loss` of the single timestep."""
    _check_timesteps(timestep_logits, "temporal_kl_loss")
    log_p_t = F.log_softmax(teacher_logits.detach().float() / tau, dim=-1)
    log_q = F.log_softmax(timestep_logits.float() / tau, dim=-1)
    p_t = log_p_t.exp()
    kl = (p_t.unsqueeze(0) * (log_p_t.unsqueeze(0) - log_q)).sum(dim=-1)   # [T, B]
    return (tau * tau) * kl.mean()


def temporal_entropy(timestep_logits: torch.Tensor, *, tau: float = 1.0) -> torch.Tensor:
    """Mean entropy of the per-timestep predictions:
    ``1/T sum_t 1/B sum_b H(softmax(z_s[t, b] / tau))``, ``H(q) = -sum_k q_k log q_k``."""
    _check_timesteps(timestep_logits, "temporal_entropy")
    log_q = F.log_softmax(timestep_logits.float() / tau, dim=-1)
    return -(log_q.exp() * log_q).sum(dim=-1).mean()


# HTA-KL (Zhang, Zhu, Yu, Wang, "Head-Tail-Aware KL Divergence in Knowledge Distillation for
# Spiking Neural Networks", arXiv:2504.20445, 2025). NOT VERIFIED against the paper: only its
# abstract was reachable (cumulative-probability mask splitting head and tail, adaptive weights,
# forward + reverse KL); the equations below are those of the adaptive KL (AKL) of Wu et al.,
# "Rethinking Kullback-Leibler Divergence in Knowledge Distillation for Large Language Models",
# arXiv:2404.02657, which matches every element the abstract names; by default its released
# head/tail rule and detached weights (github.com/wutaiqiang/LLM_KD_AKL, AKL.py). See docs/methods.md.

HEAD_RULES = ("akl", "ascending")


def head_mask(teacher_probs: torch.Tensor, mu: float = 0.5, rule: str = "akl") -> torch.Tensor:
    """The cumulative-probability head mask ``M`` ``[..., K]`` (bool, in class order).

    ``rule="akl"``, the public AKL code (Wu et al., arXiv:2404.02657; github.com/wutaiqiang/
    LLM_KD_AKL ``AKL.py`` ``get_ratio``)::

        p_(1) >= ... >= p_(K)  (the teacher's probabilities, descending)
        c_(j) = sum_{i <= j} p_(i)
        M_(j) = 1[c_(j) <= mu] or j = 1

    the head is the largest classes whose cumulative mass stays within ``mu`` (the class whose
    cumulative mass crosses ``mu`` is tail), and the top-1 class is always head.

    ``rule="ascending"`` (spikedistill's earlier reading): ascending order, the cumulative sum
    divided by its last entry, ``M_(j) = 1[c_(j) >= mu]``: the tail is the smallest classes
    holding less than ``mu`` of the mass and the head the rest (the class that crosses is head).

    Ties keep ``torch.sort``'s stable order.
    """
    if rule == "akl":
        sorted_p, order = torch.sort(teacher_probs.float(), dim=-1, descending=True, stable=True)
        in_head_sorted = sorted_p.cumsum(dim=-1) <= mu
        in_head_sorted[..., 0] = True
    elif rule == "ascending":
        sorted_p, order = torch.sort(teacher_probs.float(), dim=-1, descending=False, stable=True)
        cum = sorted_p.cumsum(dim=-1)
        cum = cum / cum[..., -1:].clamp_min(1e-30)
        in_head_sorted = cum >= mu
    else:
        raise ValueError(f"unknown head rule {rule!r}; expected one of {', '.join(HEAD_RULES)}")
    mask = torch.zeros_like(in_head_sorted)
    return mask.scatter(-1, order, in_head_sorted)


def hta_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, tau: float = 1.0,
                mu: float = 0.5, rule: str = "akl", detach_weights: bool = True) -> torch.Tensor:
    """Head-tail-aware KL on logits ``[..., B, K]`` (the leading dims, e.g. T, are averaged),
    in AKL's form (Wu et al., arXiv:2404.02657, Sec. 4; HTA-KL's own equations unverified)::

        p = softmax(z_t / tau), q = softmax(z_s / tau), M = head_mask(p, mu, rule)
        g_head = sum_k M_k |p_k - q_k|,  g_tail = sum_k (1 - M_k) |p_k - q_k|
        w_head = g_head / (g_head + g_tail),  w_tail = g_tail / (g_head + g_tail)
        L = tau^2 * mean_b ( w_head * KL(p || q) + w_tail * KL(q || p) )

    the forward KL weighted by the head gap and the reverse KL by the tail gap, per sample.
    ``detach_weights=True`` (the AKL code: ``student_probs`` detached in ``get_ratio``) makes the
    weights constants; ``False`` lets gradient flow through them. AKL itself has no temperature
    (``tau = 1``). Consequences used by the tests: ``q = p`` gives 0; a mask of all classes
    gives pure FKL, i.e. Hinton KD ``tau^2 KL(p || q)``; a student that matches the teacher on
    the head classes (``g_head = 0``) gets pure RKL. Where ``g_head + g_tail = 0`` both KLs are 0.
    """
    log_p = F.log_softmax(teacher_logits.detach().float() / tau, dim=-1)
    log_q = F.log_softmax(student_logits.float() / tau, dim=-1)
    log_p = log_p.expand_as(log_q)
    p, q = log_p.exp(), log_q.exp()
    m = head_mask(p, mu, rule).float()
    gap = (p - (q.detach() if detach_weights else q)).abs()
    g_head = (m * gap).sum(dim=-1)
    g_tail = ((1.0 - m) * gap).sum(dim=-1)
    denom = (g_head + g_tail).clamp_min(1e-12)
    fkl = (p * (log_p - log_q)).sum(dim=-1)
    rkl = (q * (log_q - log_p)).sum(dim=-1)
    per_sample = (g_head / denom) * fkl + (g_tail / denom) * rkl
    return (tau * tau) * per_sample.mean()


# Strong2Weak / Weak2Strong (Ding, Zuo, Jing, Yang, He, Xie, "Synergy Between the Strong and the
# Weak: Spiking Neural Networks are Inherently Self-Distillers", NeurIPS 2025, arXiv:2510.07924).
# No public code: Sec. 4 (Eqs. 3-9), Alg. 1 and Alg. 2 (Appendix A) of the paper. UNVERIFIED
# against code; see distill/methods/strong_weak.py and docs/methods.md.

SD_REDUCTIONS = ("batchmean", "mean")
SD_SCHEMES = ("one_to_one", "cascade")


def timestep_confidence(timestep_logits: torch.Tensor) -> torch.Tensor:
    """Confidence of every timestep's submodel, ``[T]`` (Sec. 4.1, Eqs. 3-4, Alg. 1
    ``identify``): ``con(t) = 1/B sum_b max_k softmax(z[t, b])_k`` (temperature 1, a batch mean,
    no label). Computed without gradient: it only ranks the timesteps."""
    _check_timesteps(timestep_logits, "timestep_confidence")
    with torch.no_grad():
        return torch.softmax(timestep_logits.float(), dim=-1).amax(dim=-1).mean(dim=-1)


def self_distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
                    tau: float = 2.0, reduction: str = "batchmean",
                    detach_teacher: bool = False) -> torch.Tensor:
    """``KL(softmax(z_t / tau) || softmax(z_s / tau))`` between two submodels' logits ``[B, K]``
    (Eqs. 5-6 and 8-9; softening factor ``alpha = tau``, no ``tau^2`` factor: neither the text
    nor Alg. 1 has one). ``reduction``: ``batchmean`` = ``1/B sum_b sum_k`` (the KL as defined);
    ``mean`` = ``1/(B K) sum_{b,k}``, PyTorch's default of ``F.kl_div`` that Alg. 1's
    ``KL_div(log(p_s), p_t)`` would use when called as written. The teacher keeps its gradient
    unless ``detach_teacher`` (Alg. 1 detaches nothing)."""
    t = teacher_logits.detach() if detach_teacher else teacher_logits
    log_p = F.log_softmax(t.float() / tau, dim=-1)
    log_q = F.log_softmax(student_logits.float() / tau, dim=-1)
    pointwise = log_p.exp() * (log_p - log_q)
    if reduction == "batchmean":
        return pointwise.sum() / pointwise.shape[0]
    if reduction == "mean":
        return pointwise.mean()
    raise ValueError(f"self_distill_kl: reduction must be one of {SD_REDUCTIONS}, got {reduction!r}")


def strong_weak_loss(timestep_logits: torch.Tensor, *, direction: str, tau: float = 2.0,
                     scheme: str = "one_to_one", reduction: str = "batchmean",
                     detach_teacher: bool = False) -> torch.Tensor:
    """The self-distillation term of Strong2Weak (``direction='s2w'``) or Weak2Strong
    (``'w2s'``) on per-timestep logits ``[T, B, K]``, ``KL_tau`` = :func:`self_distill_kl`::

        rank the timesteps by timestep_confidence, descending: r_1 (strongest) .. r_T (weakest)
        one_to_one (default, Sec. 4.2-4.3, Alg. 1):
            s2w: KL_tau(z[r_1] -> z[r_T])  (Eq. 6, the strongest teaches the weakest)
            w2s: KL_tau(z[r_T] -> z[r_1])  (Eq. 8, the weakest teaches the strongest)
        cascade (Appendix A, Alg. 2):
            s2w: 1/(T-1) sum_i KL_tau(z[r_i] -> z[r_{i+1}]),  w2s: the same with roles swapped

    ``KL(a -> b)`` means teacher ``a``, student ``b``. Ties keep the earlier timestep
    (``argsort`` is stable). With ``T = 1`` there is a single submodel and the term is 0, so the
    loss reduces to the CE of the mean logits."""
    _check_timesteps(timestep_logits, "strong_weak_loss")
    if direction not in ("s2w", "w2s"):
        raise ValueError(f"strong_weak_loss: direction must be 's2w' or 'w2s', got {direction!r}")
    if scheme not in SD_SCHEMES:
        raise ValueError(f"strong_weak_loss: scheme must be one of {SD_SCHEMES}, got {scheme!r}")
    z = timestep_logits
    n = z.shape[0]
    if n < 2:
        return z.sum() * 0.0
    order = torch.argsort(timestep_confidence(z), descending=True, stable=True).tolist()
    pairs = ([(order[0], order[-1])] if scheme == "one_to_one"
             else [(order[i], order[i + 1]) for i in range(n - 1)])    # (stronger, weaker)
    terms = []
    for strong, weak in pairs:
        teacher, student = (strong, weak) if direction == "s2w" else (weak, strong)
        terms.append(self_distill_kl(z[student], z[teacher], tau=tau, reduction=reduction,
                                     detach_teacher=detach_teacher))
    return torch.stack(terms).mean()


# DeiT distillation through a second head (Touvron et al., "Training data-efficient image
# transformers & distillation through attention", ICML 2021), as the Spike-driven Transformer
# V2 trains it: BICLab/Spike-Driven-Transformer-V2 @ 35f245f4f79acf1a2b3ef22698c58ab05c1ede33,
# classification/util/kd_loss.py (DistillationLoss, itself from facebookresearch/deit).

DEIT_TYPES = ("hard", "soft")


def deit_distillation_loss(kd_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
                           kind: str = "hard", tau: float = 1.0) -> torch.Tensor:
    """The distillation-head term of DeiT on logits ``[B, K]``::

        hard: CE(z_kd, argmax_k z_t)                                  (the teacher's top-1 label)
        soft: tau^2 * sum_{b,k} p_t (log p_t - log q_kd) / (B K),  p_t = softmax(z_t / tau),
              q_kd = softmax(z_kd / tau)   (divided by numel, "the legacy PyTorch behaviour")

    The teacher is a constant."""
    t = teacher_logits.detach().float()
    if kind == "hard":
        return F.cross_entropy(kd_logits.float(), t.argmax(dim=-1))
    if kind == "soft":
        log_p = F.log_softmax(t / tau, dim=-1)
        log_q = F.log_softmax(kd_logits.float() / tau, dim=-1)
        return (tau * tau) * (log_p.exp() * (log_p - log_q)).sum() / kd_logits.numel()
    raise ValueError(f"deit_distillation_loss: kind must be one of {DEIT_TYPES}, got {kind!r}")
