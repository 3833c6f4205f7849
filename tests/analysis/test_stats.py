"""Paired statistics (``spikedistill.analysis.stats``): golden values computed by hand from the
closed forms of Student's t, and agreement with SciPy (``scipy.stats.t``, ``ttest_rel``), the
reference implementation installed beside scikit-learn."""

from __future__ import annotations

import math
import random

import pytest

from spikedistill.analysis import stats as S

scipy_stats = pytest.importorskip("scipy.stats")


def test_t_quantile_closed_forms():
    # df = 1 (Cauchy): t_p = tan(pi (p - 1/2));  df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)),
    # so t_p = (2p - 1) sqrt(2 / (1 - (2p - 1)^2));  t_{0.975,2} = sqrt(2 * 0.95^2 / 0.0975)
    assert S.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-13)
    assert S.t_quantile(0.975, 1) == pytest.approx(12.706204736174707, rel=1e-13)
    t2 = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2))
    assert t2 == pytest.approx(4.302652729749464, rel=1e-15)
    assert S.t_quantile(0.975, 2) == pytest.approx(t2, rel=1e-13)
    for p in (0.6, 0.9, 0.995):
        a = 2 * p - 1
        assert S.t_quantile(p, 2) == pytest.approx(a * math.sqrt(2 / (1 - a * a)), rel=1e-12)
        assert S.t_quantile(1 - p, 2) == pytest.approx(-S.t_quantile(p, 2), rel=1e-15)
    # df = 3: F(t) = 1/2 + (theta + sin(theta) cos(theta)) / pi with theta = atan(t / sqrt 3)
    for t in (0.3, 1.0, 3.182446305284263, 9.0):
        th = math.atan(t / math.sqrt(3))
        assert S.t_cdf(t, 3) == pytest.approx(0.5 + (th + math.sin(th) * math.cos(th)) / math.pi,
                                              rel=1e-14)
    assert S.t_quantile(0.5, 7) == 0.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        S.t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="quantile level"):
        S.t_quantile(1.0, 3)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 9, 30, 101])
def test_t_distribution_matches_scipy(df):
    for t in (-25.0, -3.1, -0.7, 0.0, 0.2, 1.5, 2.9, 12.0, 80.0):
        assert S.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), rel=1e-12, abs=1e-15)
        assert S.t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df),
                                                       rel=1e-9, abs=1e-15)
    for p in (0.55, 0.8, 0.95, 0.975, 0.999):
        assert S.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-12)


def test_paired_interval_by_hand():
    # differences [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3), t_{0.975,2} = 4.30265272974946
    d = S.paired_difference([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    t2 = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2))
    half = t2 / math.sqrt(3)
    assert (d.n, d.df) == (3, 2)
    assert d.mean == pytest.approx(2.0, abs=1e-15) and d.sd == pytest.approx(1.0, abs=1e-15)
    assert d.t_critical == pytest.approx(t2, rel=1e-13)
    assert d.half_width == pytest.approx(half, rel=1e-13)
    assert (d.low, d.high) == (pytest.approx(2 - half, rel=1e-12), pytest.approx(2 + half, rel=1e-12))
    assert d.excludes_zero is False  # 2 - 2.484 < 0
    assert d.t == pytest.approx(2 * math.sqrt(3), rel=1e-14)
    # two-sided p for t = 2 sqrt 3 with df 2: 1 - t / sqrt(2 + t^2) = 1 - sqrt(12/14)
    assert d.p_value == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-12)
    # the same differences shifted by 3 exclude 0; the sign follows x - y
    assert S.paired_difference([4.0, 5.0, 6.0], [0.0, 0.0, 0.0]).excludes_zero is True
    neg = S.paired_difference([10.0, 10.0, 10.0], [14.0, 15.0, 16.0])
    assert neg.mean == pytest.approx(-5.0) and neg.high < 0 and neg.excludes_zero is True


def test_paired_small_n_and_degenerate():
    two = S.paired_difference([3.0, 1.0], [1.0, 0.0])  # d = [2, 1]: wide but defined
    assert two.df == 1 and two.t_critical == pytest.approx(12.706204736174707, rel=1e-13)
    assert two.half_width == pytest.approx(12.706204736174707 * math.sqrt(0.5) / math.sqrt(2))
    assert two.excludes_zero is False
    one = S.paired_difference([90.0], [88.0])
    assert one.n == 1 and one.mean == 2.0 and not one.has_interval
    assert one.sd is None and one.low is None and one.p_value is None and one.excludes_zero is None
    same = S.paired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])  # every pair +1: sd 0
    assert same.sd == 0.0 and same.low is None and same.high is None and not same.has_interval
    assert same.t is None and same.p_value is None and same.excludes_zero is None
    with pytest.raises(ValueError, match="same length"):
        S.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        S.paired_difference([], [])
    with pytest.raises(ValueError, match="finite"):
        S.paired_difference([1.0, float("nan")], [1.0, 2.0])


def test_no_claim_from_fewer_than_three_pairs_or_zero_spread():
    # the case: two seeds whose differences are equal up to rounding
    # (100 * 0.476 - 100 * 0.5 and 100 * 0.776 - 100 * 0.8 are both -2.4 up to 1e-14)
    x, y = [100 * 0.476, 100 * 0.776], [100 * 0.5, 100 * 0.8]
    assert x[0] - y[0] != x[1] - y[1]  # not bit-equal: the spread is rounding noise
    stuck = S.paired_difference(x, y)
    assert stuck.sd == 0.0 and not stuck.has_interval and stuck.p_value is None
    assert not stuck.claim() and "zero variance" in stuck.no_claim_reason()
    # two pairs whose interval excludes 0: still no claim, too few pairs
    two = S.paired_difference([10.0, 10.2], [0.0, 0.0])  # d = [10, 10.2]: excludes 0
    assert two.excludes_zero is True and not two.claim()
    assert two.no_claim_reason() == ("only 2 seed pairs (at least 3 are needed to claim a "
                                     "difference)")
    one = S.paired_difference([1.0], [0.0])
    assert not one.claim() and one.no_claim_reason() == "1 seed pair: no spread, no interval"
    # three pairs with spread whose interval excludes 0: claimed
    three = S.paired_difference([10.0, 10.2, 9.9], [0.0, 0.0, 0.0])
    assert three.no_claim_reason() is None and three.claim()
    assert three.as_dict()["claim"] is True and three.as_dict()["no_claim_reason"] is None
    # three pairs whose interval includes 0: no claim, but nothing forbids one
    wide = S.paired_difference([1.0, -1.0, 0.5], [0.0, 0.0, 0.0])
    assert wide.no_claim_reason() is None and not wide.claim()
    assert S.MIN_PAIRS_FOR_CLAIM == 3


def test_paired_agrees_with_scipy_ttest_rel():
    rng = random.Random(12)
    for n in (2, 3, 4, 5, 10):
        for _ in range(5):
            y = [rng.uniform(80, 95) for _ in range(n)]
            x = [v + rng.gauss(0.8, 1.5) for v in y]
            d = S.paired_difference(x, y)
            ref = scipy_stats.ttest_rel(x, y)
            assert d.t == pytest.approx(ref.statistic, rel=1e-10)
            assert d.p_value == pytest.approx(ref.pvalue, rel=1e-8)
            ci = ref.confidence_interval(0.95)
            assert (d.low, d.high) == (pytest.approx(ci.low, rel=1e-10, abs=1e-12),
                                       pytest.approx(ci.high, rel=1e-10, abs=1e-12))
            assert d.excludes_zero == (ref.pvalue < 0.05)
