"""DeiT distillation through a second head (``deit``), as the Spike-driven Transformer V2
trains it. Golden values and gradients from the authors' ``DistillationLoss``
(BICLab/Spike-Driven-Transformer-V2 @ 35f245f4f79acf1a2b3ef22698c58ab05c1ede33,
``classification/util/kd_loss.py``), run by the issue-16 helper outside the repository
(/work/scratch/16b/run.py: ``CrossEntropyLoss`` base criterion, alpha 0.5, a teacher returning
``T_LOGITS``, float64); then the registered method on a tiny Spikformer and a ResNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedistill.distill import build_method
from spikedistill.distill import functional as Fn
from spikedistill.errors import ConfigError
from spikedistill.models import create_model
from spikedistill.models.contract import distillation_head

from method_helpers import K, batch as _batch, method_cfg as _cfg, pair as _pair  # noqa: E402

Z = [[3.081992149353, -0.586857795715, -4.357578754425, 1.136862516403, -2.169044733047],
     [-2.797190904617, 0.806693673134, 1.676052689552, -1.43851518631, -0.806687057018],
     [-1.193270683289, 0.364072978497, -1.713349223137, 2.201208353043, -2.142374753952]]
ZKD = [[0.245402485132, -1.132634997368, 0.746229290962, -1.783990621567, -3.018215417862],
       [0.740787088871, 2.913005113602, 1.879619836807, 1.549697637558, 0.383738845587],
       [2.527589559555, -2.58087015152, -1.582205414772, -0.041758947074, -1.436960101128]]
T_LOGITS = [[1.555910348892, -3.937565803528, 0.575985193253, 1.62831401825, -6.656337738037],
            [0.776953577995, -3.089106559753, -1.5022752285, 0.820103168488, -2.754300117493],
            [-0.12126326561, 0.864350438118, -0.022611923516, -2.743486404419, -3.265751123428]]
Y = [1, 4, 0]
# DistillationLoss(...)(inputs, (outputs, outputs_kd), labels) and d loss / d outputs_kd
GOLDEN = {
    ("hard", 1.0): (3.4466260895959495,
                    [[0.054256602091, 0.013676611717, 0.089528005627, -0.159536521631, 0.002075302196],
                     [0.010517867264, 0.092323016804, 0.032848569682, -0.143049212928, 0.007359759179],
                     [0.149073259569, -0.165765461062, 0.002446461967, 0.011416838802, 0.002828900724]]),
    ("soft", 1.0): (1.894811620216768,
                    [[-0.002727444988, 0.002679465819, 0.012808958319, -0.013172355534, 0.000411376383],
                     [-0.013070937305, 0.018146838322, 0.0050164037, -0.011120125946, 0.001027821228],
                     [0.023010358027, -0.018051563409, -0.007020480382, 0.001789095743, 0.00027259002]]),
    ("soft", 3.0): (1.972343246281191,
                    [[-0.006329784315, 0.011871940937, 0.008016139435, -0.020588135062, 0.007029839004],
                     [-0.017737978005, 0.021698665159, 0.006489027256, -0.013606229953, 0.003156515544],
                     [0.023134069695, -0.024585458917, -0.012719392548, 0.010001339719, 0.004169442051]]),
}
# d loss / d outputs (the class head: (1 - alpha) CE, the same for every type)
GRAD_Z = [[0.1419280302, -0.163046680681, 8.3388005e-05, 0.020291264365, 0.000743998111],
          [0.001220183563, 0.044830373372, 0.106937537591, 0.004747779463, -0.157735873989],
          [-0.162103817338, 0.021656181709, 0.002712494636, 0.135968918272, 0.001766222721]]


@pytest.mark.parametrize("kind,tau", list(GOLDEN))
def test_deit_loss_matches_the_released_distillation_loss(kind, tau):
    z = torch.tensor(Z, requires_grad=True)
    zkd = torch.tensor(ZKD, requires_grad=True)
    y = torch.tensor(Y)
    loss = 0.5 * F.cross_entropy(z, y) + 0.5 * Fn.deit_distillation_loss(
        zkd, torch.tensor(T_LOGITS), kind=kind, tau=tau)
    loss.backward()
    want, want_gkd = GOLDEN[(kind, tau)]
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert torch.allclose(zkd.grad, torch.tensor(want_gkd), atol=1e-7, rtol=1e-5)
    assert torch.allclose(z.grad, torch.tensor(GRAD_Z), atol=1e-7, rtol=1e-5)


def _head_input(model):
    """A forward hook recording the input ``h`` of the model's classifier."""
    seen = {}
    model.classifier.register_forward_hook(lambda m, args, out: seen.__setitem__("h", args[0]))
    return seen


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_method_on_a_spikformer_with_a_distillation_head(kind):
    torch.manual_seed(0)
    student = create_model("spikformer_4_384", num_classes=K, T=2, depth=1, dim=32,
                           distill_head=True)
    _, teacher = _pair()
    d = build_method("deit", student, teacher,
                     _cfg("deit", f"distill.deit.type={kind}", "distill.deit.tau=2.0"))
    d.train()
    x, y = _batch()
    seen = _head_input(student)
    logits, losses = d(x, y)
    head = distillation_head(student)
    with torch.no_grad():
        h = seen["h"]
        z, z_kd = F.linear(h, head.weight, head.bias), head.kd(h)
        t = teacher(x)
    assert torch.allclose(logits, (z + z_kd) / 2, atol=1e-6)
    assert losses["ce"].item() == pytest.approx(0.5 * F.cross_entropy(z, y).item(), rel=1e-5)
    want = Fn.deit_distillation_loss(z_kd, t, kind=kind, tau=2.0)
    assert losses["kd"].item() == pytest.approx(0.5 * want.item(), rel=1e-5)
    (losses["ce"] + losses["kd"]).backward()
    assert head.kd.weight.grad is not None and head.kd.weight.grad.abs().sum() > 0
    assert head.weight.grad.abs().sum() > 0


def test_method_needs_the_head_and_validates_its_section():
    student, teacher = _pair()
    with pytest.raises(ConfigError, match="model.distill_head"):
        build_method("deit", student, teacher, _cfg("deit"))
    with pytest.raises(ConfigError, match="distill.deit.type"):
        _cfg("deit", "distill.deit.type=none")
    with pytest.raises(ConfigError, match="distill.deit.alpha"):
        _cfg("deit", "distill.deit.alpha=1.5")
