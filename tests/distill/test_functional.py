"""Golden values and invariants of the pure losses and maps (spikedistill.distill.functional).

Every expected value is computed here independently, with explicit Python loops over the
elements and the ``math`` module, never by calling the implementation's formulas.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn

from spikedistill.distill import (blurred_feature_loss, channel_mask, class_activation_map,
                                  feature_mse_loss, grad_cam, kd_loss, laf_loss, nld_loss,
                                  normalize_map, samd_loss, scale_map, spike_activation_map,
                                  time_average)


def _g(seed: int, *shape, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _close(a, b, tol=1e-5):
    a, b = (x.detach() if isinstance(x, torch.Tensor) else x for x in (a, b))
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


# ---- loop helpers (independent of the implementation) ----------------------------------------

def _softmax_list(v, tau=1.0):
    m = max(x / tau for x in v)
    e = [math.exp(x / tau - m) for x in v]
    s = sum(e)
    return [x / s for x in e]


def _kl_list(p, q):
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def _flat(m, b):
    """Row b of a (B, H, W) tensor as a Python list in row-major order."""
    H, W = m.shape[1], m.shape[2]
    return [float(m[b, h, w]) for h in range(H) for w in range(W)]


# ---- maps ---------------------------------------------------------------------------------------

def test_spike_activation_map_golden():
    F_s = _g(0, 2, 3, 4, 2, 5)        # T, B, C, H, W
    out = spike_activation_map(F_s)
    assert out.shape == (3, 2, 5) and out.dtype == torch.float32
    for b, h, w in itertools.product(range(3), range(2), range(5)):
        want = 0.0
        for t in range(2):
            for c in range(4):
                want += float(F_s[t, b, c, h, w])
        assert _close(out[b, h, w], want), (b, h, w)


def test_spike_activation_map_rejects_batch_major():
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        spike_activation_map(torch.zeros(2, 3, 4, 4))


def test_time_average_golden():
    F_s = _g(1, 3, 2, 2, 1, 1)
    out = time_average(F_s)
    for b, c in itertools.product(range(2), range(2)):
        want = (float(F_s[0, b, c, 0, 0]) + float(F_s[1, b, c, 0, 0]) + float(F_s[2, b, c, 0, 0])) / 3
        assert _close(out[b, c, 0, 0], want)


def test_class_activation_map_golden():
    F_t = _g(2, 3, 4, 2, 3)             # B, C, H, W
    Wfc = _g(3, 5, 4)                   # K, C
    classes = torch.tensor([4, 0, 2])
    out = class_activation_map(F_t, Wfc, classes)
    assert out.shape == (3, 2, 3)
    n_zero = 0
    for b, h, w in itertools.product(range(3), range(2), range(3)):
        k = int(classes[b])
        s = sum(float(Wfc[k, c]) * float(F_t[b, c, h, w]) for c in range(4))
        want = s if s > 0 else 0.0
        n_zero += want == 0.0
        assert _close(out[b, h, w], want), (b, h, w)
    assert 0 < n_zero < 18   # the ReLU did something, but not everything


class _GapLinear(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.fc = nn.Linear(c, k)

    def forward(self, f):
        return self.fc(f.mean(dim=(2, 3)))


def test_grad_cam_equals_cam_over_hw_for_gap_linear():
    torch.manual_seed(0)
    head = _GapLinear(6, 4).requires_grad_(False)      # frozen parameters
    A = torch.randn(3, 6, 4, 5).requires_grad_(True)
    classes = torch.tensor([1, 3, 0])
    gc = grad_cam(head(A), A, classes)
    cam = class_activation_map(A.detach(), head.fc.weight, classes)
    assert gc.shape == (3, 4, 5)
    assert torch.allclose(gc, cam / 20.0, atol=1e-6)
    assert cam.abs().sum() > 0
    assert head.fc.weight.grad is None


def test_grad_cam_golden_nonlinear_head():
    # y_k = sum_c v[k,c] * mean_hw(A_c^2): dy/dA_c = 2 v[k,c] A_c / HW, a_c = mean_hw of that.
    A = _g(4, 2, 3, 2, 2, dtype=torch.float32).requires_grad_(True)
    v = _g(5, 4, 3, dtype=torch.float32)
    scores = (A ** 2).mean(dim=(2, 3)) @ v.t()
    classes = torch.tensor([2, 1])
    out = grad_cam(scores, A, classes)
    HW = 4
    for b in range(2):
        k = int(classes[b])
        alpha = []
        for c in range(3):
            grads = [2 * float(v[k, c]) * float(A.detach()[b, c, h, w]) / HW for h in range(2) for w in range(2)]
            alpha.append(sum(grads) / HW)
        for h, w in itertools.product(range(2), range(2)):
            s = sum(alpha[c] * float(A.detach()[b, c, h, w]) for c in range(3))
            assert _close(out[b, h, w], max(s, 0.0)), (b, h, w)


def test_grad_cam_needs_a_graph():
    A = torch.randn(1, 2, 2, 2)
    with pytest.raises(ValueError, match="autograd graph"):
        grad_cam(torch.randn(1, 3), A, torch.tensor([0]))


# ---- normalisation and scaling ------------------------------------------------------------------

def test_normalize_batch_minmax_golden():
    m = _g(6, 3, 2, 2)
    out = normalize_map(m, "batch_minmax")
    vals = [float(x) for x in m.flatten()]
    lo = min(vals)
    hi = max(v - lo for v in vals)
    for b, h, w in itertools.product(range(3), range(2), range(2)):
        assert _close(out[b, h, w], (float(m[b, h, w]) - lo) / (hi + 1e-3))
    assert float(out.min()) == 0.0 and float(out.max()) < 1.0


def test_normalize_sample_minmax_golden():
    m = _g(7, 3, 2, 2)
    out = normalize_map(m, "sample_minmax")
    for b in range(3):
        vals = [float(x) for x in m[b].flatten()]
        lo = min(vals)
        hi = max(v - lo for v in vals)
        for h, w in itertools.product(range(2), range(2)):
            assert _close(out[b, h, w], (float(m[b, h, w]) - lo) / (hi + 1e-3))
        assert float(out[b].min()) == 0.0


def test_normalize_none_and_unknown():
    m = _g(8, 2, 2, 2)
    assert torch.allclose(normalize_map(m, "none"), m.float())
    with pytest.raises(ValueError, match="batch_minmax"):
        normalize_map(m, "bogus")


@pytest.mark.parametrize("mode", ["softmax", "zscore", "l2", "none"])
def test_scale_map_golden(mode):
    m = _g(9, 2, 3, 2).abs() * 3
    tau = 2.0
    out = scale_map(m, mode, tau)
    assert out.shape == (2, 6)
    for b in range(2):
        v = _flat(m, b)
        n = len(v)
        if mode == "softmax":
            want = _softmax_list(v, tau)
        elif mode == "zscore":
            mean = sum(v) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in v) / n)
            want = _softmax_list([(x - mean) / (std + 1e-8) for x in v], tau)
        elif mode == "l2":
            norm = math.sqrt(sum(x * x for x in v))
            want = _softmax_list([x / (norm + 1e-8) for x in v], tau)
        else:
            pos = [max(x, 0.0) + 1e-8 for x in v]
            want = [x / sum(pos) for x in pos]
        for i in range(n):
            assert _close(out[b, i], want[i]), (mode, b, i)
        assert _close(sum(float(x) for x in out[b]), 1.0)


def test_scale_none_of_zero_map_is_uniform():
    out = scale_map(torch.zeros(1, 2, 2), "none")
    assert torch.allclose(out, torch.full((1, 4), 0.25))


# ---- SAMD ---------------------------------------------------------------------------------------

def _samd_by_hand(ms, mt, tau, normalize, eps, tau_squared):
    B, H, W = ms.shape

    def norm(m):
        if normalize == "none":
            return [_flat(m, b) for b in range(B)]
        if normalize == "batch_minmax":
            lo = min(float(x) for x in m.flatten())
            hi = max(float(x) - lo for x in m.flatten())
            return [[(x - lo) / (hi + 1e-3) for x in _flat(m, b)] for b in range(B)]
        rows = []
        for b in range(B):
            v = _flat(m, b)
            lo = min(v)
            hi = max(x - lo for x in v)
            rows.append([(x - lo) / (hi + 1e-3) for x in v])
        return rows

    S, Tm = norm(ms), norm(mt)
    total = 0.0
    for b in range(B):
        ps = [p + eps for p in _softmax_list(S[b], tau)]
        pt = [p + eps for p in _softmax_list(Tm[b], tau)]
        total += sum(a * (math.log(a) - math.log(c)) for a, c in zip(pt, ps))
    total /= B
    return total * tau * tau if tau_squared else total


@pytest.mark.parametrize("normalize,eps,tau_squared,tau", [
    ("batch_minmax", 1e-10, False, 2.0),      # released
    ("sample_minmax", 0.0, True, 2.0),        # paper preset
    ("none", 0.0, True, 2.0),                 # the paper equation on raw maps
    ("sample_minmax", 0.0, False, 1.0),
])
def test_samd_golden(normalize, eps, tau_squared, tau):
    ms = _g(10, 3, 3, 3).abs() * 4
    mt = _g(11, 3, 3, 3).abs() * 2
    got = samd_loss(ms, mt, tau=tau, normalize=normalize, tau_squared=tau_squared, log_eps=eps)
    want = _samd_by_hand(ms, mt, tau, normalize, eps, tau_squared)
    assert want > 1e-4
    assert got.dtype == torch.float32 and got.dim() == 0
    assert _close(got, want, 1e-4)


def test_samd_nonnegative_and_zero_for_identical_maps():
    for seed in range(5):
        ms, mt = _g(20 + seed, 4, 8, 8).abs(), _g(40 + seed, 4, 8, 8).abs()
        for normalize in ("batch_minmax", "sample_minmax", "none"):
            for scaling in ("softmax", "zscore", "l2", "none"):
                assert float(samd_loss(ms, mt, normalize=normalize, scaling=scaling)) >= -1e-7
                assert abs(float(samd_loss(ms, ms.clone(), normalize=normalize, scaling=scaling))) < 1e-6


def test_samd_released_ceiling_disjoint_halves():
    """Spec: batch-global min-max + tau 2 on 8x8 maps gives SAMD <= ~0.12; disjoint halves ~0.1224."""
    half = torch.zeros(1, 8, 8)
    half[:, :, :4] = 5.0
    disjoint = float(samd_loss(half, 5.0 - half, tau=2.0, normalize="batch_minmax"))
    assert abs(disjoint - 0.1224) < 2e-3
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        ms = torch.rand(4, 8, 8, generator=gen) * 300
        mt = torch.rand(4, 8, 8, generator=gen) ** 4
        assert float(samd_loss(ms, mt, tau=2.0, normalize="batch_minmax")) <= 0.1225
    # without normalisation the same maps give nearly one-hot distributions and a far larger loss
    assert float(samd_loss(half * 40, (5.0 - half) * 40, normalize="none")) > 10


def test_samd_shape_mismatch_is_clear():
    with pytest.raises(ValueError, match="spatial resolution"):
        samd_loss(torch.rand(2, 8, 8), torch.rand(2, 4, 4))


def test_samd_gradient_only_to_student_map():
    ms = torch.rand(2, 4, 4, requires_grad=True)
    mt = torch.rand(2, 4, 4, requires_grad=True)
    samd_loss(ms, mt, normalize="none").backward()
    assert ms.grad is not None and ms.grad.abs().sum() > 0
    assert mt.grad is None


# ---- KD and NLD ---------------------------------------------------------------------------------

def _kd_by_hand(zs, zt, tau):
    B = zs.shape[0]
    total = 0.0
    for b in range(B):
        pt = _softmax_list([float(x) for x in zt[b]], tau)
        ps = _softmax_list([float(x) for x in zs[b]], tau)
        total += _kl_list(pt, ps)
    return tau * tau * total / B


def test_kd_golden_and_zero_for_equal_logits():
    zs, zt = _g(50, 4, 6) * 3, _g(51, 4, 6) * 3
    assert _close(kd_loss(zs, zt, tau=4.0), _kd_by_hand(zs, zt, 4.0), 1e-4)
    assert _close(kd_loss(zs, zt, tau=1.0), _kd_by_hand(zs, zt, 1.0), 1e-4)
    assert abs(float(kd_loss(zt, zt.clone(), tau=4.0))) < 1e-6


def _stats(row):
    K = len(row)
    mu = sum(row) / K
    sd = math.sqrt(sum((x - mu) ** 2 for x in row) / (K - 1))
    return mu, sd


def test_nld_released_golden():
    zs, zt, n = _g(60, 3, 5) * 2, _g(61, 3, 5) * 2, _g(62, 3, 5)
    got = nld_loss(zs, zt, tau=2.0, mode="released", weight=0.1, noise=n)
    total = 0.0
    for b in range(3):
        row = [float(x) for x in zs[b]]
        mu, sd = _stats(row)
        eps = [mu + sd * sd * float(n[b, k]) for k in range(5)]
        clean, noisy = _softmax_list(row, 2.0), _softmax_list(eps, 2.0)
        y = [0.9 * c + 0.1 * e for c, e in zip(clean, noisy)]
        pt = _softmax_list([float(x) for x in zt[b]], 2.0)
        total += 4 * sum(p * (math.log(p) - math.log(q)) for p, q in zip(pt, y))
    assert _close(got, total / 3, 1e-4)


@pytest.mark.parametrize("mode", ["paper", "fixed"])
def test_nld_additive_golden(mode):
    zs, zt, n = _g(63, 3, 5) * 2, _g(64, 3, 5) * 2, _g(65, 3, 5)
    sigma = 0.7 if mode == "fixed" else None
    got = nld_loss(zs, zt, tau=2.0, mode=mode, weight=0.3, noise=n, sigma=sigma)
    total = 0.0
    for b in range(3):
        row = [float(x) for x in zs[b]]
        mu, sd = _stats(row)
        if mode == "fixed":
            sd = 0.7
        y = _softmax_list([row[k] + 0.3 * (mu + sd * float(n[b, k])) for k in range(5)], 2.0)
        pt = _softmax_list([float(x) for x in zt[b]], 2.0)
        total += 4 * _kl_list(pt, y)
    assert _close(got, total / 3, 1e-4)


def test_nld_weight_zero_and_none_equal_kd():
    zs, zt, n = _g(66, 4, 7) * 3, _g(67, 4, 7) * 3, _g(68, 4, 7)
    kd = float(kd_loss(zs, zt, tau=2.0))
    for mode in ("released", "paper"):
        assert _close(nld_loss(zs, zt, mode=mode, weight=0.0, noise=n), kd, 1e-5)
    assert _close(nld_loss(zs, zt, mode="fixed", weight=0.0, noise=n, sigma=1.0), kd, 1e-5)
    assert _close(nld_loss(zs, zt, mode="none", noise=n), kd, 1e-6)
    assert not _close(nld_loss(zs, zt, mode="released", weight=0.1, noise=n), kd, 1e-5)


def test_nld_fresh_noise_and_errors():
    zs, zt = torch.randn(4, 6) * 5, torch.randn(4, 6)
    torch.manual_seed(0)
    a = float(nld_loss(zs, zt))
    b = float(nld_loss(zs, zt))
    assert a != b
    with pytest.raises(ValueError, match="sigma"):
        nld_loss(zs, zt, mode="fixed")
    with pytest.raises(ValueError, match="released, paper, fixed, none"):
        nld_loss(zs, zt, mode="bogus")


@pytest.mark.parametrize("mode", ["released", "paper"])
def test_nld_gradient_through_mu_sigma(mode):
    """The analytic gradient matches finite differences (float64 evaluation of the float32
    loss), and differs from the gradient with mu and sigma held constant."""
    zs = (_g(70, 2, 4, dtype=torch.float32) * 2).requires_grad_(True)
    zt, n = _g(71, 2, 4, dtype=torch.float32), _g(72, 2, 4, dtype=torch.float32) * 3
    loss = nld_loss(zs, zt, mode=mode, weight=0.5, noise=n)
    (grad,) = torch.autograd.grad(loss, zs)
    h = 1e-2
    for b, k in itertools.product(range(2), range(4)):
        zp, zm = zs.detach().clone(), zs.detach().clone()
        zp[b, k] += h
        zm[b, k] -= h
        fd = (float(nld_loss(zp, zt, mode=mode, weight=0.5, noise=n))
              - float(nld_loss(zm, zt, mode=mode, weight=0.5, noise=n))) / (2 * h)
        assert abs(fd - float(grad[b, k])) < 2e-3 + 2e-2 * abs(fd), (b, k, fd, float(grad[b, k]))
    # with mu / sigma constant (noise logits fixed) the gradient is different
    z = zs.detach().clone().requires_grad_(True)
    mu = z.detach().mean(1, keepdim=True)
    sd = z.detach().std(1, keepdim=True)
    p_t = torch.softmax(zt / 2, 1)
    if mode == "released":
        y = 0.5 * torch.softmax(z / 2, 1) + 0.5 * torch.softmax((mu + sd ** 2 * n) / 2, 1)
    else:
        y = torch.softmax((z + 0.5 * (mu + sd * n)) / 2, 1)
    const = 4 * (p_t * (p_t.log() - y.log())).sum() / 2
    (g_const,) = torch.autograd.grad(const, z)
    assert (g_const - grad).abs().max() > 1e-3


def test_losses_are_fp32_under_bf16_inputs():
    zs, zt = torch.randn(4, 10).bfloat16(), torch.randn(4, 10).bfloat16()
    for value in (kd_loss(zs, zt, tau=4.0), nld_loss(zs, zt), nld_loss(zs, zt, mode="paper"),
                  samd_loss(torch.rand(4, 8, 8).bfloat16(), torch.rand(4, 8, 8).bfloat16())):
        assert value.dtype == torch.float32 and torch.isfinite(value)


def test_cams_are_fp32_under_autocast():
    # under bf16 autocast the einsum of a CAM would run in bf16 (output dtype bfloat16, ~3
    # significant digits); the maps must be the float32 ones, bit for bit
    from spikedistill.distill.functional import class_activation_maps

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 64, 4, 4, generator=g)
    w = torch.randn(10, 64, generator=g)
    classes = torch.tensor([1, 7, 3])
    want_one = class_activation_map(feats, w, classes)
    want_all = class_activation_maps(feats, w)
    head = _GapLinear(64, 10)
    a = feats.clone().requires_grad_(True)
    want_grad = grad_cam(head(a), a, classes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_one = class_activation_map(feats, w, classes)
        got_all = class_activation_maps(feats.bfloat16().float(), w)
        a = feats.clone().requires_grad_(True)
        got_grad = grad_cam(head(a), a, classes)
        lowp = torch.einsum("kc,bchw->bkhw", w, feats)  # what autocast does to an einsum
    assert lowp.dtype == torch.bfloat16  # the test would see the problem
    assert got_one.dtype == got_all.dtype == got_grad.dtype == torch.float32
    assert torch.equal(got_one, want_one)
    assert torch.equal(got_all, class_activation_maps(feats.bfloat16().float(), w))
    assert not torch.equal(lowp.float(), want_all)
    assert torch.allclose(got_grad, want_grad, rtol=1e-2, atol=1e-3)  # the head ran in bf16


# ---- baseline feature losses --------------------------------------------------------------------

def test_feature_mse_golden():
    s, t = _g(80, 2, 3, 2, 2), _g(81, 2, 3, 2, 2)
    want = sum((float(a) - float(b)) ** 2 for a, b in zip(s.flatten(), t.flatten())) / 24
    assert _close(feature_mse_loss(s, t), want, 1e-5)
    with pytest.raises(ValueError, match="adapter"):
        feature_mse_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))


class _Times2(nn.Module):
    def forward(self, x):
        return 2 * x


def test_blurred_feature_loss_golden():
    s, t = _g(82, 2, 3, 2, 2), _g(83, 2, 3, 2, 2)
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).view(2, 3, 1, 1)
    got = blurred_feature_loss(s, t, _Times2(), mask)
    total = 0.0
    for b, c, h, w in itertools.product(range(2), range(3), range(2), range(2)):
        restored = 2 * float(s[b, c, h, w]) * float(mask[b, c, 0, 0])
        total += (restored - float(t[b, c, h, w])) ** 2
    assert _close(got, total / 2, 1e-5)


def test_channel_mask_ratio():
    gen = torch.Generator().manual_seed(0)
    m = channel_mask(64, 128, 0.15, generator=gen)
    assert m.shape == (64, 128, 1, 1)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(1 - float(m.mean()) - 0.15) < 0.02
    assert float(channel_mask(4, 8, 0.0).min()) == 1.0


def test_laf_golden_and_no_teacher_grad():
    f = _g(84, 3, 4, dtype=torch.float32).requires_grad_(True)
    Wt = _g(85, 5, 4, dtype=torch.float32).requires_grad_(True)
    bt = _g(86, 5, dtype=torch.float32).requires_grad_(True)
    zt = _g(87, 3, 5, dtype=torch.float32)
    got = laf_loss(f, zt, Wt, bt, tau=2.0)
    total = 0.0
    for b in range(3):
        z = [sum(float(Wt.detach()[k, c]) * float(f.detach()[b, c]) for c in range(4))
             + float(bt.detach()[k]) for k in range(5)]
        total += _kl_list(_softmax_list([float(x) for x in zt[b]], 2.0), _softmax_list(z, 2.0))
    assert _close(got, 4 * total / 3, 1e-4)
    got.backward()
    assert f.grad is not None and Wt.grad is None and bt.grad is None


# ---- cross-check with the re-created released step (a peer implementation) ----------------------

def test_released_losses_match_reference_step(reference_step):
    ref = reference_step
    torch.manual_seed(3)
    ms, mt = torch.rand(4, 8, 8) * 50, torch.relu(torch.randn(4, 8, 8))
    ours = samd_loss(ms, mt, tau=2.0, normalize="batch_minmax", log_eps=1e-10)
    theirs = ref.samd_loss(ref.minmax_global(ms), ref.minmax_global(mt))
    assert _close(ours, theirs, 1e-5)
    zs, zt, n = torch.randn(4, 10) * 3, torch.randn(4, 10) * 3, torch.randn(4, 10)
    assert _close(nld_loss(zs, zt, mode="released", weight=0.1, noise=n),
                  ref.nld_loss(zs, zt, noise=n), 1e-5)
