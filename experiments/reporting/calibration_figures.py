"""The calibration report's figures: arrivals against the fit, service-time fits, validation.

Each function returns an open matplotlib figure; the report embeds it (and closes it)
through :class:`experiments.reporting.document.Section.figure`.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from experiments.calibration.fit import (
    WEEKDAYS,
    ArrivalFit,
    Calibration,
    FamilyFit,
    ServiceFit,
    weighted_quantiles,
)
from experiments.calibration.validation import Validation


def _expected(a: ArrivalFit, counts: pd.DataFrame) -> np.ndarray:
    """Fitted mean arrivals in each (day, hour) row of ``counts``."""
    rate = np.asarray(a.hourly_rates)[counts["hour"].to_numpy()]
    factor = np.asarray(a.weekday_factors)[counts["weekday"].to_numpy()]
    return rate * factor * counts["exposure"].to_numpy()


def arrivals_by_hour(cal: Calibration) -> plt.Figure:
    fits = list(cal.arrivals.values())
    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 3.2), squeeze=False)
    for ax, a in zip(axes[0], fits, strict=True):
        c = a.counts[a.counts["exposure"] > 0]
        per_hour = c.groupby("hour").agg(n=("count", "sum"), e=("exposure", "sum"))
        per_hour = per_hour.reindex(range(24), fill_value=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = per_hour["n"] / per_hour["e"]
            se = np.sqrt(per_hour["n"]) / per_hour["e"]
        fitted = c.assign(mu=_expected(a, c) / c["exposure"]).groupby("hour")["mu"].mean()
        ax.bar(range(24), mean, yerr=1.96 * se, color="#9ecae1", label="observed (95% CI)")
        ax.step(np.arange(25) - 0.5, [*fitted.reindex(range(24)).to_numpy(), np.nan], where="post",
                color="#d62728", label="fitted")  # fmt: skip
        ax.set_title(f"{a.item_class}: arrivals per hour of day")
        ax.set_xlabel("hour of day")
        ax.set_ylabel("items / hour (mean over days)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def arrivals_by_day(cal: Calibration) -> plt.Figure:
    fits = list(cal.arrivals.values())
    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 3.0), squeeze=False)
    for ax, a in zip(axes[0], fits, strict=True):
        c = a.counts.assign(mu=_expected(a, a.counts))
        day = c.groupby("day").agg(n=("count", "sum"), mu=("mu", "sum"), w=("weekday", "first"))
        x = np.arange(len(day))
        ax.bar(x, day["n"], color="#9ecae1", label="observed")
        ax.plot(x, day["mu"], "o-", color="#d62728", label="fitted")
        dates = [cal.table.origin + pd.Timedelta(days=int(d)) for d in day.index]
        labels = [f"{WEEKDAYS[d.weekday()]}\n{d:%m-%d}" for d in dates]
        ax.set_xticks(x, labels)
        ax.set_title(f"{a.item_class}: arrivals per day")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _quantile_fn(f: FamilyFit):
    """The inverse CDF of a fitted family."""
    p = f.params
    if f.family == "exponential":
        return lambda q: stats.expon.ppf(q, scale=p["mean"])
    if f.family == "lognormal":
        s2 = math.log1p(p["cv"] ** 2)
        mu = math.log(p["mean"]) - s2 / 2
        return lambda q: stats.lognorm.ppf(q, math.sqrt(s2), scale=math.exp(mu))
    if f.family == "empirical":
        xs = np.sort(np.asarray(p["samples"]))
        return lambda q: np.quantile(xs, q)
    return lambda q: np.full_like(np.asarray(q, dtype=float), p["value"])


def _pdf_fn(f: FamilyFit):
    p = f.params
    if f.family == "exponential":
        return lambda x: stats.expon.pdf(x, scale=p["mean"])
    if f.family == "lognormal":
        s2 = math.log1p(p["cv"] ** 2)
        mu = math.log(p["mean"]) - s2 / 2
        return lambda x: stats.lognorm.pdf(x, math.sqrt(s2), scale=math.exp(mu))
    return None


def service_plots(fits: list[ServiceFit]) -> plt.Figure:
    n = len(fits)
    fig, axes = plt.subplots(2, n, figsize=(3.3 * n, 5.8), squeeze=False)
    for i, s in enumerate(fits):
        f = s.chosen
        assert f is not None
        x, w = s.durations, s.weights
        top = float(np.quantile(x, 0.995))
        ax = axes[0][i]
        ax.hist(x[x <= top], bins=50, weights=w[x <= top], density=True, color="#9ecae1")
        pdf = _pdf_fn(f)
        if pdf is not None:
            grid = np.linspace(max(top / 500, 1e-6), top, 200)
            ax.plot(grid, pdf(grid), color="#d62728", lw=1.5, label=f.family)
            ax.legend(fontsize=8)
        ax.set_title(f"{s.sector}: n={s.n:,}", fontsize=10)
        ax.set_xlabel("minutes")
        ax = axes[1][i]
        q = (np.arange(1, 200) - 0.5) / 199
        obs = weighted_quantiles(x, w, q)
        fit_q = _quantile_fn(f)(q)
        ax.plot(fit_q, obs, ".", ms=3, color="#1f77b4")
        lim = float(max(np.nanmax(obs), np.nanmax(fit_q)))
        ax.plot([0, lim], [0, lim], color="#444", lw=1, ls="--")
        ax.set_xlabel(f"{f.family} quantile (min)")
        ax.set_ylabel("observed quantile (min)")
        ax.set_title("QQ plot", fontsize=10)
    fig.tight_layout()
    return fig


def validation_throughput(v: Validation) -> plt.Figure | None:
    """Twin (95% prediction interval) vs data: items leaving per day on held-out days."""
    thr = v.table[v.table["metric"].str.startswith("throughput.")]
    if not len(thr):
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(thr))
    ax.errorbar(
        x,
        thr["twin_mean"],
        yerr=[thr["twin_mean"] - thr["twin_low"], thr["twin_high"] - thr["twin_mean"]],
        fmt="o",
        capsize=4,
        color="#d62728",
        label="twin (95% PI)",
    )
    ax.plot(x, thr["data"], "s", color="#1f77b4", label="data")
    ax.set_xticks(x, [m.removeprefix("throughput.") for m in thr["metric"]])
    ax.set_ylabel("items leaving per day")
    ax.set_title("Throughput on held-out days")
    ax.legend(fontsize=8)
    return fig
