"""The operation's state as the floor's events leave it, and its snapshot.

:class:`FloorState` is what a live twin knows: each worker's state, sector and
overtime, each item's sector and who works on it, stations out, the action in force
per sector and the smoothed flow rates. :meth:`FloorState.apply` applies one event
(already checked against the scenario by :mod:`twin.live_twin`) through one small
handler per kind; a handler refuses an event the state contradicts (a finish
without a start, a break for a worker who is not in) by raising :class:`Refused`
before it changes anything.

The snapshot reproduces :func:`twin.live.snapshot` of a twin that made the same
events happen, float for float: worker minutes are accumulated exactly as
:func:`twin.staffing.move` does (overtime adds ``t - since`` at every change of a
worker in overtime), and the rates are the twin's per-tick exponential smoothing
(:meth:`twin.model.OperationModel.step`) over event times binned into ticks.

What was observed, beside the state (:class:`History`):

- **external arrivals** per item class: an ``item_arrive`` into the class's entry
  sector (routing is a DAG, so no handoff ever comes back there; the twin's
  ``_arrive`` enters items there and only there);
- **SLA misses** per sector, counted as the twin counts them
  (:meth:`twin.model.OperationModel._on_due`): once per item, at its due minute, if it
  is still in the operation then, in the sector where it then is. An item's due minute
  is kept from its external arrival until it passes; it passes when an event at or
  after it is applied (at equal minutes the twin's due event runs before the
  completion scheduled after it), or, tentatively, when a view at a later minute is
  asked for (:meth:`FloorState.observed`).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twin.actions import SectorAction
from twin.floor_events import (
    ActionInForce,
    Equipment,
    FlexRequest,
    ItemArrive,
    ItemFinish,
    ItemStart,
    Outage,
    TransferStart,
)
from twin.live import worker_groups
from twin.scenario import Scenario
from twin.snapshot import (
    N_BUCKETS,
    RATE_TIME_CONSTANT_MINUTES,
    OperationSnapshot,
    SectorState,
    due_bucket,
)
from twin.workers import WorkerState

OFF, ABSENT, IDLE, BUSY, BREAK, TRANSFER, OVERTIME = WorkerState


class Refused(ValueError):
    """The state contradicts an event; the message says why (the rejection's reason)."""


@dataclass(slots=True)
class WorkerRec:
    """One worker as the events describe them (fields as in :class:`twin.workers.Worker`)."""

    home: int  # the pool index for flex workers not called to a sector
    shift: int  # -1 for flex workers
    flex: bool
    sector: int
    state: WorkerState = OFF
    since: float = 0.0
    ready: float = 0.0
    overtime_used: float = 0.0
    item: str | None = None


@dataclass(slots=True)
class ItemRec:
    """One item in the operation: its class, due minute, sector and worker (if in service)."""

    cls: int
    due: float
    sector: int
    worker: str | None = None


@dataclass(slots=True)
class Resolved:
    """An event's minutes and ids as indices, checked against the scenario and roster."""

    minute: float
    sector: int = -1
    cls: int = -1
    due: float = 0.0
    worker: str = ""


class History:
    """Minutes of what happened, one sorted list per key (a sector, an item class).

    A copy (:meth:`overlay`) shares its parent's lists and appends to lists of its
    own, so a view ahead of the buffered events never copies a day of history.
    """

    def __init__(self, n: int, parent: History | None = None) -> None:
        self.minutes: list[list[float]] = [[] for _ in range(n)]
        self.parent = parent

    def overlay(self) -> History:
        """An empty history on top of this one (whose lists must not change meanwhile)."""
        return History(len(self.minutes), self)

    def add(self, key: int, minute: float) -> None:
        """Record one at ``minute`` (not before the last recorded for ``key``)."""
        self.minutes[key].append(minute)

    def before(self, minute: float) -> list[list[float]]:
        """Per key, the recorded minutes strictly before ``minute``, in order."""
        base = self.parent.before(minute) if self.parent is not None else None
        out = []
        for k, mins in enumerate(self.minutes):
            own = mins[: bisect_left(mins, minute)]
            out.append(base[k] + own if base is not None else own)
        return out


class FloorState:
    """The operation's state after the events applied so far (see the module docstring)."""

    def __init__(self, scenario: Scenario, roster: list[tuple[str, int, int, bool]]) -> None:
        self.scenario = scenario
        n = len(scenario.sector_names)
        self.pool = n
        self.workers: dict[str, WorkerRec] = {
            wid: WorkerRec(home, shift, flex, sector=home) for wid, home, shift, flex in roster
        }
        self.items: dict[str, ItemRec] = {}
        self.down = [0] * n
        self.outage = [0] * n
        self.actions = {
            name: SectorAction(overtime=p.overtime, priority=p.priority, flex_count=p.flex_workers)
            for name in scenario.sector_names
            for p in (scenario.sector_plan(name),)
        }
        self.arrival_rate = [0.0] * n
        self.completion_rate = [0.0] * n
        self.tick_in = [0] * n
        self.tick_out = [0] * n
        self.tick_end = float(scenario.tick_minutes)
        self.last_minute = -math.inf  # minute of the last event applied
        self.entry = [scenario.sector_names.index(c.entry) for c in scenario.item_classes]
        #: ``(due minute, item id)`` of items arrived whose due minute has not passed
        self.dues: list[tuple[float, str]] = []
        self.misses = History(n)  # per sector: the minutes of SLA misses
        self.arrivals = History(len(scenario.item_classes))  # per class: external arrivals

    def copy(self) -> FloorState:
        """An independent copy (a snapshot ahead of the buffered events applies them to it)."""
        new = object.__new__(FloorState)
        new.__dict__.update(self.__dict__)
        new.workers = {k: replace(w) for k, w in self.workers.items()}
        new.items = {k: replace(it) for k, it in self.items.items()}
        for name in ("down", "outage", "arrival_rate", "completion_rate", "tick_in", "tick_out"):
            setattr(new, name, list(getattr(self, name)))
        new.actions = dict(self.actions)
        new.dues = list(self.dues)
        new.misses = self.misses.overlay()
        new.arrivals = self.arrivals.overlay()
        return new

    # ------------------------------------------------------------------ clock and rates

    def close_ticks(self, minute: float) -> None:
        """Close every tick that ends at or before ``minute`` (as the twin's steps do)."""
        if minute >= self.tick_end:
            self.arrival_rate, self.completion_rate, self.tick_end = self.rates_at(minute)
            self.tick_in = [0] * self.pool
            self.tick_out = [0] * self.pool

    def rates_at(self, minute: float) -> tuple[list[float], list[float], float]:
        """Arrival and completion rates once every tick ending by ``minute`` is closed, and
        the end of the tick then open; the state is left as it is."""
        tick = self.scenario.tick_minutes
        decay = math.exp(-tick / RATE_TIME_CONSTANT_MINUTES)
        gain = (1.0 - decay) * 60.0 / tick
        arr, done, end = list(self.arrival_rate), list(self.completion_rate), self.tick_end
        n_in, n_out = self.tick_in, self.tick_out
        while minute >= end:
            for s in range(self.pool):
                arr[s] = arr[s] * decay + n_in[s] * gain
                done[s] = done[s] * decay + n_out[s] * gain
            n_in = n_out = [0] * self.pool
            end = end + tick
        return arr, done, end

    def apply(self, kind: str, event: object, r: Resolved) -> None:
        """Apply one event at ``r.minute`` (not before the last one applied).

        Raises:
            Refused: the state contradicts the event; nothing changed.
        """
        self.close_ticks(r.minute)
        self.pass_dues(r.minute)
        _HANDLERS[kind](self, event, r)
        self.last_minute = r.minute

    # ------------------------------------------------------------------ observed

    def pass_dues(self, minute: float) -> None:
        """Count the SLA misses of every due minute at or before ``minute`` (for good)."""
        dues = self.dues
        while dues and dues[0][0] <= minute:
            due, item_id = heapq.heappop(dues)
            it = self.items.get(item_id)
            if it is not None:
                self.misses.add(it.sector, due)

    def observed(self, now: float) -> tuple[list[list[float]], list[list[float]]]:
        """Minutes of SLA misses per sector and of external arrivals per class, before
        ``now``; due minutes not yet passed for good count if the item is still in then
        (the state is left as it is)."""
        misses = self.misses.before(now)
        items = self.items
        late = sorted((d, items[i].sector) for d, i in self.dues if d < now and i in items)
        for due, s in late:
            misses[s].append(due)
        return misses, self.arrivals.before(now)

    # ------------------------------------------------------------------ worker moves

    def move(self, w: WorkerRec, state: WorkerState, sector: int, t: float) -> None:
        """Mirror of :func:`twin.staffing.move` for the fields a snapshot reports."""
        if not w.flex and w.state is OVERTIME:
            w.overtime_used += t - w.since
        w.state, w.sector, w.since = state, sector, t

    def preempt(self, w: WorkerRec) -> None:
        """The worker's item goes back to its queue (as :func:`twin.staffing.preempt`)."""
        if w.item is not None:
            self.items[w.item].worker = None
            w.item = None

    def worker(self, r: Resolved, states: tuple[WorkerState, ...], flex: bool | None) -> WorkerRec:
        """The event's worker, refused unless in one of ``states`` (and flex as asked)."""
        w = self.workers[r.worker]
        if flex is not None and w.flex != flex:
            what = "an agency (flex) worker" if w.flex else "a rostered worker, not agency staff"
            raise Refused(f"worker {r.worker!r} is {what}")
        if w.state not in states:
            wanted = " or ".join(s.name.lower() for s in states)
            raise Refused(f"worker {r.worker!r} is {w.state.name.lower()}, not {wanted}")
        return w

    # ------------------------------------------------------------------ snapshot

    def snapshot(self, now: float) -> OperationSnapshot:
        """The state at ``now`` in the schema the twin reports (:func:`twin.live.snapshot`)."""
        sc = self.scenario
        classes, names = sc.class_names, sc.sector_names
        queue = [{c: [0] * N_BUCKETS for c in classes} for _ in names]
        serving = [{c: [0] * N_BUCKETS for c in classes} for _ in names]
        for it in self.items.values():
            table = queue if it.worker is None else serving
            table[it.sector][classes[it.cls]][due_bucket(it.due - now)] += 1
        arrival_rate, completion_rate, _ = self.rates_at(now)
        return OperationSnapshot(
            scenario=sc.name,
            scenario_digest=sc.digest,
            minute=now,
            sectors=[
                SectorState(
                    name=name,
                    queue=queue[s],
                    in_service=serving[s],
                    stations_down=self.down[s] + self.outage[s],
                    outage_stations=self.outage[s],
                    arrival_rate_per_hour=arrival_rate[s],
                    completion_rate_per_hour=completion_rate[s],
                    action=self.actions[name],
                )
                for s, name in enumerate(names)
            ],
            workers=worker_groups(sc, self.workers.values(), now, self.pool),
        )


# ---------------------------------------------------------------------- handlers, one a kind


def _item_arrive(st: FloorState, ev: ItemArrive, r: Resolved) -> None:
    if ev.item_id in st.items:
        where = st.scenario.sector_names[st.items[ev.item_id].sector]
        raise Refused(f"item {ev.item_id!r} is already in the operation (in {where})")
    st.items[ev.item_id] = ItemRec(r.cls, r.due, r.sector)
    st.tick_in[r.sector] += 1
    if r.sector == st.entry[r.cls]:  # from outside: routing never comes back to the entry
        st.arrivals.add(r.cls, r.minute)
        heapq.heappush(st.dues, (r.due, ev.item_id))


def _held_item(st: FloorState, item_id: str, r: Resolved) -> ItemRec:
    it = st.items.get(item_id)
    if it is None:
        raise Refused(f"item {item_id!r} is not in the operation (no item_arrive)")
    if it.sector != r.sector:
        where = st.scenario.sector_names[it.sector]
        raise Refused(f"item {item_id!r} is in {where}, not {st.scenario.sector_names[r.sector]}")
    return it


def _item_start(st: FloorState, ev: ItemStart, r: Resolved) -> None:
    it = _held_item(st, ev.item_id, r)
    if it.worker is not None:
        raise Refused(f"item {ev.item_id!r} is already being worked on by {it.worker!r}")
    w = st.worker(r, (IDLE, OVERTIME), None)
    if w.sector != r.sector or w.item is not None:
        raise Refused(f"worker {r.worker!r} is not free in {st.scenario.sector_names[r.sector]}")
    it.worker, w.item = r.worker, ev.item_id
    st.move(w, OVERTIME if w.state is OVERTIME else BUSY, r.sector, r.minute)


def _item_finish(st: FloorState, ev: ItemFinish, r: Resolved) -> None:
    it = _held_item(st, ev.item_id, r)
    if it.worker != r.worker:
        raise Refused(
            f"finish without a start: item {ev.item_id!r} is not being worked on "
            f"by worker {r.worker!r}"
        )
    w = st.workers[r.worker]
    del st.items[ev.item_id]
    w.item = None
    st.tick_out[r.sector] += 1
    if w.state is BUSY:
        st.move(w, IDLE, r.sector, r.minute)


def _shift_start(state: WorkerState) -> Callable[[FloorState, object, Resolved], None]:
    def handle(st: FloorState, ev: object, r: Resolved) -> None:
        w = st.worker(r, (OFF,), False)
        w.overtime_used = 0.0
        st.move(w, state, r.sector if r.sector >= 0 else w.home, r.minute)

    return handle


def _clock_out(st: FloorState, ev: object, r: Resolved) -> None:
    w = st.worker(r, (ABSENT, IDLE, BUSY, BREAK, TRANSFER, OVERTIME), False)
    st.preempt(w)
    st.move(w, OFF, w.home, r.minute)


def _break_start(st: FloorState, ev: object, r: Resolved) -> None:
    w = st.worker(r, (IDLE, BUSY), False)
    st.preempt(w)
    st.move(w, BREAK, w.sector, r.minute)


def _break_end(st: FloorState, ev: object, r: Resolved) -> None:
    w = st.worker(r, (BREAK,), False)
    st.move(w, IDLE, w.sector, r.minute)


def _transfer_start(st: FloorState, ev: TransferStart, r: Resolved) -> None:
    w = st.worker(r, (IDLE, BUSY, BREAK), False)
    st.preempt(w)
    st.move(w, TRANSFER, r.sector, r.minute)
    w.ready = r.minute + st.scenario.workforce.transfer_minutes


def _arrive_from(flex: bool) -> Callable[[FloorState, object, Resolved], None]:
    def handle(st: FloorState, ev: object, r: Resolved) -> None:
        w = st.worker(r, (TRANSFER,), flex)
        st.move(w, IDLE, w.sector, r.minute)

    return handle


def _overtime_start(st: FloorState, ev: object, r: Resolved) -> None:
    w = st.worker(r, (BUSY,), False)
    st.move(w, OVERTIME, w.sector, r.minute)


def _flex_request(st: FloorState, ev: FlexRequest, r: Resolved) -> None:
    w = st.worker(r, (OFF,), True)
    w.home = r.sector
    st.move(w, TRANSFER, r.sector, r.minute)
    w.ready = r.minute + st.scenario.workforce.flex.lead_minutes


def _flex_release(st: FloorState, ev: object, r: Resolved) -> None:
    w = st.worker(r, (ABSENT, IDLE, BUSY, BREAK, TRANSFER), True)
    st.preempt(w)
    st.move(w, OFF, st.pool, r.minute)
    w.home = st.pool


def _stations(st: FloorState, s: int) -> int:
    n = st.scenario.sectors[s].stations
    if n is None:
        raise Refused(f"sector {st.scenario.sector_names[s]!r} has no stations")
    return n


def _failure(st: FloorState, ev: Equipment, r: Resolved) -> None:
    s = r.sector
    if st.down[s] + st.outage[s] >= _stations(st, s):
        raise Refused(f"every station of {ev.sector!r} is already out")
    st.down[s] += 1


def _repair(st: FloorState, ev: Equipment, r: Resolved) -> None:
    if st.down[r.sector] == 0:
        raise Refused(f"no station of {ev.sector!r} is down to repair")
    st.down[r.sector] -= 1


def _outage_start(st: FloorState, ev: Outage, r: Resolved) -> None:
    _stations(st, r.sector)
    st.outage[r.sector] += ev.stations


def _outage_end(st: FloorState, ev: Outage, r: Resolved) -> None:
    if ev.stations > st.outage[r.sector]:
        raise Refused(
            f"{ev.stations} stations of {ev.sector!r} back from an outage, "
            f"but {st.outage[r.sector]} are out"
        )
    st.outage[r.sector] -= ev.stations


def _action(st: FloorState, ev: ActionInForce, r: Resolved) -> None:
    st.actions[ev.sector] = ev.action


#: ``handler(state, event, resolved)``; each takes the event model of its own kind
_Handler = Callable[[FloorState, Any, Resolved], None]
#: the handler of each kind (:data:`twin.floor_events.KINDS`)
_HANDLERS: dict[str, _Handler] = {
    "item_arrive": _item_arrive,
    "item_start": _item_start,
    "item_finish": _item_finish,
    "clock_in": _shift_start(IDLE),
    "absence": _shift_start(ABSENT),
    "clock_out": _clock_out,
    "break_start": _break_start,
    "break_end": _break_end,
    "transfer_start": _transfer_start,
    "transfer_end": _arrive_from(False),
    "overtime_start": _overtime_start,
    "flex_request": _flex_request,
    "flex_arrive": _arrive_from(True),
    "flex_release": _flex_release,
    "equipment_failure": _failure,
    "equipment_repair": _repair,
    "outage_start": _outage_start,
    "outage_end": _outage_end,
    "action": _action,
}
