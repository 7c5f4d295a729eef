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
from collections.abc import Callable, Mapping, Sequence
from itertools import count
from typing import Any, ClassVar

import mesa
import numpy as np
import pandas as pd

from twin import _core_select, accounting, live, schedule, staffing
from twin.accounting import InvariantError
from twin.actions import SectorAction
from twin.collector import collector_paused
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
from twin.kpis import Kpis
from twin.live import SnapshotError, check_snapshot
from twin.queues import Item, ItemState, SectorQueue, routing_table
from twin.reality import draw_reality
from twin.scenario import Scenario
from twin.snapshot import RATE_TIME_CONSTANT_MINUTES, OperationSnapshot
from twin.staffing import move
from twin.workers import N_STATES, Worker, WorkerState

#: ``SnapshotError`` and ``check_snapshot`` live in :mod:`twin.live`, ``InvariantError`` in
#: :mod:`twin.accounting`; importable from here too
__all__ = ["InvariantError", "OperationModel", "SnapshotError", "check_snapshot"]

OFF, ABSENT, IDLE, BUSY, BREAK, TRANSFER, OVERTIME = WorkerState

#: station count of a sector without a station limit (not a recording period)
UNLIMITED = 1 << 30

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
        #: built from a snapshot (its future is a sample, not the reality of a run)
        self.rebuilt = not _fresh

        # named random streams, split once from the master generator
        streams = self.rng.spawn(4 + n_sectors)
        self._rng_arrivals, self._rng_absence, self._rng_routing, self._rng_equipment = streams[:4]
        self._service = [
            DurationStream(sec.service, streams[4 + i]) for i, sec in enumerate(scenario.sectors)
        ]
        # reality beyond the plan: its own stream, split after the others so a
        # scenario without uncertainty draws exactly what it did before it existed
        (rng_reality,) = self.rng.spawn(1)
        self.reality = draw_reality(scenario, rng_reality, self.minute)
        #: what happens: the plan's scheduled disruptions and the realized unplanned ones
        self.disruptions = (*scenario.disruptions, *self.reality.disruptions)
        self._arrivals = ArrivalStream(scenario, self._rng_arrivals, self.minute, self.reality)

        # static tables
        wf = scenario.workforce
        self._eff = [
            [scenario.efficiency(h, s) for s in self.sector_names] for h in self.sector_names
        ]
        self._flex_eff = wf.flex.efficiency
        self._routes = routing_table(scenario, self.sector_index)
        self._stations = [
            s.stations if s.stations is not None else UNLIMITED for s in scenario.sectors
        ]

        # dynamic state
        #: the compiled core (:mod:`twin._core_select`) or the reference Python loop
        self._compiled = _core_select.USE_COMPILED
        #: (time, priority, sequence, kind, a, b): see :mod:`twin.events` and the handlers
        #: (the compiled core's heap orders the same keys in C)
        self._heap: Any = _core_select.EventHeap() if self._compiled else []  # type: ignore[misc]
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
            schedule.schedule_calendar(self, self.minute, fresh=True)
            schedule.schedule_failures(self, self.minute, down=[0] * n_sectors)

        self.datacollector = mesa.DataCollector(model_reporters=accounting.reporters(self))
        self._record_due = self.minute
        if _fresh:
            accounting.maybe_record(self)

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

    def _push(self, time: float, kind: int, a: object = None, b: object = None) -> None:
        if self._compiled:
            self._heap.push(time, PRIORITY.get(kind, OTHER_PRIORITY), kind, a, b)
            return
        heapq.heappush(
            self._heap, (time, PRIORITY.get(kind, OTHER_PRIORITY), next(self._seq), kind, a, b)
        )

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
                staffing.set_lent(self, s, old, 0)
            if target is not None:
                staffing.set_lent(self, s, target, action.lend_count)
            staffing.set_flex(self, s, action.flex_count)
            self.actions[name] = action
            if self.event_log is not None:
                self.event_log.floor.append(("action", self.minute, s, action))
            self._priority[s] = action.priority
            self._overtime_ok[s] = action.overtime
        for s in range(len(self.sector_names)):
            self._dispatch(s, self.minute)

    def step(self) -> None:
        """Advance one tick."""
        if self._compiled:
            return _core_select.COMPILED.step(self)  # type: ignore[union-attr]
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
        accounting.maybe_record(self)

    def run_minutes(self, minutes: float) -> None:
        """Step until ``minutes`` more have passed (or the horizon is reached)."""
        stop = min(self.minute + minutes, self.scenario.horizon_minutes)
        with collector_paused():  # the loop makes no cycles (twin.collector)
            if self._compiled:
                return _core_select.COMPILED.run_until(self, stop)  # type: ignore[union-attr]
            while self.minute < stop - 1e-9:
                self.step()

    def timeseries(self) -> pd.DataFrame:
        """The recorded time series (one row per ``record_every_minutes``)."""
        return self.datacollector.get_model_vars_dataframe().reset_index(drop=True)

    def kpis(self) -> Kpis:
        """The KPI record so far (see :mod:`twin.kpis`; computed by :mod:`twin.accounting`)."""
        return accounting.kpis(self)

    def check_invariants(self) -> None:
        """Raise :class:`InvariantError` if a conservation law is broken.

        See :func:`twin.accounting.check_invariants`.
        """
        accounting.check_invariants(self)

    # ------------------------------------------------------------------ the event loop

    def _advance(self, end: float) -> None:
        """Process every arrival and scheduled event before ``end``, in time order.

        Arrivals come from the arrival stream; the other events from the heap, each
        handled by the handler of its kind (``_HANDLERS``). An arrival at the same time
        as a scheduled event is processed after it. (The reference; the compiled core's
        ``advance`` does the same, see :mod:`twin._core_select`.)
        """
        if self._compiled:
            return _core_select.COMPILED.advance(self, end)  # type: ignore[union-attr]
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
    # payload fields: the work events here, the worker events in :mod:`twin.staffing`,
    # the equipment events in :mod:`twin.schedule`. Worker events carry the worker's
    # token when scheduled: a worker whose token has moved on since ignores them.

    def _on_complete(self, t: float, w: Worker, token: int) -> None:
        if w.token == token:
            self._complete(w, t)

    def _on_due(self, t: float, item: Item, _: None) -> None:
        if item.state != ItemState.DONE and not item.late:
            item.late = True
            self.misses[item.sector] += 1

    #: the handler of each event kind, indexed by kind (:mod:`twin.events`)
    _BY_KIND: ClassVar[dict[int, _Handler]] = {
        SHIFT_END: staffing.on_shift_end,
        SHIFT_START: staffing.on_shift_start,
        BREAK_START: staffing.on_break_start,
        BREAK_END: staffing.on_break_end,
        COMPLETE: _on_complete,
        TRANSFER_DONE: staffing.on_transfer_done,
        OT_LIMIT: staffing.on_overtime_limit,
        DUE: _on_due,
        FAIL: schedule.on_failure,
        REPAIR: schedule.on_repair,
        OUTAGE: schedule.on_outage,
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
            self.event_log.floor.append(("item_arrive", t, item.id, item.cls, s, item.due))
        self.queues[s].push(item)
        self._dispatch(s, t)

    def _stations_free(self, s: int) -> bool:
        busy = self.count[s][BUSY] + self.count[s][OVERTIME]
        return busy < self._stations[s] - self.down[s] - self.outage[s]

    def _dispatch(self, s: int, t: float) -> None:
        """Give waiting work in sector ``s`` to its idle workers, as stations allow."""
        if self._compiled:
            return _core_select.COMPILED.dispatch(self, s, t)  # type: ignore[union-attr]
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
        move(self, w, state, s, t)
        if self.event_log is not None:
            self.event_log.items.append((item.id, item.cls, s, "start", t, w.unique_id))
            self.event_log.floor.append(("item_start", t, item.id, s, w.unique_id))
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
            self.event_log.floor.append(("item_finish", t, item.id, s, w.unique_id))
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
                move(self, w, OFF, w.home, t)
                if self.event_log is not None:
                    self.event_log.floor.append(("clock_out", t, w.unique_id))
        else:
            move(self, w, IDLE, s, t)
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
        demand_factors: Sequence[float] | None = None,
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
            demand_factors=demand_factors,
        )
