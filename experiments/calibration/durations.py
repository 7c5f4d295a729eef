"""Choosing a duration distribution among the scenario's families.

Service times (:mod:`experiments.calibration.service`) and repair times
(:mod:`experiments.calibration.equipment`) are both durations that the scenario
describes with one of its families (deterministic, exponential, lognormal,
empirical). Both are chosen by :func:`fit_durations`, by weighted maximum
likelihood, AIC and a Kolmogorov-Smirnov check, so the rule lives here once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

DETERMINISTIC_CV = 0.01  # sample CV below this: a fixed duration (timestamp jitter only)
KS_ALPHA = 0.01  # best parametric family rejected at this level (and n >= EMPIRICAL_MIN_N) ...
EMPIRICAL_MIN_N = 200  # ... -> resample the observed durations instead
EMPIRICAL_POINTS = 400  # quantiles kept for an empirical distribution
MAX_LOGNORMAL_CV = 5.0  # the scenario schema's bound


@dataclass(frozen=True)
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
