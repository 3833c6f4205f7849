"""Methods on per-timestep logits [T, B, K]: TKS, TSER-KD, HTA-KL. Golden values written out
by hand, the invariants each paper implies (T = 1 reduces to the static loss, identical
timesteps behave like one), and the registered methods against those quantities."""

from __future__ import annotations

import math

import pytest
import torch

from spikedistill.distill import build_method, method_requires_teacher
from spikedistill.distill import functional as Fn
from spikedistill.distill.context import StepContext
from spikedistill.errors import ConfigError

from method_helpers import batch as _batch, method_cfg as _cfg, pair as _pair  # noqa: E402


# -- TKS -------------------------------------------------------------------------------------

Z = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],      # t = 0: predicts 0, 1
                  [[0.0, 3.0, 0.0], [0.0, 2.0, 0.0]]])     # t = 1: predicts 1, 1
Y = torch.tensor([0, 1])


def test_tks_target_sums_the_correct_timesteps():
    # sample 0 (y = 0): only t = 0 is right -> (2, 0, 0); sample 1 (y = 1): both -> (0, 3, 0)
    want = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    assert torch.equal(Fn.tks_target_logits(Z, Y), want)
    # soft targets give the same mask through their argmax
    soft = torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.6, 0.3]])
    assert torch.equal(Fn.tks_target_logits(Z, soft), want)
    # no correct timestep: all-zero target logits (a uniform target)
    assert torch.equal(Fn.tks_target_logits(Z, torch.tensor([2, 2])), torch.zeros(2, 3))


def test_tks_loss_golden():
    tau = 2.0
    S = Fn.tks_target_logits(Z, Y)
    # target of sample 0: softmax((1, 0, 0)); of sample 1: softmax((0, 1.5, 0))
    def softmax(v):
        e = [math.exp(a) for a in v]
        return [a / sum(e) for a in e]
    def log_softmax(v):
        m = math.log(sum(math.exp(a) for a in v))
        return [a - m for a in v]
    targets = [softmax([1.0, 0.0, 0.0]), softmax([0.0, 1.5, 0.0])]
    total = 0.0
    for t in range(2):
        per_b = []
        for b in range(2):
            lq = log_softmax(Z[t, b].tolist())
            per_b.append(-sum(p * l for p, l in zip(targets[b], lq)))
        total += sum(per_b) / 2
    want = tau * tau * total / 2
    assert Fn.tks_loss(Z, S, tau=tau).item() == pytest.approx(want, rel=1e-6)


def test_tks_with_one_correct_timestep_is_a_soft_ce_against_itself():
    z = torch.randn(1, 3, 4)
    y = z[0].argmax(1)
    S = Fn.tks_target_logits(z, y)
    assert torch.equal(S, z[0])
    tau = 3.0
    want = tau ** 2 * -(torch.softmax(z[0] / tau, 1) * torch.log_softmax(z[0], 1)).sum(1).mean()
    assert Fn.tks_loss(z, S, tau=tau).item() == pytest.approx(want.item(), rel=1e-6)


def test_tks_method_schedule_no_teacher_and_target_gradient():
    assert not method_requires_teacher("tks")
    student, _ = _pair()
    d = build_method("tks", student, None, _cfg("tks"))
    d.train()
    x, y = _batch()
    # epoch 0: alpha_e = 1, the sharing term has weight 0 (the code's 1 - epoch/epochs * alpha)
    _, l0 = d(x, y, StepContext.at(0, 5, epochs=2, steps_per_epoch=10))
    assert l0["tks"].item() == 0.0
    ctx = StepContext.at(1, 0, epochs=2, steps_per_epoch=10)       # epoch 1 of 2
    assert d.alpha_e(ctx) == pytest.approx(1 - 0.7 * 0.5)
    logits, l1 = d(x, y, ctx)
    with torch.no_grad():
        z = student(x, timestep_logits=True)
        ce = torch.nn.functional.cross_entropy(z.mean(0), y)
        sh = Fn.tks_loss(z, Fn.tks_target_logits(z, y), tau=3.0)
    assert l1["ce"].item() == pytest.approx(0.65 * ce.item(), rel=1e-5)
    assert l1["tks"].item() == pytest.approx(0.35 * sh.item(), rel=1e-5)
    d_static = build_method("tks", student, None, _cfg("tks", "distill.tks.schedule=static"))
    assert d_static.alpha_e(ctx) == pytest.approx(0.7)     # --staticalpha: current_alpha = alpha
    # the released code does not detach the target; detach_target does
    z = torch.randn(2, 3, 4, requires_grad=True)
    y3 = z.detach()[0].argmax(1)
    g_free = torch.autograd.grad(Fn.tks_loss(z, Fn.tks_target_logits(z, y3)), z)[0]
    g_det = torch.autograd.grad(Fn.tks_loss(z, Fn.tks_target_logits(z, y3).detach()), z)[0]
    assert not torch.allclose(g_free, g_det)
    with pytest.raises(ConfigError, match="distill.tks.schedule"):
        _cfg("tks", "distill.tks.schedule=cosine")


# -- TSER-KD ---------------------------------------------------------------------------------

def test_temporal_kl_golden_and_reduction_to_kd():
    # K = 2, tau = 1: teacher (0, 0) -> p = (1/2, 1/2); student t0 (0, 0) -> KL 0;
    # t1 (ln 3, 0) -> q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    zt = torch.zeros(1, 2)
    zs = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    want = 0.5 * (0.0 + 0.5 * math.log(4.0 / 3.0))
    assert Fn.temporal_kl_loss(zs, zt, tau=1.0).item() == pytest.approx(want, rel=1e-6)
    # T = 1 is Hinton KD; identical timesteps are KD of one of them
    z1 = torch.randn(4, 6)
    t = torch.randn(4, 6)
    kd = Fn.kd_loss(z1, t, tau=4.0)
    assert torch.allclose(Fn.temporal_kl_loss(z1[None], t, tau=4.0), kd, rtol=1e-5)
    assert torch.allclose(Fn.temporal_kl_loss(z1.expand(3, 4, 6), t, tau=4.0), kd, rtol=1e-5)


def test_temporal_entropy_golden():
    # uniform over K = 4: ln 4; a (ln 3, 0) pair at tau 1: -(3/4 ln 3/4 + 1/4 ln 1/4)
    assert Fn.temporal_entropy(torch.zeros(2, 3, 4)).item() == pytest.approx(math.log(4))
    z = torch.tensor([[[math.log(3.0), 0.0]]])
    want = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert Fn.temporal_entropy(z).item() == pytest.approx(want, rel=1e-6)


def test_tser_kd_method_terms():
    student, teacher = _pair()
    d = build_method("tser-kd", student, teacher,
                     _cfg("tser-kd", "distill.tser_kd.alpha=0.25", "distill.tser_kd.gamma=0.5",
                          "distill.tser_kd.tau=4", "distill.tser_kd.tau_on_ce=false"))
    d.train()
    x, y = _batch()
    logits, losses = d(x, y)
    assert set(losses) == {"ce", "kd", "er"}
    with torch.no_grad():
        z = student(x, timestep_logits=True)
        t_logits = teacher(x)
        ce = torch.stack([torch.nn.functional.cross_entropy(z[t], y) for t in range(2)]).mean()
    assert torch.allclose(logits, z.mean(0), atol=1e-5)
    assert losses["ce"].item() == pytest.approx(0.75 * ce.item(), rel=1e-5)
    assert losses["kd"].item() == pytest.approx(
        0.25 * Fn.temporal_kl_loss(z, t_logits, tau=4.0).item(), rel=1e-4)
    assert losses["er"].item() == pytest.approx(
        -0.5 * Fn.temporal_entropy(z, tau=4.0).item(), rel=1e-5)
    assert losses["er"].item() < 0                 # entropy is rewarded (a confidence penalty)


# -- HTA-KL ----------------------------------------------------------------------------------
# These tests pin spikedistill's earlier reading (rule "ascending", weights with gradient, the
# method "hta-kl-ascending"); the AKL default is checked against the released AKL code in
# test_authors_code.py.

def _asc_mask(p, mu=0.5):
    return Fn.head_mask(p, mu, rule="ascending")


def _asc_hta(z, t, **kw):
    kw.setdefault("tau", 2.0)
    return Fn.hta_kl_loss(z, t, rule="ascending", detach_weights=False, **kw)

def test_head_mask_golden():
    p = torch.tensor([[0.1, 0.6, 0.3], [0.05, 0.15, 0.8]])
    # row 0 ascending 0.1, 0.3, 0.6 -> cumulative 0.1, 0.4, 1.0: head = {class 1}
    # row 1 ascending 0.05, 0.15, 0.8 -> 0.05, 0.2, 1.0: head = {class 2}
    assert _asc_mask(p, 0.5).tolist() == [[False, True, False], [False, False, True]]
    # mu = 0.3: row 0 cumulative 0.4 >= 0.3 -> head = {1, 2}
    assert _asc_mask(p, 0.3).tolist() == [[False, True, True], [False, False, True]]


def test_hta_kl_golden_two_classes():
    # tau = 1, teacher p = (3/4, 1/4) (logits (ln 3, 0)), student q = (1/2, 1/2)
    # head mask at mu = 0.5: ascending 1/4, 3/4 -> cumulative 1/4, 1 -> head = {class 0}
    # gaps |p - q| = (1/4, 1/4): w_head = w_tail = 1/2
    zt = torch.tensor([[math.log(3.0), 0.0]])
    zs = torch.zeros(1, 2)
    fkl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    rkl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    want = 0.5 * fkl + 0.5 * rkl
    assert _asc_hta(zs, zt, tau=1.0).item() == pytest.approx(want, rel=1e-6)
    # student q = (0.9, 0.1) (logits (ln 9, 0)): gaps (0.15, 0.15) again equal weights
    zs2 = torch.tensor([[math.log(9.0), 0.0]])
    fkl2 = 0.75 * math.log(0.75 / 0.9) + 0.25 * math.log(0.25 / 0.1)
    rkl2 = 0.9 * math.log(0.9 / 0.75) + 0.1 * math.log(0.1 / 0.25)
    assert _asc_hta(zs2, zt, tau=1.0).item() == pytest.approx(0.5 * (fkl2 + rkl2), rel=1e-5)


def test_hta_kl_invariants():
    t = torch.randn(4, 7)
    assert _asc_hta(t.clone(), t, tau=2.0).item() == pytest.approx(0.0, abs=1e-6)
    z = torch.randn(4, 7)
    static = _asc_hta(z, t, tau=2.0)
    assert torch.allclose(_asc_hta(z.expand(3, 4, 7), t, tau=2.0), static, rtol=1e-5)
    assert static.item() > 0
    # weights sum to 1, so HTA lies between the forward and the reverse KL of each sample
    p, q = torch.softmax(t / 2, 1), torch.softmax(z / 2, 1)
    fkl = (p * (p.log() - q.log())).sum(1)
    rkl = (q * (q.log() - p.log())).sum(1)
    lo, hi = torch.minimum(fkl, rkl).mean() * 4, torch.maximum(fkl, rkl).mean() * 4
    assert lo.item() - 1e-5 <= static.item() <= hi.item() + 1e-5


def test_hta_kl_method_per_timestep_switch():
    student, teacher = _pair()
    x, y = _batch()
    teacher.eval()                       # as the frozen teacher runs
    with torch.no_grad():
        z = student(x, timestep_logits=True)
        t_logits = teacher(x)
    for per_t, s in ((True, z), (False, z.mean(0))):
        d = build_method("hta-kl", student, teacher,
                         _cfg("hta-kl", f"distill.hta_kl.per_timestep={str(per_t).lower()}",
                              "distill.hta_kl.tau=2", "distill.hta_kl.rule=ascending",
                              "distill.hta_kl.detach_weights=false"))
        d.train()
        _, losses = d(x, y)
        assert set(losses) == {"ce", "hta"}
        assert losses["hta"].item() == pytest.approx(
            _asc_hta(s, t_logits, tau=2.0).item(), rel=1e-4)
    with pytest.raises(ConfigError, match="distill.hta_kl.mu"):
        _cfg("hta-kl", "distill.hta_kl.mu=0")


def test_hta_kl_golden_unequal_weights():
    # p = (0.7, 0.2, 0.1): ascending cumulative 0.1, 0.3, 1.0 -> head = {class 0} at mu = 0.5
    # q = (0.6, 0.1, 0.3): g_head = 0.1, g_tail = 0.1 + 0.2 = 0.3 -> w_head 1/4, w_tail 3/4
    p = [0.7, 0.2, 0.1]
    q = [0.6, 0.1, 0.3]
    zt = torch.tensor([[math.log(v) for v in p]])
    zs = torch.tensor([[math.log(v) for v in q]])
    fkl = sum(a * math.log(a / b) for a, b in zip(p, q))
    rkl = sum(b * math.log(b / a) for a, b in zip(p, q))
    want = 0.25 * fkl + 0.75 * rkl
    assert _asc_hta(zs, zt, tau=1.0).item() == pytest.approx(want, rel=1e-5)
    # the same classes in another order give the same value (the mask follows the classes)
    perm = [2, 0, 1]
    assert _asc_hta(zs[:, perm], zt[:, perm], tau=1.0).item() == pytest.approx(want, rel=1e-5)


# -- HTA-KL: K = 4 golden values, the mask's extremes, tau^2 ---------------------------------

P4 = [0.6, 0.2, 0.15, 0.05]          # ascending 0.05, 0.15, 0.2, 0.6 -> cumulative 0.05, 0.2, 0.4, 1


def _logits(probs, scale=1.0):
    return torch.tensor([[scale * math.log(v) for v in probs]], dtype=torch.float64)


def _fkl_rkl(p, q):
    return (sum(a * math.log(a / b) for a, b in zip(p, q)),
            sum(b * math.log(b / a) for a, b in zip(p, q)))


def test_head_mask_extremes():
    p = torch.tensor([P4])
    # mu at most the smallest probability: every class is head
    assert _asc_mask(p, 0.05).tolist() == [[True] * 4]
    assert _asc_mask(p, 1e-9).tolist() == [[True] * 4]
    # mu = 1: the head is the top-1 class alone
    assert _asc_mask(p, 1.0).tolist() == [[True, False, False, False]]
    # also where the float32 sum of the sorted probabilities rounds below 1 (0.99999988 for
    # this row): the cumulative mass is normalised, so the top-1 class stays in the head
    z = torch.randn(1, 7, generator=torch.Generator().manual_seed(10)) * 3
    probs = torch.softmax(z, -1)
    assert torch.sort(probs, -1).values.cumsum(-1)[0, -1].item() < 1.0
    m = _asc_mask(probs, 1.0)
    assert m.sum().item() == 1 and m[0, probs.argmax()].item()


def test_hta_kl_golden_four_classes():
    # mu = 0.3: head = {classes 0, 1} (cumulative 0.4 and 1 >= 0.3)
    # q = (0.4, 0.3, 0.2, 0.1): gaps (0.2, 0.1, 0.05, 0.05) -> g_head 0.3, g_tail 0.1
    q = [0.4, 0.3, 0.2, 0.1]
    fkl, rkl = _fkl_rkl(P4, q)
    want = 0.75 * fkl + 0.25 * rkl
    got = _asc_hta(_logits(q), _logits(P4), tau=1.0, mu=0.3).item()
    assert got == pytest.approx(want, rel=1e-5)
    # mu = 0.5: head = {class 0}: g_head 0.2, g_tail 0.2 -> equal weights
    got = _asc_hta(_logits(q), _logits(P4), tau=1.0, mu=0.5).item()
    assert got == pytest.approx(0.5 * fkl + 0.5 * rkl, rel=1e-5)
    # tau = 2 on logits 2 ln p, 2 ln q: the same distributions, times tau^2 = 4
    got = _asc_hta(_logits(q, 2.0), _logits(P4, 2.0), tau=2.0, mu=0.3).item()
    assert got == pytest.approx(4.0 * want, rel=1e-5)


def test_hta_kl_pure_rkl_when_the_head_matches():
    # q agrees with p on the head {class 0} (mu = 0.5) and differs only in the tail:
    # g_head = 0 -> w_tail = 1, the loss is the reverse KL alone (not the forward one)
    q = [0.6, 0.2, 0.02, 0.18]
    fkl, rkl = _fkl_rkl(P4, q)
    assert abs(fkl - rkl) > 0.04          # 0.238 vs 0.190: the two are told apart
    got = _asc_hta(_logits(q), _logits(P4), tau=1.0, mu=0.5).item()
    assert got == pytest.approx(rkl, rel=1e-5)


def test_hta_kl_all_head_is_hinton_kd():
    # mu below every teacher probability: M = 1 everywhere, w_head = 1 -> tau^2 KL(p || q)
    g = torch.Generator().manual_seed(3)
    z, t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    p_min = torch.softmax(t / 2.0, -1).min().item()
    got = _asc_hta(z, t, tau=2.0, mu=0.5 * p_min)
    assert torch.allclose(got, Fn.kd_loss(z, t, tau=2.0), rtol=1e-5)


# -- TSER-KD: tau on the CE (the unofficial variant) -----------------------------------------

def test_tser_kd_tau_on_ce():
    # K = 2, T = 2, tau = 2: z[0] = (ln 9, 0) -> softened (ln 3, 0): CE(label 0) = -ln 3/4;
    # z[1] = (0, 0): CE = ln 2 either way
    zs = torch.tensor([[[2 * math.log(3.0), 0.0]], [[0.0, 0.0]]])
    y = torch.tensor([0])

    class _Fixed(torch.nn.Module):
        is_spiking = True

        def forward(self, x, timestep_logits=False):
            return zs if timestep_logits else zs.mean(0)

    cfg = _cfg("tser-kd", "distill.tser_kd.tau=2", "distill.tser_kd.alpha=0.5",
               "distill.tser_kd.tau_on_ce=true")
    d = build_method("tser-kd", _Fixed(), torch.nn.Linear(1, 2), cfg)
    from spikedistill.distill.methods import tser_kd
    d.teacher_targets = lambda x, return_features=False: torch.zeros(1, 2)
    _, losses = d(torch.zeros(1, 1), y)
    want = 0.5 * 0.5 * (-math.log(0.75) + math.log(2.0))
    assert losses["ce"].item() == pytest.approx(want, rel=1e-6)
    assert tser_kd.TSERKDConfig().tau_on_ce is True       # default: CE softened, as TSCELoss(tau)
