"""The compiled event core: the twin's hot loop, built by Cython from this file.

:class:`~twin.model.OperationModel`'s own methods (``_advance``, ``_arrive``, ``_enter``,
``_dispatch``, ``_start``, ``_complete``, ``_next_sector``, ``step``) are the **reference
implementation**. This module does exactly what they do, step for step and draw for draw,
on the same state (the model's heap, queues, idle sets, counts and accounts, with the
queue, duration-stream and worker-move operations written out inline), so that Cython
can compile it to C with the types ``_core.pxd`` gives its locals. Compiled, it is a few
times faster than the reference; run as plain Python it is merely equivalent.
``tests/test_core_diff.py`` checks that it gives the same event trace and KPIs as the
reference for the same seed.

Only the frequent events run here: arrivals, completions, due times, dispatching and
the tick loop. Shift, break, transfer, overtime and equipment events go to the
reference handlers (:mod:`twin.staffing`, :mod:`twin.schedule`), which share the state.
Which core a model uses is chosen in :mod:`twin.core`.
"""

from __future__ import annotations

import math
from heapq import heappop, heappush
from typing import Any

from twin import accounting
from twin.events import COMPLETE, DUE, OTHER_PRIORITY
from twin.queues import Item, ItemState
from twin.snapshot import RATE_TIME_CONSTANT_MINUTES
from twin.workers import WorkerState

INF = math.inf
QUEUED = ItemState.QUEUED
IN_SERVICE = ItemState.IN_SERVICE
DONE = ItemState.DONE
IDLE = WorkerState.IDLE
BUSY = WorkerState.BUSY
OVERTIME = WorkerState.OVERTIME
OFF = WorkerState.OFF_SHIFT
_EPS = 1e-9  # minutes: clock comparisons, as in the model


class State:
    """The model's per-event state, read once per tick instead of once per use.

    The same lists as the model's (never copies: the reference handlers that run in
    between change them in place), so compiled, every use is a C struct member instead
    of an attribute lookup on the model. The model's counters that are plain numbers
    (items arrived, exited, ...) are not here: they are written back to the model.
    """

    def __init__(self, m: Any) -> None:
        self.m = m
        self.heap = m._heap
        self.count = m.count
        self.acc_loc = m.acc_loc
        self.acc_flex = m.acc_flex
        self.acc_home = m.acc_home
        self.idle = m._idle
        self.queues = m.queues
        self.priority = m._priority
        self.stations = m._stations
        self.down = m.down
        self.outage = m.outage
        self.service = m._service
        self.eff = m._eff
        self.flex_eff = m._flex_eff
        self.processed = m.processed
        self.sector_time_sum = m.sector_time_sum
        self.misses = m.misses
        self.sector_arrived = m.sector_arrived
        self.tick_in = m._tick_in
        self.tick_out = m._tick_out
        self.overtime_ok = m._overtime_ok
        self.routes = m._routes
        self.rng_routing = m._rng_routing
        self.item_classes = m.scenario.item_classes
        self.sector_index = m.sector_index
        self.max_overtime = m.scenario.workforce.max_overtime_minutes
        self.log = m.event_log


def run_until(m: Any, stop: float) -> None:
    """Step ``m`` (counting Mesa's steps as its wrapped ``step`` does) until ``stop``."""
    while m.minute < stop - _EPS:
        m.steps += 1
        step(m)


def step(m: Any) -> None:
    """:meth:`OperationModel.step <twin.model.OperationModel.step>`: advance one tick."""
    tick = m.scenario.tick_minutes
    end = m.minute + tick
    if m._needs_dispatch:
        m._needs_dispatch = False
        st = State(m)
        for s in range(len(m.sector_names)):
            dispatch_st(st, s, m.minute)
    advance(m, end)
    decay = math.exp(-tick / RATE_TIME_CONSTANT_MINUTES)
    gain = (1.0 - decay) * 60.0 / tick
    arrival_rate = m.arrival_rate
    completion_rate = m.completion_rate
    tick_in = m._tick_in
    tick_out = m._tick_out
    for s in range(len(arrival_rate)):
        arrival_rate[s] = arrival_rate[s] * decay + tick_in[s] * gain
        completion_rate[s] = completion_rate[s] * decay + tick_out[s] * gain
        tick_in[s] = 0
        tick_out[s] = 0
    m.minute = end
    if m.record_every_minutes is not None and m.minute + 1e-9 >= m._record_due:
        accounting.maybe_record(m)


def advance(m: Any, end: float) -> None:
    """:meth:`OperationModel._advance`: every arrival and event before ``end``, in order."""
    st = State(m)
    heap = st.heap
    arr = m._arrivals
    handlers = m._HANDLERS
    while True:
        times = arr.times
        i = arr.i
        if i >= len(times):
            if arr.hour_end < end:
                arr.generate_next_hour()
                continue
            t_arr = INF
        else:
            t_arr = times[i]
        t_evt = heap.peek_time()
        if t_arr < t_evt:
            if t_arr >= end:
                return
            arrive(st, arr.classes[i], t_arr)
            arr.i = i + 1
            continue
        if t_evt >= end:
            return
        t = heap.pop()
        kind = heap.kind
        a = heap.pa
        b = heap.pb
        if kind == COMPLETE:
            if a.token == b:
                complete(st, a, t)
        elif kind == DUE:
            due(st, a)
        else:
            handlers[kind](m, t, a, b)
            st = State(m)  # a reference handler may have changed anything


def due(st: Any, item: Any) -> None:
    """:meth:`OperationModel._on_due`: the item's due time passed before it left."""
    if item.state != DONE and not item.late:
        item.late = True
        st.misses[item.sector] += 1


def arrive(st: Any, cls: int, t: float) -> None:
    m = st.m
    c = st.item_classes[cls]
    s = st.sector_index[c.entry]
    item = Item(m._next_item_id, cls, t, c.due.due_minute(t), s)
    m._next_item_id += 1
    m.arrived += 1
    heap = st.heap
    heap.push(item.due, OTHER_PRIORITY, DUE, item, None)
    enter(st, item, s, t)


def enter(st: Any, item: Any, s: int, t: float) -> None:
    item.sector = s
    item.sector_arrive = t
    st.sector_arrived[s] += 1
    st.tick_in[s] += 1
    log = st.log
    if log is not None:
        log.items.append((item.id, item.cls, s, "arrive", t, -1))
        log.floor.append(("item_arrive", t, item.id, item.cls, s, item.due))
    queue_push(st.queues[s], item)
    dispatch_st(st, s, t)


def queue_push(q: Any, item: Any) -> None:
    """:meth:`SectorQueue.push <twin.queues.SectorQueue.push>` at the back."""
    token = item.qtoken + 1
    item.qtoken = token
    item.state = QUEUED
    q._fifo.append((token, item))
    seq = q._seq + 1
    q._seq = seq
    heappush(q._edd, (item.due, seq, token, item))
    q.n += 1


def queue_pop(q: Any, priority: str) -> Any:
    """:meth:`SectorQueue.pop <twin.queues.SectorQueue.pop>`; the queue is not empty."""
    if priority == "edd":
        edd = q._edd
        while True:
            entry = heappop(edd)
            item = entry[3]
            if item.state == QUEUED and item.qtoken == entry[2]:
                break
    else:
        fifo = q._fifo
        while True:
            token, item = fifo.popleft()
            if item.state == QUEUED and item.qtoken == token:
                break
    item.state = IN_SERVICE
    q.n -= 1
    return item


def stations_free(st: Any, s: int) -> bool:
    c = st.count[s]
    busy = c[3] + c[6]  # BUSY, OVERTIME
    return busy < st.stations[s] - st.down[s] - st.outage[s]


def dispatch(m: Any, s: int, t: float) -> None:
    """:meth:`OperationModel._dispatch`: idle workers of ``s`` take its waiting work."""
    dispatch_st(State(m), s, t)


def dispatch_st(st: Any, s: int, t: float) -> None:
    """:func:`dispatch` inside the loop, on the tick's :class:`State`."""
    idle = st.idle[s]
    q = st.queues[s]
    while idle and q.n and stations_free(st, s):
        start(st, next(reversed(idle)), queue_pop(q, st.priority[s]), t, BUSY)


def start(st: Any, w: Any, item: Any, t: float, state: Any) -> None:
    s = w.sector
    w.item = item
    move(st, w, state, s, t)
    log = st.log
    if log is not None:
        log.items.append((item.id, item.cls, s, "start", t, w.unique_id))
        log.floor.append(("item_start", t, item.id, s, w.unique_id))
    ds = st.service[s]
    i = ds._i
    buf = ds._buf
    if i >= len(buf):
        buf = ds._buf = ds._dist.sample(ds._rng, ds.block).tolist()
        i = 0
    x = buf[i]
    ds._i = i + 1
    eff = st.flex_eff if w.flex else st.eff[w.home][s]
    duration = x / eff
    heap = st.heap
    heap.push(t + duration, OTHER_PRIORITY, COMPLETE, w, w.token)


def complete(st: Any, w: Any, t: float) -> None:
    m = st.m
    item = w.item
    w.item = None
    s = w.sector
    st.processed[s] += 1
    st.tick_out[s] += 1
    st.sector_time_sum[s] += t - item.sector_arrive
    log = st.log
    if log is not None:
        log.items.append((item.id, item.cls, s, "finish", t, w.unique_id))
        log.floor.append(("item_finish", t, item.id, s, w.unique_id))
    nxt = next_sector(st, item.cls, s)
    if nxt < 0:
        item.state = DONE
        m.exited += 1
        m.cycle_sum += t - item.arrive
        if not item.late:
            m.on_time += 1
    else:
        enter(st, item, nxt, t)
    if w.state is OVERTIME:
        used = w.overtime_used + (t - w.since)
        q = st.queues[s]
        limit = st.max_overtime
        if st.overtime_ok[s] and q.n and used < limit and stations_free(st, s):
            start(st, w, queue_pop(q, st.priority[s]), t, OVERTIME)
        else:
            w.token += 1
            move(st, w, OFF, w.home, t)
            if log is not None:
                log.floor.append(("clock_out", t, w.unique_id))
    else:
        move(st, w, IDLE, s, t)
        dispatch_st(st, s, t)


def next_sector(st: Any, cls: int, s: int) -> int:
    route = st.routes[cls][s]
    if route is None:
        return -1
    targets, cum = route
    if len(targets) == 1 and cum[0] >= 1.0:
        return targets[0]
    u = float(st.rng_routing.random())
    for k in range(len(targets)):
        if u < cum[k]:
            return targets[k]
    return -1


def move(st: Any, w: Any, state: Any, sector: int, t: float) -> None:
    """:func:`twin.staffing.move`: the one state change, with every account kept."""
    d = t - w.since
    old_s = w.sector
    old_state = w.state
    st.acc_loc[old_s][old_state] += d
    if w.flex:
        st.acc_flex[old_s][old_state] += d
    else:
        st.acc_home[w.home][old_state] += d
        if old_state is OVERTIME:
            w.overtime_used += d
    st.count[old_s][old_state] -= 1
    st.count[sector][state] += 1
    if old_state is IDLE:
        del st.idle[old_s][w]
    if state is IDLE:
        st.idle[sector][w] = None
    w.state = state
    w.sector = sector
    w.since = t
