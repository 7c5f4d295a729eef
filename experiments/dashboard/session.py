"""The planner dashboard's model: one or two twins of the same what-if, stepped together.

Mesa's SolaraViz drives a ``mesa.Model``: it calls ``step()``, reads ``steps`` and
``running``, and on *Reset* builds a new instance from the page's parameters as
keyword arguments. :class:`PlannerTwin` is that model. It holds, by composition,
one :class:`twin.model.OperationModel` per strategy (``A`` and, for the side-by-side
view, ``B``), built from the same what-if scenario and the same seed, so both see
the same arrivals and absences and differ only by what their strategy decides.
Each dashboard step advances both twins by :data:`STEP_MINUTES` through
:func:`twin.runner.run`, the loop ``synctwin simulate`` uses: a run stepped to the end
here gives the same KPIs as ``synctwin simulate`` with the same scenario and seed.

The advice panel asks an *advisor* (any strategy, a ``policy:`` bundle included) what
it would do at strategy A's current state through :func:`policies.advice.advise`, the
function behind ``POST /v1/recommend`` (with its default samples and horizon), so the
dashboard and the server say the same thing about the same state: the same ranked
actions, headline (or hold) and reasons. The risk panel is
:func:`policies.impact.forecast`, the work of ``POST /v1/forecast``, under the advisor
and under the actions in force.

Nothing here imports solara: the page lives in :mod:`experiments.dashboard.app`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np

from agents import StrategyError
from experiments.comparison.strategies import POLICY_PREFIX, controller_for
from experiments.dashboard.whatif import NO_BREAKDOWN, WhatIf, what_if_scenario
from policies.advice import Advice, AdviceOptions, SectorAdvice, advise
from policies.impact import Forecast, forecast
from policies.messages import situation
from twin.actions import Controller
from twin.kpis import Kpis
from twin.model import OperationModel
from twin.runner import run
from twin.scenario import MINUTES_PER_DAY, Scenario, ScenarioError, load_scenario
from twin.snapshot import OperationSnapshot

#: How ``synctwin dashboard`` hands its options to the page it serves
#: (see experiments.dashboard.app).
ENV_SCENARIO = "SYNCTWIN_DASHBOARD_SCENARIO"
ENV_POLICIES = "SYNCTWIN_DASHBOARD_POLICIES"
#: Simulated minutes per dashboard step (one row of the session's DataCollector).
STEP_MINUTES = 15
#: ``compare`` value meaning "no side-by-side twin".
NO_COMPARE = "none"
#: The KPIs the side-by-side view and the session's time series show, with labels.
KPI_LABELS: dict[str, str] = {
    "sla_misses": "SLA misses",
    "sla_attainment": "SLA attainment",
    "overtime_hours": "Overtime hours",
    "backlog_end": "Backlog (items)",
    "items_completed": "Items completed",
    "transfers": "Transfers",
    "flex_hours": "Flex hours",
    "utilization": "Utilisation",
    "labor_cost": "Labour cost",
    "penalty_cost": "SLA penalty cost",
    "total_cost": "Total cost",
}
SERIES_KPIS: tuple[str, ...] = ("sla_misses", "overtime_hours", "backlog_end", "total_cost")
#: The risk panel's horizons (hours ahead), rollouts per arm, and how often it is
#: recomputed (simulated minutes: the forecast is the page's most expensive part).
RISK_HOURS: tuple[float, ...] = (1.0, 2.0)
RISK_SAMPLES = 3
RISK_EVERY_MINUTES = 60

_SETUP_ERRORS = (ScenarioError, StrategyError, OSError, ValueError, KeyError)


def clock(minute: float) -> str:
    """``Day 1 · 10:30`` for minute 630."""
    day, m = divmod(int(minute), MINUTES_PER_DAY)
    return f"Day {day + 1} · {m // 60:02d}:{m % 60:02d}"


@dataclass
class Arm:
    """One strategy running on its own twin."""

    strategy: str
    model: OperationModel
    controller: Controller

    @classmethod
    def start(cls, scenario: Scenario, strategy: str, seed: int) -> Arm:
        """A fresh twin of ``scenario`` seeded with ``seed``, driven by ``strategy``."""
        controller = controller_for(strategy, scenario, seed)
        model = OperationModel(
            scenario, rng=np.random.default_rng(seed), record_every_minutes=STEP_MINUTES
        )
        return cls(strategy=strategy, model=model, controller=controller)

    def advance(self, minutes: float) -> None:
        run(self.model, self.controller, minutes)

    def kpis(self) -> Kpis:
        return self.model.kpis()


@dataclass(frozen=True)
class Staffing:
    """Where one sector's people are now (from the live snapshot)."""

    own: int  # own workers here, on shift (idle, busy, overtime or on break)
    borrowed_in: int  # other sectors' workers here
    flex: int  # agency workers here
    lent_out: int  # own workers at, or walking to, another sector
    absent: int  # own workers absent from their shift
    busy: int  # workers here working (busy or overtime)


_PRESENT = ("idle", "busy", "overtime", "break")


def staffing(snapshot: OperationSnapshot) -> dict[str, Staffing]:
    """Per sector, who is where: the snapshot's worker groups summed up."""
    counts = {st.name: dict.fromkeys(Staffing.__dataclass_fields__, 0) for st in snapshot.sectors}
    for g in snapshot.workers:
        if g.sector in counts and g.state in _PRESENT:
            here = counts[g.sector]
            if g.flex:
                here["flex"] += g.count
            elif g.home == g.sector:
                here["own"] += g.count
            else:
                here["borrowed_in"] += g.count
            if g.state in ("busy", "overtime"):
                here["busy"] += g.count
        if g.flex or g.home not in counts:
            continue
        if g.state == "absent":
            counts[g.home]["absent"] += g.count
        elif g.sector != g.home and (g.state in _PRESENT or g.state == "transfer"):
            counts[g.home]["lent_out"] += g.count
    return {name: Staffing(**c) for name, c in counts.items()}


def _series_value(model: PlannerTwin, key: str) -> float:
    return model.row.get(key, float("nan"))


class PlannerTwin(mesa.Model):
    """The dashboard's model: what SolaraViz steps, resets and reads.

    Every parameter is a keyword argument with a default, as SolaraViz's *Reset*
    requires. Headcount is given per sector as ``headcount_<sector>=<percent>``
    (extra keyword arguments), because the sectors depend on the scenario.

    A what-if that does not validate, or a strategy that cannot be built, does not
    raise: the dashboard shows :attr:`error` and the model does not run.
    """

    def __init__(
        self,
        scenario: str = "default",
        strategy: str = "threshold",
        compare: str = "static",
        advisor: str = "threshold",
        seed: int = 0,
        demand: float = 1.0,
        absenteeism: float = 0.0,
        breakdown_sector: str = NO_BREAKDOWN,
        breakdown_hour: float = 10.0,
        breakdown_minutes: int = 120,
        breakdown_share: float = 0.5,
        predict_impact: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(rng=np.random.default_rng(int(seed)))
        self.seed = int(seed)
        self.predict_impact = bool(predict_impact)
        self.what_if = WhatIf(
            demand=float(demand),
            absenteeism=float(absenteeism),
            breakdown_sector=breakdown_sector,
            breakdown_minute=round(float(breakdown_hour) * 60),
            breakdown_minutes=int(breakdown_minutes),
            breakdown_share=float(breakdown_share),
            headcount_pct={
                k.removeprefix("headcount_"): int(v)
                for k, v in kwargs.items()
                if k.startswith("headcount_")
            },
        )
        self.strategy, self.compare_strategy, self.advisor_name = strategy, compare, advisor
        self.error: str | None = None
        self.a: Arm | None = None
        self.b: Arm | None = None
        self._advisor: Controller | None = None
        self.row: dict[str, float] = {}
        try:
            self.base = load_scenario(scenario)
            self.scenario = what_if_scenario(self.base, self.what_if)
            self.a = Arm.start(self.scenario, strategy, self.seed)
            if compare != NO_COMPARE:
                self.b = Arm.start(self.scenario, compare, self.seed)
        except _SETUP_ERRORS as err:
            self.error = str(err)
            self.running = False
            self.scenario = getattr(self, "scenario", None)  # type: ignore[assignment]
        self.datacollector = mesa.DataCollector(model_reporters=self._reporters())
        self._record()

    # ------------------------------------------------------------------ stepping

    @property
    def minute(self) -> float:
        return self.a.model.minute if self.a is not None else 0.0

    @property
    def arms(self) -> list[Arm]:
        return [arm for arm in (self.a, self.b) if arm is not None]

    def step(self) -> None:
        """Advance every twin :data:`STEP_MINUTES` minutes (stops at the horizon)."""
        if self.a is None or not self.running:
            return
        for arm in self.arms:
            arm.advance(STEP_MINUTES)
        self._record()
        self.running = not self.a.model.done

    def run_to_end(self) -> None:
        """Step until the horizon (what *Play* does, without the page)."""
        while self.running:
            self.step()

    # ------------------------------------------------------------------ what the page reads

    def advisor(self) -> Controller:
        """The advisor controller, built once per run (its own instance: asking it
        for advice never changes what strategy A's controller decides)."""
        if self._advisor is None:
            assert self.scenario is not None
            self._advisor = controller_for(self.advisor_name, self.scenario, self.seed)
        return self._advisor

    def advice_options(self) -> AdviceOptions:
        """How the panel asks: the server's defaults, this run's seed, impact if chosen."""
        return AdviceOptions(impact=self.predict_impact, seed=self.seed)

    def advice_answer(self) -> Advice:
        """The advisor's whole answer at strategy A's current state: ranked actions,
        headline, per-sector detail (what ``POST /v1/recommend`` answers)."""
        assert self.a is not None and self.scenario is not None
        return advise(
            self.advisor(), self.a.model.snapshot(), self.advice_options(), scenario=self.scenario
        )

    def advice(self) -> tuple[SectorAdvice, ...]:
        """The advisor's recommendations at strategy A's current state, per sector."""
        return self.advice_answer().sectors

    @property
    def risk_key(self) -> int:
        """Changes every :data:`RISK_EVERY_MINUTES` simulated minutes (when to recompute)."""
        return int(self.minute // RISK_EVERY_MINUTES)

    def risk(self) -> Forecast:
        """Risk of SLA misses and overtime over the next hours from strategy A's state,
        under the advisor and under the actions in force (what ``POST /v1/forecast`` answers)."""
        assert self.a is not None and self.scenario is not None
        return forecast(
            self.scenario,
            self.a.model.snapshot(),
            self.advisor(),
            hours=RISK_HOURS,
            samples=RISK_SAMPLES,
            seed=self.seed,
        )

    def side_by_side(self) -> list[tuple[str, float, float | None]]:
        """``(label, A, B)`` for every KPI of the whole operation (B ``None`` without B)."""
        assert self.a is not None
        ka = self.a.kpis().total
        kb = self.b.kpis().total if self.b is not None else None
        return [
            (label, getattr(ka, k), getattr(kb, k) if kb is not None else None)
            for k, label in KPI_LABELS.items()
        ]

    def situation(self, sector: str):
        """Waiting, overdue and due-soon work of ``sector`` under strategy A (the
        numbers the recommendation messages quote)."""
        assert self.a is not None and self.scenario is not None
        return situation(self.scenario, self.a.model.snapshot(), sector)

    def describe(self) -> str:
        """One line: scenario, seed, what-if."""
        if self.scenario is None:
            return "not running"
        changes = self.what_if.describe(self.base)
        what_if = "; ".join(changes) if changes else "as planned"
        return f"{self.base.name} · seed {self.seed} · {what_if}"

    @property
    def is_policy(self) -> bool:
        return self.advisor_name.startswith(POLICY_PREFIX)

    # ------------------------------------------------------------------ recording

    def _columns(self) -> list[str]:
        cols = ["minute"]
        for role in ("A", "B"):
            cols += [f"{role}.{k}" for k in SERIES_KPIS]
        if self.scenario is not None:  # strategy A's queue per sector, by display name
            cols += [s.display for s in self.scenario.sectors]
        return cols

    def _reporters(self) -> dict[str, Any]:
        return {c: (lambda m, c=c: _series_value(m, c)) for c in self._columns()}

    def _record(self) -> None:
        row: dict[str, float] = {"minute": self.minute}
        for role, arm in (("A", self.a), ("B", self.b)):
            if arm is None:
                continue
            total = arm.kpis().total
            for k in SERIES_KPIS:
                row[f"{role}.{k}"] = float(getattr(total, k))
        if self.a is not None and self.scenario is not None:
            for s, q in zip(self.scenario.sectors, self.a.model.queues, strict=True):
                row[s.display] = float(q.n)
        self.row = row
        self.datacollector.collect(self)
