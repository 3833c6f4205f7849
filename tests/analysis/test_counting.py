"""Counting of firing rates, FLOPs, SOPs and energy on hand-built networks with known spikes."""

import pytest
import torch
import torch.nn as nn

from spikedistill.analysis import count_model
from spikedistill.analysis.counting import PJ_TO_MJ, OpCounter
from spikedistill.models import create_model
from spikedistill.neurons import LIF


class TwoLayer(nn.Module):
    """fc1 (real image in, run once) -> repeat over T=2 -> LIF -> fc2 (spikes in) -> LIF."""

    T = 2

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3, bias=False)
        self.lif1 = LIF(backend="torch")
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.lif2 = LIF(backend="torch")
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1., 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]))
            self.fc2.weight.copy_(torch.tensor([[1.5, 0, 0], [0, 0.5, 0.5]]))

    def forward(self, x):
        y = self.fc1(x)                                     # [B, 3], once per image
        s1 = self.lif1(y.unsqueeze(0).expand(self.T, *y.shape))   # [T, B, 3]
        s2 = self.lif2(self.fc2(s1))                        # [T, B, 2]
        return s2.mean(0)


def _layer(summary, name):
    return next(r for r in summary["layers"] if r["name"] == name)


def _neuron(summary, name):
    return next(r for r in summary["neurons"] if r["name"] == name)


def test_two_layer_counts_by_hand():
    # LIF: u = 0.5 u + I, spike if u > 1, hard reset.
    # image 0 currents (2, .8, .6): t0 spikes [1,0,0], t1 [1,1,0]   (0.8: .8 -> .4+.8=1.2)
    # image 1 currents (0, 2, .8):  t0 spikes [0,1,0], t1 [0,1,1]
    # lif1: 6 spikes / (T*B*3 = 12) = 0.5
    # fc2 currents, image 0: t0 (1.5, 0), t1 (1.5, .5) -> n0 fires twice, n1 never
    #               image 1: t0 (0, .5), t1 (0, 1.0)  -> n1: .5, then .25 + 1 = 1.25 fires once
    # lif2: 3 spikes / (2*2*2 = 8) = 0.375; network: 9 / 20 = 0.45
    x = torch.tensor([[2.0, 0.8, 0.6, 5.0], [0.0, 2.0, 0.8, 1.0]])
    s = count_model(TwoLayer(), x, e_mac=4.6, e_ac=0.9)
    assert s["images"] == 2
    assert _neuron(s, "lif1")["firing_rate"] == pytest.approx(0.5)
    assert _neuron(s, "lif2")["firing_rate"] == pytest.approx(0.375)
    assert _neuron(s, "lif1")["spikes_per_image"] == pytest.approx(3.0)
    assert s["totals"]["firing_rate"] == pytest.approx(0.45)
    fc1, fc2 = _layer(s, "fc1"), _layer(s, "fc2")
    # fc1: real input (the image), FLOPs 4*3 = 12, once per image -> 12 MACs
    assert fc1["input_kind"] == "real" and fc1["flops"] == 12 and fc1["calls_per_image"] == 1
    assert fc1["macs"] == 12 and fc1["sops"] == 0
    # fc2: spikes in, FLOPs 3*2 = 6, T = 2 calls per image, input rate 0.5 -> 0.5*2*6 = 6 SOPs
    assert fc2["input_kind"] == "spike" and fc2["flops"] == 6 and fc2["calls_per_image"] == 2
    assert fc2["input_rate"] == pytest.approx(0.5)
    assert fc2["sops"] == pytest.approx(6.0) and fc2["macs"] == 0
    tot = s["totals"]
    assert tot["flops"] == 18 and tot["macs"] == 12 and tot["sops"] == pytest.approx(6.0)
    # E = 4.6 pJ * 12 + 0.9 pJ * 6 = 60.6 pJ = 6.06e-8 mJ
    assert tot["energy_mj"] == pytest.approx(60.6e-9)
    assert fc2["energy_mj"] == pytest.approx(5.4e-9)
    # other energy constants
    s2 = count_model(TwoLayer(), x, e_mac=3.0, e_ac=0.1)
    assert s2["totals"]["energy_mj"] == pytest.approx((3.0 * 12 + 0.1 * 6) * PJ_TO_MJ)


class PoolNet(nn.Module):
    """LIF -> (AvgPool2d(2) -> conv1x1) and a grouped conv3x3 on the spikes directly (T = 1)."""

    def __init__(self):
        super().__init__()
        self.lif = LIF(backend="torch")
        self.pool = nn.AvgPool2d(2)
        self.conv1x1 = nn.Conv2d(2, 3, 1, bias=False)
        self.conv3 = nn.Conv2d(2, 4, 3, padding=1, groups=2, bias=False)

    def forward(self, x):
        s = self.lif(x.unsqueeze(0)).flatten(0, 1)          # [1*B, 2, 4, 4]
        return self.conv1x1(self.pool(s)).sum() + self.conv3(s).sum()


def test_pooled_spikes_and_grouped_conv():
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = 2.0      # two spikes in channel 0's window (0, 0)
    x[0, 1, 3, 3] = 2.0                      # one spike in channel 1's window (1, 1)
    x[0, 1, 0, 0] = 0.9                      # below threshold: no spike
    s = count_model(PoolNet(), x)
    assert s["totals"]["firing_rate"] == pytest.approx(3 / 32)
    c1 = _layer(s, "conv1x1")
    # pooled input values: 0.5 and 0.25 at 2 of the 2*2*2 = 8 positions
    assert c1["input_kind"] == "pooled_spike"
    assert c1["flops"] == 3 * 2 * 1 * 1 * 2 * 2          # C_out * C_in * k*k * H_out*W_out = 24
    assert c1["input_rate"] == pytest.approx(2 / 8)      # mean(input != 0)
    assert c1["input_mean"] == pytest.approx(0.75 / 8)   # mean(input)
    assert c1["sops"] == pytest.approx(0.25 * 24) and c1["macs"] == 0
    c3 = _layer(s, "conv3")
    assert c3["input_kind"] == "spike"
    assert c3["flops"] == 4 * (2 // 2) * 9 * 16          # groups=2: C_in/groups = 1 -> 576
    assert c3["sops"] == pytest.approx(3 / 32 * 576)


def test_binary_image_is_still_a_mac_layer():
    # the model's own input is real by convention, even when it happens to be all zero
    x = torch.zeros(2, 4)
    s = count_model(TwoLayer(), x)
    assert _layer(s, "fc1")["input_kind"] == "real" and _layer(s, "fc1")["macs"] == 12
    assert s["totals"]["sops"] == 0 and s["totals"]["firing_rate"] == 0


def test_silent_network_has_zero_rate_and_zero_sops_beyond_stem():
    torch.manual_seed(0)
    m = create_model("spiking_resnet20", num_classes=10, T=2, last_activation="lif",
                     neuron={"threshold": 1e9, "backend": "torch"})
    s = count_model(m, torch.zeros(2, 3, 16, 16))
    assert s["totals"]["firing_rate"] == 0
    assert all(r["firing_rate"] == 0 for r in s["neurons"])
    assert s["totals"]["sops"] == 0
    stem, head1 = _layer(s, "stem"), _layer(s, "head.1")
    assert stem["macs"] == stem["flops"] == 16 * 3 * 9 * 16 * 16
    # only the image-fed stem and the head's second Linear (fed by head.0's bias) do MACs
    assert s["totals"]["macs"] == stem["flops"] + head1["flops"]
    assert all(r["macs"] == 0 for r in s["layers"] if r["name"] not in ("stem", "head.1"))


def test_student_calls_per_image_and_relu_last_activation():
    torch.manual_seed(0)
    m = create_model("spiking_resnet20", num_classes=10, T=3, last_activation="relu",
                     neuron={"backend": "torch"})
    with torch.no_grad():
        m.layer3[-1].bn2.bias.fill_(0.3)       # the ReLU output is certainly real-valued
    s = count_model(m, torch.randn(2, 3, 16, 16))
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["stem"]["calls_per_image"] == 1          # runs once, output repeated
    assert rows["layer1.0.conv1"]["calls_per_image"] == 3  # folded [T*B, ...]
    assert rows["layer2.0.shortcut.1"]["input_kind"] == "pooled_spike"
    assert rows["head.0"]["calls_per_image"] == 1 and rows["head.0"]["input_kind"] == "real"
    assert rows["head.0"]["macs"] == 64 * 256
    assert len(s["neurons"]) == 1 + 2 * 9 - 1            # stem + 2 per block, last one ReLU
    # SOPs = rate * T * FLOPs for every spike-driven layer
    for r in s["layers"]:
        if r["input_kind"] in ("spike", "pooled_spike"):
            assert r["sops"] == pytest.approx(r["input_rate"] * 3 * r["flops"])


def test_resnet19_flops():
    m = create_model("spiking_resnet19", num_classes=10, T=1, width_mult=8,
                     neuron={"backend": "torch"})
    s = count_model(m, torch.randn(1, 3, 32, 32))
    assert s["totals"]["flops"] == pytest.approx(2.285e9, rel=0.01)
    # the teacher ANN has the same FLOPs up to the student's extra Linear(512, 256) head layer
    t = create_model("resnet19", num_classes=10)
    ts = count_model(t, torch.randn(1, 3, 32, 32))
    assert ts["totals"]["flops"] == ts["totals"]["macs"]
    assert s["totals"]["flops"] - ts["totals"]["flops"] == 512 * 256 + 256 * 10 - 512 * 10


def test_counter_accumulates_batches_and_removes_hooks():
    net = TwoLayer()
    x = torch.tensor([[2.0, 0.8, 0.6, 5.0], [0.0, 2.0, 0.8, 1.0]])
    with OpCounter(net) as c:
        net(x[:1])
        net(x[1:])
    s = c.summary()
    assert s["images"] == 2 and s["totals"]["firing_rate"] == pytest.approx(0.45)
    assert s["totals"]["sops"] == pytest.approx(6.0)
    assert not net._forward_hooks and not net.fc1._forward_hooks and not net.lif1._forward_hooks


# --------------------------------------------------------------------------------------------
# frame inputs [T, B, C, H, W] and models outside the built-ins
# --------------------------------------------------------------------------------------------

from spikedistill.models.contract import DistillModel  # noqa: E402


class FrameNet(DistillModel):
    """fc1 (identity on the first 3 inputs) -> LIF -> fc2, T = 2. Frames ``[T, B, 1, 1, 4]``:
    fc1 runs on every frame; an image ``[B, 1, 1, 4]``: once, its output repeated."""

    is_spiking = True
    T = 2
    num_classes = 2
    feature_names = ("lif1",)
    feature_channels = (3,)

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3, bias=False)
        self.lif1 = LIF(backend="torch")
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.eye(3, 4))

    @property
    def classifier(self):
        return self.fc2

    def forward(self, x, return_features=False, timestep_logits=False):
        if x.dim() == 5:
            cur = self.fc1(x.flatten(2))                          # [T, B, 3], a view of x
        else:
            y = self.fc1(x.flatten(1))
            cur = y.unsqueeze(0).expand(self.T, *y.shape)
        s = self.lif1(cur)
        z = self.fc2(s)
        z = z if timestep_logits else z.mean(0)
        return (z, [s]) if return_features else z


# x[t, b] (4 values); t0 b0, t0 b1, t1 b0, t1 b1
_BINARY = torch.tensor([[[1., 0, 0, 1], [0, 1, 1, 0]], [[1., 1, 0, 0], [0, 0, 0, 0]]])
_COUNTS = torch.tensor([[[2., 0, 0, 1], [0, 3, 1, 0]], [[1., 1, 0, 0], [0, 0, 0, 0]]])


def test_frame_inputs_make_the_first_layer_spike_driven_golden_counts():
    # fc1: FLOPs 4 * 3 = 12; every frame: 4 rows for 2 images -> 2 calls per image
    fc1 = _layer(count_model(FrameNet(), _BINARY.view(2, 2, 1, 1, 4)), "fc1")
    # binary: 6 non-zero of 16 -> rate 0.375 -> SOPs 0.375 * 2 * 12 = 9
    assert fc1["input_kind"] == "spike" and fc1["calls_per_image"] == 2 and fc1["flops"] == 12
    assert fc1["sops"] == pytest.approx(9.0) and fc1["macs"] == 0
    # event counts: a count k is k events -> r = mean(x) = 9 / 16 -> SOPs 9/16 * 2 * 12 = 13.5
    s = count_model(FrameNet(), _COUNTS.view(2, 2, 1, 1, 4))
    fc1 = _layer(s, "fc1")
    assert fc1["input_kind"] == "events" and fc1["input_mean"] == pytest.approx(9 / 16)
    assert fc1["sops"] == pytest.approx(13.5) and fc1["macs"] == 0
    assert s["images"] == 2                     # B from dim 1 of the frames
    # normalised (real-valued) frames: MACs 2 * 12 = 24
    fc1 = _layer(count_model(FrameNet(), ((_BINARY - 0.5) / 0.25).view(2, 2, 1, 1, 4)), "fc1")
    assert fc1["input_kind"] == "real" and fc1["macs"] == 24 and fc1["sops"] == 0
    # a static binary image keeps the MAC convention: once per image, 12 MACs
    fc1 = _layer(count_model(FrameNet(), _BINARY[0].view(2, 1, 1, 4)), "fc1")
    assert fc1["input_kind"] == "real" and fc1["calls_per_image"] == 1 and fc1["macs"] == 12


def test_spiking_resnet_stem_on_binary_frames_counts_sops():
    torch.manual_seed(0)
    m = create_model("spiking_resnet20", num_classes=10, T=2, neuron={"backend": "torch"})
    x = (torch.rand(2, 3, 3, 8, 8) > 0.7).float()
    s = count_model(m, x)
    stem = _layer(s, "stem")
    assert stem["input_kind"] == "spike" and stem["calls_per_image"] == 2
    assert stem["input_rate"] == pytest.approx(float(x.mean()))
    assert stem["sops"] == pytest.approx(float(x.mean()) * 2 * stem["flops"]) and stem["macs"] == 0
    assert s["images"] == 3


def _sj_net():
    from spikingjelly.activation_based import functional, layer, neuron
    from spikedistill.models.taps import FeatureTapModel

    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv", layer.Conv2d(1, 4, 3, padding=1, bias=False, step_mode="m"))
    net.add_module("sn", neuron.LIFNode(tau=2.0, step_mode="m"))
    net.add_module("gap", layer.AdaptiveAvgPool2d(1, step_mode="m"))
    net.add_module("flat", layer.Flatten(start_dim=1, step_mode="m"))
    net.add_module("fc", layer.Linear(4, 3, bias=False, step_mode="m"))
    with torch.no_grad():
        net.conv.weight.mul_(6.0)
    return FeatureTapModel(net, features=["sn"], classifier="fc", is_spiking=True, T=2,
                           reset=functional.reset_net, spike_types=(neuron.BaseNode,),
                           input_shape=(1, 6, 6))


def test_foreign_neurons_and_multistep_layers_are_counted():
    m = _sj_net()
    x = torch.randn(3, 1, 6, 6)
    s = count_model(m, x)
    with torch.no_grad():
        _, (spikes,) = m(x, return_features=True)         # [T, B, 4, 6, 6]
    assert [r["name"] for r in s["neurons"]] == ["net.sn"]
    assert s["neurons"][0]["firing_rate"] == pytest.approx(float(spikes.mean()))
    assert 0 < float(spikes.mean()) < 1
    conv = _layer(s, "net.conv")           # multi-step conv: [T, B, ...] is T rows per image
    assert conv["calls_per_image"] == 2 and conv["input_kind"] == "real"
    assert conv["flops"] == 4 * 1 * 9 * 36 and conv["macs"] == 2 * conv["flops"]
    fc = _layer(s, "net.fc")
    assert fc["calls_per_image"] == 2 and fc["input_kind"] == "real"    # fed by the GAP


def test_tapped_lif_net_counts_through_spiking_modules():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from _tap_nets import tiny_snn_taps

    m = tiny_snn_taps(T=2, in_channels=1, size=16)
    assert [n for n, _ in m.spiking_modules()] == [f"net.blocks.{i}.lif" for i in range(4)]
    s = count_model(m, torch.zeros(2, 1, 16, 16))            # the (copied) repeat is the image
    first = _layer(s, "net.blocks.0.conv")
    assert first["input_kind"] == "real" and first["calls_per_image"] == 2
    assert len(s["neurons"]) == 4
    s = count_model(m, (torch.rand(2, 2, 1, 16, 16) > 0.5).float())
    assert _layer(s, "net.blocks.0.conv")["input_kind"] == "spike"
