"""Mixup / CutMix per batch (data/mix.py): against timm's Mixup with the same draws, golden values
by hand, frames, seeding and exact resume through the DeviceLoader, config errors."""

from __future__ import annotations

import pytest
import torch

from spikedistill.config import AugmentConfig, load_config
from spikedistill.data import DeviceLoader
from spikedistill.data.mix import BatchMixer, cutmix_box, mix_targets
from spikedistill.errors import ConfigError


def _mixer(K=5, **kw):
    return BatchMixer(AugmentConfig(**kw), K)


class _FakeNumpyRandom:
    """Stands in for ``numpy.random`` inside timm.data.mixup: returns the given values."""

    def __init__(self, rands, beta, randints):
        self.rands, self.betas, self.randints = list(rands), [beta], list(randints)

    def rand(self):
        return self.rands.pop(0)

    def beta(self, a, b):
        return self.betas.pop(0)

    def randint(self, lo, hi, size=None):
        v = self.randints.pop(0)
        assert lo <= v < hi
        return v


# (u0 mix coin, u1 switch coin, u2, u3 box centre, lam draw): mixup, cutmix, clipped cutmix,
# not mixed (u0 >= mix_prob)
# (odd box sides), not mixed (u0 >= mix_prob)
CASES = [(0.1, 0.9, 0.3, 0.6, 0.7), (0.2, 0.1, 0.55, 0.4, 0.64), (0.3, 0.2, 0.02, 0.97, 0.3),
         (0.25, 0.3, 0.5, 0.5, 0.5), (0.95, 0.1, 0.5, 0.5, 0.4)]


@pytest.mark.parametrize("u0, u1, u2, u3, lam", CASES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_matches_timm_mixup_with_the_same_draws(monkeypatch, u0, u1, u2, u3, lam, smoothing):
    import timm.data.mixup as tm
    H, W, K, B = 8, 10, 5, 6
    mix_prob, switch_prob = 0.9, 0.5
    x = torch.randn(B, 3, H, W, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 1])
    ours = _mixer(K, mixup=0.8, cutmix=1.0, mix_prob=mix_prob, switch_prob=switch_prob)
    lam_t = torch.tensor(lam)
    d = ours.decide(torch.tensor([u0, u1, u2, u3]), lam_t, lam_t, H, W)
    x_ours, y_ours = ours.apply(x.clone(), y, d)
    # timm: coin, switch coin, beta, then rand_bbox's randint(0, H), randint(0, W)
    fake = _FakeNumpyRandom([u0, u1], lam, [int(u2 * H), int(u3 * W)])
    monkeypatch.setattr(tm.np, "random", fake)
    ref = tm.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=mix_prob, switch_prob=switch_prob,
                   mode="batch", label_smoothing=smoothing, num_classes=K)
    x_timm, y_timm = ref(x.clone(), y)
    torch.testing.assert_close(x_ours, x_timm, rtol=0, atol=1e-6)
    # our targets are unsmoothed; smoothing them once gives timm's
    y_sm = y_ours * (1 - smoothing) + smoothing / K
    torch.testing.assert_close(y_sm, y_timm, rtol=0, atol=1e-6)
    torch.testing.assert_close(mix_targets(y, d.lam, K, smoothing), y_timm, rtol=0, atol=1e-6)


def test_mixup_golden_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[10.0, 20.0], [30.0, 40.0]]]])
    y = torch.tensor([0, 2])
    m = _mixer(3, mixup=1.0)
    d = m.decide(torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor(0.75), None, 2, 2)
    assert not bool(d.use_cutmix) and float(d.lam) == 0.75
    xm, ym = m.apply(x, y, d)
    # sample 0: 0.75 * x0 + 0.25 * x1; sample 1: 0.75 * x1 + 0.25 * x0
    assert torch.allclose(xm[0, 0], torch.tensor([[3.25, 6.5], [9.75, 13.0]]))
    assert torch.allclose(xm[1, 0], torch.tensor([[7.75, 15.5], [23.25, 31.0]]))
    assert torch.allclose(ym, torch.tensor([[0.75, 0.0, 0.25], [0.25, 0.0, 0.75]]))


def test_cutmix_box_and_corrected_lam_golden_by_hand():
    # lam 0.75 on 4x4: sqrt(0.25) = 0.5 -> a 2x2 box; centre (1, 1): rows [0, 2), cols [0, 2)
    box = cutmix_box(4, 4, torch.tensor(0.75), torch.tensor(1), torch.tensor(1))
    assert box.tolist() == [0, 2, 0, 2]
    # centre (0, 3): rows [clip(-1), 0 + 1) = [0, 1), cols [2, min(4, 4)) = [2, 4): area 2
    box = cutmix_box(4, 4, torch.tensor(0.75), torch.tensor(0), torch.tensor(3))
    assert box.tolist() == [0, 1, 2, 4]
    # lam 7/16: sqrt(9/16) -> a 3x3 box; centre (2, 2): [2 - 1, 2 + (3 + 1) // 2) = [1, 4)
    box = cutmix_box(4, 4, torch.tensor(7 / 16), torch.tensor(2), torch.tensor(2))
    assert box.tolist() == [1, 4, 1, 4]
    m = _mixer(2, cutmix=1.0)
    d = m.decide(torch.tensor([0.0, 0.0, 0.0, 0.8]), None, torch.tensor(0.75), 4, 4)  # cx = 3
    assert bool(d.use_cutmix) and float(d.lam) == pytest.approx(1 - 2 / 16)
    x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    xm, ym = m.apply(x, torch.tensor([0, 1]), d)
    want0 = torch.zeros(4, 4)
    want0[0, 2:] = 1.0
    assert torch.equal(xm[0, 0], want0) and torch.equal(xm[1, 0], 1 - want0)
    assert torch.allclose(ym, torch.tensor([[0.875, 0.125], [0.125, 0.875]]))


def test_not_mixed_is_identity_with_one_hot_targets():
    m = _mixer(4, mixup=0.8, cutmix=1.0, mix_prob=0.0)
    x = torch.randn(4, 3, 5, 5)
    y = torch.tensor([3, 0, 1, 2])
    for seed in range(5):
        xm, ym = m(x, y, torch.Generator().manual_seed(seed))
        assert torch.equal(xm, x)
        assert torch.equal(ym, torch.nn.functional.one_hot(y, 4).float())


def test_mix_off_epoch_stops_mixing():
    m = _mixer(4, mixup=0.8, mix_off_epoch=3)
    x, y = torch.randn(4, 3, 5, 5), torch.tensor([3, 0, 1, 2])
    xm, _ = m(x, y, torch.Generator().manual_seed(0), epoch=2)
    assert not torch.equal(xm, x)
    xm, ym = m(x, y, torch.Generator().manual_seed(0), epoch=3)
    assert torch.equal(xm, x) and torch.equal(ym.argmax(1), y)


def test_draw_distribution_and_switch_prob():
    m = _mixer(4, mixup=1.0, cutmix=1.0, mix_prob=0.8, switch_prob=0.25)
    g = torch.Generator().manual_seed(0)
    draws = [m.draw(16, 16, g, "cpu") for _ in range(1000)]
    mixed = [d for d in draws if float(d.lam) < 1.0 or bool(d.use_cutmix)]
    cut = sum(bool(d.use_cutmix) for d in draws)
    assert abs(len(mixed) / 1000 - 0.8) < 0.05                # 4 sigma
    assert abs(cut / len(mixed) - 0.25) < 0.06
    lams = torch.stack([d.lam for d in mixed if not bool(d.use_cutmix)])
    assert abs(float(lams.mean()) - 0.5) < 0.05               # Beta(1, 1) = U(0, 1)
    assert abs(float((lams < 0.25).float().mean()) - 0.25) < 0.07


def test_frames_share_lam_and_box_across_timesteps():
    m = _mixer(3, mixup=0.5, cutmix=1.0)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, 2, 6, 6, generator=gen)              # [B, T, C, H, W]
    y = torch.tensor([0, 1, 2, 0])
    for seed in range(6):
        d = m.draw(6, 6, torch.Generator().manual_seed(seed), "cpu")
        xm, ym = m.apply(x, y, d)
        for t in range(3):
            xt, yt = m.apply(x[:, t], y, d)
            assert torch.equal(xm[:, t], xt) and torch.equal(ym, yt)
        # time-major [T, B, ...] with batch_dim=1 gives the same
        xtm, _ = m.apply(x.transpose(0, 1), y, d, batch_dim=1)
        assert torch.equal(xtm.transpose(0, 1), xm)


def test_seeded_and_loader_resume_exact():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 6, 6), dtype=torch.uint8, generator=gen)
    labels = torch.arange(24) % 4
    mixer = _mixer(4, mixup=0.8, cutmix=1.0)

    def batches(epoch):
        loader = DeviceLoader(images, labels, 8, shuffle=True, seed=7, mix=mixer)
        loader.set_epoch(epoch)
        return list(loader)

    a, b = batches(2), batches(2)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert ya.shape == (8, 4) and torch.allclose(ya.sum(1), torch.ones(8))
    c = batches(3)
    assert any(not torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.augment.mixup"):
        _mixer(4)
    with pytest.raises(ConfigError, match="data.augment.switch_prob"):
        load_config(None, ["data.augment.switch_prob=1.5"])
    with pytest.raises(ConfigError, match="data.augment.cutmix"):
        load_config(None, ["data.augment.cutmix=-1"])


def test_built_into_the_train_loader_only():
    from spikedistill.data.pipeline import open_pipeline

    cfg = load_config(None, ["data.augment.mixup=0.8", "data.augment.cutmix=1.0",
                             "data.augment.autoaugment=false", "train.batch_size=16"])
    pipe = open_pipeline(cfg.data)
    splits = pipe.splits
    train, test = pipe.loaders(16, cfg.train.eval_batch_size, torch.device("cpu"),
                               seed=cfg.train.seed)
    assert isinstance(train.mix, BatchMixer) and train.mix.num_classes == splits.num_classes
    assert test.mix is None
    x, y = next(iter(train))
    assert y.shape == (16, splits.num_classes) and y.dtype == torch.float32
    _, y_test = next(iter(test))
    assert y_test.dim() == 1
