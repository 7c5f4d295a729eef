"""Risk alerts: find the SLA misses and overtime that are forming, warn once, check later.

A live site's state is assessed on the scenario's decision grid (every
``decision_interval_minutes``, :mod:`twin.rollout`). Each assessment is a short
forecast (:func:`assess`): ``samples`` twin rollouts from the state with the actions in
force kept (*if nothing changes*), read every ``step_minutes`` up to the longest
horizon. Per sector it gives:

``sla_misses``
    the probability that the sector misses at least ``min_misses`` items' due times
    by a given time (share of samples), and the expected number of misses;
``overtime``
    the probability that the sector's workers work at least ``min_overtime_hours``
    of overtime by then, and the expected overtime hours.

A risk *forms* when that probability reaches ``probability`` at some read time within
the horizon; the earliest such time is the alert's ``by``. :class:`AlertBook` raises
one alert per sector and risk while an earlier one is still open (its ``by`` plus
``grace_minutes`` not yet passed); once that time has passed, the alert is closed with
its **outcome**: whether the risk happened (the floor's observed SLA misses in the
sector between the alert and ``by`` + grace reached ``min_misses``; for overtime, the
overtime hours seen there reached ``min_overtime_hours``), so false alerts can be counted.

The expected cost of a risk is in the scenario's cost units: misses times
``sla_miss_penalty``, or overtime hours times ``overtime_rate_per_hour``.

Why the no-action arm: an alert says what happens if the floor does not act; the
prevention attached to it (the served policy's advice with its predicted impact, made
by the caller) says what acting is worth. Rollouts share seeds across assessments
(``seed``), so the same state always gives the same alert: a second server worker
that assesses the same site raises the same alert, with the same id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from policies.impact import Rollout, RolloutJob, Runner, run_here
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot
from twin.wallclock import clock

RiskKind = Literal["sla_misses", "overtime"]
RISK_KINDS: tuple[RiskKind, ...] = ("sla_misses", "overtime")


@dataclass(frozen=True)
class AlertRules:
    """When a forming risk becomes an alert, and how it is forecast.

    Attributes:
        probability: the forecast probability at or above which a risk is alerted.
        min_misses: SLA misses in one sector that count as the risk happening.
        min_overtime_hours: overtime worker-hours in one sector that count as it happening.
        horizon_hours: how far ahead the forecast looks.
        step_minutes: how finely ``by`` is resolved (the rollouts are read this often).
        samples: rollouts per assessment.
        seed: seed of the first rollout (sample ``i`` uses ``seed + i``).
        grace_minutes: after ``by``, how long the outcome waits for the risk to happen.
    """

    probability: float = 0.6
    min_misses: int = 2
    min_overtime_hours: float = 2.0
    horizon_hours: float = 3.0
    step_minutes: float = 15.0
    samples: int = 8
    seed: int = 0
    grace_minutes: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1], got {self.probability}")
        if self.min_misses < 1 or self.min_overtime_hours <= 0:
            raise ValueError("min_misses must be >= 1 and min_overtime_hours > 0")
        if self.horizon_hours <= 0 or self.step_minutes <= 0 or self.samples < 1:
            raise ValueError("horizon_hours, step_minutes and samples must be positive")

    @property
    def marks(self) -> tuple[float, ...]:
        """Minutes after the assessment at which the rollouts are read."""
        n = max(1, round(self.horizon_hours * 60.0 / self.step_minutes))
        return tuple(self.step_minutes * (k + 1) for k in range(n))


@dataclass(frozen=True)
class Risk:
    """A risk forming in one sector: by when, how likely, how big, what it would cost."""

    sector: str
    kind: RiskKind
    minute: float  # when it was assessed (the twin's minute)
    by_minute: float  # the earliest read time at which the probability reached the rule's
    probability: float  # P(the risk has happened by ``by_minute``), share of samples
    expected: float  # expected misses (or overtime hours) by ``by_minute``
    expected_cost: float  # in the scenario's cost units

    @property
    def hours(self) -> float:
        return (self.by_minute - self.minute) / 60.0


def assess(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    rules: AlertRules = AlertRules(),
    *,
    runner: Runner = run_here,
    demand_factors: Sequence[float] | None = None,
) -> list[Risk]:
    """The risks forming at ``snapshot`` under the actions in force (checked snapshot).

    ``demand_factors`` (per item class, scenario order) scale the plan's arrivals in
    the rollouts: the demand the site has shown so far (:mod:`twin.adaptive`).

    Returns:
        one :class:`Risk` per sector and kind whose probability reaches
        ``rules.probability`` within the horizon, most expensive first.
    """
    marks = rules.marks
    factors = tuple(float(f) for f in demand_factors) if demand_factors is not None else None
    jobs = [
        RolloutJob(
            seed=rules.seed + i, minutes=marks[-1], checkpoints=marks, demand_factors=factors
        )
        for i in range(rules.samples)
    ]
    runs = runner(scenario, snapshot, jobs, None)
    risks = [r for kind in RISK_KINDS for r in _risks(scenario, snapshot.minute, runs, kind, rules)]
    return sorted(risks, key=lambda r: (-r.expected_cost, r.by_minute, r.sector))


def _risks(
    scenario: Scenario,
    minute: float,
    runs: Sequence[Rollout],
    kind: RiskKind,
    rules: AlertRules,
) -> list[Risk]:
    marks = rules.marks
    if kind == "sla_misses":
        # (samples, reads, sectors); the last row of each rollout is its end, a repeat
        values = np.stack([r.misses[: len(marks)] for r in runs])
        floor, unit_cost = float(rules.min_misses), scenario.costs.sla_miss_penalty
    else:
        values = np.stack([r.overtime_hours[: len(marks)] for r in runs])
        floor, unit_cost = rules.min_overtime_hours, scenario.costs.overtime_rate_per_hour
    reached = (values >= floor - 1e-9).mean(axis=0)  # (reads, sectors)
    out = []
    for s, sector in enumerate(scenario.sector_names):
        hits = np.flatnonzero(reached[:, s] >= rules.probability - 1e-12)
        if hits.size == 0:
            continue
        k = int(hits[0])
        expected = float(values[:, k, s].mean())
        out.append(
            Risk(
                sector=sector,
                kind=kind,
                minute=minute,
                by_minute=minute + marks[k],
                probability=float(reached[k, s]),
                expected=expected,
                expected_cost=expected * unit_cost,
            )
        )
    return out


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Outcome:
    """What came of an alert, known once its ``by`` plus the grace period has passed."""

    happened: bool
    observed: float  # SLA misses observed in the sector (or overtime hours seen there)
    checked_minute: float


@dataclass(frozen=True)
class Alert:
    """A risk the site was warned of, with its id and, later, its outcome."""

    id: str
    site: str
    risk: Risk
    message: str
    prevention: dict[str, object] | None = None
    outcome: Outcome | None = None


def alert_id(site: str, risk: Risk) -> str:
    """Deterministic: the same site, minute, sector and risk give the same id (workers
    that assess the same state store one alert)."""
    return f"{site}:{risk.minute:g}:{risk.sector}:{risk.kind}"


def risk_message(scenario: Scenario, risk: Risk, prevention: str | None = None) -> str:
    """One line for a floor manager, from the risk's own numbers."""
    name = next(s.display for s in scenario.sectors if s.name == risk.sector)
    pct = f"{risk.probability:.0%}"
    if risk.kind == "sla_misses":
        n = max(1, round(risk.expected))
        what = f"{name} is likely to miss the due time of about {n} item{'s' if n != 1 else ''}"
    else:
        what = f"{name} is likely to need about {risk.expected:.1f} overtime hours"
    text = (
        f"{what} by {clock(risk.by_minute)} if nothing changes (probability {pct}; "
        f"about {round(risk.expected_cost):,} in cost)."
    )
    return f"{text} {prevention}" if prevention else text


#: ``observed(sector, kind, from_minute, to_minute)``: what the floor showed of a risk
#: between two minutes (SLA misses in the sector, or overtime hours seen there).
Observed = Callable[[str, RiskKind, float, float], float]


@dataclass
class AlertBook:
    """The open alerts of one site: which risks are new, and which alerts can be closed."""

    rules: AlertRules = field(default_factory=AlertRules)
    open: dict[tuple[str, RiskKind], Alert] = field(default_factory=dict)

    def new(self, risks: Sequence[Risk]) -> list[Risk]:
        """The risks with no open alert for their sector and kind (in the given order)."""
        return [r for r in risks if (r.sector, r.kind) not in self.open]

    def opened(self, alert: Alert) -> None:
        self.open[(alert.risk.sector, alert.risk.kind)] = alert

    def close_due(self, minute: float, observed: Observed) -> list[Alert]:
        """Close every open alert whose ``by`` + grace is at or before ``minute``."""
        done = []
        for key, a in list(self.open.items()):
            end = a.risk.by_minute + self.rules.grace_minutes
            if end > minute + 1e-9:
                continue
            seen = observed(a.risk.sector, a.risk.kind, a.risk.minute, end)
            r = self.rules
            floor = r.min_misses if a.risk.kind == "sla_misses" else r.min_overtime_hours
            done.append(replace(a, outcome=Outcome(seen >= floor, seen, minute)))
            del self.open[key]
        return done


class GridHistory:
    """Workers seen in overtime per sector at each assessed state: the floor's overtime
    between two minutes, for the outcome of an overtime alert.

    A live state tells who is in overtime now, not the hours worked; each state on the
    grid stands for the ``step_minutes`` after it (count x step), which is exact at the
    grid's resolution and coarse within it.
    """

    def __init__(self, step_minutes: float, keep: int = 1_000) -> None:
        self.step_minutes = step_minutes
        self.keep = keep
        self.minutes: list[float] = []
        self.counts: list[dict[str, int]] = []

    def add(self, snapshot: OperationSnapshot) -> None:
        counts: dict[str, int] = {}
        for g in snapshot.workers:
            if g.state == "overtime" and g.sector is not None:
                counts[g.sector] = counts.get(g.sector, 0) + g.count
        self.minutes.append(snapshot.minute)
        self.counts.append(counts)
        if len(self.minutes) > self.keep:
            del self.minutes[0], self.counts[0]

    def overtime_hours(self, sector: str, t0: float, t1: float) -> float:
        """Overtime worker-hours seen in ``sector`` on the grid in ``[t0, t1)``."""
        n = sum(
            c.get(sector, 0) for m, c in zip(self.minutes, self.counts, strict=True) if t0 <= m < t1
        )
        return n * self.step_minutes / 60.0
