"""Frame data ``[N, T, C, H, W]``: one geometric draw per sample shared by its frames, time-major
batches, AutoAugment refused, exact-resume determinism (as for images)."""

from __future__ import annotations

import pytest
import torch

from spikedistill.data import BatchAugment, DeviceLoader, build_augment
from spikedistill.errors import ConfigError

MEAN, STD = (0.3, 0.5), (0.2, 0.25)


def _frames(n=6, t=4, c=2, h=10, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, t, c, h, w), generator=g, dtype=torch.uint8)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("erasing_value", ["random", 0.0])
def test_every_frame_gets_the_static_draw_of_its_sample(erasing_value):
    x = _frames()
    aug = BatchAugment(MEAN, STD, random_crop=True, crop_padding=3, hflip=True, random_erasing=1.0,
                       erasing_scale=(0.1, 0.4), erasing_value=erasing_value)
    out, rec = aug(x, _gen(7), return_record=True)
    assert out.shape == x.shape and out.dtype == torch.float32
    for t in range(x.shape[1]):
        ref, ref_rec = aug(x[:, t].contiguous(), _gen(7), return_record=True)
        assert torch.equal(out[:, t], ref), f"frame {t} differs from its static augmentation"
        for key in rec:
            assert torch.equal(rec[key], ref_rec[key]), key
    # the draws are not trivial: some samples flipped, some not; every sample erased
    assert 0 < int(rec["flip"].sum()) < x.shape[0] and bool(rec["erase"].all())


def test_normalisation_is_per_channel_for_frames():
    x = _frames(n=2, t=3)
    out = build_augment(False, MEAN, STD)(x)
    expect = (x.float() / 255 - torch.tensor(MEAN).view(1, 1, 2, 1, 1)) / torch.tensor(STD).view(1, 1, 2, 1, 1)
    assert torch.allclose(out, expect, atol=1e-6)


def test_autoaugment_is_refused_for_frames():
    with pytest.raises(ConfigError, match="'data.augment.autoaugment'"):
        build_augment(True, MEAN, STD)(_frames(), _gen(0))


def _batches(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_loader_is_time_major_and_resumes_exactly():
    x = _frames(n=11, t=3)
    y = torch.arange(11) % 3
    aug = build_augment(True, MEAN, STD, autoaugment=False)
    make = lambda: DeviceLoader(x, y, 4, shuffle=True, drop_last=True, augment=aug, seed=5)  # noqa: E731
    first = _batches(make(), 2)
    assert len(first) == 2
    for xb, yb in first:
        assert xb.shape == (3, 4, 2, 10, 8) and xb.is_contiguous() and yb.shape == (4,)
    again = _batches(make(), 2)                  # a fresh loader, as after a resume
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other = _batches(make(), 3)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
    # batch = the augmentation of the gathered samples, time axis moved first
    loader = make()
    loader.set_epoch(2)
    idx = loader.indices()[:4]
    ref = aug(x[idx], loader.augment_generator())
    assert torch.equal(first[0][0], ref.transpose(0, 1))
    plain = next(iter(DeviceLoader(x, y, 5, shuffle=False)))[0]
    assert torch.equal(plain, x[:5].float().transpose(0, 1) / 255)


def test_frames_refuse_channels_last():
    with pytest.raises(ConfigError, match="'train.channels_last'"):
        DeviceLoader(_frames(), torch.zeros(6, dtype=torch.long), 2, shuffle=False, channels_last=True)
