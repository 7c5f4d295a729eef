"""Demand: hourly arrival rates, weekday factors and the entry sector of each item class.

An item's arrival is observed when its first event in the log is an ``arrive``
(:func:`entry_arrivals`); items already in the operation when the log began are
not arrivals. Counts per hour of the observed window (:func:`hourly_counts`) give a
Poisson log-linear fit (:func:`fit_arrivals`); weekday factors are kept only when
the data show a significant weekday effect. :func:`fit_arrivals_part` fits every
class of the base scenario and says which parts of the week the log does not cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from experiments.calibration.common import Window
from experiments.calibration.data import time_order
from twin.scenario import Scenario

WEEKDAY_ALPHA = 0.01  # weekday factors are fitted only if the weekday effect is this significant
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# --------------------------------------------------------------------------- one class


@dataclass(frozen=True)
class ArrivalFit:
    """Fitted demand of one item class.

    Attributes:
        hourly_rates: items per hour for each hour of the day (24).
        weekday_factors: multiplier per weekday, Monday first (7).
        entry: the sector where the class's items arrive (the most common first sector).
        entry_share: the share of arrivals at ``entry``.
        arrivals: items counted as arrivals.
        counts: arrivals per observed (day, hour): ``day, weekday, hour, exposure, count``.
        weekday_fitted: whether the weekday factors come from the data.
        weekday_p: p-value of the likelihood-ratio test for a weekday effect (NaN: untested).
        observed_weekdays: weekdays present in the log.
    """

    item_class: str
    hourly_rates: tuple[float, ...]
    weekday_factors: tuple[float, ...]
    entry: str
    entry_share: float
    arrivals: int
    counts: pd.DataFrame
    weekday_fitted: bool
    weekday_p: float
    observed_weekdays: tuple[int, ...]

    def daily_rate(self, weekday: int) -> float:
        """Fitted arrivals per day on ``weekday`` (0 = Monday)."""
        return sum(self.hourly_rates) * self.weekday_factors[weekday]


def entry_arrivals(events: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Items whose first event in the log is an ``arrive``: their arrival time and sector.

    Items first seen in any other way (a ``start`` or ``finish``) were already in
    the operation when the log began, so their arrival is not observed.
    """
    first = time_order(events).drop_duplicates("item_id", keep="first")
    return window.select(first[first["event"] == "arrive"])[
        ["item_id", "item_class", "sector", "t"]
    ]


def hourly_counts(arrivals: pd.DataFrame, window: Window, weekday0: int) -> pd.DataFrame:
    """Arrival counts per (day, hour of day) over every whole hour of ``window``.

    ``weekday0`` is the weekday of day 0 (0 = Monday); ``exposure`` is the hours
    of observation (1 for every hour of an hour-aligned window).
    """
    hours = np.arange(int(window.start // 60), math.ceil(window.end / 60))
    grid = pd.DataFrame({"abs_hour": hours})
    grid["day"] = grid["abs_hour"] // 24
    grid["hour"] = grid["abs_hour"] % 24
    grid["weekday"] = (weekday0 + grid["day"]) % 7
    lo = np.maximum(grid["abs_hour"] * 60.0, window.start)
    hi = np.minimum((grid["abs_hour"] + 1) * 60.0, window.end)
    grid["exposure"] = np.clip(hi - lo, 0, 60) / 60.0
    n = (arrivals["t"] // 60).astype(int).value_counts()
    grid["count"] = grid["abs_hour"].map(n).fillna(0).astype(int)
    return grid


def fit_arrivals(
    arrivals: pd.DataFrame,
    window: Window,
    weekday0: int,
    item_class: str,
    base_factors: tuple[float, ...] = (1.0,) * 7,
) -> ArrivalFit:
    """Poisson maximum-likelihood hourly rates and weekday factors of one class.

    Model: arrivals in hour ``h`` of a day with weekday ``w`` are Poisson with mean
    ``rate[h] * factor[w] * exposure``. The MLE of this log-linear model is found
    by iterative proportional fitting: alternately ``rate[h] = N_h / sum_w factor[w]
    E_hw`` and ``factor[w] = N_w / sum_h rate[h] E_hw`` (N: counts, E: exposure
    hours). Without weekday factors the MLE is simply count / exposure per hour.

    Weekday factors are kept only when at least two weekdays are observed and a
    likelihood-ratio test (deviance vs the model without them, chi-square with
    weekdays-1 degrees of freedom) rejects "no weekday effect" at level
    ``WEEKDAY_ALPHA``; otherwise every observed weekday gets 1.0. Factors are
    normalised to average 1.0 over the observed weekdays, so ``hourly_rates`` is
    an average observed day; weekdays absent from the log keep the base
    scenario's factor relative to the observed ones.
    """
    counts = hourly_counts(arrivals, window, weekday0)
    observed = tuple(sorted(counts.loc[counts["exposure"] > 0, "weekday"].unique().tolist()))
    e = counts.pivot_table(
        index="hour", columns="weekday", values="exposure", aggfunc="sum", fill_value=0.0
    ).reindex(index=range(24), columns=range(7), fill_value=0.0)
    n = counts.pivot_table(
        index="hour", columns="weekday", values="count", aggfunc="sum", fill_value=0
    ).reindex(index=range(24), columns=range(7), fill_value=0)
    E, N = e.to_numpy(float), n.to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        flat_rate = np.where(E.sum(1) > 0, N.sum(1) / E.sum(1), 0.0)
    rate, factor = flat_rate.copy(), np.ones(7)
    p_value = float("nan")
    fitted = False
    if len(observed) >= 2:
        obs = np.zeros(7, dtype=bool)
        obs[list(observed)] = True
        for _ in range(200):
            denom_f = (rate[:, None] * E).sum(0)
            factor = np.where(obs & (denom_f > 0), N.sum(0) / np.where(denom_f > 0, denom_f, 1), 1)
            denom_r = (factor[None, :] * E).sum(1)
            new_rate = np.where(denom_r > 0, N.sum(1) / np.where(denom_r > 0, denom_r, 1), 0.0)
            if np.allclose(new_rate, rate, rtol=1e-10, atol=1e-12):
                rate = new_rate
                break
            rate = new_rate
        mu_full = rate[:, None] * factor[None, :] * E
        mu_flat = flat_rate[:, None] * E
        deviance = 2 * (_poisson_ll(N, mu_full) - _poisson_ll(N, mu_flat))
        p_value = float(stats.chi2.sf(max(deviance, 0.0), len(observed) - 1))
        fitted = p_value < WEEKDAY_ALPHA
        if fitted:
            scale = factor[obs].mean()
            factor, rate = factor / scale, rate * scale
        else:
            rate, factor = flat_rate, np.ones(7)
    base = np.asarray(base_factors, dtype=float)
    base_obs = base[list(observed)].mean() if observed else 1.0
    out_f = [
        float(factor[w]) if w in observed else (base[w] / base_obs if base_obs > 0 else 1.0)
        for w in range(7)
    ]
    share = arrivals["sector"].value_counts(normalize=True)
    entry = str(share.index[0]) if len(share) else ""
    return ArrivalFit(
        item_class=item_class,
        hourly_rates=tuple(float(r) for r in rate),
        weekday_factors=tuple(out_f),
        entry=entry,
        entry_share=float(share.iloc[0]) if len(share) else float("nan"),
        arrivals=len(arrivals),
        counts=counts,
        weekday_fitted=fitted,
        weekday_p=p_value,
        observed_weekdays=observed,
    )


def _poisson_ll(n: np.ndarray, mu: np.ndarray) -> float:
    """Poisson log-likelihood without the ``log n!`` term (it cancels in ratios)."""
    mask = mu > 0
    return float(np.sum(n[mask] * np.log(mu[mask]) - mu[mask]))


# --------------------------------------------------------------------------- every class


@dataclass(frozen=True)
class ArrivalsPart:
    """The demand part of a calibration.

    Attributes:
        fits: the fit of every class with arrivals in the log.
        demand: per fitted class, its scenario fields ``hourly_rates``,
            ``weekday_factors`` and ``entry``; other classes keep the base's.
        arrivals: the entry arrivals of every class (:func:`entry_arrivals`).
        notes: classes without arrivals, classes entering at several sectors,
            weekdays without data.
    """

    fits: dict[str, ArrivalFit]
    demand: dict[str, dict[str, Any]]
    arrivals: pd.DataFrame
    notes: tuple[str, ...]


def fit_arrivals_part(
    events: pd.DataFrame, window: Window, weekday0: int, base: Scenario
) -> ArrivalsPart:
    """:func:`fit_arrivals` for every class of ``base`` with arrivals in ``events``.

    ``weekday0`` is the weekday of the log's day 0 (0 = Monday).
    """
    arrivals = entry_arrivals(events, window)
    fits: dict[str, ArrivalFit] = {}
    demand: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    unobserved: dict[tuple[int, ...], list[str]] = {}
    for cls in base.item_classes:
        a = arrivals[arrivals["item_class"] == cls.name]
        if a.empty:
            notes.append(f"class {cls.name!r}: no arrivals in the log; rates kept from base")
            continue
        fit = fit_arrivals(a, window, weekday0, cls.name, cls.weekday_factors)
        fits[cls.name] = fit
        demand[cls.name] = {
            "hourly_rates": [round(r, 3) for r in fit.hourly_rates],
            "weekday_factors": [round(f, 4) for f in fit.weekday_factors],
            "entry": fit.entry,
        }
        if fit.entry_share < 0.99:
            notes.append(
                f"class {cls.name!r}: only {fit.entry_share:.1%} of arrivals enter at "
                f"{fit.entry!r}; the scenario has one entry sector per class"
            )
        missing = tuple(sorted(set(range(7)) - set(fit.observed_weekdays)))
        if missing:
            unobserved.setdefault(missing, []).append(cls.name)
    for missing, names in unobserved.items():
        day_names = ", ".join(WEEKDAYS[w] for w in missing)
        notes.append(
            f"no arrivals data for {day_names} (class {', '.join(names)}): weekday factors "
            "there keep the base's ratio to the observed days"
        )
    return ArrivalsPart(fits=fits, demand=demand, arrivals=arrivals, notes=tuple(notes))
