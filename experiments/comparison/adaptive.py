"""Adaptive planning measured: does the observed demand forecast the next hours better?

``synctwin experiment adaptive`` runs each plan-vs-reality scenario (a built-in with an
``uncertainty`` block) on held-out seeds. At every decision time of the working day
(the scenario's decision grid, from the first shift's start until two hours before the
last shift's end), it predicts the arrivals of the next ``horizon`` minutes per item
class, two ways:

- **plan**: the plan's expected arrivals (:func:`twin.adaptive.expected_arrivals`);
- **adaptive**: the same times the demand factors the arrivals observed so far give
  (:class:`twin.adaptive.DemandEstimator`),

and compares both with the arrivals the twin realized. Per seed, the mean absolute
error over the decision times (per class, and of the total); over seeds, the mean with
its 95% interval, the relative error (absolute error / realized arrivals, both summed
over seeds and decisions) and the paired difference adaptive - plan per seed with its
95% interval (:func:`twin.stats.paired_difference`; below 0: the adaptive forecast
is better).

The realized arrivals are the twin's own (a run under the plan's actions; arrivals
do not depend on the actions: common random numbers), read from its event log:
an ``item_arrive`` into the class's entry sector, as the live twin counts them
(:meth:`twin.live_twin.LiveTwin.observed`).

``--tune`` instead scores a grid of the estimator's two constants on the tuning seeds
(:data:`TUNING_SEEDS`, never the evaluation seeds) and reports the best.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.adaptive import DemandEstimator, expected_arrivals
from twin.eventlog import EventLog
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import MINUTES_PER_DAY, Scenario, builtin_names, load_scenario
from twin.stats import Interval, paired_difference, t_interval

#: seeds the estimator's constants were chosen on (never used to report its error)
TUNING_SEEDS = range(1000, 1020)
#: the grid ``--tune`` scores: prior arrivals x half-life minutes
PRIOR_GRID = (10.0, 30.0, 60.0, 120.0, 300.0)
HALF_LIFE_GRID = (15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 240.0, math.inf)
DEFAULT_HORIZON_MINUTES = 120.0


class AdaptiveError(ValueError):
    """A bad request of the experiment (the CLI prints it in one line)."""


def plan_vs_reality() -> list[str]:
    """The built-ins with an ``uncertainty`` block (reality departs from their plan)."""
    return [n for n in builtin_names() if load_scenario(n).uncertainty is not None]


def check_scenarios(names: Sequence[str]) -> list[Scenario]:
    """The scenarios named, each loaded; an error for one without an uncertainty block.

    Raises:
        ScenarioError: a scenario that does not load.
        AdaptiveError: a scenario whose reality is its plan (nothing to adapt to).
    """
    out = []
    for name in names:
        sc = load_scenario(name)
        if sc.uncertainty is None:
            raise AdaptiveError(
                f"scenario {name!r} has no uncertainty block: its demand is its plan "
                f"(plan-vs-reality built-ins: {', '.join(plan_vs_reality())})"
            )
        out.append(sc)
    return out


def realized_arrivals(scenario: Scenario, seed: int) -> list[np.ndarray]:
    """Per class (scenario order), the minutes at which the twin's items arrived."""
    log = EventLog()
    model = OperationModel(
        scenario, np.random.default_rng(seed), record_every_minutes=None, event_log=log
    )
    run_for(model)
    entry = [scenario.sector_names.index(c.entry) for c in scenario.item_classes]
    out: list[list[float]] = [[] for _ in entry]
    for ev in log.floor:
        if ev[0] == "item_arrive" and ev[4] == entry[ev[3]]:
            out[ev[3]].append(ev[1])
    return [np.asarray(x) for x in out]


def decision_minutes(scenario: Scenario, horizon_minutes: float) -> list[float]:
    """The decision grid of the working day: from the first shift's start to ``horizon``
    before the last shift's end, every day of the scenario."""
    shifts = scenario.workforce.shifts
    first = min(s.start for s in shifts)
    last = max(s.end for s in shifts) - horizon_minutes
    step = scenario.decision_interval_minutes
    out = []
    for day in range(scenario.horizon_days):
        t = day * MINUTES_PER_DAY + math.ceil(first / step) * step
        while t <= day * MINUTES_PER_DAY + last:
            out.append(float(t))
            t += step
    return out


@dataclass(frozen=True)
class Predictions:
    """One seed's predictions: ``[decision, class]`` arrays of the next ``horizon``."""

    minutes: list[float]
    plan: np.ndarray
    adaptive: np.ndarray
    realized: np.ndarray


def predict(
    scenario: Scenario,
    arrivals: Sequence[np.ndarray],
    estimator: DemandEstimator,
    horizon_minutes: float,
) -> Predictions:
    """Plan and adaptive predictions at every decision of the working day, and what came."""
    minutes = decision_minutes(scenario, horizon_minutes)
    names = scenario.class_names
    plan, adaptive, realized = [], [], []
    for t in minutes:
        seen = {c: a[: np.searchsorted(a, t)] for c, a in zip(names, arrivals, strict=True)}
        belief = estimator.belief(scenario, seen, t)
        expected = expected_arrivals(scenario, t, t + horizon_minutes)
        plan.append(expected)
        adaptive.append([e * f for e, f in zip(expected, belief.factors, strict=True)])
        realized.append(
            [np.searchsorted(a, t + horizon_minutes) - np.searchsorted(a, t) for a in arrivals]
        )
    return Predictions(minutes, np.array(plan), np.array(adaptive), np.array(realized, float))


@dataclass(frozen=True)
class Score:
    """Errors of one forecast over seeds (per-seed mean absolute errors)."""

    mae: Interval
    relative: float  # sum |error| / sum realized, over seeds and decisions


@dataclass(frozen=True)
class Row:
    """One scenario and one class (or ``total``): both forecasts and their difference."""

    scenario: str
    item_class: str
    seeds: int
    decisions: int  # per seed
    realized_mean: float  # mean realized arrivals per decision's horizon
    plan: Score
    adaptive: Score
    difference: Interval  # adaptive - plan, per seed (mean absolute error)

    @property
    def better(self) -> bool:
        """Whether the adaptive forecast's error is lower, the interval excluding 0."""
        return self.difference.high < 0

    def record(self) -> dict[str, Any]:
        def interval(i: Interval) -> dict[str, float]:
            return {"mean": i.mean, "low": i.low, "high": i.high}

        return {
            "scenario": self.scenario,
            "item_class": self.item_class,
            "seeds": self.seeds,
            "decisions_per_seed": self.decisions,
            "realized_mean": self.realized_mean,
            "plan_mae": interval(self.plan.mae),
            "plan_relative_error": self.plan.relative,
            "adaptive_mae": interval(self.adaptive.mae),
            "adaptive_relative_error": self.adaptive.relative,
            "difference_mae": interval(self.difference),
            "adaptive_better": self.better,
        }


def score(scenario: Scenario, runs: Sequence[Predictions]) -> list[Row]:
    """Rows per class and for the total, from each seed's predictions."""
    keys: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        (c, lambda x, k=k: x[:, k]) for k, c in enumerate(scenario.class_names)
    ]
    keys.append(("total", lambda x: x.sum(axis=1)))
    rows = []
    for name, pick in keys:
        err_plan = [np.abs(pick(r.plan) - pick(r.realized)) for r in runs]
        err_adapt = [np.abs(pick(r.adaptive) - pick(r.realized)) for r in runs]
        realized = float(sum(pick(r.realized).sum() for r in runs))
        mae_plan = [float(e.mean()) for e in err_plan]
        mae_adapt = [float(e.mean()) for e in err_adapt]
        rows.append(
            Row(
                scenario=scenario.name,
                item_class=name,
                seeds=len(runs),
                decisions=len(runs[0].minutes),
                realized_mean=realized / sum(len(r.minutes) for r in runs),
                plan=Score(
                    t_interval(mae_plan, single="point"),
                    float(sum(e.sum() for e in err_plan)) / max(realized, 1.0),
                ),
                adaptive=Score(
                    t_interval(mae_adapt, single="point"),
                    float(sum(e.sum() for e in err_adapt)) / max(realized, 1.0),
                ),
                difference=paired_difference(mae_adapt, mae_plan),
            )
        )
    return rows


def run_adaptive(
    scenarios: Sequence[Scenario],
    seeds: Sequence[int],
    estimator: DemandEstimator,
    horizon_minutes: float = DEFAULT_HORIZON_MINUTES,
    progress: Callable[[int], None] | None = None,
) -> list[Row]:
    """The experiment (see the module docstring): rows per scenario, class and total."""
    rows = []
    for sc in scenarios:
        runs = []
        for seed in seeds:
            runs.append(predict(sc, realized_arrivals(sc, seed), estimator, horizon_minutes))
            if progress is not None:
                progress(1)
        rows += score(sc, runs)
    return rows


@dataclass(frozen=True)
class Candidate:
    """One point of the tuning grid and its error (mean over scenarios of the total's
    relative error)."""

    prior_arrivals: float
    half_life_minutes: float
    relative_error: float
    per_scenario: dict[str, float]


def tune(
    scenarios: Sequence[Scenario],
    seeds: Sequence[int] = TUNING_SEEDS,
    horizon_minutes: float = DEFAULT_HORIZON_MINUTES,
    progress: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """Score every grid point on ``seeds`` (the twins run once per seed); best first."""
    realized = {}
    for sc in scenarios:
        for seed in seeds:
            realized[sc.name, seed] = realized_arrivals(sc, seed)
            if progress is not None:
                progress(1)
    out = []
    for a, h in itertools.product(PRIOR_GRID, HALF_LIFE_GRID):
        est = DemandEstimator(a, h)
        per = {}
        for sc in scenarios:
            runs = [predict(sc, realized[sc.name, s], est, horizon_minutes) for s in seeds]
            per[sc.name] = next(r for r in score(sc, runs) if r.item_class == "total").adaptive
        rel = {k: v.relative for k, v in per.items()}
        out.append(Candidate(a, h, float(np.mean(list(rel.values()))), rel))
    return sorted(out, key=lambda c: c.relative_error)


def _finite(x: float) -> float | None:
    """``x``, or ``None`` for infinity (JSON has no infinity)."""
    return None if math.isinf(x) else x


def report(
    rows: Sequence[Row], estimator: DemandEstimator, seeds: Sequence[int], horizon: float
) -> dict[str, Any]:
    """The JSON the command writes."""
    return {
        "experiment": "adaptive",
        "horizon_minutes": horizon,
        "seeds": list(seeds),
        "tuning_seeds": [TUNING_SEEDS.start, TUNING_SEEDS.stop - 1],
        "estimator": {
            "prior_arrivals": estimator.prior_arrivals,
            "half_life_minutes": _finite(estimator.half_life_minutes),
        },
        "rows": [r.record() for r in rows],
    }
