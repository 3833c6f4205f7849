"""DVS frame augmentation (``data.augment.translate`` / ``hflip``): the TET CIFAR10-DVS recipe,
flip with probability 1/2 then a roll of ``(dy, dx)``, each uniform on ``-s..s``, one draw per
sample shared by all its frames, seeded like the rest of the augmentation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedistill.config import load_config
from spikedistill.data import BatchAugment, DeviceLoader
from spikedistill.errors import ConfigError


def _frames(n=16, t=3, c=2, h=12, w=10, seed=0):
    """uint8 event-count frames ``[N, T, 2, H, W]`` (small counts, as DVS frames hold)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 6, (n, t, c, h, w), generator=g, dtype=torch.uint8)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _raw(aug_kwargs):
    """An augmentation that returns the moved counts themselves (no normalisation: x / 255)."""
    return BatchAugment(normalize=False, **aug_kwargs)


def test_every_frame_of_a_sample_is_rolled_by_the_same_shift():
    x = _frames()
    aug = _raw(dict(translate=5))
    out, rec = aug(x, _gen(3), return_record=True)
    counts = torch.round(out * 255).to(torch.uint8)
    shift = rec["shift"]
    assert shift.shape == (16, 2) and int(shift.abs().max()) <= 5
    for i in range(x.shape[0]):
        dy, dx = int(shift[i, 0]), int(shift[i, 1])
        for t in range(x.shape[1]):
            ref = torch.roll(x[i, t], shifts=(dy, dx), dims=(1, 2))   # [C, H, W]: H then W
            assert torch.equal(counts[i, t], ref), (i, t, dy, dx)
    # the roll keeps every event: the per-frame totals are unchanged (wrap-around)
    assert torch.equal(counts.sum(dim=(-1, -2)), x.sum(dim=(-1, -2)))
    # the two axes are drawn independently: not the same number for every sample
    assert not torch.equal(shift[:, 0], shift[:, 1])


def test_flip_comes_before_the_roll_as_in_tet():
    x = _frames(seed=1)
    aug = _raw(dict(hflip=True, translate=2))
    out, rec = aug(x, _gen(5), return_record=True)
    counts = torch.round(out * 255).to(torch.uint8)
    assert 0 < int(rec["flip"].sum()) < x.shape[0]
    for i in range(x.shape[0]):
        src = x[i].flip(-1) if bool(rec["flip"][i]) else x[i]
        dy, dx = (int(v) for v in rec["shift"][i])
        assert torch.equal(counts[i], torch.roll(src, shifts=(dy, dx), dims=(-2, -1)))


def test_zero_fill_is_a_shift_with_an_empty_border():
    x = _frames(n=12, seed=2)
    out, rec = _raw(dict(translate=3, translate_fill="zero"))(x, _gen(9), return_record=True)
    counts = torch.round(out * 255).to(torch.uint8)
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        dy, dx = (int(v) for v in rec["shift"][i])
        padded = F.pad(x[i], (3, 3, 3, 3))        # content at [3:3+h, 3:3+w]
        ref = padded[..., 3 - dy:3 - dy + h, 3 - dx:3 - dx + w]
        assert torch.equal(counts[i], ref), (i, dy, dx)


def test_shift_draws_cover_the_range_uniformly():
    x = torch.zeros(4000, 1, 1, 8, 8, dtype=torch.uint8)
    _, rec = _raw(dict(translate=5))(x, _gen(0), return_record=True)
    for axis in range(2):
        hist = torch.bincount(rec["shift"][:, axis] + 5, minlength=11)
        assert hist.numel() == 11 and int(hist.min()) > 0
        # uniform on 11 values: each near 4000 / 11 = 364 (5 standard deviations ~ 92)
        assert (hist.float() - 4000 / 11).abs().max() < 92
    # independent axes: the correlation of dy and dx is near 0
    s = rec["shift"].float()
    corr = torch.corrcoef(s.T)[0, 1]
    assert abs(float(corr)) < 0.08


def test_same_seed_same_batch_other_seed_differs_and_off_changes_nothing():
    x = _frames()
    aug = _raw(dict(hflip=True, translate=5))
    a, b, c = aug(x, _gen(11)), aug(x, _gen(11)), aug(x, _gen(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # translate=0 draws nothing: the flip-only stream is the one without the switch
    off = BatchAugment(normalize=False, hflip=True, translate=0)
    plain = BatchAugment(normalize=False, hflip=True)
    assert torch.equal(off(x, _gen(4)), plain(x, _gen(4)))
    _, rec = off(x, _gen(4), return_record=True)
    assert not rec["shift"].any()


def test_loader_with_translation_resumes_exactly():
    x = _frames(n=13)
    y = torch.arange(13) % 3
    aug = BatchAugment(mean=(0.1, 0.1), std=(0.2, 0.2), hflip=True, translate=5)

    def batches(epoch):
        loader = DeviceLoader(x, y, 4, shuffle=True, drop_last=True, augment=aug, seed=7)
        loader.set_epoch(epoch)
        return [b[0] for b in loader]

    first, again, other = batches(2), batches(2), batches(3)
    assert all(torch.equal(p, q) for p, q in zip(first, again))
    assert not all(torch.equal(p, q) for p, q in zip(first, other))
    assert first[0].shape == (3, 4, 2, 12, 10)


def test_config_switches_reach_the_augmentation():
    from spikedistill.data.pipeline import MemoryPipeline

    cfg = load_config(None, ["data.augment.translate=5", "data.augment.translate_fill=zero",
                             "data.augment.autoaugment=false"])
    assert cfg.data.augment.translate == 5 and cfg.data.augment.translate_fill == "zero"

    class Splits:
        mean, std = (0.5,), (0.5,)

    train_aug, test_aug = MemoryPipeline(Splits(), cfg.data).augmentations()
    assert train_aug.translate == 5 and train_aug.translate_fill == "zero"
    assert test_aug.translate == 0           # evaluation never moves the frames
    with pytest.raises(ConfigError, match="'data.augment.translate'"):
        load_config(None, ["data.augment.translate=-1"])
    with pytest.raises(ConfigError, match="'data.augment.translate_fill'"):
        load_config(None, ["data.augment.translate_fill=reflect"])
    with pytest.raises(ValueError, match="translate"):
        BatchAugment(translate=-2)
