"""Golden tests against the authors' released code.

Every number here was produced by running the authors' own loss code (outside this repository,
in a scratch folder; their code is not part of spikedistill) on the deterministic inputs of
:func:`det`, and is compared with the registered method at the authors' defaults: values and
gradients. Each section names the repository, commit and file the numbers come from.
"""

from __future__ import annotations

import pytest
import torch

from spikedistill.distill import build_method
from spikedistill.distill import functional as Fn
from spikedistill.distill.context import StepContext

from method_helpers import batch, method_cfg, pair  # noqa: E402


def det(shape, phase: float = 0.0, scale: float = 3.0) -> torch.Tensor:
    """Deterministic inputs: ``scale sin(0.7 i + phase) + 0.5 cos(1.3 i^2 + phase)`` over the flat
    index ``i`` (float64, then float32), reshaped to ``shape``; no RNG involved."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.float64)
    return (scale * torch.sin(0.7 * i + phase) + 0.5 * torch.cos(1.3 * i * i + phase)).reshape(shape).float()


class FixedStudent(torch.nn.Module):
    """A 'student' whose per-timestep logits are a given leaf tensor ``z`` ``[T, B, K]``."""

    is_spiking = True

    def __init__(self, z: torch.Tensor):
        super().__init__()
        self.z = z
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, timestep_logits=False, **_):
        return self.z if timestep_logits else self.z.mean(0)


Y = torch.tensor([0, 2, 4, 1])


def fixed_losses(method: str, z: torch.Tensor, teacher_logits=None, *overrides: str, ctx=None):
    """The losses of ``method`` (its defaults plus ``overrides``) for the per-timestep logits
    ``z`` of a :class:`FixedStudent`, the teacher's logits ``teacher_logits`` and labels ``Y``."""
    teacher = None if teacher_logits is None else torch.nn.Linear(1, z.shape[-1])
    d = build_method(method, FixedStudent(z), teacher, method_cfg(method, *overrides))
    if teacher_logits is not None:
        d.teacher_targets = lambda x, return_features=False: teacher_logits
    d.train()
    return d(torch.zeros(z.shape[1], 1), Y, ctx)[1]


def on_pair(method: str, *overrides: str):
    """``(distiller, student, teacher, x, y)``: ``method`` (train mode) on the tiny pair and batch
    of ``method_helpers`` (``pair()``, ``batch()``)."""
    student, teacher = pair()
    x, y = batch()
    d = build_method(method, student, teacher, method_cfg(method, *overrides))
    d.train()
    return d, student, teacher, x, y


def total_and_grad(losses: dict, z: torch.Tensor):
    total = sum(losses.values())
    (g,) = torch.autograd.grad(total, z)
    return total.item(), g


def assert_golden(value: float, g: torch.Tensor, want_value: float, want_rows: list,
                  want_norm: float, *, rel: float = 1e-6, atol: float = 1e-7) -> None:
    """``value`` equals ``want_value``, ``g[index]`` each row of ``want_rows`` (``[(index,
    [...]), ...]``) and ``|g|`` equals ``want_norm``: the numbers of the authors' code."""
    assert value == pytest.approx(want_value, rel=rel)
    for index, row in want_rows:
        assert torch.allclose(g[index], torch.tensor(row), atol=atol), (index, g[index])
    assert g.norm().item() == pytest.approx(want_norm, rel=1e-5)


# -- TKS: github.com/Brain-Cog-Lab/TKS @ 52401db4e1e0e60ab4b8251fb9390901a3bbda20 -------------
# train_main.py (Custom_CrossEntropy_PSKD, current_alpha at lines 779-780, loss at 798) and
# RCNN.py (metarightsltet.forward, lines 100-107); nn.CrossEntropyLoss as loss_fn, T = 3.
# z = det((3, 4, 5)), y = (0, 2, 4, 1), alpha 0.7.

TKS_GOLDEN = {
    # schedule: (ctx epoch, epochs, loss, grad[0, 0], grad[2, 3], |grad|)
    "static": (1, 4, 8.147439956665039,
               [-0.16115380823612213, -0.003222385421395302, 0.08794959634542465,
                0.07249395549297333, 0.003932630643248558],
               [0.07409863919019699, -0.010649856179952621, -0.017229128628969193,
                -0.03689192235469818, -0.009327705949544907], 0.5492722988128662),
    "linear": (1, 4, 5.5705485343933105,
               [-0.1132020652294159, 0.00833344180136919, 0.05783819034695625,
                0.04385707899928093, 0.0031733401119709015],
               [0.04432398080825806, -0.03649913892149925, -0.0026103435084223747,
                -0.007257949560880661, 0.002043433953076601], 0.3973674774169922),
}


@pytest.mark.parametrize("schedule", ["static", "linear"])
def test_tks_matches_released_code(schedule):
    epoch, epochs, loss, g00, g23, gnorm = TKS_GOLDEN[schedule]
    z = det((3, 4, 5)).requires_grad_(True)
    losses = fixed_losses("tks", z, None, f"distill.tks.schedule={schedule}",
                          ctx=StepContext.at(epoch, 0, epochs=epochs, steps_per_epoch=1))
    value, g = total_and_grad(losses, z)
    assert_golden(value, g, loss, [
        ((0, 0), g00),
        ((2, 3), g23),
    ], gnorm, rel=1e-5, atol=1e-6)


# -- TSER-KD: github.com/matteogianferrari/tser-kd @ 86d3653c9c31f53f995ab57583e28a3efd31396a --
# tser_kd/model/loss.py TSERKDLoss(alpha=1e-2, gamma=1e-3, tau=5) (config_kd.py defaults), a
# public third-party implementation (the paper's own code was not reachable).
# z = det((2, 4, 5)), teacher det((4, 5), phase=1), y = (0, 2, 4, 1).

def test_tser_kd_matches_public_code_at_its_defaults():
    z = det((2, 4, 5)).requires_grad_(True)
    losses = fixed_losses("tser-kd", z, det((4, 5), phase=1.0))
    value, g = total_and_grad(losses, z)
    assert value == pytest.approx(1.8429701328277588, rel=1e-6)
    assert losses["ce"].item() == pytest.approx(0.99 * 1.8557041883468628, rel=1e-6)
    assert losses["er"].item() == pytest.approx(-1e-3 * 1.5465728044509888, rel=1e-6)
    assert torch.allclose(g[0, 0], torch.tensor([-0.02176307700574398, 0.004721338395029306,
                                                 0.006338424980640411, 0.006392891518771648,
                                                 0.004310418851673603]), atol=1e-7)
    assert torch.allclose(g[1, 3], torch.tensor([0.0023906196001917124, -0.02045844867825508,
                                                 0.005738109350204468, 0.006821627728641033,
                                                 0.005508095026016235]), atol=1e-7)
    assert g.norm().item() == pytest.approx(0.066268190741539, rel=1e-5)


# -- e2KD: github.com/m-parchami/GoodTeachersExplain @ a1b7bb532bff395988e6695d65a49461bfedb099 --
# bcos/distillation_methods/TeachersExplain.py: TeachersExplainCriterion and the GRAD_CAM_POS
# branch of explanation_aware_forward (student Grad-CAM with create_graph, both maps resized to
# the input size by torchvision's resize), with the base values of
# bcos/experiments/ImageNet/final_live/experiment_parameters.py (temperature 1, T^2 rescale,
# coefficients 1), run on this package's tiny pair (method_helpers.pair(), batch()): the
# student's "features" the time-averaged last spike stage [4, 64, 2, 2], input 8 x 8.

def test_e2kd_matches_released_code_on_the_tiny_pair():
    d, student, teacher, x, y = on_pair("e2kd")
    _, losses = d(x, y)
    assert losses["exp"].item() == pytest.approx(0.1517716646194458, rel=1e-5)
    assert losses["kd"].item() == pytest.approx(0.017930857837200165, rel=1e-5)
    assert losses["ce"].item() == pytest.approx(1.5431463718414307, rel=1e-6)
    total = sum(losses.values())
    assert total.item() == pytest.approx(1.7128489017486572, rel=1e-6)
    total.backward()
    gw = student.head[0].weight.grad
    assert torch.allclose(gw[0, :4], torch.tensor([-0.015102861449122429, 0.0009736586362123489,
                                                   0.00328911654651165, -0.0021236888132989407]),
                          atol=2e-6)
    assert gw.norm().item() == pytest.approx(1.1244544982910156, rel=1e-4)
    allg = torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None])
    assert allg.norm().item() == pytest.approx(25.480247497558594, rel=1e-4)
    # at feature size (no resize) the explanation term is 0.2202 (the released code: 0.1518)
    d_feat = build_method("e2kd", student, teacher, method_cfg("e2kd", "distill.e2kd.map_size=feature"))
    d_feat.train()
    assert d_feat(x, y)[1]["exp"].item() == pytest.approx(0.2201874852180481, rel=1e-5)


# -- HTA-KL = AKL per timestep: github.com/wutaiqiang/LLM_KD_AKL @ ff278be603df44b10afc07da3c7962ec8218aca7
# AKL.py get_ratio (mu) + get_kl, combined as in its AKL(); the T*B student rows as tokens of one
# sequence, every token counted. z = det((2, 4, 5)), teacher det((4, 5), phase=1, scale=1)
# (cumulative descending mass per row 0.32/0.61, 0.64, 0.42/0.68, 0.36/0.64: the heads differ
# between mu 0.5 and 0.8). AKL has no temperature: tau 1 (our default).
AKL_GOLDEN = {
    0.5: (0.34933578968048096,
          [-0.014681722968816757, -0.00913904421031475, 0.005617938935756683,
           0.01814301311969757, 5.9819736634381115e-05],
          [0.03742114081978798, -0.014457116834819317, -0.014120932668447495,
           -0.00603533023968339, -0.002807755721732974], 0.10408685356378555),
    0.8: (0.3866330683231354,
          [-0.024795547127723694, -0.0071427831426262856, 0.011399595998227596,
           0.019884640350937843, 0.0006540907197631896],
          [0.03985320031642914, -0.01375504583120346, -0.015767129138112068,
           -0.0071516199968755245, -0.0031794095411896706], 0.11249080300331116),
}


@pytest.mark.parametrize("mu", [0.5, 0.8])
def test_hta_kl_matches_released_akl(mu):
    loss, g00, g12, gnorm = AKL_GOLDEN[mu]
    z = det((2, 4, 5)).requires_grad_(True)
    losses = fixed_losses("hta-kl", z, det((4, 5), phase=1.0, scale=1.0), f"distill.hta_kl.mu={mu}")
    (g,) = torch.autograd.grad(losses["hta"], z)
    assert_golden(losses["hta"].item(), g, loss, [
        ((0, 0), g00),
        ((1, 2), g12),
    ], gnorm, rel=1e-6, atol=1e-7)


def test_hta_kl_ascending_is_its_own_method_and_differs_from_akl():
    z = det((2, 4, 5)).requires_grad_(True)
    got = fixed_losses("hta-kl-ascending", z, det((4, 5), phase=1.0, scale=1.0))["hta"].item()
    want = Fn.hta_kl_loss(z, det((4, 5), phase=1.0, scale=1.0), tau=1.0, rule="ascending",
                          detach_weights=False).item()
    assert got == pytest.approx(want, rel=1e-6)
    assert abs(got - AKL_GOLDEN[0.5][0]) > 1e-3


# -- BKDSNN: github.com/Intelligent-Computing-Research-Group/BKDSNN @ dd6bd539479d4f3ce70836084be0f64d86060824
# Spike-Element-Wise-ResNet/cifar10dvs/loss.py: BRDLoss(alpha_mgd=2e-3, lambda_mgd=0.15,
# use_clip=False) and get_logits_loss(temp=2) (its one ".cuda()" removed to run on CPU), the
# "mixed" loss of train_distillation.py. Parameters of align / generation set to
# det(shape, phase=i, scale=0.3) in named order; the mask drawn by torch.rand after
# torch.manual_seed(0) (kept channels 1,1,0,0,1 / 1,1,1,1,1: the aligned 5 channels).

def _set_params(mods):
    i = 0
    for m in mods:
        for _, p in m.named_parameters():
            with torch.no_grad():
                p.copy_(det(tuple(p.shape), phase=float(i), scale=0.3))
            i += 1


def test_bkdsnn_blurred_feature_aligns_then_masks_as_released():
    align = torch.nn.Conv2d(3, 5, kernel_size=1)
    gen = torch.nn.Sequential(torch.nn.Conv2d(5, 5, 3, padding=1), torch.nn.ReLU(inplace=True),
                              torch.nn.Conv2d(5, 5, 3, padding=1))
    _set_params([align, gen])
    fs = det((2, 3, 4, 4), phase=0.5).requires_grad_(True)
    torch.manual_seed(0)
    mask = Fn.channel_mask(2, 5, 0.15)
    assert mask.flatten().int().tolist() == [1, 1, 0, 0, 1, 1, 1, 1, 1, 1]
    loss = 2e-3 * Fn.blurred_feature_loss(fs, det((2, 5, 4, 4), phase=2.0), gen, mask, align=align)
    (g,) = torch.autograd.grad(loss, fs)
    assert_golden(loss.item(), g, 15.25410270690918, [
        ((0, slice(None), 0, 0), [0.29473522305488586, 0.0028803767636418343, 0.1942117065191269]),
        ((1, 2, 3), [0.03166100010275841, -0.005584500730037689, -0.061096321791410446,
                    -0.09578816592693329]),
    ], 3.7106082439422607, rel=1e-5, atol=1e-5)


def test_bkdsnn_wsld_logit_term_matches_released_code():
    zs = det((4, 5)).requires_grad_(True)
    loss = Fn.wsld_loss(zs, det((4, 5), phase=1.0), torch.tensor([0, 2, 4, 1]), tau=2.0)
    (g,) = torch.autograd.grad(loss, zs)
    assert_golden(loss.item(), g, 4.037903308868408, [
        ((0,), [-0.10872785747051239, -0.04777569696307182, 0.029450442641973495,
               0.08945775777101517, 0.03759533911943436]),
        ((3,), [0.0073609305545687675, 0.001253146561793983, -0.02630602940917015,
               -0.014427886344492435, 0.03211984783411026]),
    ], 0.21706728637218475, rel=1e-6, atol=1e-7)


def test_bkdsnn_method_matches_released_mixed_loss_on_the_tiny_pair():
    # same widths (64): no align; the method's generator copied into BRDLoss.generation,
    # the mask drawn after torch.manual_seed(123); loss = CE + WSLD + BRD
    d, student, teacher, x, y = on_pair("bkdsnn")
    assert "align" not in d.extras
    torch.manual_seed(123)
    _, losses = d(x, y)
    total = sum(losses.values())
    assert total.item() == pytest.approx(5.476046085357666, rel=1e-5)
    total.backward()
    assert student.head[0].weight.grad.norm().item() == pytest.approx(1.0727163553237915, rel=1e-4)
    allg = torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None])
    assert allg.norm().item() == pytest.approx(12.333755493164062, rel=1e-4)
    assert d.extras["generator"][0].weight.grad.norm().item() == pytest.approx(0.026624098420143127,
                                                                               rel=1e-4)


# -- KDSNN: no official code; BKDSNN's re-implementation KDSNNLoss (same repository and commit
# as above, cifar10dvs/loss.py), alpha_mgd 2e-3, align 1x1 conv 3 -> 5 with bias set by
# det(shape, phase=i, scale=0.3).

def test_kdsnn_feature_loss_matches_bkdsnn_reimplementation():
    align = torch.nn.Conv2d(3, 5, kernel_size=1)
    _set_params([align])
    fs = det((2, 3, 4, 4), phase=0.5).requires_grad_(True)
    loss = 2e-3 * Fn.feature_mse_loss(align(fs), det((2, 5, 4, 4), phase=2.0), reduction="batch_sum")
    (g,) = torch.autograd.grad(loss, fs)
    assert_golden(loss.item(), g, 1.0904829502105713, [
        ((0, slice(None), 0, 0), [-0.006184680387377739, -0.0026283280458301306,
                                 -0.0005149331991560757]),
    ], 0.056460022926330566, rel=1e-5, atol=1e-7)


def test_kdsnn_method_defaults_are_the_reimplementation():
    d, student, teacher, x, y = on_pair("kdsnn")
    _, losses = d(x, y)
    with torch.no_grad():
        _, sf = student(x, return_features=True)
        _, tf = teacher.eval()(x, return_features=True)
    want = 2e-3 * ((sf[-1].mean(0) - tf[-1]) ** 2).sum() / x.shape[0]
    assert losses["feat"].item() == pytest.approx(want.item(), rel=1e-5)
    d_img = build_method("kdsnn", student, teacher, method_cfg("kdsnn", "distill.kdsnn.setting=imagenet"))
    d_img.train()
    assert d_img(x, y)[1]["feat"].item() == pytest.approx(want.item() * 7e-5 / 2e-3, rel=1e-5)


# -- CAT-KD: github.com/GzyAftermath/CAT-KD @ 4467073ca31b9929e7c45f5a6761e5e1b7c9442f ---------
# mdistiller/distillers/CAT_KD.py CAT_loss on CAMs det((2, 5, 8, 8), phase=0.5) (student) and
# det((2, 5, 4, 4), phase=2) (teacher).

@pytest.mark.parametrize("resolution,normalize,loss,g4,gnorm", [
    (2, False, 1.5386676788330078, [0.005205688066780567] * 4, 0.09806463122367859),
    (4, True, 0.12207558006048203, [-0.00011206990166101605, -0.00011206990166101605,
                                    -1.8467682821210474e-05, -1.8467682821210474e-05],
     0.0025893484707921743),
])
def test_catkd_loss_matches_released_code(resolution, normalize, loss, g4, gnorm):
    s = det((2, 5, 8, 8), phase=0.5).requires_grad_(True)
    got = Fn.cat_loss(s, det((2, 5, 4, 4), phase=2.0), resolution=resolution, normalize=normalize)
    (g,) = torch.autograd.grad(got, s)
    assert_golden(got.item(), g, loss, [
        ((0, 0, 0, slice(0, 4)), g4),
    ], gnorm, rel=1e-6, atol=1e-8)


def test_catkd_pair_sets_the_released_per_pair_values():
    d, student, teacher, x, y = on_pair("catkd", "distill.catkd.pair=res56_res20")
    assert d.settings() == (0.7, 2, False)
    d.train()
    cat_pair = d(x, y)[1]["cat"].item()
    d15 = build_method("catkd", student, teacher, method_cfg("catkd"))
    d15.train()
    assert cat_pair == pytest.approx(d15(x, y)[1]["cat"].item() * 0.7 / 15.0, rel=1e-5)


# -- TDD: github.com/Intelli-Chip-Lab/snn_temporal_decoupling_distillation @ e3f5fd43b8ecca6804775cd9cd54a8d148cb1c57
# model/layer.py kd_loss / cal_loss / make_teacher combined as experiment/cifar/main.py train()
# (lines 60-74): alpha 0.2, beta 0.5 (README commands), temperature 3. z = det((3, 4, 5)),
# teacher det((4, 5), phase=1), y = (0, 2, 4, 1) (sample 0 correct at t = 1, 2; the others at t = 2).

def test_tdd_matches_released_code():
    z = det((3, 4, 5)).requires_grad_(True)
    losses = fixed_losses("tdd", z, det((4, 5), phase=1.0))
    assert set(losses) == {"ce", "kd", "self"}
    assert losses["ce"].item() == pytest.approx(2.6254796981811523, rel=1e-6)
    assert losses["self"].item() == pytest.approx(0.5 * 2.039409875869751, rel=1e-6)
    assert losses["kd"].item() == pytest.approx(0.2 * 1.6175488233566284, rel=1e-6)
    value, g = total_and_grad(losses, z)
    assert_golden(value, g, 3.9686942100524902, [
        ((0, 0), [-0.12481412291526794, 0.0018465407192707062, 0.05385177209973335,
                 0.05665991082787514, 0.012455904856324196]),
        ((2, 3), [0.028258930891752243, -0.03270105645060539, 0.020788956433534622,
                 -0.002276394981890917, -0.014070430770516396]),
    ], 0.3906017243862152, rel=1e-6, atol=1e-7)


def test_tdd_self_target_is_the_mean_of_correct_timesteps():
    z = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]], [[4.0, 1.0]]])     # T 3, B 1, K 2; label 0
    assert torch.allclose(Fn.tdd_target_logits(z, torch.tensor([0])), torch.tensor([[3.0, 0.5]]),
                          atol=1e-6)
    # no correct timestep: a zero (uniform) target
    z_wrong = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]]])           # label 1 never predicted
    assert torch.equal(Fn.tdd_target_logits(z_wrong, torch.tensor([1])), torch.zeros(1, 2))


# -- SeAl-KD: github.com/KaiSUN1/SeAl @ b30ead65797a3eab1b96d4827ee954637a5170b6 --------------
# model/layer.py cal_loss, time_step_kd_loss(method='sta'), align_teacher_student_logits
# (method='ela'), kd_loss, combined as experiment/cifar/main.py train(): alpha 0.6, beta 0.15
# (README commands), temperature 3. z = det((3, 4, 5)), teacher det((4, 5), phase=1),
# y = (0, 2, 4, 1): timesteps 0 and 1 are wrong on most samples (ELA active), 2 on none.

def test_seal_kd_matches_released_code():
    z = det((3, 4, 5)).requires_grad_(True)
    losses = fixed_losses("seal-kd", z, det((4, 5), phase=1.0))
    assert losses["ce"].item() == pytest.approx(2.6254796981811523, rel=1e-6)
    assert losses["ela"].item() == pytest.approx(0.6 * 1.6810446977615356, rel=1e-6)
    assert losses["sta"].item() == pytest.approx(0.15 * 1.9574193954467773, rel=1e-6)
    value, g = total_and_grad(losses, z)
    assert_golden(value, g, 3.9277195930480957, [
        ((0, 0), [-0.12801696360111237, 0.003985824063420296, 0.04134686291217804,
                 0.061478402465581894, 0.02120586298406124]),
        ((2, 3), [0.053574711084365845, -0.004964400082826614, 0.026518061757087708,
                 -0.022935276851058006, -0.05219309777021408]),
    ], 0.3355146646499634, rel=1e-6, atol=1e-7)
    # one timestep: no temporal term
    assert Fn.similarity_temporal_loss(z[:1]).item() == 0.0
