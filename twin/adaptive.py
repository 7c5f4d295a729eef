"""Adaptive planning: the rest of the day's demand, learnt from the arrivals seen so far.

The plan (:func:`twin.demand.rate_per_hour`) says how many items of each class should
arrive; a live twin sees how many did (:meth:`twin.live_twin.LiveTwin.observed`).
When the two differ (a forecast that is 10% low all day, a surge nobody announced)
the rollouts behind forecasts and advice should run the demand being seen, not the
plan's, and still fall back on the plan when there is little to go on.

**The estimator.** Per item class ``c``, at minute ``now``, with arrivals observed at
minutes ``t_i`` since observation began (``since``):

- recency weight of something ``age`` minutes old: ``w(age) = 2 ** (-age / H)``
  (``H``: the half-life, :attr:`DemandEstimator.half_life_minutes`);
- observed: ``N_c = sum_i w(now - t_i)``;
- expected under the plan: ``E_c = integral over [since, now) of w(now - t) *
  rate_c(t) / 60 dt`` (``rate_c``: the plan's arrivals per hour, surges included;
  exact: the rate is constant between hour boundaries and surge edges);
- the demand factor: ``f_c = (a + N_c) / (a + E_c)`` (``a``:
  :attr:`DemandEstimator.prior_arrivals`).

``f_c`` is the posterior mean of a Gamma(``a``, ``a``) prior on the class's demand
multiplier (mean 1: the plan) when the observed count is Poisson with mean
``f_c * E_c``, each arrival weighted by its recency (exponential forgetting, the
power-prior form of the conjugate update; a surge shows within about one half-life,
and so does its end). No data (``E_c = N_c = 0``) gives 1, the plan; much data
(``E_c >> a``) gives ``N_c / E_c``, what was observed; in between the estimate is
shrunk toward the plan with weight ``a / (a + E_c)``, so a class that arrives a few
times an hour (express) moves less on the same relative excess than one that arrives
hundreds of times.

A class whose demand the scenario's own uncertainty model keeps at the plan (an
``uncertainty`` block whose demand error and surges name other classes) keeps
``f_c = 1``: what it sees is Poisson noise around a known rate, and chasing it only
adds error (:func:`adapting_classes`). Without an uncertainty block nothing is known
about how reality departs from the plan, so every class adapts.

The forecast of the rest of the day keeps ``f_c`` constant: the plan's rate times the
factor (:func:`expected_arrivals`; rollouts: ``demand_factors`` of
:func:`twin.rollout.rollout_twin`). The constants below were chosen on tuning seeds
(1000-1019) of the plan-vs-reality built-ins by ``synctwin experiment adaptive
--tune``, never on the seeds the README's numbers come from.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twin.demand import rate_per_hour
from twin.live_twin import LiveTwin
from twin.scenario import Scenario, Surge

#: prior strength ``a``, in arrivals: the plan counts as this many (weighted) observations
PRIOR_ARRIVALS = 30.0
#: recency half-life ``H``, minutes
HALF_LIFE_MINUTES = 30.0


def segments(scenario: Scenario, start: float, end: float) -> Iterator[tuple[float, float]]:
    """The pieces of ``[start, end)`` over which every class's planned rate is constant
    (cut at hour boundaries and at the plan's surge edges)."""
    edges = {
        float(m)
        for d in scenario.disruptions
        if isinstance(d, Surge)
        for m in (d.start_minute, d.end_minute)
        if start < m < end
    }
    hour = (math.floor(start / 60.0) + 1) * 60.0
    while hour < end:
        edges.add(hour)
        hour += 60.0
    cuts = [start, *sorted(edges), end]
    for a, b in itertools.pairwise(cuts):
        if b > a:
            yield a, b


def adapting_classes(scenario: Scenario) -> tuple[bool, ...]:
    """Per class (scenario order), whether its demand may depart from the plan: every
    class without an uncertainty model, else those its demand error or surges name."""
    u = scenario.uncertainty
    if u is None:
        return (True,) * len(scenario.item_classes)
    named: set[str] = set()
    for part in (u.demand, u.surges):
        if part is not None:
            named |= set(scenario.class_names if part.item_classes is None else part.item_classes)
    return tuple(c in named for c in scenario.class_names)


def _weight_integral(a: float, b: float, now: float, half_life: float) -> float:
    """``integral over [a, b) of 2 ** (-(now - t) / half_life) dt`` (``b - a`` if infinite)."""
    if math.isinf(half_life):
        return b - a
    k = math.log(2.0) / half_life
    return (math.exp(-k * (now - b)) - math.exp(-k * (now - a))) / k


def expected_arrivals(
    scenario: Scenario,
    start: float,
    end: float,
    factors: Sequence[float] | None = None,
) -> list[float]:
    """Per class (scenario order), the arrivals expected in ``[start, end)``: the plan's,
    times ``factors`` if given."""
    n = len(scenario.item_classes)
    out = [0.0] * n
    for a, b in segments(scenario, start, end):
        for c in range(n):
            out[c] += rate_per_hour(scenario, c, a) * (b - a) / 60.0
    if factors is not None:
        out = [x * f for x, f in zip(out, factors, strict=True)]
    return out


@dataclass(frozen=True)
class DemandBelief:
    """What the arrivals observed by ``minute`` say about demand, per class.

    Attributes:
        minute: when (the twin's minute; arrivals before it count).
        classes: the item classes, in the scenario's order.
        observed: recency-weighted arrivals seen (``N_c``).
        expected: recency-weighted arrivals the plan expected over the same time (``E_c``).
        factors: the demand factor on the plan's rate (``f_c``; 1 is the plan).
    """

    minute: float
    classes: tuple[str, ...]
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    factors: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        """The factors by class name."""
        return dict(zip(self.classes, self.factors, strict=True))


@dataclass(frozen=True)
class DemandEstimator:
    """The estimator of the module docstring, with its two constants.

    Attributes:
        prior_arrivals: ``a``, how many (weighted) arrivals the plan is worth; 0 trusts
            the observations alone (and divides by zero with none).
        half_life_minutes: ``H``; ``math.inf`` weighs every arrival alike.
    """

    prior_arrivals: float = PRIOR_ARRIVALS
    half_life_minutes: float = HALF_LIFE_MINUTES

    def __post_init__(self) -> None:
        if not self.prior_arrivals > 0:
            raise ValueError(f"prior_arrivals must be > 0, not {self.prior_arrivals}")
        if not self.half_life_minutes > 0:
            raise ValueError(f"half_life_minutes must be > 0, not {self.half_life_minutes}")

    def belief(
        self,
        scenario: Scenario,
        arrivals: Mapping[str, Sequence[float]],
        now: float,
        since: float = 0.0,
    ) -> DemandBelief:
        """The demand belief at ``now`` from the arrival minutes observed per class since
        ``since`` (a class left out was observed with none; minutes outside
        ``[since, now)`` are ignored).

        Raises:
            KeyError: a class the scenario does not have.
        """
        classes = tuple(scenario.class_names)
        unknown = set(arrivals) - set(classes)
        if unknown:
            raise KeyError(f"unknown item class {sorted(unknown)[0]!r}")
        h = self.half_life_minutes
        k = 0.0 if math.isinf(h) else math.log(2.0) / h
        observed = []
        for name in classes:
            t = np.asarray(arrivals.get(name, ()), dtype=np.float64)
            t = t[(t >= since) & (t < now)]
            observed.append(float(np.exp(-k * (now - t)).sum()))
        expected = [0.0] * len(classes)
        if now > since:
            for a, b in segments(scenario, since, now):
                w = _weight_integral(a, b, now, h) / 60.0
                for c in range(len(classes)):
                    expected[c] += rate_per_hour(scenario, c, a) * w
        a0 = self.prior_arrivals
        factors = tuple(
            (a0 + n) / (a0 + e) if adapts else 1.0
            for n, e, adapts in zip(observed, expected, adapting_classes(scenario), strict=True)
        )
        return DemandBelief(now, classes, tuple(observed), tuple(expected), factors)


def live_belief(
    live: LiveTwin, now: float, estimator: DemandEstimator | None = None
) -> DemandBelief:
    """The belief a live twin's arrivals before ``now`` (since the site's start) give."""
    seen = live.observed(now)
    return (estimator or DemandEstimator()).belief(
        live.scenario, seen.arrivals, now, since=live.start_minute
    )
