"""Batched augmentation: exact switches, draw frequencies, and torchvision as a reference."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from spikedistill.data import CIFAR10_POLICY, OPS, BatchAugment, build_augment
from spikedistill.data import augment as A

NEAREST = InterpolationMode.NEAREST
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(n=6, c=3, h=32, w=32, seed=0) -> torch.Tensor:
    """uint8 test images: noise, smooth gradients with limited range, and a flat one."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grad = (40 + (yy * 3 + xx * 2) % 120).to(torch.uint8)
    if n > 3:
        noise[1] = grad
        noise[2] = (grad // 2 + 60).to(torch.uint8)
        noise[3, :, : h // 2] = 200
    if n > 4:
        noise[4] = 17  # flat image: AutoContrast/Equalize leave it alone
    return noise


def gen(seed=0, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ------------------------------------------------------------------ policy table and magnitudes


def test_policy_table_is_cubuk_cifar10():
    assert len(CIFAR10_POLICY) == 25 and all(len(s) == 2 for s in CIFAR10_POLICY)
    ops_used = {op for sub in CIFAR10_POLICY for op, _, _ in sub}
    assert ops_used == set(OPS) - {"ShearX"}  # the CIFAR-10 policy never shears along x
    # torchvision's own table as an independent reference (private attribute; skip if it moved)
    from torchvision.transforms import v2

    theirs = getattr(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10), "_policies", None)
    if theirs is None:
        pytest.skip("torchvision AutoAugment has no _policies attribute")
    assert [tuple(tuple(op) for op in sub) for sub in theirs] == [tuple(sub) for sub in CIFAR10_POLICY]


def test_magnitude_bins_match_torchvision_semantics():
    assert A.magnitude_table("Posterize", 32, 32).tolist() == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]
    assert A.magnitude_table("Rotate", 32, 32)[9] == pytest.approx(30.0)
    assert A.magnitude_table("TranslateX", 32, 20)[9] == pytest.approx(150 / 331 * 20)
    assert A.magnitude_table("TranslateY", 32, 20)[9] == pytest.approx(150 / 331 * 32)
    assert A.magnitude_table("Solarize", 32, 32)[0] == pytest.approx(255.0)
    assert A.magnitude_table("Solarize", 32, 32)[9] == pytest.approx(0.0)
    assert A.magnitude_table("Equalize", 32, 32) is None


# ------------------------------------------------------------------ ops against torchvision


def _ref(op: str, img: torch.Tensor, m: float) -> torch.Tensor:
    """torchvision.transforms.v2.functional on one uint8 image, as AutoAugment applies ``op``."""
    if op == "ShearX":
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(m)), 0.0],
                         interpolation=NEAREST, center=[0, 0])
    if op == "ShearY":
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(m))],
                         interpolation=NEAREST, center=[0, 0])
    if op == "TranslateX":
        return TF.affine(img, angle=0.0, translate=[int(m), 0], scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST)
    if op == "TranslateY":
        return TF.affine(img, angle=0.0, translate=[0, int(m)], scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST)
    if op == "Rotate":
        return TF.rotate(img, m, interpolation=NEAREST)
    if op == "Brightness":
        return TF.adjust_brightness(img, 1.0 + m)
    if op == "Color":
        return TF.adjust_saturation(img, 1.0 + m)
    if op == "Contrast":
        return TF.adjust_contrast(img, 1.0 + m)
    if op == "Sharpness":
        return TF.adjust_sharpness(img, 1.0 + m)
    if op == "Posterize":
        return TF.posterize(img, int(m))
    if op == "Solarize":
        return TF.solarize(img, m)
    if op == "AutoContrast":
        return TF.autocontrast(img)
    if op == "Equalize":
        return TF.equalize(img)
    if op == "Invert":
        return TF.invert(img)
    raise AssertionError(op)


GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
BLENDS = {"Brightness", "Color", "Contrast", "Sharpness"}


def _compare(op: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
    diff = (ours - ref.float()).abs()
    if op in GEOMETRIC:
        # nearest resampling: pixels on exact .5 boundaries may round the other way
        assert (diff > 0).float().mean() < 0.002, f"{op}: {(diff > 0).float().mean():.4f} of pixels differ"
    elif op in BLENDS:
        assert diff.max() <= 1, f"{op}: max difference {diff.max()}"  # float rounding before truncation
        assert (diff > 0).float().mean() < 0.02
    else:
        assert diff.max() == 0, f"{op}: max difference {diff.max()}"


MAGNITUDES = {
    "ShearX": [0.3, -0.2667, 0.1], "ShearY": [-0.3, 0.2333, 0.0333], "TranslateX": [14.5, -9.7, 3.0],
    "TranslateY": [-14.5, 6.2, 0.9], "Rotate": [30.0, -13.3, 6.7], "Brightness": [0.9, -0.5, 0.3],
    "Color": [0.9, -0.8, 0.2], "Contrast": [0.9, -0.6, 0.4], "Sharpness": [0.9, -0.9, 0.1],
    "Posterize": [4.0, 6.0, 7.0], "Solarize": [198.3, 56.7, 0.0],
    "AutoContrast": [0.0] * 3, "Equalize": [0.0] * 3, "Invert": [0.0] * 3,
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("channels", [3, 1])
def test_batched_op_matches_torchvision(op, channels):
    x = images(n=6, c=channels, h=32, w=30)
    mags = torch.tensor(MAGNITUDES[op] * 2)
    ours = A.OP_FUNCTIONS[op](x.float(), mags)
    assert ours.shape == x.shape and ours.dtype == torch.float32
    assert torch.equal(ours, ours.round()) and ours.min() >= 0 and ours.max() <= 255
    for i in range(len(x)):
        _compare(op, ours[i], _ref(op, x[i], float(mags[i])))


@pytest.mark.parametrize("device", DEVICES)
def test_ops_identical_across_devices_and_subsets(device):
    """An op on a sub-batch equals the op on the full batch (no cross-sample leakage)."""
    x = images(n=6).float().to(device)
    for op in OPS:
        m = torch.tensor(MAGNITUDES[op] * 2, device=device)
        full = A.OP_FUNCTIONS[op](x, m)
        part = A.OP_FUNCTIONS[op](x[2:5], m[2:5])
        assert torch.equal(full[2:5], part), op
        if device != "cpu":
            cpu = A.OP_FUNCTIONS[op](x.cpu(), m.cpu())
            assert ((full.cpu() - cpu).abs() > 1).float().mean() < 0.01, op


# ------------------------------------------------------------------ switches


def test_all_off_is_to_tensor_and_normalize_is_exact():
    x = images(n=4)
    plain = BatchAugment(normalize=False)
    assert torch.equal(plain(x, gen()), x.float() / 255.0)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    ev = BatchAugment.for_eval(mean, std)
    expected = (x.float() / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = ev(x, gen())
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(build_augment(False, mean, std)(x, gen()), out)


def test_random_crop_is_zero_padded_shift():
    x = images(n=64, c=3, h=8, w=8)
    aug = BatchAugment(random_crop=True, crop_padding=2, normalize=False)
    out, rec = aug(x, gen(1), return_record=True)
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2))
    offsets = rec["crop_offset"]
    assert offsets.min() == 0 and offsets.max() == 4
    assert len({tuple(o) for o in offsets.tolist()}) > 10  # per-sample offsets
    for i in range(len(x)):
        dy, dx = offsets[i].tolist()
        assert torch.equal(out[i] * 255.0, padded[i, :, dy:dy + 8, dx:dx + 8])


def test_flip_exact_and_about_half():
    x = images(n=400, c=3, h=4, w=5)
    out, rec = BatchAugment(hflip=True, normalize=False)(x, gen(2), return_record=True)
    f = rec["flip"]
    assert torch.equal(out[f], x[f].flip(-1).float() / 255) and torch.equal(out[~f], x[~f].float() / 255)
    assert 0.4 < f.float().mean() < 0.6


def test_random_erasing_boxes_values_and_probability():
    x = images(n=2000, c=3, h=16, w=16)
    aug = BatchAugment(random_erasing=0.5, normalize=False)
    out, rec = aug(x, gen(3), return_record=True)
    base = x.float() / 255
    changed = (out != base).flatten(1).any(1)
    erase = rec["erase"]
    assert torch.equal(changed, erase)
    assert abs(erase.float().mean().item() - 0.5) < 0.04
    top, left, h, w = rec["erase_box"].T
    e = erase
    area = (h * w)[e].float() / 256
    assert area.min() >= 0.02 * 0.5 and area.max() <= 0.2 * 1.5
    assert (h[e] < 16).all() and (w[e] < 16).all() and (top + h <= 16).all() and (left + w <= 16).all()
    ratio = (h[e].float() / w[e].float())
    assert ratio.min() >= 1 / 6 and ratio.max() <= 6 and ratio.std() > 0.3  # 3.3 widened by rounding small boxes
    for i in torch.nonzero(e).flatten()[:20].tolist():
        t, l, hh, ww = rec["erase_box"][i].tolist()
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[t:t + hh, l:l + ww] = True
        assert torch.equal(out[i][:, ~inside], base[i][:, ~inside])
        # erased values are N(0, 1) noise, not pixel values in [0, 1]
        assert (out[i][:, inside] < 0).any()
    const = BatchAugment(random_erasing=1.0, erasing_value=0.0, normalize=False)
    out, rec = const(x[:50], gen(4), return_record=True)
    for i in range(50):
        t, l, hh, ww = rec["erase_box"][i].tolist()
        assert torch.all(out[i, :, t:t + hh, l:l + ww] == 0)


def test_same_generator_same_output_different_seed_differs():
    x = images(n=32)
    aug = build_augment(True, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    a, b, c = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == torch.float32


# ------------------------------------------------------------------ draw frequencies


@pytest.mark.parametrize("device", DEVICES)
def test_draw_frequencies(device):
    n = 20000
    x = images(n=8, c=3, h=8, w=8).repeat(n // 8, 1, 1, 1).to(device)
    aug = build_augment(True, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), random_erasing=0.3)
    out, rec = aug(x, gen(11, device), return_record=True)
    assert out.device.type == device and out.shape == x.shape
    rec = {k: v.cpu() for k, v in rec.items()}
    sub = rec["subpolicy"]
    counts = torch.bincount(sub, minlength=25).float()
    sd = math.sqrt(n / 25 * (1 - 1 / 25))
    assert (counts - n / 25).abs().max() < 5 * sd, counts
    assert abs(rec["flip"].float().mean() - 0.5) < 0.02
    assert abs(rec["erase"].float().mean() - 0.3) < 0.02
    assert rec["crop_offset"].min() == 0 and rec["crop_offset"].max() == 8
    # each op kind is applied as often as the policy says: sum over (sub-policy, stage) of p / 25
    expected = torch.zeros(len(OPS))
    for s in CIFAR10_POLICY:
        for op, p, _ in s:
            expected[OPS.index(op)] += n * p / 25
    got = torch.bincount(rec["op"][rec["op"] >= 0], minlength=len(OPS)).float()
    assert ((got - expected).abs() <= 5 * expected.sqrt() + 5).all(), (got, expected)
    # per (sub-policy, stage) the application rate is the table's probability
    probs = torch.tensor([[p for _, p, _ in s] for s in CIFAR10_POLICY])
    for k in range(25):
        rows = rec["op"][sub == k]
        rate = (rows >= 0).float().mean(0)
        assert ((rate - probs[k]).abs() < 0.08).all(), (k, rate, probs[k])
    # signed magnitudes are negative half of the time
    signed_ids = [OPS.index(o) for o in A.SIGNED_OPS]
    mask = torch.isin(rec["op"], torch.tensor(signed_ids)) & (rec["magnitude"] != 0)
    assert abs((rec["magnitude"][mask] < 0).float().mean() - 0.5) < 0.03


def test_autoaugment_record_replays_with_torchvision():
    """Replaying each sample's recorded (op, magnitude) pairs with torchvision gives the output."""
    x = images(n=300, c=3, h=16, w=16, seed=5)
    aug = BatchAugment(autoaugment=True, normalize=False)
    out, rec = aug(x, gen(12), return_record=True)
    assert (rec["op"] >= 0).any(dim=1).float().mean() > 0.5
    for i in range(len(x)):
        img = x[i]
        for stage in range(2):
            op = int(rec["op"][i, stage])
            if op >= 0:
                img = _ref(OPS[op], img, float(rec["magnitude"][i, stage]))
        diff = (out[i] * 255 - img.float()).abs()
        if OPS.index("Color") in rec["op"][i].tolist():
            # torchvision's blend uses a fused multiply-add: rare pixels truncate 1 lower/higher
            assert (diff > 1e-3).float().mean() < 0.03, (i, rec["op"][i], rec["magnitude"][i])
        else:
            assert diff.max() < 1e-3, (i, rec["op"][i], rec["magnitude"][i])
        unchanged = (rec["op"][i] < 0).all()
        if unchanged:
            assert torch.equal(out[i] * 255, x[i].float())


def test_bad_switches_raise():
    with pytest.raises(ValueError, match="random_erasing"):
        BatchAugment(random_erasing=1.5)
    with pytest.raises(ValueError, match="erasing_scale"):
        BatchAugment(erasing_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="channels"):
        BatchAugment(mean=(0.5,), std=(0.5,))(images(n=2), gen())
