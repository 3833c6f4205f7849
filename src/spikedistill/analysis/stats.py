"""Paired statistics over seeds (pure Python, no torch): Student's t distribution and the paired
mean difference with its confidence interval.

Two methods trained with the same seed share the initialisation and the data order, so their
results pair by seed; the comparison is the paired t procedure on the per-seed differences
``d_i = x_i - y_i`` (method minus baseline):

    mean  = (1/n) sum d_i,   sd = sqrt(sum (d_i - mean)^2 / (n - 1)),   se = sd / sqrt(n)
    CI    = mean +- t_{1-alpha/2, n-1} * se,   t = mean / se,   p = P(|T_{n-1}| >= |t|)

The t distribution is evaluated in closed form for integer degrees of freedom (Abramowitz and
Stegun 26.7.3 and 26.7.4, the finite series in ``cos^2 theta`` with ``theta = atan(t/sqrt(df))``)
and its quantile by bisection on that CDF, so no statistics package is needed.

A difference is *claimed* (:meth:`PairedDifference.claim`) only when the interval exists and
excludes 0 and there are at least :data:`MIN_PAIRS_FOR_CLAIM` pairs: with two pairs the interval
rests on one degree of freedom, and with zero spread (every pair differs by the same amount, as
when both runs are stuck at one accuracy) there is no interval at all, so nothing is claimed and
:meth:`PairedDifference.no_claim_reason` says why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence

#: the fewest seed pairs from which a difference is ever claimed
MIN_PAIRS_FOR_CLAIM = 3
#: a spread of the differences at most this fraction of the values' magnitude is rounding noise
ZERO_SPREAD = 1e-9


def _check_df(df: Any) -> int:
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be an integer >= 1, got {df!r}")
    return df


def t_central_mass(t: float, df: int) -> float:
    """``A(t | df) = P(|T| < |t|)`` for Student's t with integer ``df`` degrees of freedom.

    With ``c = cos^2 theta = df / (df + t^2)`` and ``theta = atan(|t| / sqrt(df))``:
    odd df: ``(2/pi) (theta + sin theta cos theta (1 + 2/3 c + 2*4/(3*5) c^2 + ... ))`` with
    ``(df-3)/2`` series terms after the 1; even df: ``sin theta (1 + 1/2 c + 1*3/(2*4) c^2 + ...)``
    with ``(df-2)/2`` terms after the 1.
    """
    df = _check_df(df)
    t = abs(float(t))
    if math.isnan(t):
        return float("nan")
    if math.isinf(t):
        return 1.0
    denom = df + t * t
    c = df / denom
    if df % 2 == 1:
        theta = math.atan(t / math.sqrt(df))
        if df == 1:
            return 2.0 * theta / math.pi
        term, series = 1.0, 1.0
        for k in range(1, (df - 3) // 2 + 1):  # term_k = term_{k-1} * (2k) / (2k + 1) * c
            term *= (2.0 * k) / (2.0 * k + 1.0) * c
            series += term
        sin_cos = t * math.sqrt(df) / denom
        return min(1.0, 2.0 / math.pi * (theta + sin_cos * series))
    term, series = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):  # term_k = term_{k-1} * (2k - 1) / (2k) * c
        term *= (2.0 * k - 1.0) / (2.0 * k) * c
        series += term
    return min(1.0, t / math.sqrt(denom) * series)


def t_cdf(t: float, df: int) -> float:
    """``P(T <= t)`` for Student's t with integer ``df``: ``(1 + sign(t) A(|t|)) / 2``."""
    a = t_central_mass(t, df)
    return 0.5 + 0.5 * a if t >= 0 else 0.5 - 0.5 * a


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value ``P(|T| >= |t|) = 1 - A(|t| | df)``."""
    return max(0.0, 1.0 - t_central_mass(t, df))


def t_quantile(p: float, df: int) -> float:
    """The ``p``-quantile of Student's t with integer ``df`` (``0 < p < 1``): the ``t`` with
    ``t_cdf(t, df) = p``, found by bisection to adjacent floating-point numbers."""
    df = _check_df(df)
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must lie in (0, 1), got {p!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    mass = 2.0 * p - 1.0  # the central mass A(t) that the quantile encloses
    lo, hi = 0.0, 1.0
    while t_central_mass(hi, df) < mass:
        lo, hi = hi, 2.0 * hi
        if hi > 1e300:
            return math.inf
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if t_central_mass(mid, df) < mass:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class PairedDifference:
    """The paired comparison of ``x`` with ``y`` over ``n`` pairs (``d = x - y``).

    ``sd`` is the sample standard deviation of the differences (n - 1 in the denominator).
    With ``n = 1`` there is no spread, hence no interval: ``sd``, ``low``, ``high``,
    ``half_width``, ``t``, ``p_value`` and ``excludes_zero`` are None. With ``sd = 0`` (every
    pair differs by the same amount) the standard error is 0, the t statistic is undefined and
    the interval cannot be computed: ``low``, ``high``, ``half_width``, ``t``, ``p_value`` and
    ``excludes_zero`` are None (a zero-width interval would read as certainty).
    """

    n: int
    mean: float
    sd: Optional[float]
    confidence: float
    df: Optional[int]
    t_critical: Optional[float]
    half_width: Optional[float]
    low: Optional[float]
    high: Optional[float]
    t: Optional[float]
    p_value: Optional[float]
    excludes_zero: Optional[bool]

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    def no_claim_reason(self) -> Optional[str]:
        """Why no difference may be claimed from these pairs, or None when the data allow a
        claim (``n >= MIN_PAIRS_FOR_CLAIM``, ``sd > 0``, an interval)."""
        if self.n < 2:
            return f"{self.n} seed pair: no spread, no interval"
        if self.sd == 0.0 or not self.has_interval:
            return (f"all {self.n} paired differences are equal (zero variance): no interval "
                    "can be computed")
        if self.n < MIN_PAIRS_FOR_CLAIM:
            return (f"only {self.n} seed pairs (at least {MIN_PAIRS_FOR_CLAIM} are needed to "
                    "claim a difference)")
        return None

    def claim(self) -> bool:
        """True when the seeds support an order: no :meth:`no_claim_reason` and the interval
        excludes 0."""
        return self.no_claim_reason() is None and bool(self.excludes_zero)

    def as_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.update(claim=self.claim(), no_claim_reason=self.no_claim_reason())
        return out


def paired_difference(x: Sequence[float], y: Sequence[float],
                      confidence: float = 0.95) -> PairedDifference:
    """Paired t comparison of ``x`` against ``y`` (same length, pair ``i`` is ``(x[i], y[i])``):
    the mean of ``d = x - y``, its ``confidence`` interval ``mean +- t_{(1+confidence)/2, n-1}
    * sd / sqrt(n)``, the t statistic ``mean / (sd / sqrt(n))`` and its two-sided p-value, and
    whether the interval excludes 0 (no interval, t or p when every difference is equal)."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    if len(x) != len(y):
        raise ValueError(f"paired samples must have the same length, got {len(x)} and {len(y)}")
    if not x:
        raise ValueError("paired samples are empty")
    if not all(math.isfinite(v) for v in x + y):
        raise ValueError("paired samples must be finite numbers")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    d = [a - b for a, b in zip(x, y)]
    n = len(d)
    mean = math.fsum(d) / n
    if n == 1:
        return PairedDifference(n, mean, None, confidence, None, None, None, None, None, None,
                                None, None)
    df = n - 1
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in d) / df)
    if sd <= ZERO_SPREAD * max([1.0] + [abs(v) for v in x + y]):
        sd = 0.0  # equal differences up to rounding (e.g. 100 * 0.524 - 100 * 0.5)
    t_crit = t_quantile(0.5 + confidence / 2.0, df)
    se = sd / math.sqrt(n)
    if se == 0.0:
        return PairedDifference(n, mean, sd, confidence, df, t_crit, None, None, None, None,
                                None, None)
    half = t_crit * se
    low, high = mean - half, mean + half
    t = mean / se
    return PairedDifference(n, mean, sd, confidence, df, t_crit, half, low, high, t,
                            t_two_sided_p(t, df), bool(low > 0.0 or high < 0.0))
