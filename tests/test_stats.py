"""The one statistics module: known answers against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from twin.stats import (
    paired_difference,
    prediction_interval,
    t_interval,
    t_quantile,
    wilson_interval,
)

X = np.array([1.0, 2.0, 3.0, 4.0])
HALF = stats.t.ppf(0.975, 3) * X.std(ddof=1) / 2  # t(0.975, 3 df) * s / sqrt(4)


def test_t_interval_is_student_t() -> None:
    i = t_interval(X)
    assert (i.mean, i.n) == (2.5, 4)
    assert (i.low, i.high) == pytest.approx((2.5 - HALF, 2.5 + HALF), rel=1e-12)
    assert i.half_width == pytest.approx(HALF)
    wider = t_interval(X, level=0.99)
    assert wider.low < i.low and wider.high > i.high


def test_t_interval_respects_bounds_of_shares() -> None:
    share = t_interval([0.97, 1.0, 1.0, 0.99, 1.0], lower=0.0, upper=1.0)
    assert share.high == 1.0 and 0.0 <= share.low < share.mean
    assert t_interval([0.0, 0.0, 3.0], lower=0.0).low == 0.0


def test_one_sample_gives_no_interval_unless_a_point_is_asked() -> None:
    one = t_interval([5.0])
    assert one.mean == 5.0 and math.isnan(one.low) and math.isnan(one.high)
    point = t_interval([5.0], single="point")
    assert (point.low, point.high) == (5.0, 5.0)
    assert t_interval([]).n == 0 and math.isnan(t_interval([]).mean)


def test_paired_difference_is_the_interval_of_differences() -> None:
    a, b = np.array([10.0, 12.0, 9.0, 11.0]), np.array([9.0, 10.0, 9.5, 9.0])
    d = paired_difference(a, b)
    assert d == t_interval(a - b)
    assert d.excludes(0.0) == (d.low > 0 or d.high < 0)


def test_prediction_interval_is_wider_by_sqrt_one_plus_one_over_n() -> None:
    p = prediction_interval(X)
    assert p.half_width == pytest.approx(HALF * math.sqrt(4 + 1), rel=1e-12)
    assert prediction_interval([1.0, np.nan, 3.0]).n == 2
    assert prediction_interval(X, lower=0.0).low == 0.0


@pytest.mark.parametrize(("k", "n"), [(0, 8), (3, 10), (8, 8), (40, 1000)])
def test_wilson_matches_its_closed_form(k: int, n: int) -> None:
    z = stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    w = wilson_interval(k, n)
    assert w.mean == p
    assert (w.low, w.high) == pytest.approx((max(0, centre - half), min(1, centre + half)))
    assert 0.0 <= w.low <= p <= w.high <= 1.0


def test_wilson_of_nothing_is_everything() -> None:
    w = wilson_interval(0, 0)
    assert (w.low, w.high, w.n) == (0.0, 1.0, 0)


def test_the_cached_t_quantile_is_scipy_s() -> None:
    for level in (0.9, 0.95, 0.99):
        for df in (1, 2, 3, 7, 19, 200):
            assert t_quantile(level, df) == float(stats.t.ppf(0.5 + level / 2, df))
