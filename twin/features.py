"""The featurizer: one fixed, named feature vector per sector, from a snapshot.

The env wrappers (training) and the policy server (serving) both call
:func:`features`, so a policy sees the same numbers in both places: no
train/serve skew. Every feature depends only on the :class:`OperationSnapshot`
and the scenario, never on the model's internals, so a live twin and a twin
rebuilt with ``OperationModel.from_snapshot`` give identical vectors.

Why the scenario is an argument
-------------------------------
A snapshot says what *is* (queues, workers, rates); several features need what
was *planned*: the demand plan (arrivals vs plan, next hour's forecast), the
shift calendar (minutes to shift end), the routing DAG (upstream/downstream
pressure) and the normalisers (nominal staff and capacity). Those live in the
scenario, not in the live state, so ``features(snapshot, sector, scenario)``
takes it. The argument is optional for convenience: left out, the built-in
scenario named by ``snapshot.scenario`` is loaded and its digest checked against
``snapshot.scenario_digest`` (a mismatch raises rather than silently using a
different plan). Custom scenarios must be passed explicitly.

Notation
--------
- ``staff``: nominal staff of the sector, its largest headcount on any shift (>= 1).
- ``cap``: nominal capacity of the sector in items per hour,
  ``min(staff, stations) * 60 / mean service minutes``.
- ``sq(x) = x / (1 + x)``: a soft saturation of ``x >= 0`` into ``[0, 1)``
  (``sq(1) = 0.5``); it never clips, so very large backlogs stay distinguishable.
- Units: ``n`` is a count (items, workers, stations), ``n/h`` items per hour, ``min``
  minutes; ``sq(n / cap)`` is a backlog in hours of nominal capacity, squashed;
  ``sq(n/h / cap)`` a rate as a share of nominal capacity, squashed; ``n / staff``
  workers as a share of nominal staff, clipped at 2.
- ``plan``: planned inflow of the sector in items per hour: each class's planned
  rate (``twin.demand.rate_per_hour``, surges included) times the probability
  that its items visit the sector (routing assumed instantaneous).
- "work" = items waiting plus items in service. "Overdue" work is already late
  (its miss is counted); the ``due_within_*`` features count only work not yet late.

Features (one row per sector; ``FEATURE_NAMES[i]`` is row ``i``)
------------------------------------------------------------------
| index | name | meaning | range | unit |
|---|---|---|---|---|
| 0 | queue_overdue | items waiting, already past due | [0, 1) | sq(n / cap) |
| 1 | queue_due_0_30 | items waiting, due in 0-30 min | [0, 1) | sq(n / cap) |
| 2 | queue_due_30_60 | items waiting, due in 30-60 min | [0, 1) | sq(n / cap) |
| 3 | queue_due_60_120 | items waiting, due in 60-120 min | [0, 1) | sq(n / cap) |
| 4 | queue_due_120_240 | items waiting, due in 120-240 min | [0, 1) | sq(n / cap) |
| 5 | queue_due_240_480 | items waiting, due in 240-480 min | [0, 1) | sq(n / cap) |
| 6 | queue_due_480_plus | items waiting, due in 480+ min | [0, 1) | sq(n / cap) |
| 7 | due_within_30 | work due within 30 min, not yet late | [0, 1) | sq(n / cap) |
| 8 | due_within_60 | work due within 60 min, not yet late | [0, 1) | sq(n / cap) |
| 9 | due_within_120 | work due within 120 min, not yet late | [0, 1) | sq(n / cap) |
| 10 | staff_present | workers here, idle or working (any home, flex) | [0, 2] | n / staff |
| 11 | staff_busy | workers here working (busy or overtime) | [0, 2] | n / staff |
| 12 | staff_absent | own workers absent from their shift | [0, 2] | n / staff |
| 13 | staff_lent_out | own workers at (or walking to) another sector | [0, 2] | n / staff |
| 14 | staff_borrowed_in | other sectors' workers here (not walking) | [0, 2] | n / staff |
| 15 | staff_in_transfer | workers walking here (back home, lent, flex) | [0, 2] | n / staff |
| 16 | staff_flex | agency workers called here (arriving or present) | [0, 2] | n / staff |
| 17 | staff_overtime | workers here in overtime | [0, 2] | n / staff |
| 18 | utilization | working / (idle + working) here; 0 if nobody | [0, 1] | fraction |
| 19 | overtime_budget_used | mean share of OT limit used (workers in OT) | [0, 1] | fraction |
| 20 | arrival_rate | observed smoothed arrivals | [0, 1) | sq(n/h / cap) |
| 21 | completion_rate | observed smoothed completions | [0, 1) | sq(n/h / cap) |
| 22 | arrivals_vs_plan | (observed - plan) / max(observed, plan, 0.1 cap) | [-1, 1] | ratio |
| 23 | forecast_next_hour | mean planned inflow over the next 60 min | [0, 1) | sq(n/h / cap) |
| 24 | shift_end_in | to end of the running shift staffing it; 0 if none | [0, 1] | min / 720 |
| 25 | next_shift_in | to next start of a shift staffing it | [0, 1] | min / 720 |
| 26 | stations_down | stations out of order (failures + outages) | [0, 1] | n / stations |
| 27 | upstream_pressure | work at predecessors x their share sent here | [0, 1) | sq(n / cap) |
| 28 | downstream_pressure | queues of successors x share sent | [0, 1) | sq(n / their cap) |
| 29 | time_of_day_sin | sin(2 pi minute_of_day / 1440) | [-1, 1] | - |
| 30 | time_of_day_cos | cos(2 pi minute_of_day / 1440) | [-1, 1] | - |
| 31 | horizon_left | share of the scenario horizon still to run | [0, 1] | fraction |
| 32 | action_lending | action in force lends workers to another sector | {0, 1} | flag |
| 33 | action_lend_count | workers the action in force lends | [0, 1] | n / staff |
| 34 | action_flex_count | flex workers the action in force requests | [0, 1] | n / flex pool |
| 35 | action_overtime | action in force authorises overtime | {0, 1} | flag |
| 36 | action_priority_edd | action in force serves earliest-due-first | {0, 1} | flag |

The smoothed plan in ``arrivals_vs_plan`` applies the twin's own exponential
smoothing (time constant ``RATE_TIME_CONSTANT_MINUTES``) to the planned inflow, so
a normal day reads about 0 even while demand ramps up; minutes before minute 0
count as no demand, as in a fresh twin. Worker ratios are clipped at 2.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from twin.demand import rate_per_hour
from twin.feature_list import (
    FEATURE_HIGH,
    FEATURE_LOW,
    FEATURE_NAMES,
    FEATURES,
    N_FEATURES,
    Feature,
    feature_table,
)
from twin.scenario import EXIT, MINUTES_PER_DAY, Scenario, Surge, load_scenario
from twin.snapshot import N_BUCKETS, RATE_TIME_CONSTANT_MINUTES, OperationSnapshot

__all__ = [
    "FEATURES",
    "FEATURE_HIGH",
    "FEATURE_LOW",
    "FEATURE_NAMES",
    "N_FEATURES",
    "Feature",
    "Featurizer",
    "feature_table",
    "features",
    "featurizer",
]

#: Normaliser of the shift-clock features.
SHIFT_CLOCK_MINUTES = 720.0
#: Worker-count features are clipped at this multiple of nominal staff.
STAFF_CLIP = 2.0
#: Floor of the arrivals-vs-plan denominator, as a share of nominal capacity.
PLAN_FLOOR_SHARE = 0.1
#: Days of planned-inflow tables a featurizer keeps in memory.
_PLAN_DAYS_CACHED = 8


_I = {name: i for i, name in enumerate(FEATURE_NAMES)}
#: The staff counts :meth:`Featurizer.matrix` tallies, in order, each a share of nominal staff.
STAFF_COUNTS = (
    "staff_present",
    "staff_busy",
    "staff_absent",
    "staff_lent_out",
    "staff_borrowed_in",
    "staff_in_transfer",
    "staff_flex",
    "staff_overtime",
)
_STAFF_COLUMNS = [_I[name] for name in STAFF_COUNTS]


def nominal_staff(scenario: Scenario, sector: str) -> int:
    """A sector's largest headcount on any shift (at least 1): the worker normaliser."""
    return max(1, max(scenario.workforce.headcount.get(sector, {}).values(), default=0))


def _sq(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + x)


def _topological(scenario: Scenario) -> list[int]:
    """Sector indices in an order where every handoff goes forward (the routing is a DAG)."""
    names = scenario.sector_names
    index = {n: i for i, n in enumerate(names)}
    succ: list[set[int]] = [set() for _ in names]
    for c in scenario.item_classes:
        for src, targets in c.routing.items():
            succ[index[src]].update(index[t] for t, p in targets.items() if t != EXIT and p > 0)
    indeg = [0] * len(names)
    for nexts in succ:
        for j in nexts:
            indeg[j] += 1
    order = [i for i, d in enumerate(indeg) if d == 0]
    for i in order:  # grows while iterating (Kahn's algorithm)
        for j in sorted(succ[i]):
            indeg[j] -= 1
            if indeg[j] == 0:
                order.append(j)
    return order


class Featurizer:
    """The feature matrix of every sector of one scenario (tables precomputed once).

    Most callers use :func:`features`; the envs hold a ``Featurizer`` and call
    :meth:`matrix` once per decision (one pass over the snapshot for all sectors).
    """

    def __init__(self, scenario: Scenario) -> None:
        sc = scenario
        self.scenario = sc
        self.sector_names = sc.sector_names
        self.index = {n: i for i, n in enumerate(self.sector_names)}
        n = len(self.sector_names)
        self.staff = np.array([nominal_staff(sc, s) for s in self.sector_names], dtype=np.float64)
        stations = np.array(
            [s.stations if s.stations is not None else np.inf for s in sc.sectors],
            dtype=np.float64,
        )
        self.stations = np.where(np.isfinite(stations), stations, 0.0)
        mean_service = np.array([s.service.mean_minutes for s in sc.sectors], dtype=np.float64)
        self.capacity_per_hour = np.minimum(self.staff, stations) * 60.0 / mean_service
        self.flex_pool = max(1, sc.workforce.flex.max_workers)
        self.max_overtime_minutes = sc.workforce.max_overtime_minutes
        self.horizon_minutes = float(sc.horizon_minutes)

        # routing: probability that an item of each class visits each sector
        order = _topological(sc)
        self.reach = np.zeros((len(sc.item_classes), n))
        for ci, c in enumerate(sc.item_classes):
            self.reach[ci, self.index[c.entry]] = 1.0
            for s in order:
                for dst, p in c.routing.get(self.sector_names[s], {}).items():
                    if dst != EXIT:
                        self.reach[ci, self.index[dst]] += self.reach[ci, s] * p
        # share of each sector's items handed to each other sector, by planned daily volume
        volume = np.array(
            [sum(c.hourly_rates) * float(np.mean(c.weekday_factors)) for c in sc.item_classes]
        )
        if not volume.any():
            volume = np.ones_like(volume)
        flow = np.zeros((n, n))
        for ci, c in enumerate(sc.item_classes):
            for src, targets in c.routing.items():
                s = self.index[src]
                for dst, p in targets.items():
                    if dst != EXIT:
                        flow[s, self.index[dst]] += volume[ci] * self.reach[ci, s] * p
        through = volume @ self.reach
        self.handoff = np.divide(
            flow, through[:, None], out=np.zeros_like(flow), where=through[:, None] > 0
        )

        # shifts staffing each sector: (start minute of day, length in minutes)
        self.shifts: list[list[tuple[int, int]]] = []
        for sector in self.sector_names:
            per_shift = sc.workforce.headcount.get(sector, {})
            self.shifts.append(
                [
                    (sh.start % MINUTES_PER_DAY, sh.length_minutes)
                    for sh in sc.workforce.shifts
                    if per_shift.get(sh.name, 0) > 0
                ]
            )

        # the twin's per-tick exponential smoothing, as weights on past minutes
        tick = sc.tick_minutes
        decay = math.exp(-tick / RATE_TIME_CONSTANT_MINUTES)
        n_ticks = math.ceil(5 * RATE_TIME_CONSTANT_MINUTES / tick)
        kernel = np.repeat((1 - decay) * decay ** np.arange(n_ticks) / tick, tick)
        self._kernel = kernel / kernel.sum()  # index 0 = the minute just before now
        self._days: OrderedDict[int, np.ndarray] = OrderedDict()

    # ------------------------------------------------------------------ the plan

    def _plan_day(self, day: int) -> np.ndarray:
        """Planned inflow per sector (items/h) for each minute of ``day``: shape (1440, n)."""
        table = self._days.get(day)
        if table is not None:
            self._days.move_to_end(day)
            return table
        n = len(self.sector_names)
        table = np.zeros((MINUTES_PER_DAY, n))
        if day >= 0:
            t0 = day * MINUTES_PER_DAY
            cuts = set(range(0, MINUTES_PER_DAY, 60))
            for d in self.scenario.disruptions:
                if isinstance(d, Surge):
                    for m in (d.start_minute, d.end_minute):
                        if t0 < m < t0 + MINUTES_PER_DAY:
                            cuts.add(m - t0)
            edges = [*sorted(cuts), MINUTES_PER_DAY]
            rates = np.array(
                [
                    [rate_per_hour(self.scenario, ci, t0 + a) for ci in range(len(self.reach))]
                    for a in edges[:-1]
                ]
            )
            per_sector = rates @ self.reach  # (segments, n)
            for k, (a, b) in enumerate(itertools.pairwise(edges)):
                table[a:b] = per_sector[k]
        self._days[day] = table
        if len(self._days) > _PLAN_DAYS_CACHED:
            self._days.popitem(last=False)
        return table

    def planned_inflow(self, start: int, stop: int) -> np.ndarray:
        """Planned inflow per sector (items/h) for each minute in ``[start, stop)``."""
        first, last = start // MINUTES_PER_DAY, (stop - 1) // MINUTES_PER_DAY
        if first == last:  # the common case: no copy
            offset = first * MINUTES_PER_DAY
            return self._plan_day(first)[start - offset : stop - offset]
        days = np.concatenate([self._plan_day(d) for d in range(first, last + 1)])
        offset = first * MINUTES_PER_DAY
        return days[start - offset : stop - offset]

    # ------------------------------------------------------------------ the features

    def matrix(self, snapshot: OperationSnapshot) -> np.ndarray:
        """Features of every sector, shape ``(n_sectors, N_FEATURES)``, in scenario order."""
        n = len(self.sector_names)
        index = self.index
        # counted in Python lists and turned into arrays once: per-element numpy
        # arithmetic on tiny arrays costs more than the counting itself
        zero = [0] * N_BUCKETS
        queue_rows, serving_rows = [zero] * n, [zero] * n
        arrival_rows, completion_rows, down_rows = [0.0] * n, [0.0] * n, [0] * n
        seen = set()
        for st in snapshot.sectors:
            s = index.get(st.name)
            if s is None:
                raise KeyError(
                    f"snapshot sector {st.name!r} is not in scenario {self.scenario.name!r} "
                    f"(sectors: {', '.join(self.sector_names)})"
                )
            seen.add(s)
            queue_rows[s] = [sum(c) for c in zip(zero, *st.queue.values(), strict=True)]
            serving_rows[s] = [sum(c) for c in zip(zero, *st.in_service.values(), strict=True)]
            arrival_rows[s] = st.arrival_rate_per_hour
            completion_rows[s] = st.completion_rate_per_hour
            down_rows[s] = st.stations_down
        if len(seen) != n:
            missing = [name for i, name in enumerate(self.sector_names) if i not in seen]
            raise ValueError(f"snapshot lacks sectors {missing}")
        queue = np.array(queue_rows, dtype=np.float64)
        serving = np.array(serving_rows, dtype=np.float64)
        arrivals = np.array(arrival_rows, dtype=np.float64)
        completions = np.array(completion_rows, dtype=np.float64)
        down = np.array(down_rows, dtype=np.float64)

        # staff counts per sector: present, busy, absent, lent out, borrowed in,
        # walking, flex, in overtime (the STAFF_COUNTS order)
        counts = [[0] * n for _ in STAFF_COUNTS]
        present, busy, absent, lent_out, borrowed, walking, flex, in_overtime = counts
        overtime_minutes: list[list[float]] = [[] for _ in range(n)]
        for g in snapshot.workers:
            here = index.get(g.sector) if g.sector is not None else None
            home = index.get(g.home) if g.home is not None else None
            k, state = g.count, g.state
            if here is not None:
                if state in ("idle", "busy", "overtime"):
                    present[here] += k
                if state in ("busy", "overtime"):
                    busy[here] += k
                if state == "overtime":
                    in_overtime[here] += k
                    overtime_minutes[here] += [g.overtime_minutes] * k
                if state == "transfer":
                    walking[here] += k
                if g.flex and state != "off_shift":
                    flex[here] += k
            if g.flex or home is None:
                continue
            if state == "absent":
                absent[home] += k
            on_site = state in ("idle", "busy", "overtime", "break")
            if here is not None and here != home and (on_site or state == "transfer"):
                lent_out[home] += k
                if on_site:
                    borrowed[here] += k
        staff_counts = np.array(counts, dtype=np.float64)  # (STAFF_COUNTS, n)

        f = np.zeros((n, N_FEATURES))
        cap = self.capacity_per_hour
        staff = self.staff
        f[:, 0:N_BUCKETS] = _sq(queue / cap[:, None])
        work = queue + serving
        f[:, _I["due_within_30"]] = _sq(work[:, 1] / cap)
        f[:, _I["due_within_60"]] = _sq(work[:, 1:3].sum(axis=1) / cap)
        f[:, _I["due_within_120"]] = _sq(work[:, 1:4].sum(axis=1) / cap)
        f[:, _STAFF_COLUMNS] = np.minimum(staff_counts / staff, STAFF_CLIP).T
        present_, busy_ = staff_counts[0], staff_counts[1]
        f[:, _I["utilization"]] = np.divide(busy_, present_, out=np.zeros(n), where=present_ > 0)
        if self.max_overtime_minutes > 0:
            for s in range(n):
                if overtime_minutes[s]:
                    used = math.fsum(overtime_minutes[s]) / len(overtime_minutes[s])
                    f[s, _I["overtime_budget_used"]] = min(1.0, used / self.max_overtime_minutes)
        f[:, _I["arrival_rate"]] = _sq(arrivals / cap)
        f[:, _I["completion_rate"]] = _sq(completions / cap)

        now = math.floor(snapshot.minute)
        past = self.planned_inflow(now - len(self._kernel), now)[::-1]  # most recent first
        plan = self._kernel @ past
        denom = np.maximum(np.maximum(arrivals, plan), PLAN_FLOOR_SHARE * cap)
        f[:, _I["arrivals_vs_plan"]] = np.clip((arrivals - plan) / denom, -1.0, 1.0)
        forecast = self.planned_inflow(now, now + 60).mean(axis=0)
        f[:, _I["forecast_next_hour"]] = _sq(forecast / cap)

        minute_of_day = snapshot.minute % MINUTES_PER_DAY
        for s, shifts in enumerate(self.shifts):
            ends = [
                length - (minute_of_day - start) % MINUTES_PER_DAY
                for start, length in shifts
                if (minute_of_day - start) % MINUTES_PER_DAY < length
            ]
            starts = [(start - minute_of_day) % MINUTES_PER_DAY for start, _ in shifts]
            if ends:
                f[s, _I["shift_end_in"]] = min(1.0, min(ends) / SHIFT_CLOCK_MINUTES)
            if starts:
                f[s, _I["next_shift_in"]] = min(1.0, min(starts) / SHIFT_CLOCK_MINUTES)
        f[:, _I["stations_down"]] = np.divide(
            np.minimum(down, self.stations), self.stations, out=np.zeros(n), where=self.stations > 0
        )
        load = work.sum(axis=1)
        f[:, _I["upstream_pressure"]] = _sq((self.handoff * load[:, None]).sum(axis=0) / cap)
        f[:, _I["downstream_pressure"]] = _sq(self.handoff @ (queue.sum(axis=1) / cap))
        angle = 2.0 * math.pi * minute_of_day / MINUTES_PER_DAY
        f[:, _I["time_of_day_sin"]] = math.sin(angle)
        f[:, _I["time_of_day_cos"]] = math.cos(angle)
        f[:, _I["horizon_left"]] = min(
            1.0, max(0.0, (self.horizon_minutes - snapshot.minute) / self.horizon_minutes)
        )

        for st in snapshot.sectors:
            s = index[st.name]
            a = st.action
            lending = a.lend_to is not None and a.lend_to != st.name and a.lend_count > 0
            f[s, _I["action_lending"]] = float(lending)
            if lending:
                f[s, _I["action_lend_count"]] = min(1.0, a.lend_count / staff[s])
            f[s, _I["action_flex_count"]] = min(1.0, a.flex_count / self.flex_pool)
            f[s, _I["action_overtime"]] = float(a.overtime)
            f[s, _I["action_priority_edd"]] = float(a.priority == "edd")
        return np.clip(f, FEATURE_LOW, FEATURE_HIGH).astype(np.float32)


_FEATURIZERS: OrderedDict[tuple[str, str], Featurizer] = OrderedDict()


def featurizer(scenario: Scenario) -> Featurizer:
    """A (cached) :class:`Featurizer` for ``scenario``."""
    key = (scenario.name, scenario.digest)
    fz = _FEATURIZERS.get(key)
    if fz is None:
        fz = _FEATURIZERS[key] = Featurizer(scenario)
        if len(_FEATURIZERS) > 16:
            _FEATURIZERS.popitem(last=False)
    return fz


@lru_cache(maxsize=16)
def _builtin(name: str) -> Scenario:
    return load_scenario(name)


def scenario_of(snapshot: OperationSnapshot) -> Scenario:
    """The built-in scenario a snapshot names, checked against its digest if it has one.

    Raises:
        twin.scenario.ScenarioError: no built-in scenario has that name.
        ValueError: the snapshot's digest differs (a custom or changed scenario: pass it).
    """
    scenario = _builtin(snapshot.scenario)
    if snapshot.scenario_digest is not None and snapshot.scenario_digest != scenario.digest:
        raise ValueError(
            f"snapshot was taken on scenario {snapshot.scenario!r} with digest "
            f"{snapshot.scenario_digest}, but the built-in one has digest {scenario.digest}; "
            "pass the scenario explicitly: features(snapshot, sector, scenario)"
        )
    return scenario


def features(
    snapshot: OperationSnapshot, sector: str, scenario: Scenario | None = None
) -> np.ndarray:
    """The feature vector of ``sector`` (float32, ``N_FEATURES`` long; see the table above).

    Args:
        snapshot: the live state.
        sector: the sector's name.
        scenario: the plan the snapshot belongs to; ``None`` loads the built-in scenario
            the snapshot names (see "Why the scenario is an argument").
    """
    sc = scenario if scenario is not None else scenario_of(snapshot)
    fz = featurizer(sc)
    if sector not in fz.index:
        raise KeyError(f"unknown sector {sector!r} (sectors: {', '.join(fz.sector_names)})")
    return fz.matrix(snapshot)[fz.index[sector]]
