"""OperationModel: the Mesa model of sectors, workers, shifts and SLA-bound work.

Time is continuous inside the model and advanced in ticks: ``step()`` processes
every event (arrival, service completion, shift change, transfer, failure, due
time) whose time falls in ``[minute, minute + tick)``, in time order, so waiting
times are exact rather than rounded to the tick. Controllers act only between
ticks, at decision intervals, through :meth:`OperationModel.apply`.

Randomness comes from one ``numpy.random.Generator``, split once into named
child streams (arrivals, absence, routing, equipment, one per sector for service
times). Demand therefore does not depend on what the controllers do: the same
seed gives every strategy the same arrivals and absences.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from functools import partial
from itertools import count
from typing import Any, ClassVar

import mesa
import numpy as np
import pandas as pd

from twin import live
from twin.actions import SectorAction
from twin.demand import ArrivalStream
from twin.distributions import DurationStream
from twin.eventlog import EventLog
from twin.events import (
    BREAK_END,
    BREAK_START,
    COMPLETE,
    DUE,
    FAIL,
    N_KINDS,
    OT_LIMIT,
    OTHER_PRIORITY,
    OUTAGE,
    PRIORITY,
    REPAIR,
    SHIFT_END,
    SHIFT_START,
    TRANSFER_DONE,
)
from twin.kpis import KpiRecord, Kpis
from twin.live import SnapshotError, check_snapshot
from twin.queues import Item, ItemState, SectorQueue
from twin.scenario import EXIT, MINUTES_PER_DAY, Absenteeism, EquipmentBreakdown, Scenario
from twin.snapshot import RATE_TIME_CONSTANT_MINUTES, OperationSnapshot
from twin.workers import N_STATES, PAID_FLEX, PAID_REGULAR, Worker, WorkerState

#: ``SnapshotError`` and ``check_snapshot`` live in :mod:`twin.live`; importable from here too
__all__ = ["InvariantError", "OperationModel", "SnapshotError", "check_snapshot"]

OFF, ABSENT, IDLE, BUSY, BREAK, TRANSFER, OVERTIME = WorkerState

#: station count of a sector without a station limit (not a recording period)
UNLIMITED = 1 << 30


def _minute(model: OperationModel) -> float:
    return model.minute


def _row_value(model: OperationModel, key: str) -> float:
    return model._row[key]


class InvariantError(AssertionError):
    """A conservation law of the twin was broken (a bug, never user error)."""


#: an event handler: ``handler(model, time, a, b)``
_Handler = Callable[["OperationModel", float, Any, Any], None]


class OperationModel(mesa.Model):
    """The operation twin.

    Args:
        scenario: the validated scenario.
        rng: the one source of randomness (a ``numpy.random.Generator`` or a seed).
        record_every_minutes: how often the DataCollector records the time series
            (``None``: never, as rollouts run; see :mod:`twin.rollout`).
        start_minute: clock at creation (``from_snapshot`` uses it).
        event_log: if given, every item event, attendance and equipment event is
            appended to it (see :mod:`twin.eventlog`).
    """

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator | int | None = None,
        *,
        record_every_minutes: int | None = 15,
        start_minute: float = 0.0,
        event_log: EventLog | None = None,
        _fresh: bool = True,
    ) -> None:
        master = np.random.default_rng(rng)
        super().__init__(rng=master)
        self.scenario = scenario
        self.sector_names = scenario.sector_names
        self.sector_index = {n: i for i, n in enumerate(self.sector_names)}
        self.class_index = {n: i for i, n in enumerate(scenario.class_names)}
        self.shift_index = {s.name: i for i, s in enumerate(scenario.workforce.shifts)}
        n_sectors = len(self.sector_names)
        self.pool_index = n_sectors  # a pseudo-sector: the flex agency pool
        self.minute = float(start_minute)
        self._created_minute = self.minute
        self._initial_items = 0  # items a snapshot brought in (not counted as arrivals)
        self._needs_dispatch = False  # a rebuilt twin dispatches on its first step
        self.record_every_minutes = record_every_minutes
        self.event_log = event_log

        # named random streams, split once from the master generator
        streams = self.rng.spawn(4 + n_sectors)
        self._rng_arrivals, self._rng_absence, self._rng_routing, self._rng_equipment = streams[:4]
        self._service = [
            DurationStream(sec.service, streams[4 + i]) for i, sec in enumerate(scenario.sectors)
        ]
        self._arrivals = ArrivalStream(scenario, self._rng_arrivals, self.minute)

        # static tables
        wf = scenario.workforce
        self._eff = [
            [scenario.efficiency(h, s) for s in self.sector_names] for h in self.sector_names
        ]
        self._flex_eff = wf.flex.efficiency
        self._routes = self._routing_table()
        self._stations = [
            s.stations if s.stations is not None else UNLIMITED for s in scenario.sectors
        ]

        # dynamic state
        #: (time, priority, sequence, kind, a, b): see :mod:`twin.events` and the handlers
        self._heap: list[tuple[float, int, int, int, Any, Any]] = []
        self._seq = count()
        self.queues = [SectorQueue() for _ in range(n_sectors)]
        self._idle: list[dict[Worker, None]] = [{} for _ in range(n_sectors + 1)]  # ordered sets
        self.count = [[0] * N_STATES for _ in range(n_sectors + 1)]  # workers by (sector, state)
        self.down = [0] * n_sectors  # stations failed
        self.outage = [0] * n_sectors  # stations in a scheduled outage
        self.actions: dict[str, SectorAction] = {n: self._plan_action(n) for n in self.sector_names}
        self._priority = [self.actions[n].priority for n in self.sector_names]
        self._overtime_ok = [self.actions[n].overtime for n in self.sector_names]
        self._next_item_id = 0

        # accounts (cumulative since creation)
        self.acc_loc = [[0.0] * N_STATES for _ in range(n_sectors + 1)]
        self.acc_home = [[0.0] * N_STATES for _ in range(n_sectors)]
        self.acc_flex = [[0.0] * N_STATES for _ in range(n_sectors + 1)]
        self.arrived = 0  # items that entered the operation
        self.exited = 0  # items that left it
        self.on_time = 0
        self.cycle_sum = 0.0
        self.sector_arrived = [0] * n_sectors
        self.processed = [0] * n_sectors
        self.sector_time_sum = [0.0] * n_sectors
        self.misses = [0] * n_sectors
        self.transfers = [0] * n_sectors
        self.arrival_rate = [0.0] * n_sectors
        self.completion_rate = [0.0] * n_sectors
        self._tick_in = [0] * n_sectors
        self._tick_out = [0] * n_sectors

        # workers: regular staff by sector and shift, then the flex pool
        self.shift_workers: list[list[Worker]] = [[] for _ in wf.shifts]
        self.flex_workers: list[Worker] = []
        if _fresh:
            for sector in self.sector_names:
                for shift, n in wf.headcount.get(sector, {}).items():
                    for _ in range(n):
                        self._new_worker(self.sector_index[sector], self.shift_index[shift])
            for _ in range(wf.flex.max_workers):
                self._new_worker(self.pool_index, -1, flex=True)
            self._schedule_calendar(self.minute, fresh=True)
            self._schedule_failures(self.minute, down=[0] * n_sectors)

        self.datacollector = mesa.DataCollector(model_reporters=self._reporters())
        self._record_due = self.minute
        if _fresh:
            self._maybe_record()

    # ------------------------------------------------------------------ construction helpers

    def _plan_action(self, sector: str) -> SectorAction:
        plan = self.scenario.sector_plan(sector)
        return SectorAction(
            overtime=plan.overtime, priority=plan.priority, flex_count=plan.flex_workers
        )

    def _new_worker(self, home: int, shift: int, flex: bool = False) -> Worker:
        w = Worker(self, home, shift, flex)
        w.since = self.minute
        self.count[w.sector][OFF] += 1
        if flex:
            self.flex_workers.append(w)
        else:
            self.shift_workers[shift].append(w)
        return w

    def _routing_table(self) -> list[list[tuple[list[int], list[float]] | None]]:
        """``[cls][sector] -> (targets, cumulative probabilities)``; target -1 = exit."""
        table: list[list[tuple[list[int], list[float]] | None]] = []
        for c in self.scenario.item_classes:
            row: list[tuple[list[int], list[float]] | None] = []
            for s in self.sector_names:
                targets = c.routing.get(s, {})
                if not targets:
                    row.append(None)
                    continue
                idx = [-1 if t == EXIT else self.sector_index[t] for t in targets]
                cum = np.cumsum(list(targets.values())).tolist()
                row.append((idx, cum))
            table.append(row)
        return table

    def _push(self, time: float, kind: int, a: object = None, b: object = None) -> None:
        heapq.heappush(
            self._heap, (time, PRIORITY.get(kind, OTHER_PRIORITY), next(self._seq), kind, a, b)
        )

    def _schedule_calendar(self, t0: float, fresh: bool) -> None:
        """Push shift starts/ends, breaks and scheduled outages at or after ``t0``.

        A fresh twin starts any shift already under way at ``t0``; a twin rebuilt from a
        snapshot already has those workers in place, so only their ends and breaks are due.
        """
        horizon = self.scenario.horizon_minutes
        first_day = int(t0 // MINUTES_PER_DAY) - 1
        for k, shift in enumerate(self.scenario.workforce.shifts):
            for day in range(first_day, self.scenario.horizon_days + 1):
                start = day * MINUTES_PER_DAY + shift.start
                end = start + shift.length_minutes
                if end <= t0 or start >= horizon + MINUTES_PER_DAY:
                    continue
                if start >= t0:
                    self._push(start, SHIFT_START, k, day)
                elif fresh:
                    self._push(t0, SHIFT_START, k, day)
                self._push(end, SHIFT_END, k)
                for brk in shift.breaks:
                    b_start = start + (brk.start - shift.start) % MINUTES_PER_DAY
                    b_end = b_start + brk.minutes
                    if b_start >= t0:
                        self._push(b_start, BREAK_START, k, b_end)
                    elif b_end > t0 and not fresh:
                        self._push(b_end, BREAK_END, k)
        for d in self.scenario.disruptions:
            if isinstance(d, EquipmentBreakdown):
                s = self.sector_index[d.sector]
                end = d.start_minute + d.duration_minutes
                if d.start_minute >= t0:
                    self._push(d.start_minute, OUTAGE, s, d.stations)
                    self._push(end, OUTAGE, s, -d.stations)
                elif end > t0:
                    if fresh:
                        self._push(t0, OUTAGE, s, d.stations)
                    self._push(end, OUTAGE, s, -d.stations)

    def _schedule_failures(self, t0: float, down: list[int]) -> None:
        """Start each station's failure clock; ``down[s]`` stations start under repair."""
        for s, sec in enumerate(self.scenario.sectors):
            if sec.stations is None:
                continue
            n_down = min(down[s], sec.stations)
            self.down[s] = n_down
            if sec.breakdowns is None:
                continue  # reported failures with no repair model stay down
            for i in range(sec.stations):
                if i < n_down:
                    self._push(t0 + self._draw(sec.breakdowns.repair), REPAIR, s)
                else:
                    self._push(t0 + self._draw(sec.breakdowns.time_to_failure), FAIL, s)

    def _draw(self, dist) -> float:
        return float(dist.sample(self._rng_equipment, 1)[0])

    # ------------------------------------------------------------------ public API

    @property
    def done(self) -> bool:
        """Whether the horizon has been reached."""
        return self.minute >= self.scenario.horizon_minutes - 1e-9

    def apply(self, actions: Mapping[str, SectorAction]) -> None:
        """Put one action per sector in force now (sectors left out keep theirs).

        Illegal parts are mapped to the nearest legal action: lending to an unknown
        sector, to itself or to a sector its workers are not trained for lends nobody;
        counts beyond what is available are capped at what is available.
        """
        for name, action in actions.items():
            if name not in self.sector_index:
                raise KeyError(f"unknown sector {name!r} (sectors: {', '.join(self.sector_names)})")
            s = self.sector_index[name]
            previous = self.actions[name]
            target = self.sector_index.get(action.lend_to) if action.lend_to else None
            if target is None or target == s or self._eff[s][target] <= 0:
                target = None
                if action.lend_to is not None or action.lend_count:
                    # keep the action in force legal too: snapshots report it, and a
                    # snapshot naming an unknown sector would not load into a twin
                    action = action.model_copy(update={"lend_to": None, "lend_count": 0})
            old = self.sector_index.get(previous.lend_to) if previous.lend_to else None
            if old is not None and old != target:
                self._set_lent(s, old, 0)
            if target is not None:
                self._set_lent(s, target, action.lend_count)
            self._set_flex(s, action.flex_count)
            self.actions[name] = action
            self._priority[s] = action.priority
            self._overtime_ok[s] = action.overtime
        for s in range(len(self.sector_names)):
            self._dispatch(s, self.minute)

    def step(self) -> None:
        """Advance one tick."""
        tick = self.scenario.tick_minutes
        end = self.minute + tick
        if self._needs_dispatch:
            self._needs_dispatch = False
            self._dispatch_all(self.minute)
        self._advance(end)
        decay = math.exp(-tick / RATE_TIME_CONSTANT_MINUTES)
        gain = (1.0 - decay) * 60.0 / tick
        for s in range(len(self.sector_names)):
            self.arrival_rate[s] = self.arrival_rate[s] * decay + self._tick_in[s] * gain
            self.completion_rate[s] = self.completion_rate[s] * decay + self._tick_out[s] * gain
            self._tick_in[s] = 0
            self._tick_out[s] = 0
        self.minute = end
        self._maybe_record()

    def run_minutes(self, minutes: float) -> None:
        """Step until ``minutes`` more have passed (or the horizon is reached)."""
        stop = min(self.minute + minutes, self.scenario.horizon_minutes)
        while self.minute < stop - 1e-9:
            self.step()

    def timeseries(self) -> pd.DataFrame:
        """The recorded time series (one row per ``record_every_minutes``)."""
        return self.datacollector.get_model_vars_dataframe().reset_index(drop=True)

    # ------------------------------------------------------------------ the event loop

    def _advance(self, end: float) -> None:
        """Process every arrival and scheduled event before ``end``, in time order.

        Arrivals come from the arrival stream; the other events from the heap, each
        handled by the handler of its kind (``_HANDLERS``). An arrival at the same time
        as a scheduled event is processed after it.
        """
        heap = self._heap
        arr = self._arrivals
        handlers = self._HANDLERS
        while True:
            if arr.i >= len(arr.times):
                if arr.hour_end < end:
                    arr.generate_next_hour()
                    continue
                t_arr = math.inf
            else:
                t_arr = arr.times[arr.i]
            t_evt = heap[0][0] if heap else math.inf
            if t_arr < t_evt:
                if t_arr >= end:
                    return
                self._arrive(arr.classes[arr.i], t_arr)
                arr.i += 1
                continue
            if t_evt >= end:
                return
            t, _, _, kind, a, b = heapq.heappop(heap)
            handlers[kind](self, t, a, b)

    # ------------------------------------------------------------------ event handlers
    # One per event kind, called as ``handler(model, time, a, b)`` with the event's two
    # payload fields. Worker events carry the worker's token when scheduled: a worker
    # whose token has moved on since (preempted, sent home) ignores them.

    def _on_complete(self, t: float, w: Worker, token: int) -> None:
        if w.token == token:
            self._complete(w, t)

    def _on_due(self, t: float, item: Item, _: None) -> None:
        if item.state is not ItemState.DONE and not item.late:
            item.late = True
            self.misses[item.sector] += 1

    def _on_transfer_done(self, t: float, w: Worker, token: int) -> None:
        if w.token == token and w.state is TRANSFER:
            self._move(w, IDLE, w.sector, t)
            self._dispatch(w.sector, t)

    def _on_overtime_limit(self, t: float, w: Worker, token: int) -> None:
        if w.token == token and w.state is OVERTIME:
            s = w.sector
            self._preempt(w)
            self._move(w, OFF, w.home, t)
            self._dispatch(s, t)

    def _on_shift_start(self, t: float, k: int, day: int) -> None:
        self._shift_start(k, day, t)

    def _on_shift_end(self, t: float, k: int, _: None) -> None:
        self._shift_end(k, t)

    def _on_break_start(self, t: float, k: int, until: float) -> None:
        self._break_start(k, until, t)

    def _on_break_end(self, t: float, k: int, _: None) -> None:
        for w in self.shift_workers[k]:
            if w.state is BREAK:
                self._move(w, IDLE, w.sector, t)
        self._dispatch_all(t)

    def _on_failure(self, t: float, s: int, _: None) -> None:
        bd = self.scenario.sectors[s].breakdowns
        assert bd is not None  # failures are scheduled only where breakdowns are modelled
        if self.down[s] + self.outage[s] >= self._stations[s]:
            # every station is already out: this one cannot fail on top
            self._push(t + self._draw(bd.time_to_failure), FAIL, s)
            return
        self.down[s] += 1
        if self.event_log is not None:
            self.event_log.equipment.append((s, "failure", t))
        self._push(t + self._draw(bd.repair), REPAIR, s)

    def _on_repair(self, t: float, s: int, _: None) -> None:
        self.down[s] -= 1
        if self.event_log is not None:
            self.event_log.equipment.append((s, "repair", t))
        bd = self.scenario.sectors[s].breakdowns
        assert bd is not None
        self._push(t + self._draw(bd.time_to_failure), FAIL, s)
        self._dispatch(s, t)

    def _on_outage(self, t: float, s: int, stations: int) -> None:
        self.outage[s] += stations
        self._dispatch(s, t)

    #: the handler of each event kind, indexed by kind (:mod:`twin.events`)
    _BY_KIND: ClassVar[dict[int, _Handler]] = {
        SHIFT_END: _on_shift_end,
        SHIFT_START: _on_shift_start,
        BREAK_START: _on_break_start,
        BREAK_END: _on_break_end,
        COMPLETE: _on_complete,
        TRANSFER_DONE: _on_transfer_done,
        OT_LIMIT: _on_overtime_limit,
        DUE: _on_due,
        FAIL: _on_failure,
        REPAIR: _on_repair,
        OUTAGE: _on_outage,
    }
    _HANDLERS: ClassVar[tuple[_Handler, ...]] = tuple(map(_BY_KIND.__getitem__, range(N_KINDS)))

    # ------------------------------------------------------------------ work

    def _arrive(self, cls: int, t: float) -> None:
        c = self.scenario.item_classes[cls]
        s = self.sector_index[c.entry]
        item = Item(self._next_item_id, cls, t, c.due.due_minute(t), s)
        self._next_item_id += 1
        self.arrived += 1
        self._push(item.due, DUE, item)
        self._enter(item, s, t)

    def _enter(self, item: Item, s: int, t: float) -> None:
        item.sector = s
        item.sector_arrive = t
        self.sector_arrived[s] += 1
        self._tick_in[s] += 1
        if self.event_log is not None:
            self.event_log.items.append((item.id, item.cls, s, "arrive", t, -1))
        self.queues[s].push(item)
        self._dispatch(s, t)

    def _stations_free(self, s: int) -> bool:
        busy = self.count[s][BUSY] + self.count[s][OVERTIME]
        return busy < self._stations[s] - self.down[s] - self.outage[s]

    def _dispatch(self, s: int, t: float) -> None:
        """Give waiting work in sector ``s`` to its idle workers, as stations allow."""
        idle = self._idle[s]
        q = self.queues[s]
        while idle and q.n and self._stations_free(s):
            self._start(next(reversed(idle)), q.pop(self._priority[s]), t, BUSY)

    def _dispatch_all(self, t: float) -> None:
        for s in range(len(self.sector_names)):
            self._dispatch(s, t)

    def _efficiency(self, w: Worker, s: int) -> float:
        return self._flex_eff if w.flex else self._eff[w.home][s]

    def _start(self, w: Worker, item: Item, t: float, state: WorkerState) -> None:
        s = w.sector
        w.item = item
        self._move(w, state, s, t)
        if self.event_log is not None:
            self.event_log.items.append((item.id, item.cls, s, "start", t, w.unique_id))
        duration = self._service[s].next() / self._efficiency(w, s)
        self._push(t + duration, COMPLETE, w, w.token)

    def _complete(self, w: Worker, t: float) -> None:
        item = w.item
        assert item is not None
        w.item = None
        s = w.sector
        self.processed[s] += 1
        self._tick_out[s] += 1
        self.sector_time_sum[s] += t - item.sector_arrive
        if self.event_log is not None:
            self.event_log.items.append((item.id, item.cls, s, "finish", t, w.unique_id))
        nxt = self._next_sector(item.cls, s)
        if nxt < 0:
            item.state = ItemState.DONE
            self.exited += 1
            self.cycle_sum += t - item.arrive
            if not item.late:
                self.on_time += 1
        else:
            self._enter(item, nxt, t)
        if w.state is OVERTIME:
            used = w.overtime_used + (t - w.since)
            q = self.queues[s]
            limit = self.scenario.workforce.max_overtime_minutes
            if self._overtime_ok[s] and q.n and used < limit and self._stations_free(s):
                self._start(w, q.pop(self._priority[s]), t, OVERTIME)
            else:
                w.token += 1
                self._move(w, OFF, w.home, t)
        else:
            self._move(w, IDLE, s, t)
            self._dispatch(s, t)

    def _next_sector(self, cls: int, s: int) -> int:
        route = self._routes[cls][s]
        if route is None:
            return -1
        targets, cum = route
        if len(targets) == 1 and cum[0] >= 1.0:
            return targets[0]
        u = float(self._rng_routing.random())
        for target, c in zip(targets, cum, strict=True):
            if u < c:
                return target
        return -1

    def _preempt(self, w: Worker) -> None:
        """Hand the worker's item back to the head of its queue (work restarts later)."""
        w.token += 1
        if w.item is not None:
            self.queues[w.sector].push(w.item, front=True)
            w.item = None

    # ------------------------------------------------------------------ workers

    def _move(self, w: Worker, state: WorkerState, sector: int, t: float) -> None:
        """The one place a worker changes state or sector; keeps every account in step."""
        d = t - w.since
        old_s, old_state = w.sector, w.state
        self.acc_loc[old_s][old_state] += d
        if w.flex:
            self.acc_flex[old_s][old_state] += d
        else:
            self.acc_home[w.home][old_state] += d
            if old_state is OVERTIME:
                w.overtime_used += d
        self.count[old_s][old_state] -= 1
        self.count[sector][state] += 1
        if old_state is IDLE:
            del self._idle[old_s][w]
        if state is IDLE:
            self._idle[sector][w] = None
        w.state, w.sector, w.since = state, sector, t

    def _shift_start(self, k: int, day: int, t: float) -> None:
        workers = [w for w in self.shift_workers[k] if w.state is OFF]
        base = self.scenario.workforce.absence_rate
        extra = [0.0] * len(self.sector_names)
        for d in self.scenario.disruptions:
            if isinstance(d, Absenteeism) and d.day == day:
                for s, name in enumerate(self.sector_names):
                    if d.sector in (None, name):
                        extra[s] += d.rate
        u = self._rng_absence.random(len(workers)).tolist()
        for w, x in zip(workers, u, strict=True):
            w.overtime_used = 0.0
            absent = x < base + extra[w.home]
            self._move(w, ABSENT if absent else IDLE, w.home, t)
            if self.event_log is not None:
                self.event_log.attendance.append((day, k, w.home, w.unique_id, not absent))
        self._dispatch_all(t)

    def _shift_end(self, k: int, t: float) -> None:
        limit = self.scenario.workforce.max_overtime_minutes
        for w in self.shift_workers[k]:
            if w.state is OFF:
                continue
            if w.state is BUSY and self._overtime_ok[w.sector] and limit > 0:
                self._move(w, OVERTIME, w.sector, t)
                self._push(t + limit - w.overtime_used, OT_LIMIT, w, w.token)
                continue
            if w.state is not OVERTIME:
                self._preempt(w)
                self._move(w, OFF, w.home, t)
        self._dispatch_all(t)

    def _break_start(self, k: int, until: float, t: float) -> None:
        for w in self.shift_workers[k]:
            if w.state is IDLE or w.state is BUSY:
                self._preempt(w)
                self._move(w, BREAK, w.sector, t)
        self._push(until, BREAK_END, k)
        self._dispatch_all(t)

    def _send(self, w: Worker, sector: int, delay: float, t: float) -> None:
        """Start moving ``w`` to ``sector``; it becomes idle there after ``delay`` minutes."""
        self._preempt(w)
        if delay <= 0:
            self._move(w, IDLE, sector, t)
            return
        self._move(w, TRANSFER, sector, t)
        w.ready = t + delay
        self._push(w.ready, TRANSFER_DONE, w, w.token)

    def _set_lent(self, s: int, target: int, n: int) -> None:
        """Make ``n`` of sector ``s``'s on-shift workers be at ``target`` (sending or recalling)."""
        t = self.minute
        delay = self.scenario.workforce.transfer_minutes
        on_shift = (IDLE, BUSY, BREAK, TRANSFER)
        mine = [w for k in self.shift_workers for w in k if w.home == s and w.state in on_shift]
        there = [w for w in mine if w.sector == target]
        if len(there) < n:
            at_home = [w for w in mine if w.sector == s and w.state in (IDLE, BUSY)]
            at_home.sort(key=lambda w: w.state is BUSY)  # idle ones first
            for w in at_home[: n - len(there)]:
                self._send(w, target, delay, t)
                self.transfers[s] += 1
        elif len(there) > n:
            there = [w for w in there if w.state is not TRANSFER]
            there.sort(key=lambda w: w.state is not IDLE)
            for w in there[: len(there) - n]:
                self._send(w, s, delay, t)
                self.transfers[s] += 1
            self._dispatch(target, t)

    def _set_flex(self, s: int, n: int) -> None:
        """Call agency workers to, or release them from, sector ``s`` to reach ``n``."""
        t = self.minute
        mine = [w for w in self.flex_workers if w.home == s and w.state is not OFF]
        if len(mine) < n:
            pool = [w for w in self.flex_workers if w.state is OFF]
            for w in pool[: n - len(mine)]:
                w.home = s
                self._send(w, s, self.scenario.workforce.flex.lead_minutes, t)
        elif len(mine) > n:
            order = {TRANSFER: 0, IDLE: 1, BREAK: 2, BUSY: 3}
            mine.sort(key=lambda w: order.get(w.state, 4))
            for w in mine[: len(mine) - n]:
                self._preempt(w)
                self._move(w, OFF, self.pool_index, t)
                w.home = self.pool_index

    # ------------------------------------------------------------------ KPIs and records

    def _accounts(self) -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
        """Worker-minute accounts including the spells still under way."""
        loc = [row[:] for row in self.acc_loc]
        home = [row[:] for row in self.acc_home]
        flex = [row[:] for row in self.acc_flex]
        for w in self.agents:
            d = self.minute - w.since
            loc[w.sector][w.state] += d
            if w.flex:
                flex[w.sector][w.state] += d
            else:
                home[w.home][w.state] += d
        return loc, home, flex

    def kpis(self) -> Kpis:
        """The KPI record so far (see :mod:`twin.kpis` for the definitions)."""
        costs = self.scenario.costs
        loc, home, flex = self._accounts()
        sectors: dict[str, KpiRecord] = {}
        for s, name in enumerate(self.sector_names):
            busy = loc[s][BUSY] + loc[s][OVERTIME]
            present = busy + loc[s][IDLE]
            ot_h = loc[s][OVERTIME] / 60
            flex_h = sum(flex[s][k] for k in PAID_FLEX) / 60
            regular_h = sum(home[s][k] for k in PAID_REGULAR) / 60
            labor = (
                regular_h * costs.regular_rate_per_hour
                + ot_h * costs.overtime_rate_per_hour
                + flex_h * costs.flex_rate_per_hour
                + self.transfers[s] * costs.transfer_cost
            )
            penalty = self.misses[s] * costs.sla_miss_penalty
            sectors[name] = KpiRecord(
                overtime_hours=ot_h,
                sla_misses=self.misses[s],
                sla_attainment=max(0.0, 1 - self.misses[s] / max(1, self.processed[s])),
                items_completed=self.processed[s],
                backlog_end=self.queues[s].n + self.count[s][BUSY] + self.count[s][OVERTIME],
                mean_cycle_minutes=self.sector_time_sum[s] / self.processed[s]
                if self.processed[s]
                else 0.0,
                utilization=busy / present if present else 0.0,
                transfers=self.transfers[s],
                flex_hours=flex_h,
                labor_cost=labor,
                penalty_cost=penalty,
                total_cost=labor + penalty,
            )
        recs = list(sectors.values())
        misses = sum(r.sla_misses for r in recs)
        busy = sum(loc[s][BUSY] + loc[s][OVERTIME] for s in range(len(recs)))
        present = busy + sum(loc[s][IDLE] for s in range(len(recs)))
        labor = sum(r.labor_cost for r in recs)
        penalty = sum(r.penalty_cost for r in recs)
        total = KpiRecord(
            overtime_hours=sum(r.overtime_hours for r in recs),
            sla_misses=misses,
            sla_attainment=self.on_time / (self.on_time + misses) if self.on_time + misses else 1.0,
            items_completed=self.exited,
            backlog_end=sum(r.backlog_end for r in recs),
            mean_cycle_minutes=self.cycle_sum / self.exited if self.exited else 0.0,
            utilization=busy / present if present else 0.0,
            transfers=sum(r.transfers for r in recs),
            flex_hours=sum(r.flex_hours for r in recs),
            labor_cost=labor,
            penalty_cost=penalty,
            total_cost=labor + penalty,
        )
        return Kpis(minute=self.minute, total=total, sectors=sectors)

    def _reporters(self) -> dict[str, object]:
        """DataCollector reporters: each reads one field of the row built in ``_maybe_record``.

        ``partial`` of a module-level function rather than lambdas, so the model pickles.
        """
        reporters: dict[str, object] = {"minute": _minute}
        for key in self._row_keys():
            reporters[key] = partial(_row_value, key=key)
        return reporters

    def _row_keys(self) -> list[str]:
        keys = ["backlog", "items_completed", "sla_misses", "overtime_hours", "total_cost"]
        for n in self.sector_names:
            keys += [
                f"{n}.queue",
                f"{n}.in_service",
                f"{n}.staff_present",
                f"{n}.staff_lent_in",
                f"{n}.stations_down",
                f"{n}.sla_misses",
                f"{n}.overtime_hours",
            ]
        return keys

    def _maybe_record(self) -> None:
        if self.record_every_minutes is None or self.minute + 1e-9 < self._record_due:
            return
        k = self.kpis()
        row: dict[str, float] = {
            "backlog": k.total.backlog_end,
            "items_completed": k.total.items_completed,
            "sla_misses": k.total.sla_misses,
            "overtime_hours": k.total.overtime_hours,
            "total_cost": k.total.total_cost,
        }
        lent_in = [0] * len(self.sector_names)
        for w in self.agents:
            if w.sector != w.home and w.sector < self.pool_index and w.state in (IDLE, BUSY, BREAK):
                lent_in[w.sector] += 1
        for s, n in enumerate(self.sector_names):
            c = self.count[s]
            row[f"{n}.queue"] = self.queues[s].n
            row[f"{n}.in_service"] = c[BUSY] + c[OVERTIME]
            row[f"{n}.staff_present"] = c[IDLE] + c[BUSY] + c[OVERTIME] + c[BREAK]
            row[f"{n}.staff_lent_in"] = lent_in[s]
            row[f"{n}.stations_down"] = self.down[s] + self.outage[s]
            row[f"{n}.sla_misses"] = self.misses[s]
            row[f"{n}.overtime_hours"] = k.sectors[n].overtime_hours
        self._row = row
        self.datacollector.collect(self)
        self._record_due = self.minute + self.record_every_minutes

    # ------------------------------------------------------------------ checks

    def check_invariants(self) -> None:
        """Raise :class:`InvariantError` if a conservation law is broken.

        - items arrived = items exited + queued + in service
        - every worker is in exactly one state, and the state counts match the workers
        - worker-minutes add up: all accounts together = workers x minutes elapsed
        """
        queued = sum(q.n for q in self.queues)
        in_service = sum(1 for w in self.agents if w.item is not None)
        working = sum(
            self.count[s][BUSY] + self.count[s][OVERTIME] for s in range(len(self.queues))
        )
        if self.arrived + self._initial_items != self.exited + queued + in_service:
            raise InvariantError(
                f"items: arrived {self.arrived} + initial {self._initial_items} != exited "
                f"{self.exited} + queued {queued} + in service {in_service}"
            )
        if in_service != working:
            raise InvariantError(f"{in_service} items in service but {working} workers working")
        expected = [[0] * N_STATES for _ in self.count]
        for w in self.agents:
            expected[w.sector][w.state] += 1
            if (w.item is not None) != (w.state in (BUSY, OVERTIME)):
                raise InvariantError(f"worker {w.unique_id} in {w.state.name} holds item {w.item}")
        if expected != self.count:
            raise InvariantError(f"state counts {self.count} != recount {expected}")
        for s, q in enumerate(self.queues):
            if len(q.items()) != q.n:
                raise InvariantError(f"sector {s}: queue length {q.n} != {len(q.items())} items")
        loc, _, _ = self._accounts()
        total = sum(map(sum, loc))
        elapsed = (self.minute - self._created_minute) * len(self.agents)
        if abs(total - elapsed) > 1e-6 * max(1.0, elapsed):
            raise InvariantError(f"worker-minutes {total} != workers x elapsed {elapsed}")

    # ------------------------------------------------------------------ live state

    def snapshot(self) -> OperationSnapshot:
        """The live state now, in the schema live systems send (see :func:`twin.live.snapshot`)."""
        return live.snapshot(self)

    @classmethod
    def from_snapshot(
        cls,
        scenario: Scenario,
        snapshot: OperationSnapshot,
        rng: np.random.Generator | int | None = None,
        *,
        record_every_minutes: int | None = 15,
        checked: bool = False,
    ) -> OperationModel:
        """A twin that starts from a live state (see :func:`twin.live.from_snapshot`).

        Raises:
            SnapshotError: (unless ``checked``) the snapshot does not fit the scenario.
        """
        return live.from_snapshot(
            cls,
            scenario,
            snapshot,
            rng,
            record_every_minutes=record_every_minutes,
            checked=checked,
        )
