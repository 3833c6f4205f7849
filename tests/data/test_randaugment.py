"""RandAugment on the device (data/randaugment.py): timm's string and level-to-argument rules by
hand, each op by hand on a tiny image and against timm's PIL ops, seeded determinism, the same
draw for every frame, the draw's distribution, and the BatchAugment / config hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikedistill.config import RANDAUGMENT_INC_OPS, RandAugmentSpec, load_config, parse_randaugment
from spikedistill.data.randaugment import RandAugment, apply_op, fill_from_mean, level_to_arg
from spikedistill.errors import ConfigError

SPIKFORMER_OPS = ["Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"]


def test_parse_timm_strings():
    assert parse_randaugment("rand-m9-n1-mstd0.4-inc1") == RandAugmentSpec(
        magnitude=9.0, num_ops=1, magnitude_std=0.4, magnitude_max=10.0, increasing=True)
    assert parse_randaugment("rand-m9-mstd0.5") == RandAugmentSpec(9.0, 2, 0.5, 10.0, False)
    assert parse_randaugment("rand-n3-mstd101-mmax20").magnitude_std == float("inf")
    assert parse_randaugment("rand-n3-mstd101-mmax20").magnitude_max == 20.0
    assert parse_randaugment("rand").magnitude == 10.0
    for bad, what in [("augmix-m5", "starting with 'rand'"), ("rand-w0", "unknown section"),
                      ("rand-m9.5", "integer"), ("rand-n0", "n \\(ops per image\\)")]:
        with pytest.raises(ConfigError, match=f"data.augment.randaugment.*{what}"):
            parse_randaugment(bad)


def test_level_to_arg_golden_by_hand():
    f, neg = torch.tensor([0.9]), torch.tensor([-1.0])
    want = {"Rotate": -27.0, "ShearX": -0.27, "TranslateXRel": -0.405 * 10, "TranslateYRel": -0.405 * 8,
            "Posterize": 3.0, "PosterizeIncreasing": 1.0, "Solarize": 230.0,
            "SolarizeIncreasing": 26.0, "SolarizeAdd": 99.0, "Color": 0.72,
            "ColorIncreasing": -0.81, "Equalize": 0.0}
    for name, v in want.items():
        assert float(level_to_arg(name, f, neg, 8, 10)) == pytest.approx(v, abs=1e-5), name
    # increasing enhance ops keep the factor >= 0.1 (mmax > 10): 1 - 0.9 * 1.5 -> 0.1
    assert float(level_to_arg("ContrastIncreasing", torch.tensor([1.5]), neg, 8, 8)) == pytest.approx(-0.9)
    assert float(level_to_arg("Solarize", torch.tensor([1.2]), neg, 8, 8)) == 256.0


IMG = torch.tensor([[[[0.0, 50.0, 100.0], [150.0, 200.0, 250.0], [10.0, 20.0, 30.0]]]])


@pytest.mark.parametrize("name, arg, want", [
    ("Posterize", 3.0, [[0, 32, 96], [128, 192, 224], [0, 0, 0]]),          # floor(x / 32) * 32
    ("Posterize", 8.0, IMG[0, 0].tolist()),                                  # >= 8 bits: unchanged
    ("Posterize", 0.0, [[0, 0, 0], [0, 0, 0], [0, 0, 0]]),
    ("Solarize", 100.0, [[0, 50, 155], [105, 55, 5], [10, 20, 30]]),         # x >= 100 -> 255 - x
    ("SolarizeAdd", 99.0, [[99, 149, 199], [150, 200, 250], [109, 119, 129]]),  # x < 128 -> x + 99
    ("Invert", 0.0, [[255, 205, 155], [105, 55, 5], [245, 235, 225]]),
    ("Brightness", 0.5, [[0, 75, 150], [225, 255, 255], [15, 30, 45]]),     # uint8(1.5 x)
    ("TranslateXRel", 1.0, [[7, 0, 50], [7, 150, 200], [7, 10, 20]]),        # right by 1, fill 7
    ("TranslateYRel", -1.9, [[150, 200, 250], [10, 20, 30], [7, 7, 7]]),     # up by int(1.9) = 1
])
def test_ops_golden_by_hand(name, arg, want):
    out = apply_op(name, IMG.clone(), torch.tensor([arg]), torch.tensor([7.0]))
    assert out[0, 0].tolist() == want


def _pil_reference(name, img, arg, fill):
    from PIL import Image
    import timm.data.auto_augment as ta

    geo = dict(resample=Image.NEAREST, fillcolor=fill)
    h, w = img.size[1], img.size[0]
    return {
        "Equalize": lambda: ta.equalize(img), "AutoContrast": lambda: ta.auto_contrast(img),
        "Invert": lambda: ta.invert(img), "Posterize": lambda: ta.posterize(img, int(arg)),
        "Solarize": lambda: ta.solarize(img, int(arg)),
        "SolarizeAdd": lambda: ta.solarize_add(img, int(arg)),
        "Brightness": lambda: ta.brightness(img, 1 + arg), "Color": lambda: ta.color(img, 1 + arg),
        "Contrast": lambda: ta.contrast(img, 1 + arg), "Sharpness": lambda: ta.sharpness(img, 1 + arg),
        # PIL's map is output -> input: a positive pct moves the content left, ours right
        "TranslateXRel": lambda: ta.translate_x_rel(img, -arg / w, **geo),
        "TranslateYRel": lambda: ta.translate_y_rel(img, -arg / h, **geo),
        "ShearX": lambda: ta.shear_x(img, arg, **geo), "ShearY": lambda: ta.shear_y(img, arg, **geo),
        "Rotate": lambda: ta.rotate(img, arg, **geo),
    }[name]()


# torchvision's uint8 blends (ours) truncate where PIL's ImageEnhance rounds: off by 1 at most
WITHIN_ONE = {"Color", "Contrast", "AutoContrast"}


@pytest.mark.parametrize("name, arg", [
    ("Equalize", 0.0), ("AutoContrast", 0.0), ("Invert", 0.0), ("Posterize", 3.0),
    ("Solarize", 100.0), ("SolarizeAdd", 99.0), ("Brightness", 0.72), ("Brightness", -0.81),
    ("Color", 0.72), ("Contrast", -0.81), ("Sharpness", 0.72), ("Sharpness", -0.81),
    ("TranslateXRel", 3.0), ("TranslateXRel", -3.0), ("TranslateYRel", -2.0), ("ShearX", 0.27),
    ("ShearY", -0.23), ("Rotate", 27.0), ("Rotate", -90.0)])
def test_ops_against_timm_pil_ops(name, arg):
    from PIL import Image

    img = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    fill = (125, 123, 114)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    ours = apply_op(name, x, torch.tensor([arg]), torch.tensor(fill, dtype=torch.float32))
    ours = ours[0].permute(1, 2, 0).numpy()
    ref = np.asarray(_pil_reference(name, Image.fromarray(img), arg, fill)).astype(np.float32)
    diff = np.abs(ours - ref)
    assert diff.max() <= (1 if name in WITHIN_ONE else 0), (name, diff.max())


def _batch(b=6, kc=3, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, kc, size, size), generator=g).float()


def test_seeded_determinism():
    ra = RandAugment("rand-m9-n2-mstd0.5", fill=(128.0, 128.0, 128.0))
    x = _batch()
    a = ra(x, torch.Generator().manual_seed(3))
    b = ra(x, torch.Generator().manual_seed(3))
    c = ra(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, a.round()) and a.min() >= 0 and a.max() <= 255


def test_frames_get_the_same_draw_per_timestep():
    ra = RandAugment("rand-m9-n2-mstd0.4-inc1", fill=(100.0, 110.0, 120.0))
    T, C = 3, 3
    frames = _batch(b=8, kc=T * C, seed=1)                   # [B, T*C, H, W]
    out, rec = ra(frames, torch.Generator().manual_seed(5), channels=C, return_record=True)
    assert rec["op"].shape == (8, 2) and (rec["op"] >= 0).any()
    for t in range(T):
        single = frames[:, t * C:(t + 1) * C]
        o_t, r_t = ra(single, torch.Generator().manual_seed(5), channels=C, return_record=True)
        assert torch.equal(out[:, t * C:(t + 1) * C], o_t)       # frame t saw the same draw
        assert torch.equal(rec["op"], r_t["op"]) and torch.equal(rec["arg"], r_t["arg"])
    same = frames[:, :C].repeat(1, T, 1, 1)                   # identical frames stay identical
    o = ra(same, torch.Generator().manual_seed(6), channels=C)
    assert all(torch.equal(o[:, :C], o[:, t * C:(t + 1) * C]) for t in range(T))


def test_draw_distribution_follows_timm():
    ra = RandAugment("rand-m9-n1-mstd0.4-inc1")
    x = torch.zeros(3000, 1, 4, 4)
    _, rec = ra(x, torch.Generator().manual_seed(0), return_record=True)
    applied = rec["op"][:, 0] >= 0
    assert abs(float(applied.float().mean()) - 0.5) < 0.04          # timm's prob 0.5
    counts = torch.bincount(rec["op"][applied, 0], minlength=len(RANDAUGMENT_INC_OPS)).float()
    assert counts.min() > 0.5 * counts.mean()                        # uniform over the 15 ops
    m = rec["magnitude"][:, 0]
    assert abs(float(m.mean()) - 9.0) < 0.05 and abs(float(m.std()) - 0.4) < 0.04
    assert float(m.max()) <= 10.0
    rot = rec["op"][:, 0] == RANDAUGMENT_INC_OPS.index("Rotate")       # signed: -1 with prob 1/2
    assert abs(float((rec["arg"][rot, 0] < 0).float().mean()) - 0.5) < 0.15


def test_spikformer_op_subset_and_errors():
    ra = RandAugment("rand-m9-n1-mstd0.4-inc1", ops=SPIKFORMER_OPS)
    _, rec = ra(_batch(b=400, kc=1), torch.Generator().manual_seed(0), return_record=True)
    used = set(rec["op"][rec["op"] >= 0].tolist())
    assert used == set(range(5))
    with pytest.raises(ConfigError, match=r"data.augment.randaugment_ops\[1\]"):
        RandAugment("rand-m9", ops=["Rotate", "Cutout"])
    with pytest.raises(ConfigError, match=r"data.augment.randaugment_ops\[0\]"):
        load_config(None, ["data.augment.randaugment_ops=[Blur]"])


def test_config_hook_into_the_train_transform():
    from spikedistill.data import load_from_config
    from spikedistill.data.pipeline import MemoryPipeline

    over = ["data.augment.autoaugment=false", "data.augment.randaugment=rand-m9-n1-mstd0.4-inc1",
            f"data.augment.randaugment_ops={SPIKFORMER_OPS}".replace("'", "")]
    cfg = load_config(None, over)
    splits = load_from_config(cfg.data)
    train_aug, test_aug = MemoryPipeline(splits, cfg.data).augmentations()
    ra = train_aug._randaugment
    assert isinstance(ra, RandAugment) and list(ra.ops) == SPIKFORMER_OPS
    assert ra.fill == fill_from_mean(splits.mean) and test_aug._randaugment is None
    x = splits.train.images[:16]
    a = train_aug(x, torch.Generator().manual_seed(0))
    off = MemoryPipeline(splits, load_config(None, ["data.augment.autoaugment=false"]).data
                         ).augmentations()[0]
    b = off(x, torch.Generator().manual_seed(0))
    assert a.shape == b.shape and not torch.equal(a, b)
    # CIFAR's AutoAugment (its dataset default) and RandAugment exclude each other; the digits'
    # defaults have no AutoAugment, so RandAugment alone is accepted there
    with pytest.raises(ConfigError, match="data.augment.autoaugment.*RandAugment"):
        load_config(None, ["data.name=cifar10", "data.augment.randaugment=rand-m9"])
    assert load_config(None, ["data.augment.randaugment=rand-m9"]).data.augment.randaugment


def test_fill_from_mean():
    assert fill_from_mean((0.4914, 0.4822, 0.4465)) == (125.0, 123.0, 114.0)
