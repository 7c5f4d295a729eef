"""``synctwin experiment alerts``: do alerts come before the misses they warn of?

For each seed, the twin runs the day under a floor strategy (by default ``static``,
the plan: a floor that has no SyncTwin) and logs its floor events
(:mod:`twin.eventlog`). The log is replayed into a :class:`~twin.live_twin.LiveTwin`
in time order; at every point of the decision grid the live state is assessed
(:func:`policies.alerts.assess`) and alerts are raised and closed by an
:class:`~policies.alerts.AlertBook`, exactly as a live site on the server does
(without the prevention advice, which does not change when an alert is raised).

Measured, per seed and sector that missed due times:

- **lead**: the sector's first SLA miss (from the twin's own count, tick by tick)
  minus the time of the first ``sla_misses`` alert for that sector that warned of it:
  raised before the miss and still open when it came (the miss at or before the
  alert's ``by`` plus grace). An earlier alert that had closed, and no alert, count
  as no lead;
- **false alerts**: alerts whose risk did not happen (their outcome, with the floor
  not acting on them), as a share of the alerts that were closed.

The rules (:class:`~policies.alerts.AlertRules`) are fixed before the evaluation seeds
are run; tune them on other seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from policies.alerts import (
    Alert,
    AlertBook,
    AlertRules,
    GridHistory,
    Risk,
    RiskKind,
    alert_id,
    assess,
)
from twin.actions import Controller
from twin.adaptive import live_belief
from twin.eventlog import EventLog, log_start
from twin.floor_events import records
from twin.live_twin import LiveTwin
from twin.model import OperationModel
from twin.runner import simulate
from twin.scenario import Scenario

#: the lead the issue asks for: an alert at least this long before the first miss
LEAD_GOAL_MINUTES = 30.0


@dataclass
class SectorLead:
    """One seed's sector that missed: its first miss and the first alert before it."""

    seed: int
    sector: str
    first_miss_minute: float
    first_alert_minute: float | None

    @property
    def lead_minutes(self) -> float | None:
        if self.first_alert_minute is None:
            return None
        return self.first_miss_minute - self.first_alert_minute


@dataclass
class SeedResult:
    """Everything one seed's replay raised, and the sectors' first misses."""

    seed: int
    alerts: list[Alert] = field(default_factory=list)
    leads: list[SectorLead] = field(default_factory=list)


class _MissTrace:
    """The twin's cumulative SLA misses per sector, read after every tick."""

    def __init__(self) -> None:
        self.minutes: list[float] = []
        self.counts: list[list[int]] = []

    def __call__(self, model: OperationModel) -> None:
        self.minutes.append(model.minute)
        self.counts.append(list(model.misses))

    def misses(self, sector: int, t0: float, t1: float) -> float:
        """New misses in ``sector`` in ``[t0, t1)`` (tick resolution)."""
        return float(self._at(t1)[sector] - self._at(t0)[sector])

    def _at(self, t: float) -> list[int]:
        i = int(np.searchsorted(self.minutes, t, side="right")) - 1
        return self.counts[i] if i >= 0 else [0] * len(self.counts[0])

    def first_miss(self, sector: int) -> float | None:
        for m, c in zip(self.minutes, self.counts, strict=True):
            if c[sector] > 0:
                return m
        return None


def replay_seed(
    scenario: Scenario,
    floor: Controller,
    seed: int,
    rules: AlertRules,
    site: str = "replay",
    adaptive: bool = True,
) -> SeedResult:
    """Run ``seed`` under ``floor``, replay its log and raise alerts on the grid;
    ``adaptive``: the assessments roll out the demand the arrivals so far show."""
    log = EventLog()
    trace = _MissTrace()
    simulate(scenario, floor, seed, on_tick=trace, event_log=log)
    start = log_start(scenario)
    minutes = [float(e[1]) for e in log.floor]
    events = list(records(log.floor, scenario, start))
    live = LiveTwin(scenario, start)
    step = float(scenario.decision_interval_minutes)
    book = AlertBook(rules)
    out = SeedResult(seed)
    history = GridHistory(step)
    sectors = scenario.sector_names

    def observed(sector: str, kind: RiskKind, t0: float, t1: float) -> float:
        if kind == "sla_misses":
            return trace.misses(sectors.index(sector), t0, t1)
        return history.overtime_hours(sector, t0, t1)

    i = 0
    g = step
    while g < scenario.horizon_minutes:
        j = int(np.searchsorted(minutes, g, side="left"))  # events strictly before g
        live.ingest(events[i:j])
        i = j
        snap = live.snapshot(g)
        history.add(snap)
        out.alerts.extend(book.close_due(g, observed))
        factors = live_belief(live, g).factors if adaptive else None
        for risk in book.new(assess(scenario, snap, rules, demand_factors=factors)):
            book.opened(Alert(alert_id(site, risk), site, risk, message=""))
        g += step
    out.alerts.extend(book.open.values())  # still open at the end of the day
    raised = sorted(out.alerts, key=lambda a: a.risk.minute)
    for s, name in enumerate(sectors):
        first = trace.first_miss(s)
        if first is None:
            continue
        before = [  # alerts that warned of this miss: raised before it, open when it came
            a.risk.minute
            for a in raised
            if a.risk.sector == name
            and a.risk.kind == "sla_misses"
            and a.risk.minute <= first <= a.risk.by_minute + rules.grace_minutes
        ]
        out.leads.append(SectorLead(seed, name, first, before[0] if before else None))
    return out


def summarize(results: Sequence[SeedResult], goal: float = LEAD_GOAL_MINUTES) -> dict[str, Any]:
    """Lead and false-alert figures over seeds (see the module docstring)."""
    leads = [x for r in results for x in r.leads]
    led = [x for x in leads if x.lead_minutes is not None and x.lead_minutes >= goal]
    seeds_led = [
        r.seed
        for r in results
        if r.leads
        and (first := min(r.leads, key=lambda x: x.first_miss_minute)).lead_minutes is not None
        and first.lead_minutes >= goal
    ]
    closed = [a for r in results for a in r.alerts if a.outcome is not None]
    false = [a for a in closed if a.outcome is not None and not a.outcome.happened]
    lead_values = [x.lead_minutes for x in leads if x.lead_minutes is not None]
    by_kind: dict[str, dict[str, int]] = {}
    for a in closed:
        k = by_kind.setdefault(a.risk.kind, {"closed": 0, "false": 0})
        k["closed"] += 1
        k["false"] += int(a.outcome is not None and not a.outcome.happened)
    return {
        "seeds": [r.seed for r in results],
        "sectors_with_misses": len(leads),
        "sectors_led": len(led),
        "share_sectors_led": len(led) / len(leads) if leads else None,
        "seeds_with_misses": sum(1 for r in results if r.leads),
        "seeds_first_miss_led": len(seeds_led),
        "share_seeds_first_miss_led": (
            len(seeds_led) / sum(1 for r in results if r.leads)
            if any(r.leads for r in results)
            else None
        ),
        "median_lead_minutes": float(np.median(lead_values)) if lead_values else None,
        "alerts": sum(len(r.alerts) for r in results),
        "alerts_closed": len(closed),
        "false_alerts": len(false),
        "false_alert_rate": len(false) / len(closed) if closed else None,
        "by_kind": by_kind,
        "goal_minutes": goal,
    }


def result_json(results: Sequence[SeedResult]) -> list[dict[str, Any]]:
    """Per seed: the leads and every alert (risk and outcome), JSON-ready."""

    def risk(r: Risk) -> dict[str, Any]:
        return {**asdict(r), "hours": r.hours}

    return [
        {
            "seed": r.seed,
            "leads": [{**asdict(x), "lead_minutes": x.lead_minutes} for x in r.leads],
            "alerts": [
                {
                    "id": a.id,
                    "risk": risk(a.risk),
                    "outcome": asdict(a.outcome) if a.outcome is not None else None,
                }
                for a in r.alerts
            ],
        }
        for r in results
    ]
