"""The project's statistics, on scipy: one owner for every interval a user reads.

``synctwin compare``, training's held-out evaluation, the server's predicted impact and
calibration's validation all report intervals; they all come from here, so the same
numbers get the same interval everywhere.

- :func:`t_interval`: a mean and its Student-t confidence interval (seeds are few, so
  not the normal approximation), optionally clipped to the quantity's bounds (a share
  such as SLA attainment lies in [0, 1], a count is >= 0).
- :func:`paired_difference`: the t interval of per-seed differences (common random
  numbers make strategies comparable seed by seed).
- :func:`prediction_interval`: where one more draw is likely to fall.
- :func:`paired_ratio`: a ratio of paired means (the gap a strategy closes towards
  the hindsight bound) with a bootstrap interval.
- :func:`wilson_interval`: a share of successes (``scipy.stats.binomtest``), which unlike
  the normal approximation stays inside [0, 1] and is not [0, 0] for 0 of n.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval over ``n`` samples (NaN bounds: no interval)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval (False when there is none)."""
        return bool(self.low > value or self.high < value)


def _clip(x: float, lower: float | None, upper: float | None) -> float:
    if lower is not None:
        x = max(lower, x)
    if upper is not None:
        x = min(upper, x)
    return x


@functools.lru_cache(maxsize=1024)
def t_quantile(level: float, df: int) -> float:
    """The two-sided Student-t quantile of ``level`` with ``df`` degrees of freedom.

    Cached: ``scipy.stats.t.ppf`` checks its arguments on every call (about 0.1 ms),
    and an impact estimate asks for a few dozen intervals with the same few sample
    sizes; the cache made that a quarter of the server's own work per request.
    """
    return float(stats.t.ppf(0.5 + level / 2, df))


def _t_half(x: np.ndarray, level: float, scale: float = 1.0) -> float:
    quantile = t_quantile(level, len(x) - 1)
    return quantile * float(x.std(ddof=1)) * scale / math.sqrt(len(x))


def t_interval(
    values: Sequence[float] | np.ndarray,
    level: float = LEVEL,
    lower: float | None = None,
    upper: float | None = None,
    single: Literal["nan", "point"] = "nan",
) -> Interval:
    """Mean of ``values`` with its Student-t interval, clipped to ``[lower, upper]``.

    Args:
        values: the samples (one per seed, say).
        level: the confidence level.
        lower, upper: the quantity's bounds, if any (0 and 1 for a share).
        single: what one sample gives: NaN bounds (no interval can be had), or the point
            itself as both bounds (where a number must be shown, e.g. in JSON).
    """
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        bound = mean if single == "point" else math.nan
        return Interval(mean, bound, bound, n)
    half = _t_half(x, level)
    return Interval(mean, _clip(mean - half, lower, upper), _clip(mean + half, lower, upper), n)


def paired_difference(
    values: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    level: float = LEVEL,
) -> Interval:
    """The mean per-pair difference ``values - reference`` with its t interval."""
    return t_interval(np.asarray(values, float) - np.asarray(reference, float), level)


def prediction_interval(
    values: Sequence[float] | np.ndarray,
    level: float = LEVEL,
    lower: float | None = None,
    upper: float | None = None,
) -> Interval:
    """Mean of ``values`` and a Student-t prediction interval for one more draw like them
    (non-finite values are left out)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return t_interval(x, level)
    mean = float(x.mean())
    half = _t_half(x, level, scale=math.sqrt(len(x) + 1))
    return Interval(
        mean, _clip(mean - half, lower, upper), _clip(mean + half, lower, upper), len(x)
    )


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> Interval:
    """The share ``successes / n`` with its Wilson score interval (``[0, 1]`` for n = 0)."""
    if n == 0:
        return Interval(0.0, 0.0, 1.0, 0)
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(level, method="wilson")
    return Interval(successes / n, float(ci.low), float(ci.high), n)


def paired_ratio(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    level: float = LEVEL,
    resamples: int = 4999,
) -> Interval:
    """``mean(numerator) / mean(denominator)`` over paired samples, with a bootstrap
    interval that resamples the pairs together (``scipy.stats.bootstrap``, BCa).

    The gap a strategy closes towards a bound, ``mean(threshold - strategy) /
    mean(threshold - hindsight)`` seed by seed, is such a ratio; its denominator is
    noisy, so a t interval of per-seed ratios would be wrong. The resampling is seeded
    (the same data give the same interval). NaN when the denominator's mean is not
    positive (no gap to close) or there are fewer than 2 pairs.
    """
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    n = len(num)
    if n == 0 or den.mean() <= 0:
        return Interval(float("nan"), float("nan"), float("nan"), n)
    point = float(num.mean() / den.mean())
    if n < 2:
        return Interval(point, float("nan"), float("nan"), n)

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.mean(axis=axis) / b.mean(axis=axis)

    with warnings.catch_warnings():  # degenerate data: handled below
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (num, den),
            ratio,
            paired=True,
            vectorized=True,
            confidence_level=level,
            n_resamples=resamples,
            method="BCa",
            rng=np.random.default_rng(0),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa degenerates on ties
        boots = res.bootstrap_distribution
        low, high = (float(q) for q in np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]))
    return Interval(point, low, high, n)
