"""Calibrate a scenario from an operation's own event log.

Planners have event logs, not YAML. Given a log in the format of :mod:`twin.eventlog`
(``item_id, item_class, sector, event, timestamp, worker_id``, optionally ``due``),
read and checked row by row by :mod:`experiments.calibration.data`, this module fits
the parts of a scenario the data determine: hourly arrival rates and weekday
factors per item class, service-time distributions per sector, routing
probabilities, due rules (when the log has a ``due`` column), absenteeism
(attendance), shifts and headcount (roster or attendance) and station breakdowns
(equipment events). Everything else is taken
from a base scenario.

Every fit is a pure function over DataFrames whose docstring states its estimator.
:func:`calibrate` ties them together and returns a :class:`Calibration` (the fitted,
validated :class:`~twin.scenario.Scenario` plus the fits, for the report).

A file that cannot be used at all, or a fit that is not a valid scenario, raises
:class:`~experiments.calibration.data.CalibrationError` (the CLI: exit code 2).
Times inside this module are minutes since midnight of the log's first day (``t``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from experiments.calibration.data import (
    ROSTER_COLUMNS,
    STAY_ORDER,
    CalibrationError,
    EventTable,
    load_attendance,
    load_equipment,
    load_events,
    parse_timestamps,
    read_table,
    time_order,
)
from twin.scenario import EXIT, MINUTES_PER_DAY, Scenario, ScenarioError, scenario_from_dict
from twin.stats import wilson_interval

MIN_SERVICE_SAMPLES = 10  # fewer start->finish pairs: keep the base scenario's distribution
DETERMINISTIC_CV = 0.01  # sample CV below this: a fixed duration (timestamp jitter only)
KS_ALPHA = 0.01  # best parametric family rejected at this level (and n >= EMPIRICAL_MIN_N) ...
EMPIRICAL_MIN_N = 200  # ... -> resample the observed durations instead
EMPIRICAL_POINTS = 400  # quantiles kept for an empirical distribution
WEEKDAY_ALPHA = 0.01  # weekday factors are fitted only if the weekday effect is this significant
MAX_LOGNORMAL_CV = 5.0  # the scenario schema's bound
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    """The observed period, in minutes since the log's origin: ``[start, end)``."""

    start: float
    end: float

    @property
    def minutes(self) -> float:
        return self.end - self.start

    @property
    def first_day(self) -> int:
        return int(self.start // MINUTES_PER_DAY)

    @property
    def days(self) -> int:
        """Calendar days the window touches."""
        return math.ceil(self.end / MINUTES_PER_DAY) - self.first_day


def observed_window(events: pd.DataFrame) -> Window:
    """The period a log covers: first event floored, last event ceiled, to the hour.

    Operation logs are cut at whole hours or days; an hour-aligned window keeps
    the exposure of every hour of the day exact (each hour is in or out).
    """
    t = events["t"]
    return Window(float(math.floor(t.min() / 60) * 60), float(math.ceil(t.max() / 60 + 1e-9) * 60))


# --------------------------------------------------------------------------- visits & pairs


def visits(events: pd.DataFrame) -> pd.DataFrame:
    """One row per stay of an item in a sector, in the order the item made them.

    A stay is a run of consecutive events of one item in one sector (in time order),
    so an item sent back to a sector it left (rework) makes a second stay there;
    work handed back and restarted within a stay stays one stay.

    Columns: ``item_id, item_class, sector, order, arrive, first_start, last_start,
    finish`` (minutes; NaN when the log has no such event for the stay).
    """
    e = time_order(events)
    e = e.sort_values("item_id", kind="stable")  # time order within each item
    new_item = e["item_id"].ne(e["item_id"].shift())
    new_stay = new_item | e["sector"].ne(e["sector"].shift())
    e["stay"] = new_stay.cumsum()
    g = e.groupby("stay", sort=False)
    out = g.agg(
        item_id=("item_id", "first"), item_class=("item_class", "first"), sector=("sector", "first")
    )
    t = e["t"]
    out["arrive"] = t.where(e["event"] == "arrive").groupby(e["stay"]).min()
    starts = t.where(e["event"] == "start").groupby(e["stay"])
    out["first_start"] = starts.min()
    out["last_start"] = starts.max()
    out["finish"] = t.where(e["event"] == "finish").groupby(e["stay"]).max()
    out["order"] = out.groupby("item_id", sort=False).cumcount()
    return out.reset_index(drop=True)[
        [
            "item_id",
            "item_class",
            "sector",
            "order",
            "arrive",
            "first_start",
            "last_start",
            "finish",
        ]
    ]


@dataclass
class ServicePairs:
    """Start->finish pairs (completed services) and the services the log cut short.

    Attributes:
        pairs: ``sector, item_class, worker_id, start, minutes`` per completed service.
        interrupted: per sector, services whose end the log does not show: starts
            handed back before finishing, starts still open when the log ends, and
            finishes of items already in service when the log began.
    """

    pairs: pd.DataFrame
    interrupted: dict[str, int]


def service_pairs(events: pd.DataFrame) -> ServicePairs:
    """Match each ``start`` with the ``finish`` that follows it for the same item and sector.

    A ``start`` followed by another ``start`` of the same item in the same sector
    is work handed back (a break or a shift end interrupted it): it is not a
    completed service, and counts as interrupted.
    """
    s = events.assign(rank=events["event"].map(STAY_ORDER))
    s = s.sort_values(["item_id", "sector", "t", "rank"], kind="stable")
    same_next = (s["item_id"] == s["item_id"].shift(-1)) & (s["sector"] == s["sector"].shift(-1))
    same_prev = (s["item_id"] == s["item_id"].shift(1)) & (s["sector"] == s["sector"].shift(1))
    next_ev = s["event"].shift(-1).where(same_next)
    prev_ev = s["event"].shift(1).where(same_prev)
    starts = s["event"] == "start"
    done = starts & (next_ev == "finish")
    pairs = pd.DataFrame(
        {
            "sector": s.loc[done, "sector"].to_numpy(),
            "item_class": s.loc[done, "item_class"].to_numpy(),
            "worker_id": s.loc[done, "worker_id"].to_numpy(),
            "start": s.loc[done, "t"].to_numpy(),
            "minutes": (s["t"].shift(-1)[done] - s.loc[done, "t"]).to_numpy(),
        }
    )
    cut = (starts & (next_ev != "finish")) | ((s["event"] == "finish") & (prev_ev != "start"))
    interrupted = s.loc[cut].groupby("sector").size().to_dict()
    return ServicePairs(pairs=pairs, interrupted={k: int(v) for k, v in interrupted.items()})


# --------------------------------------------------------------------------- arrivals


@dataclass
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
    first = first[(first["event"] == "arrive") & (first["t"] >= window.start)]
    return first[first["t"] < window.end][["item_id", "item_class", "sector", "t"]]


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


# --------------------------------------------------------------------------- service times


@dataclass
class FamilyFit:
    """One candidate distribution fitted to durations."""

    family: str
    params: dict[str, Any]
    loglik: float  # NaN where undefined (deterministic, empirical)
    aic: float
    ks_d: float
    ks_p: float

    @property
    def mean(self) -> float:
        if self.family == "deterministic":
            return float(self.params["value"])
        if self.family == "empirical":
            return float(np.mean(self.params["samples"]))
        return float(self.params["mean"])


@dataclass
class ServiceFit:
    """The service-time fit of one sector.

    Attributes:
        chosen: the family written into the scenario.
        candidates: every family tried, with log-likelihood, AIC and KS statistic.
        durations: the completed-service durations used (minutes).
        weights: inverse-probability weights correcting for interrupted services.
        interrupted: services the log does not show the end of.
        excluded_other: pairs left out because a worker from another sector did them.
        rule: why ``chosen`` was chosen.
    """

    sector: str
    chosen: FamilyFit | None
    candidates: list[FamilyFit]
    durations: np.ndarray
    weights: np.ndarray
    interrupted: int
    excluded_other: int = 0
    other_mean: float = float("nan")
    rule: str = ""

    @property
    def n(self) -> int:
        return len(self.durations)

    @property
    def observed_mean(self) -> float:
        if not self.n:
            return float("nan")
        return float(np.average(self.durations, weights=self.weights))

    def distribution(self) -> dict[str, Any] | None:
        """The chosen family as a scenario ``service`` mapping."""
        if self.chosen is None:
            return None
        return {"dist": self.chosen.family, **self.chosen.params}


def interruption_weights(durations: np.ndarray, interrupted: int) -> np.ndarray:
    """Inverse-probability weights that undo the length bias of interrupted services.

    A break, a shift end or the end of the log cuts a service short at an instant
    unrelated to its start, so a service of length ``s`` is interrupted with
    probability about ``c * s``: long services are under-represented among the
    completed ones (the log does not say when work was handed back, so the cut
    services cannot be used as censored observations). Weighting each completed
    duration by ``1 / (1 - c s)`` restores the population; ``c`` solves
    ``sum_i 1 / (1 - c s_i) = completed + interrupted`` (the weights count every
    service started, finished or not). The correction is capped at weight 10.
    """
    n = len(durations)
    if interrupted <= 0 or n == 0:
        return np.ones(n)
    target = n + interrupted
    s_max = float(durations.max())
    hi = 0.9 / s_max  # weights at most 10

    def total(c: float) -> float:
        return float(np.sum(1.0 / (1.0 - c * durations)))

    if total(hi) <= target:
        c = hi
    else:
        lo = 0.0
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if total(mid) < target else (lo, mid)
        c = (lo + hi) / 2
    return 1.0 / (1.0 - c * durations)


def _weighted_ks(x: np.ndarray, w: np.ndarray, cdf) -> tuple[float, float]:
    """KS distance between the weighted empirical CDF of ``x`` and ``cdf``, and its p-value.

    The p-value uses the Kolmogorov distribution for the sample size; with
    parameters estimated from the same data it is conservative (too large).
    """
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    cum = np.cumsum(ws) / ws.sum()
    before = np.concatenate([[0.0], cum[:-1]])
    f = cdf(xs)
    d = float(max(np.max(np.abs(cum - f)), np.max(np.abs(f - before))))
    return d, float(stats.kstwo.sf(d, len(x)))


def weighted_quantiles(x: np.ndarray, w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles of the weighted sample (inverse of its empirical CDF)."""
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    cum = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
    return np.interp(q, cum, xs)


def fit_durations(
    durations: np.ndarray, weights: np.ndarray | None = None
) -> tuple[FamilyFit | None, list[FamilyFit], str]:
    """Choose a duration distribution among the scenario's families.

    - **deterministic** when the sample coefficient of variation is below
      ``DETERMINISTIC_CV`` (the spread is timestamp jitter): value = the mean;
    - otherwise **exponential** (MLE: mean) and **lognormal** (MLE of the log's
      mean and variance, reported as mean and CV) are fitted by maximum weighted
      likelihood and compared by AIC (2k - 2 log L); the lower AIC wins;
    - if the winner fails a Kolmogorov-Smirnov test at ``KS_ALPHA`` and there are
      at least ``EMPIRICAL_MIN_N`` durations, **empirical** (resampling
      ``EMPIRICAL_POINTS`` quantiles of the data) is used instead.

    Returns:
        The chosen family (``None`` without data), every candidate, and the rule applied.
    """
    x = np.asarray(durations, dtype=float)
    if len(x) == 0:
        return None, [], "no data"
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    w = w * len(x) / w.sum()  # weights sum to the sample size (log-likelihoods comparable)
    mean = float(np.average(x, weights=w))
    sd = float(np.sqrt(np.average((x - mean) ** 2, weights=w)))
    cv = sd / mean if mean > 0 else 0.0
    candidates: list[FamilyFit] = []
    det = FamilyFit("deterministic", {"value": round(mean, 4)}, math.nan, math.nan,
                    *_weighted_ks(x, w, lambda v: (v >= mean).astype(float)))  # fmt: skip
    if cv < DETERMINISTIC_CV:
        return det, [det], f"CV {cv:.4f} < {DETERMINISTIC_CV}: deterministic"
    candidates.append(det)
    # exponential
    ll_exp = float(np.sum(w * (-math.log(mean) - x / mean)))
    exp_fit = FamilyFit(
        "exponential", {"mean": round(mean, 4)}, ll_exp, 2 * 1 - 2 * ll_exp,
        *_weighted_ks(x, w, lambda v: stats.expon.cdf(v, scale=mean)),
    )  # fmt: skip
    candidates.append(exp_fit)
    # lognormal
    logs = np.log(x)
    mu = float(np.average(logs, weights=w))
    sigma = float(np.sqrt(np.average((logs - mu) ** 2, weights=w)))
    sigma = min(max(sigma, 1e-9), math.sqrt(math.log1p(MAX_LOGNORMAL_CV**2)))
    ll_ln = float(np.sum(w * stats.norm.logpdf(logs, mu, sigma) - w * logs))
    ln_mean = math.exp(mu + sigma**2 / 2)
    ln_cv = math.sqrt(math.expm1(sigma**2))
    ln_fit = FamilyFit(
        "lognormal", {"mean": round(ln_mean, 4), "cv": round(ln_cv, 4)}, ll_ln, 2 * 2 - 2 * ll_ln,
        *_weighted_ks(x, w, lambda v: stats.lognorm.cdf(v, sigma, scale=math.exp(mu))),
    )  # fmt: skip
    candidates.append(ln_fit)
    k = min(EMPIRICAL_POINTS, len(x))
    qs = weighted_quantiles(x, w, (np.arange(k) + 0.5) / k)
    samples = tuple(float(max(round(v, 4), 1e-4)) for v in qs)
    emp_x = np.sort(np.asarray(samples))
    emp = FamilyFit(
        "empirical", {"samples": samples}, math.nan, math.nan,
        *_weighted_ks(x, w, lambda v: np.searchsorted(emp_x, v, side="right") / len(emp_x)),
    )  # fmt: skip
    candidates.append(emp)
    best = min((exp_fit, ln_fit), key=lambda f: f.aic)
    rule = f"lowest AIC: {best.family}"
    if best.ks_p < KS_ALPHA and len(x) >= EMPIRICAL_MIN_N:
        return (
            emp,
            candidates,
            (
                f"{best.family} has the lowest AIC but fails KS "
                f"(p = {best.ks_p:.2g} < {KS_ALPHA}): empirical"
            ),
        )
    return best, candidates, rule


def fit_service(
    pairs: pd.DataFrame,
    sector: str,
    interrupted: int = 0,
    worker_home: Mapping[str, str] | None = None,
) -> ServiceFit:
    """Fit the service-time distribution of ``sector`` from its start->finish pairs.

    The scenario's service time is that of a fully trained worker at home, so when
    ``worker_home`` (worker -> home sector, from attendance) is known, pairs done by
    workers from other sectors or by agency staff (not in attendance) are left out
    and reported. Interrupted services are corrected for with
    :func:`interruption_weights`; the family is chosen by :func:`fit_durations`.
    """
    p = pairs[pairs["sector"] == sector]
    excluded, other_mean = 0, float("nan")
    if worker_home:
        home = p["worker_id"].map(worker_home)
        mine = home == sector
        if mine.sum() >= MIN_SERVICE_SAMPLES:
            excluded = int((~mine).sum())
            other_mean = float(p.loc[~mine, "minutes"].mean()) if excluded else float("nan")
            p = p[mine]
    x = p["minutes"].to_numpy(float)
    w = interruption_weights(x, interrupted)
    if len(x) < MIN_SERVICE_SAMPLES:
        return ServiceFit(sector, None, [], x, w, interrupted, excluded, other_mean,
                          f"only {len(x)} completed services: kept from base")  # fmt: skip
    chosen, candidates, rule = fit_durations(x, w)
    return ServiceFit(sector, chosen, candidates, x, w, interrupted, excluded, other_mean, rule)


# --------------------------------------------------------------------------- routing


@dataclass
class RoutingFit:
    """Observed handoffs of one item class: counts (as observed) and probabilities per sector
    (after dropping handoffs that closed a cycle, listed in ``removed``)."""

    item_class: str
    counts: dict[str, dict[str, int]]
    probabilities: dict[str, dict[str, float]]
    unfinished: int  # stays whose next step the log does not show
    removed: list[str] = field(default_factory=list)  # edges dropped to break cycles


def fit_routing(
    stays: pd.DataFrame, item_class: str, window: Window, handoff_gap: float = 0.0
) -> RoutingFit:
    """Routing probabilities of one class: the share of each next sector (or exit).

    For every finished stay the next stay of the same item is the target; a stay
    with no next stay is an exit, unless it finished within ``handoff_gap``
    minutes of the end of the log (its next arrival may lie beyond the log) or
    never finished. Probabilities are counts / total per sector (the maximum
    likelihood estimate of a multinomial). Routing must be a DAG: if the data
    contain a cycle (rework), the rarest handoff on it is dropped and reported.
    """
    st = stays[stays["item_class"] == item_class].sort_values(["item_id", "order"])
    nxt = st.groupby("item_id", sort=False)["sector"].shift(-1)
    finished = st["finish"].notna()
    has_next = nxt.notna()
    exit_ok = finished & ~has_next & (st["finish"] <= window.end - handoff_gap)
    target = nxt.where(has_next, EXIT)
    used = has_next | exit_ok
    unfinished = int((~used).sum())
    tab = (
        pd.DataFrame({"src": st.loc[used, "sector"], "dst": target[used]})
        .value_counts()
        .sort_index()
    )
    counts: dict[str, dict[str, int]] = {}
    for (src, dst), c in tab.items():
        counts.setdefault(str(src), {})[str(dst)] = int(c)
    kept = {src: dict(dsts) for src, dsts in counts.items()}
    removed = _break_cycles(kept)
    probs = {src: _rounded_shares(dsts) for src, dsts in kept.items()}
    return RoutingFit(item_class, counts, probs, unfinished, removed)


def _rounded_shares(counts: Mapping[str, int], digits: int = 4) -> dict[str, float]:
    """Shares rounded to ``digits``; the sum never exceeds 1 (the schema's rule)."""
    total = sum(counts.values())
    shares = {k: round(v / total, digits) for k, v in counts.items()}
    excess = sum(shares.values()) - 1.0
    if excess > 0:
        k = max(shares, key=lambda key: shares[key])
        shares[k] = round(shares[k] - excess, digits + 2)
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def _break_cycles(counts: dict[str, dict[str, int]]) -> list[str]:
    """Drop the rarest edge of each cycle until the handoffs form a DAG."""
    removed = []
    while (cycle := _find_cycle(counts)) is not None:
        edges = list(itertools.pairwise(cycle))
        a, b = min(edges, key=lambda e: counts[e[0]][e[1]])
        removed.append(f"{a} -> {b} ({counts[a][b]} items; on cycle {' -> '.join(cycle)})")
        del counts[a][b]
        if not counts[a]:
            del counts[a]
    return removed


def _find_cycle(counts: Mapping[str, Mapping[str, int]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in counts.get(node, {}):
            if nxt == EXIT:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])) is not None:
                return found
        state[node] = 2
        return None

    for node in list(counts):
        if node not in state and (found := visit(node, [node])) is not None:
            return found
    return None


def handoff_gap(stays: pd.DataFrame) -> float:
    """Minutes between finishing one sector and arriving at the next (99th percentile).

    The twin hands off instantly (0); real systems may record the next arrival a
    little later. Stays that finish this close to the end of the log are not
    counted as exits, since their next arrival may not be in the log.
    """
    st = stays.sort_values(["item_id", "order"])
    nxt_arrive = st.groupby("item_id", sort=False)["arrive"].shift(-1)
    gap = (nxt_arrive - st["finish"]).dropna()
    gap = gap[gap >= 0]
    return float(np.percentile(gap, 99)) if len(gap) else 0.0


# --------------------------------------------------------------------------- due rules


@dataclass
class DueFit:
    """A due rule recovered from a ``due`` column."""

    item_class: str
    rule: dict[str, Any]
    items: int
    match: float  # share of items whose due time the rule reproduces within a minute
    how: str


def fit_due(arrive: np.ndarray, due: np.ndarray, item_class: str) -> DueFit | None:
    """Recover a due rule from arrival and due times (minutes since the origin).

    - If every lead time ``due - arrive`` lies within one minute of the median:
      ``within_minutes`` = the median (rounded).
    - Otherwise, if the due times fall on a few times of day (each used by at
      least 1% of items, together at least 99%): ``cutoffs`` at those times, and
      ``lead_minutes`` from the rule "due at the first cut-off at least ``lead``
      after arrival": every item bounds the lead from above by its own lead time
      and from below by the gap to the cut-off before its due time; the midpoint of
      the tightest bounds is used.
    - Otherwise ``within_minutes`` = the median lead time (the fit says how well it matches).
    """
    ok = np.isfinite(arrive) & np.isfinite(due) & (due >= arrive)
    a, d = arrive[ok], due[ok]
    if len(a) == 0:
        return None
    lead = d - a
    med = float(np.median(lead))
    if np.all(np.abs(lead - med) <= 1.0):
        rule = {"within_minutes": max(1, round(med))}
        return DueFit(item_class, rule, len(a), _due_match(rule, a, d), "constant lead time")
    tod = np.round(d % MINUTES_PER_DAY).astype(int) % MINUTES_PER_DAY
    share = pd.Series(tod).value_counts(normalize=True)
    frequent = share[share >= 0.01]
    if frequent.sum() >= 0.99 and len(frequent) <= 48:
        cutoffs = sorted(int(c) for c in frequent.index)
        cut = np.asarray(cutoffs)
        upper = float(lead.min())
        # the cut-off before each item's due time (the rule skipped it: too soon)
        idx = np.searchsorted(cut, tod, side="left") - 1
        prev_abs = np.where(
            idx >= 0,
            (d // MINUTES_PER_DAY) * MINUTES_PER_DAY + cut[np.maximum(idx, 0)],
            (d // MINUTES_PER_DAY - 1) * MINUTES_PER_DAY + cut[-1],
        )
        lower = float(np.max(prev_abs - a))
        lead_min = (max(lower, 0.0) + upper) / 2 if lower < upper else upper
        lead_min = int(min(max(round(lead_min), 0), MINUTES_PER_DAY - 1))
        rule = {
            "cutoffs": [f"{c // 60:02d}:{c % 60:02d}" for c in cutoffs],
            "lead_minutes": lead_min,
        }
        return DueFit(item_class, rule, len(a), _due_match(rule, a, d), "due at carrier cut-offs")
    rule = {"within_minutes": max(1, round(med))}
    return DueFit(item_class, rule, len(a), _due_match(rule, a, d), "median lead time")


def _due_match(rule: Mapping[str, Any], arrive: np.ndarray, due: np.ndarray) -> float:
    from twin.scenario import Due

    r = Due.model_validate(dict(rule))
    pred = np.array([r.due_minute(float(x)) for x in arrive])
    return float(np.mean(np.abs(pred - due) <= 1.0))


def due_times(events: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """Per item, the first parseable ``due`` value (minutes since ``origin``)."""
    if "due" not in events.columns:
        return pd.DataFrame(columns=["item_id", "due"])
    raw = events[["item_id", "due"]]
    raw = raw[raw["due"].astype(str).str.strip() != ""]
    parsed, _ = parse_timestamps(raw["due"].reset_index(drop=True))
    out = pd.DataFrame(
        {"item_id": raw["item_id"].to_numpy(), "due": (parsed - origin) / pd.Timedelta(minutes=1)}
    ).dropna()
    return out.drop_duplicates("item_id")


# --------------------------------------------------------------------------- workforce


@dataclass
class WorkforceFit:
    """Absenteeism, shifts and headcount from attendance and roster files."""

    absence_rate: float | None = None
    absence_ci: tuple[float, float] | None = None
    shifts_rostered: int = 0
    absence_by_sector: dict[str, float] = field(default_factory=dict)
    headcount: dict[str, dict[str, int]] | None = None
    headcount_source: str = ""
    shifts: list[dict[str, Any]] | None = None
    worker_home: dict[str, str] = field(default_factory=dict)
    rejected: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def fit_absence(attendance: pd.DataFrame) -> tuple[float, tuple[float, float], dict[str, float]]:
    """Absence rate = absent / rostered worker-shifts (the MLE of a Bernoulli chance).

    Returns:
        The rate, its 95% Wilson interval and the rate per sector (for the report;
        the scenario has one rate for everyone).
    """
    absent = attendance["status"] == "absent"
    n, k = len(attendance), int(absent.sum())
    share = wilson_interval(k, n)
    by_sector = absent.groupby(attendance["sector"]).mean().to_dict()
    return share.mean, (share.low, share.high), by_sector


def headcount_from_attendance(attendance: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Workers rostered per sector and shift: the median over dates (present or absent)."""
    per_day = attendance.groupby(["sector", "shift", "date"]).size()
    med = per_day.groupby(["sector", "shift"]).median()
    out: dict[str, dict[str, int]] = {}
    for (sector, shift), v in med.items():
        out.setdefault(str(sector), {})[str(shift)] = round(float(v))
    return out


def worker_homes(attendance: pd.DataFrame) -> dict[str, str]:
    """Each worker's home sector: the sector it is most often rostered in."""
    if attendance.empty:
        return {}
    mode = attendance.groupby("worker_id")["sector"].agg(lambda s: s.value_counts().index[0])
    return {str(k): str(v) for k, v in mode.items()}


def fit_roster(
    path: Path, base: Scenario
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]], list[str]]:
    """Shifts and headcount from a roster ``shift, start, end, sector, headcount``.

    Breaks are not in a roster: a shift keeps the breaks of the base scenario's
    shift with the same name if they fit, and has none otherwise (noted).
    """
    raw, _ = read_table(path, "roster file", ROSTER_COLUMNS)
    notes: list[str] = []
    base_shifts = {s.name: s for s in base.workforce.shifts}
    shifts: dict[str, dict[str, Any]] = {}
    headcount: dict[str, dict[str, int]] = {}
    for i, r in raw.iterrows():
        line = int(str(i)) + 2
        name = str(r["shift"]).strip().lower()
        sector = str(r["sector"]).strip().lower()
        if sector not in base.sector_names:
            raise CalibrationError(f"roster file {path} line {line}: unknown sector {sector!r}")
        try:
            count = int(float(str(r["headcount"]).strip()))
        except ValueError:
            raise CalibrationError(
                f"roster file {path} line {line}: headcount {r['headcount']!r} is not a number"
            ) from None
        spec = {"name": name, "start": str(r["start"]).strip(), "end": str(r["end"]).strip()}
        if name in shifts and (shifts[name]["start"], shifts[name]["end"]) != (
            spec["start"],
            spec["end"],
        ):
            raise CalibrationError(f"roster file {path} line {line}: shift {name!r} changes times")
        shifts.setdefault(name, spec)
        headcount.setdefault(sector, {})[name] = headcount.get(sector, {}).get(name, 0) + count
    out = []
    for name, spec in shifts.items():
        b = base_shifts.get(name)
        if b is not None:
            spec["breaks"] = [
                {"start": f"{x.start // 60:02d}:{x.start % 60:02d}", "minutes": x.minutes}
                for x in b.breaks
            ]
        else:
            notes.append(f"shift {name!r} is not in the base scenario: no breaks")
        out.append(spec)
    return out, headcount, notes


# --------------------------------------------------------------------------- breakdowns


@dataclass
class BreakdownFit:
    """Station failures of one sector from equipment events."""

    sector: str
    stations: int
    failures: int
    repairs: int
    up_station_minutes: float
    mttf_minutes: float  # mean time to failure of one station
    repair: ServiceFit | None  # None with fewer than MIN_SERVICE_SAMPLES matched repairs
    repair_minutes: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def repair_distribution(self) -> dict[str, Any] | None:
        """The repair distribution for the scenario: the fitted family, or with only a few
        matched repairs an exponential with their mean, or ``None`` without any."""
        if self.repair is not None and self.repair.chosen is not None:
            return self.repair.distribution()
        if len(self.repair_minutes):
            return {"dist": "exponential", "mean": round(float(self.repair_minutes.mean()), 4)}
        return None


def fit_breakdowns(
    equipment: pd.DataFrame, sector: str, stations: int, window: Window
) -> BreakdownFit:
    """Failure and repair times of one sector's stations from pooled events.

    The log says when *a* station failed or was repaired, not which one. With
    ``down(t)`` the number of stations out (failures minus repairs so far):

    - time to failure: each working station fails at a constant rate, estimated
      as failures / station-minutes up (the exponential MLE with exposure); the
      scenario gets an exponential with mean 1 / rate;
    - repair: failures and repairs are matched first in, first out. The matched
      durations add up to the true total downtime, so their mean is exact
      (Little's law); their spread is approximate when repairs overlap. Their
      family is chosen like a service time (:func:`fit_durations`).
    """
    ev = equipment[(equipment["sector"] == sector)]
    ev = ev[(ev["t"] >= window.start) & (ev["t"] < window.end)].sort_values("t", kind="stable")
    step = np.where(ev["event"] == "failure", 1, -1)
    down = np.clip(np.cumsum(step), 0, stations)
    times = np.concatenate([[window.start], ev["t"].to_numpy(), [window.end]])
    levels = np.concatenate([[0], down])
    up = float(np.sum((stations - levels) * np.diff(times)))
    fail_t = ev.loc[ev["event"] == "failure", "t"].to_numpy()
    rep_t = ev.loc[ev["event"] == "repair", "t"].to_numpy()
    durations = []
    queue: list[float] = []
    i = j = 0
    while i < len(fail_t) or j < len(rep_t):
        if j >= len(rep_t) or (i < len(fail_t) and fail_t[i] <= rep_t[j]):
            queue.append(float(fail_t[i]))
            i += 1
        else:
            if queue:
                durations.append(float(rep_t[j]) - queue.pop(0))
            j += 1
    x = np.asarray([d for d in durations if d > 0])
    repair = None
    if len(x) >= MIN_SERVICE_SAMPLES:
        chosen, cands, rule = fit_durations(x)
        repair = ServiceFit(f"{sector} repair", chosen, cands, x, np.ones(len(x)), len(queue),
                            rule=rule)  # fmt: skip
    n_fail = len(fail_t)
    mttf = up / n_fail if n_fail else float("inf")
    return BreakdownFit(sector, stations, n_fail, len(rep_t), up, mttf, repair, x)


# --------------------------------------------------------------------------- the whole fit


@dataclass
class Inputs:
    """Every file of an operation's log, read and checked.

    Attributes:
        table: the checked event log.
        attendance: usable attendance rows, if a file was given.
        roster: shifts and headcount from the roster, if a file was given.
        equipment: usable equipment events, if a file was given.
        side_files: for attendance and equipment: ``(file, rows read, rejected rows)``.
    """

    table: EventTable
    attendance: pd.DataFrame | None = None
    roster: tuple[list[dict[str, Any]], dict[str, dict[str, int]], list[str]] | None = None
    equipment: pd.DataFrame | None = None
    side_files: dict[str, tuple[str, int, pd.DataFrame]] = field(default_factory=dict)


def load_inputs(
    events: Path,
    base: Scenario,
    roster: Path | None = None,
    attendance: Path | None = None,
    equipment: Path | None = None,
) -> Inputs:
    """Read and check the event log and the optional roster, attendance and equipment files.

    Raises:
        CalibrationError: a file is missing, unreadable, lacks a column, or has no usable row.
    """
    table = load_events(events, base)
    inputs = Inputs(table)
    if attendance is not None:
        att, rejected = load_attendance(attendance, base)
        inputs.side_files["attendance"] = (str(attendance), len(att) + len(rejected), rejected)
        if att.empty:
            raise CalibrationError(f"attendance file {attendance}: no usable rows")
        inputs.attendance = att
    if roster is not None:
        inputs.roster = fit_roster(roster, base)
    if equipment is not None:
        eq, rejected = load_equipment(equipment, table.origin)
        inputs.side_files["equipment"] = (str(equipment), len(eq) + len(rejected), rejected)
        inputs.equipment = eq
    return inputs


def calibrate_inputs(
    inputs: Inputs, base: Scenario, name: str = "calibrated", window: Window | None = None
) -> Calibration:
    """:func:`calibrate` on everything :func:`load_inputs` read."""
    cal = calibrate(
        inputs.table,
        base,
        name=name,
        attendance=inputs.attendance,
        roster=inputs.roster,
        equipment=inputs.equipment,
        window=window,
    )
    cal.side_files = inputs.side_files
    return cal


@dataclass
class Calibration:
    """A fitted scenario and everything the report shows about how it was fitted."""

    scenario: Scenario
    base: Scenario
    table: EventTable
    window: Window
    arrivals: dict[str, ArrivalFit]
    service: dict[str, ServiceFit]
    routing: dict[str, RoutingFit]
    due: dict[str, DueFit]
    workforce: WorkforceFit
    breakdowns: dict[str, BreakdownFit]
    notes: list[str]
    stats: dict[str, int]
    side_files: dict[str, tuple[str, int, pd.DataFrame]] = field(default_factory=dict)


def calibrate(
    table: EventTable,
    base: Scenario,
    *,
    name: str = "calibrated",
    attendance: pd.DataFrame | None = None,
    roster: tuple[list[dict[str, Any]], dict[str, dict[str, int]], list[str]] | None = None,
    equipment: pd.DataFrame | None = None,
    window: Window | None = None,
) -> Calibration:
    """Fit a scenario to a checked event log; what the data do not determine comes from ``base``.

    Args:
        table: the checked log (:func:`load_events` / :func:`clean_events`).
        base: the scenario supplying sectors, classes, costs, cross-training, plan, ...
        name: the fitted scenario's name.
        attendance: checked attendance rows (:func:`load_attendance`), if any.
        roster: shifts and headcount from :func:`fit_roster`, if any.
        equipment: checked equipment events (:func:`load_equipment`), if any.
        window: the period to fit on (default: all of the log). Events outside it are
            ignored, so a log can be split into fitting and held-out days.

    Raises:
        CalibrationError: the fitted scenario is not valid (the message says why).
    """
    ev = table.events
    window = window or observed_window(ev)
    ev = ev[(ev["t"] >= window.start) & (ev["t"] < window.end)]
    notes: list[str] = list(table.notes)
    data = base.model_dump(mode="json")
    data["name"] = name
    weekday0 = int(table.origin.weekday())
    day0 = window.first_day
    data["start_weekday"] = (weekday0 + day0) % 7
    data["horizon_days"] = int(min(max(window.days, 1), 366))
    first = table.origin + pd.Timedelta(minutes=window.start)
    last = table.origin + pd.Timedelta(minutes=window.end)
    data["description"] = (
        f"Calibrated from {Path(table.source).name or 'an event log'} "
        f"({first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}) on base '{base.name}'."
    )
    if data.get("disruptions"):
        notes.append(
            f"the base's {len(data['disruptions'])} disruption(s) were dropped: surges, "
            "outages and absence spikes in the data are part of the fitted rates"
        )
        data["disruptions"] = []

    # workforce first: attendance tells whose services count as fully trained
    wf = WorkforceFit()
    if attendance is not None and not attendance.empty:
        att = attendance
        dmin = (att["date"] - table.origin.normalize()) / pd.Timedelta(minutes=1)
        att = att[(dmin >= window.start - MINUTES_PER_DAY) & (dmin < window.end)]
        if att.empty:
            notes.append("attendance has no rows in the fitted period: absence rate kept")
        else:
            wf.absence_rate, wf.absence_ci, wf.absence_by_sector = fit_absence(att)
            wf.shifts_rostered = len(att)
            wf.worker_home = worker_homes(att)
            data["workforce"]["absence_rate"] = round(wf.absence_rate, 4)
            if roster is None:
                known = {s["name"] for s in data["workforce"]["shifts"]}
                hc = headcount_from_attendance(att)
                unknown = {sh for per in hc.values() for sh in per} - known
                if unknown:
                    notes.append(
                        f"attendance names shifts {sorted(unknown)} not in the base: "
                        "headcount kept from base (give --roster)"
                    )
                else:
                    wf.headcount, wf.headcount_source = hc, "attendance (median per date)"
                    data["workforce"]["headcount"] = hc
    if roster is not None:
        shifts, hc, roster_notes = roster
        wf.shifts, wf.headcount, wf.headcount_source = shifts, hc, "roster"
        wf.notes += roster_notes
        data["workforce"]["shifts"] = shifts
        data["workforce"]["headcount"] = hc
        if not shifts:
            raise CalibrationError("roster file lists no shifts")

    # arrivals
    arrivals_all = entry_arrivals(ev, window)
    arrival_fits: dict[str, ArrivalFit] = {}
    unobserved: dict[tuple[int, ...], list[str]] = {}
    classes = {c["name"]: c for c in data["item_classes"]}
    for cls in base.item_classes:
        a = arrivals_all[arrivals_all["item_class"] == cls.name]
        if a.empty:
            notes.append(f"class {cls.name!r}: no arrivals in the log; rates kept from base")
            continue
        fit = fit_arrivals(a, window, weekday0, cls.name, cls.weekday_factors)
        arrival_fits[cls.name] = fit
        c = classes[cls.name]
        c["hourly_rates"] = [round(r, 3) for r in fit.hourly_rates]
        c["weekday_factors"] = [round(f, 4) for f in fit.weekday_factors]
        c["entry"] = fit.entry
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

    # routing
    stays = visits(ev)
    gap = handoff_gap(stays)
    routing_fits: dict[str, RoutingFit] = {}
    for cls in base.item_classes:
        if not (stays["item_class"] == cls.name).any():
            continue
        rf = fit_routing(stays, cls.name, window, gap)
        routing_fits[cls.name] = rf
        routing = dict(classes[cls.name].get("routing") or {})
        for src, shares in rf.probabilities.items():
            if set(shares) == {EXIT}:
                routing.pop(src, None)  # everything leaves from here: the schema's default
            else:
                routing[src] = shares
        classes[cls.name]["routing"] = routing
        for r in rf.removed:
            notes.append(f"class {cls.name!r}: routing cycle broken by dropping {r}")

    # due rules
    due_fits: dict[str, DueFit] = {}
    if "due" in ev.columns:
        dues = due_times(ev, table.origin)
        first_arr = arrivals_all.merge(dues, on="item_id")
        for cls in base.item_classes:
            sel = first_arr[first_arr["item_class"] == cls.name]
            fit = fit_due(sel["t"].to_numpy(float), sel["due"].to_numpy(float), cls.name)
            if fit is not None:
                due_fits[cls.name] = fit
                classes[cls.name]["due"] = fit.rule
    else:
        notes.append("the log has no 'due' column: due rules kept from base")

    # service times
    pairs = service_pairs(ev)
    service_fits: dict[str, ServiceFit] = {}
    for sec in data["sectors"]:
        fit = fit_service(
            pairs.pairs, sec["name"], pairs.interrupted.get(sec["name"], 0), wf.worker_home or None
        )
        service_fits[sec["name"]] = fit
        dist = fit.distribution()
        if dist is None:
            notes.append(f"sector {sec['name']!r}: {fit.rule}")
        else:
            sec["service"] = dist

    # breakdowns
    breakdown_fits: dict[str, BreakdownFit] = {}
    if equipment is not None:
        seen = set(equipment["sector"])
        for name_ in sorted(seen - set(base.sector_names)):
            notes.append(f"equipment events for unknown sector {name_!r} ignored")
        for sec in data["sectors"]:
            stations = sec.get("stations")
            if stations is None:
                if sec["name"] in seen:
                    notes.append(
                        f"sector {sec['name']!r}: equipment events, but the base gives it no "
                        "stations: breakdowns not modelled"
                    )
                continue
            bf = fit_breakdowns(equipment, sec["name"], stations, window)
            breakdown_fits[sec["name"]] = bf
            if bf.failures == 0:
                if sec.get("breakdowns") is not None:
                    notes.append(
                        f"sector {sec['name']!r}: no failures observed: breakdowns removed"
                    )
                sec["breakdowns"] = None
                continue
            repair = bf.repair_distribution()
            if bf.repair is None:
                base_bd = sec.get("breakdowns")
                if repair is None:
                    repair = base_bd["repair"] if base_bd else {"dist": "exponential", "mean": 30.0}
                how = "an exponential with their mean" if len(bf.repair_minutes) else (
                    "kept from base" if base_bd else "assumed exponential, 30 min"
                )  # fmt: skip
                notes.append(
                    f"sector {sec['name']!r}: {len(bf.repair_minutes)} matched repair(s), "
                    f"too few to choose a family: repair time {how}"
                )
            sec["breakdowns"] = {
                "time_to_failure": {"dist": "exponential", "mean": round(bf.mttf_minutes, 2)},
                "repair": repair,
            }

    try:
        scenario = scenario_from_dict(data, f"calibrated from {table.source}")
    except ScenarioError as err:
        raise CalibrationError(f"the fitted scenario is not valid: {err}") from None
    arrived = len(arrivals_all)
    stats_ = {
        "rows_read": table.rows_read,
        "rows_used": table.rows_used,
        "rows_rejected": table.rows_rejected,
        "rows_in_window": len(ev),
        "items": int(ev["item_id"].nunique()),
        "arrivals": arrived,
        "in_progress_at_start": int(ev["item_id"].nunique()) - arrived,
        "service_pairs": len(pairs.pairs),
        "interrupted_services": int(sum(pairs.interrupted.values())),
    }
    return Calibration(
        scenario=scenario,
        base=base,
        table=table,
        window=window,
        arrivals=arrival_fits,
        service=service_fits,
        routing=routing_fits,
        due=due_fits,
        workforce=wf,
        breakdowns=breakdown_fits,
        notes=notes,
        stats=stats_,
    )


# --------------------------------------------------------------------------- output


class _FlowListDumper(yaml.SafeDumper):
    """Lists of plain values on one line (``hourly_rates: [1.0, 2.0, ...]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, dict | list) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


def scenario_yaml(calibration: Calibration) -> str:
    """The fitted scenario as YAML text, with a header saying where it came from."""
    data = _without_none(calibration.scenario.model_dump(mode="json"))
    for c in data["item_classes"]:
        due = c["due"]
        if "cutoffs" in due:
            due["cutoffs"] = [f"{m // 60:02d}:{m % 60:02d}" for m in due["cutoffs"]]
        else:
            due.pop("lead_minutes", None)
    for sh in data["workforce"]["shifts"]:
        for key in ("start", "end"):
            m = sh[key]
            sh[key] = f"{m // 60:02d}:{m % 60:02d}" if m < MINUTES_PER_DAY else "24:00"
        for b in sh["breaks"]:
            b["start"] = f"{b['start'] // 60:02d}:{b['start'] % 60:02d}"
    s = calibration.stats
    header = (
        f"# Calibrated by `synctwin calibrate` from {calibration.table.source}\n"
        f"# base scenario: {calibration.base.name}; {s['rows_used']:,} of {s['rows_read']:,} "
        f"rows used ({s['rows_rejected']:,} rejected); {calibration.window.days} day(s).\n"
    )
    body = yaml.dump(data, Dumper=_FlowListDumper, sort_keys=False, width=100)
    return header + body


def _without_none(obj: Any) -> Any:
    """Drop ``None`` values from mappings (every such field defaults to ``None``)."""
    if isinstance(obj, dict):
        return {k: _without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_none(v) for v in obj]
    return obj


def write_scenario(calibration: Calibration, path: Path) -> Path:
    """Write the scenario YAML and check it loads back to the same scenario.

    Raises:
        CalibrationError: the written file does not load back identically (a bug).
    """
    from twin.scenario import load_scenario

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scenario_yaml(calibration), encoding="utf-8")
    try:
        loaded = load_scenario(path)
    except ScenarioError as err:
        raise CalibrationError(f"wrote {path}, but it does not load back: {err}") from None
    if loaded.digest != calibration.scenario.digest:
        raise CalibrationError(f"wrote {path}, but it loads back as a different scenario")
    return path


def scenario_name(out: Path) -> str:
    """A valid scenario name from an output file name (``My Site.yaml`` -> ``my-site``)."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", Path(out).stem.lower()).strip("-_")
    return stem if stem and re.match(r"^[a-z0-9]", stem) else "calibrated"
