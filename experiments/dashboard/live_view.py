"""What the live dashboard shows, computed from what the site routes answer.

Each panel of the live page is a list of plain rows built here from the snapshot, the
forecast and the alerts, so the numbers can be tested without a browser and the
headline for leadership is generated from the same rows the panels show (one set of
numbers, one wording).

Queues use the snapshot's due buckets (:data:`twin.snapshot.DUE_BUCKET_EDGES`):
*overdue* is bucket 0, *due within 1 h* buckets 1-2 (0-30 and 30-60 minutes), *later*
the rest. Staff are counted where they are (a worker group's ``sector``; a worker in
transfer counts at the sector it is walking to).
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.dashboard.session import clock
from experiments.dashboard.site_client import SiteAlert
from policies.schemas import ForecastOut, RiskAt
from twin.snapshot import N_BUCKETS, OperationSnapshot

#: A sector's risk is highlighted when the chance of any new SLA miss within the
#: horizon reaches this (with no action), or when the expected overtime reaches
#: :data:`OVERTIME_HOT_HOURS`.
RISK_THRESHOLD = 0.5
OVERTIME_HOT_HOURS = 1.0
#: Due buckets that are "due within 1 h" (0-30 and 30-60 minutes).
_DUE_SOON = (1, 2)


def display(sector: str) -> str:
    """A sector's name for people: ``picking`` -> ``Picking``."""
    return sector.replace("_", " ").capitalize()


@dataclass(frozen=True)
class SectorQueue:
    """One sector's work now: waiting by due time, in service, and stations down."""

    sector: str
    overdue: int
    due_within_1h: int
    later: int
    in_service: int
    stations_down: int

    @property
    def waiting(self) -> int:
        return self.overdue + self.due_within_1h + self.later


def queues(snapshot: OperationSnapshot) -> list[SectorQueue]:
    """Per sector (in the snapshot's order), items waiting by due bucket and in service."""
    out = []
    for st in snapshot.sectors:
        buckets = [sum(c[b] for c in st.queue.values()) for b in range(N_BUCKETS)]
        out.append(
            SectorQueue(
                sector=st.name,
                overdue=buckets[0],
                due_within_1h=sum(buckets[b] for b in _DUE_SOON),
                later=sum(buckets[_DUE_SOON[-1] + 1 :]),
                in_service=sum(sum(c) for c in st.in_service.values()),
                stations_down=st.stations_down,
            )
        )
    return out


@dataclass(frozen=True)
class SectorStaff:
    """Who is at one sector now, by state; ``flex`` counts the agency staff among them."""

    sector: str
    working: int = 0
    idle: int = 0
    on_break: int = 0
    in_transfer: int = 0
    overtime: int = 0
    flex: int = 0

    @property
    def on_floor(self) -> int:
        return self.working + self.idle + self.on_break + self.in_transfer + self.overtime


#: Worker states (the snapshot's) -> the field of :class:`SectorStaff` they count in.
_STATE_FIELD = {
    "busy": "working",
    "idle": "idle",
    "break": "on_break",
    "transfer": "in_transfer",
    "overtime": "overtime",
}


def staff(snapshot: OperationSnapshot) -> list[SectorStaff]:
    """Per sector, the workers there by state (off shift and absent workers are not there)."""
    counts = {
        st.name: dict.fromkeys(("flex", *_STATE_FIELD.values()), 0) for st in snapshot.sectors
    }
    for g in snapshot.workers:
        where = counts.get(g.sector or "")
        state = _STATE_FIELD.get(g.state)
        if where is None or state is None:
            continue
        where[state] += g.count
        if g.flex:
            where["flex"] += g.count
    return [SectorStaff(sector=name, **c) for name, c in counts.items()]


@dataclass(frozen=True)
class SectorRisk:
    """One sector's risk within ``hours``: with no action, and under the served policy."""

    sector: str
    hours: float
    p_miss: float  # chance of at least one new SLA miss, no action
    expected_misses: float
    expected_overtime_hours: float
    policy_p_miss: float
    policy_expected_misses: float
    policy_expected_overtime_hours: float

    @property
    def hot_misses(self) -> bool:
        return self.p_miss >= RISK_THRESHOLD

    @property
    def hot_overtime(self) -> bool:
        return self.expected_overtime_hours >= OVERTIME_HOT_HOURS

    @property
    def hot(self) -> bool:
        return self.hot_misses or self.hot_overtime


def _risk(sector: str, none: RiskAt, pol: RiskAt) -> SectorRisk:
    return SectorRisk(
        sector=sector,
        hours=none.hours,
        p_miss=none.p_any_miss.mean,
        expected_misses=none.expected_misses.mean,
        expected_overtime_hours=none.expected_overtime_hours.mean,
        policy_p_miss=pol.p_any_miss.mean,
        policy_expected_misses=pol.expected_misses.mean,
        policy_expected_overtime_hours=pol.expected_overtime_hours.mean,
    )


def risks(fc: ForecastOut) -> dict[str, list[SectorRisk]]:
    """Per sector (then ``total``), one :class:`SectorRisk` per forecast horizon."""
    out = {}
    for s in [*fc.sectors, fc.total]:
        out[s.sector] = [_risk(s.sector, n, p) for n, p in zip(s.no_action, s.policy, strict=True)]
    return out


def worst(fc: ForecastOut) -> SectorRisk | None:
    """The hot sector risk to name first: highest chance of misses, then most overtime."""
    hot = [r for s, rows in risks(fc).items() if s != "total" for r in rows if r.hot]
    if not hot:
        return None
    return max(hot, key=lambda r: (r.hot_misses, r.p_miss, r.expected_overtime_hours, -r.hours))


def risk_words(r: SectorRisk) -> str:
    """One sector risk in words, from its fields."""
    parts = []
    if r.hot_misses:
        parts.append(
            f"{r.p_miss:.0%} chance of SLA misses within {r.hours:g} h "
            f"(about {r.expected_misses:.0f} expected)"
        )
    if r.hot_overtime:
        parts.append(f"about {r.expected_overtime_hours:.1f} overtime hours within {r.hours:g} h")
    return f"{display(r.sector)}: " + " and ".join(parts)


def headline(
    snapshot: OperationSnapshot, fc: ForecastOut | None, alerts: list[SiteAlert] | None
) -> str:
    """The line for leadership: the floor now, the worst risk ahead, the alerts.

    The page shows it under the site's clock; every number in it is one the panels show.
    """
    qs = queues(snapshot)
    waiting = sum(q.waiting for q in qs)
    overdue = sum(q.overdue for q in qs)
    down = sum(q.stations_down for q in qs)
    floor = sum(s.on_floor for s in staff(snapshot))
    parts = [f"{waiting:,} items waiting ({overdue:,} overdue)", f"{floor} staff on the floor"]
    if down:
        parts.append(f"{down} station{'s' * (down != 1)} down")
    line = ", ".join(parts) + "."
    if fc is not None:
        top = worst(fc)
        line += (
            f" Highest risk: {risk_words(top)}."
            if top is not None
            else f" No sector at risk within {max(fc.hours):g} h."
        )
    if alerts:
        newest = max(alerts, key=lambda a: a.seq)
        still_open = sum(a.outcome is None for a in alerts)
        line += (
            f" {len(alerts)} alert{'s' * (len(alerts) != 1)} ({still_open} open), the newest "
            f"for {display(newest.sector)} at {clock(newest.minute)}."
        )
    return line
