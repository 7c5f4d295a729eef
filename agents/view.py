"""What a floor manager reads off a snapshot: work by due time, staff, capacity ahead.

The rule-based baselines (``threshold``, ``silo``) and the candidate generator of
``lookahead`` all read the live state the same way, through :class:`FlowView`:

- **work due by h** — per sector, the work minutes (items x mean service minutes) of
  everything waiting or in service that is due within ``h`` minutes (overdue work
  included: FIFO and EDD both serve it first, so it takes capacity before the rest).
  With ``flow=True`` the view also counts work still *upstream* that will reach the
  sector (routing probabilities per item class), as much of it as the upstream
  sectors can push through in time: the whole-flow view of a coordinated manager.
- **capacity over h** — efficiency-weighted worker-minutes the sector will have in
  the next ``h`` minutes: workers present until their shift ends, transfers and flex
  staff from when they arrive, the next shift's planned headcount (less the usual
  absence) from its start, capped by the stations that are up.

Everything is in minutes and items; the view holds no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.scenario import EXIT, MINUTES_PER_DAY, EquipmentBreakdown, Scenario
from twin.snapshot import (
    DUE_BUCKET_EDGES,
    DUE_BUCKET_REPRESENTATIVE,
    N_BUCKETS,
    OperationSnapshot,
)

#: Look-ahead horizons (minutes): the upper edges of the due buckets "0-30" .. "240-480".
HORIZONS: tuple[float, ...] = tuple(float(e) for e in DUE_BUCKET_EDGES[1:-1])
#: Capacity for the work due within ``HORIZONS[j]`` is counted up to the middle of the
#: last bucket (an item in "60-120" may be due in 61 minutes).
CAPACITY_MINUTES: tuple[float, ...] = tuple(float(r) for r in DUE_BUCKET_REPRESENTATIVE[1:-1])
FORECAST_STEP_MINUTES = 5.0
IN_SERVICE_REMAINING = 0.5  # fraction of an item in service still to do, on average
ON_SHIFT = ("idle", "busy", "break", "transfer")
PRESENT = ("idle", "busy", "break", "overtime")


class ScenarioFacts:
    """What a manager knows about the operation before the day starts (from the scenario).

    Args:
        scenario: the validated scenario.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.names = scenario.sector_names
        self.index = {n: i for i, n in enumerate(self.names)}
        n = len(self.names)
        self.n = n
        self.service_minutes = np.array([s.service.mean_minutes for s in scenario.sectors])
        self.stations = np.array(
            [s.stations if s.stations is not None else math.inf for s in scenario.sectors]
        )
        #: eff[home, sector]: speed of a worker from ``home`` in ``sector`` (0 = untrained)
        self.eff = np.array([[scenario.efficiency(h, s) for s in self.names] for h in self.names])
        wf = scenario.workforce
        self.flex_efficiency = wf.flex.efficiency
        self.flex_lead_minutes = float(wf.flex.lead_minutes)
        self.flex_max = wf.flex.max_workers
        self.transfer_minutes = float(wf.transfer_minutes)
        self.max_overtime_minutes = float(wf.max_overtime_minutes)
        self.attendance = 1.0 - wf.absence_rate
        self.shifts = wf.shifts
        self.shift_index = {s.name: k for k, s in enumerate(wf.shifts)}
        #: planned[k, s]: rostered workers of shift k in sector s
        self.planned = np.zeros((len(wf.shifts), n))
        for sector, per_shift in wf.headcount.items():
            for shift, count in per_shift.items():
                self.planned[self.shift_index[shift], self.index[sector]] = count
        self.class_index = {c: i for i, c in enumerate(scenario.class_names)}
        self.reach = self._reach()
        self.plan = {s: scenario.sector_plan(s) for s in self.names}
        #: scheduled outages: (sector, start minute, end minute, stations)
        self.outages = [
            (self.index[d.sector], d.start_minute, d.start_minute + d.duration_minutes, d.stations)
            for d in scenario.disruptions
            if isinstance(d, EquipmentBreakdown)
        ]
        #: upstream feeders of each sector: sectors that hand work to it (any class)
        self.feeders: list[list[int]] = [[] for _ in range(n)]
        for c in scenario.item_classes:
            for src, targets in c.routing.items():
                for dst, p in targets.items():
                    if dst != EXIT and p > 0:
                        i, j = self.index[src], self.index[dst]
                        if i not in self.feeders[j]:
                            self.feeders[j].append(i)

    def _reach(self) -> np.ndarray:
        """``reach[c, u, s]``: probability an item of class ``c`` now at ``u`` later visits ``s``.

        ``reach[c, u, u] = 0``: the item's current sector is counted separately.
        """
        n = self.n
        reach = np.zeros((len(self.scenario.item_classes), n, n))
        for ci, c in enumerate(self.scenario.item_classes):
            memo: dict[int, np.ndarray] = {}

            def visits(u: int, c=c, memo=memo) -> np.ndarray:
                """Probability of visiting each sector from ``u`` on, ``u`` included."""
                if u in memo:
                    return memo[u]
                v = np.zeros(n)
                v[u] = 1.0
                for dst, p in c.routing.get(self.names[u], {}).items():
                    if dst != EXIT and p > 0:
                        v += p * visits(self.index[dst])
                memo[u] = v
                return v

            for u in range(n):
                r = visits(u).copy()
                r[u] = 0.0
                reach[ci, u] = r
        return reach

    def base_rate_per_hour(self, cls: int, minute: float) -> float:
        """Forecast arrivals per hour of class ``cls`` at ``minute``: the scenario's hourly
        profile and weekday factor (surges are disruptions, not forecasts)."""
        c = self.scenario.item_classes[cls]
        day, minute_of_day = divmod(int(minute), MINUTES_PER_DAY)
        weekday = (self.scenario.start_weekday + day) % 7
        return c.hourly_rates[minute_of_day // 60] * c.weekday_factors[weekday]

    def forecast_due(self, now: float) -> np.ndarray:
        """``f[s, j]``: expected items that arrive in the next ``HORIZONS[j]`` minutes, are due
        within them, and will visit sector ``s`` (forecast demand, routed)."""
        out = np.zeros((self.n, len(HORIZONS)))
        step = FORECAST_STEP_MINUTES
        offsets = (np.arange(int(HORIZONS[-1] / step)) + 0.5) * step
        horizons = np.asarray(HORIZONS)
        for ci, c in enumerate(self.scenario.item_classes):
            rates = np.array([self.base_rate_per_hour(ci, now + o) for o in offsets])
            if not rates.any():
                continue
            due_in = np.array([c.due.due_minute(now + o) - now for o in offsets])
            expected = rates * step / 60.0
            ok = (offsets[None, :] < horizons[:, None]) & (due_in[None, :] <= horizons[:, None])
            count = (ok * expected[None, :]).sum(axis=1)  # per horizon
            entry = self.index[c.entry]
            visits = self.reach[ci, entry].copy()
            visits[entry] = 1.0
            out += visits[:, None] * count[None, :]
        return out

    def shift_end(self, k: int, now: float) -> float:
        """End of the occurrence of shift ``k`` under way at ``now`` (``now`` if none is)."""
        shift = self.shifts[k]
        day = int(now // MINUTES_PER_DAY)
        for d in (day - 1, day):
            start = d * MINUTES_PER_DAY + shift.start
            if start <= now < start + shift.length_minutes:
                return float(start + shift.length_minutes)
        return now

    def rostered_minutes(self, s: int, now: float, h: float, started: frozenset[int]) -> float:
        """Expected worker-minutes in ``[now, now + h]`` from shifts of sector ``s`` that have
        not started yet (planned headcount less the usual absence).

        A shift starting exactly at ``now`` counts unless it is in ``started`` (its workers
        are already in the snapshot).
        """
        total = 0.0
        day = int(now // MINUTES_PER_DAY)
        for k, shift in enumerate(self.shifts):
            if self.planned[k, s] <= 0:
                continue
            for d in (day, day + 1):
                start = d * MINUTES_PER_DAY + shift.start
                if start == now and k in started:
                    continue
                if now <= start < now + h:
                    overlap = min(now + h, start + shift.length_minutes) - start
                    total += self.planned[k, s] * self.attendance * overlap
        return total


@dataclass
class FlowView:
    """Per-sector quantities read off one snapshot (arrays indexed by sector).

    Attributes:
        minute: the snapshot's clock.
        items: items waiting or in service (in service counted as half done), by due bucket.
        queued: items waiting.
        pipeline: items upstream that will visit the sector, by due bucket (0 without
            ``flow``), thinned to what the upstream sectors can push through.
        forecast: ``forecast[s, j]``: forecast arrivals due within ``HORIZONS[j]`` that will
            visit the sector (0 without ``flow``).
        staff: efficiency-weighted workers present (idle, busy, on break, on overtime).
        own_on_shift: the sector's own regular workers on shift, wherever they are.
        own_home: of which at home (idle, busy or on break).
        borrowed: efficiency-weighted workers from other sectors present here.
        flex: agency workers called to the sector (arrived or on the way).
        flex_free: agency workers still in the pool.
        overtime: workers working overtime here.
        arrival_rate_per_hour: smoothed observed arrivals.
        capacity: ``capacity[s, j]`` worker-minutes (efficiency-weighted) over the next
            ``CAPACITY_MINUTES[j]`` minutes (for the work due within ``HORIZONS[j]``).
        shift_end: minutes until the earliest end of a shift with workers present here
            (inf if nobody on a shift is here).
    """

    minute: float
    items: np.ndarray
    queued: np.ndarray
    pipeline: np.ndarray
    staff: np.ndarray
    own_on_shift: np.ndarray
    own_home: np.ndarray
    borrowed: np.ndarray
    flex: np.ndarray
    flex_free: int
    overtime: np.ndarray
    arrival_rate_per_hour: np.ndarray
    capacity: np.ndarray
    shift_end: np.ndarray
    forecast: np.ndarray

    @classmethod
    def read(cls, facts: ScenarioFacts, snap: OperationSnapshot, *, flow: bool) -> FlowView:
        """Read ``snap`` with what ``facts`` knows about the scenario."""
        n, now = facts.n, snap.minute
        idx = facts.index
        n_cls = len(facts.class_index)
        by_class = np.zeros((n_cls, n, N_BUCKETS))
        items = np.zeros((n, N_BUCKETS))
        queued = np.zeros(n)
        arrival = np.zeros(n)
        stations = facts.stations.copy()
        for st in snap.sectors:
            s = idx[st.name]
            for c, counts in st.queue.items():
                row = np.asarray(counts, dtype=float)
                by_class[facts.class_index[c], s] += row
                items[s] += row
                queued[s] += row.sum()
            for c, counts in st.in_service.items():
                row = np.asarray(counts, dtype=float) * IN_SERVICE_REMAINING
                by_class[facts.class_index[c], s] += row
                items[s] += row
            arrival[s] = st.arrival_rate_per_hour
            # random failures are assumed to last the horizon; scheduled outages end on time
            stations[s] = max(0.0, stations[s] - (st.stations_down - st.outage_stations))

        staff = np.zeros(n)
        own_on_shift = np.zeros(n)
        own_home = np.zeros(n)
        borrowed = np.zeros(n)
        flex = np.zeros(n)
        overtime = np.zeros(n)
        flex_used = 0
        shift_end = np.full(n, math.inf)
        horizons = np.asarray(CAPACITY_MINUTES)
        cap = np.zeros((n, len(HORIZONS)))
        for g in snap.workers:
            if g.flex:
                if g.state == "off_shift":
                    continue
                flex_used += g.count
                s = idx[g.sector] if g.sector is not None else None
                if s is None:
                    continue
                flex[s] += g.count
                e = facts.flex_efficiency
                start = now
                if g.state == "transfer":
                    start = g.ready_minute if g.ready_minute is not None else now
                else:
                    staff[s] += e * g.count
                cap[s] += e * g.count * np.clip(horizons - (start - now), 0.0, None)
                continue
            if g.state in ("off_shift", "absent") or g.sector is None or g.home is None:
                continue
            s, home = idx[g.sector], idx[g.home]
            k = facts.shift_index[g.shift] if g.shift is not None else -1
            if g.state in ON_SHIFT:
                own_on_shift[home] += g.count
                if s == home and g.state != "transfer":
                    own_home[home] += g.count
            if g.state == "overtime":
                overtime[s] += g.count
                continue  # finishing up: no capacity to plan on
            e = facts.eff[home, s]
            end = facts.shift_end(k, now) if k >= 0 else now
            start = now
            if g.state == "transfer":
                start = g.ready_minute if g.ready_minute is not None else now
            else:
                staff[s] += e * g.count
                if home != s:
                    borrowed[s] += e * g.count
                shift_end[s] = min(shift_end[s], end - now)
            avail = np.clip(np.minimum(horizons, end - now) - (start - now), 0.0, None)
            cap[s] += e * g.count * avail
        started = frozenset(
            facts.shift_index[g.shift]
            for g in snap.workers
            if g.shift is not None and g.state not in ("off_shift",)
        )
        for s in range(n):
            for j, h in enumerate(CAPACITY_MINUTES):
                cap[s, j] += facts.rostered_minutes(s, now, h, started)
        station_minutes = stations[:, None] * horizons[None, :]
        for s_out, start, end, k in facts.outages:
            overlap = np.clip(np.minimum(now + horizons, end) - max(now, start), 0.0, None)
            station_minutes[s_out] -= k * overlap
        cap = np.minimum(cap, np.maximum(station_minutes, 0.0))

        pipeline = np.zeros((n, N_BUCKETS))
        forecast = facts.forecast_due(now) if flow else np.zeros((n, len(HORIZONS)))
        if flow:
            # what each sector can push through in time: capacity over the bucket's horizon
            # against its own due work; upstream work is thinned by that fraction
            due_cum = np.cumsum(items, axis=1)[:, 1 : 1 + len(HORIZONS)]
            work = due_cum * facts.service_minutes[:, None]
            throughput = np.ones((n, N_BUCKETS))
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(work > 0, np.minimum(1.0, cap / np.maximum(work, 1e-9)), 1.0)
            throughput[:, 1 : 1 + len(HORIZONS)] = frac
            throughput[:, 0] = frac[:, 0]
            throughput[:, 1 + len(HORIZONS) :] = frac[:, -1:]
            for c in range(n_cls):
                moved = by_class[c] * throughput  # [u, b]
                pipeline += np.einsum("us,ub->sb", facts.reach[c], moved)
        return cls(
            minute=now,
            items=items,
            queued=queued,
            pipeline=pipeline,
            staff=staff,
            own_on_shift=own_on_shift,
            own_home=own_home,
            borrowed=borrowed,
            flex=flex,
            flex_free=max(0, facts.flex_max - flex_used),
            overtime=overtime,
            arrival_rate_per_hour=arrival,
            capacity=cap,
            shift_end=shift_end,
            forecast=forecast,
        )

    def work_due(
        self, facts: ScenarioFacts, *, flow_weight: float = 1.0, overdue: bool = True
    ) -> np.ndarray:
        """``work[s, j]``: work minutes due within ``HORIZONS[j]``.

        Args:
            facts: the scenario facts the view was read with.
            flow_weight: weight of the whole-flow part (upstream items, forecast arrivals).
            overdue: whether work already overdue counts (it takes capacity first, but
                finishing it saves no miss).
        """
        total = self.items + flow_weight * self.pipeline
        if not overdue:
            total = total.copy()
            total[:, 0] = 0.0
        due_cum = np.cumsum(total, axis=1)[:, 1 : 1 + len(HORIZONS)]
        due_cum = due_cum + flow_weight * self.forecast
        return due_cum * facts.service_minutes[:, None]


def ratio(work: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Work / capacity, with no capacity counting as a ratio of 9 (any work) or 0 (none)."""
    return np.where(cap > 0, work / np.maximum(cap, 1e-9), np.where(work > 1e-9, 9.0, 0.0))
