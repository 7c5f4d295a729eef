"""Worker operations: the one state change, shifts, breaks, overtime, lends and flex.

Every change of a worker's state or sector goes through :func:`move`, which keeps
the per-state worker-minute accounts of the model in step. The shift, break,
transfer and overtime events of the model's event loop are handled here
(``on_*``, called as ``handler(model, time, a, b)``), and :meth:`OperationModel.apply
<twin.model.OperationModel.apply>` puts lends and flex requests in force through
:func:`set_lent` and :func:`set_flex`. Functions take the model; it owns the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.events import BREAK_END, OT_LIMIT, TRANSFER_DONE
from twin.scenario import Absenteeism
from twin.workers import Worker, WorkerState

if TYPE_CHECKING:
    from twin.model import OperationModel

OFF, ABSENT, IDLE, BUSY, BREAK, TRANSFER, OVERTIME = WorkerState


def move(m: OperationModel, w: Worker, state: WorkerState, sector: int, t: float) -> None:
    """The one place a worker changes state or sector; keeps every account in step."""
    d = t - w.since
    old_s, old_state = w.sector, w.state
    m.acc_loc[old_s][old_state] += d
    if w.flex:
        m.acc_flex[old_s][old_state] += d
    else:
        m.acc_home[w.home][old_state] += d
        if old_state is OVERTIME:
            w.overtime_used += d
    m.count[old_s][old_state] -= 1
    m.count[sector][state] += 1
    if old_state is IDLE:
        del m._idle[old_s][w]
    if state is IDLE:
        m._idle[sector][w] = None
    w.state, w.sector, w.since = state, sector, t


def preempt(m: OperationModel, w: Worker) -> None:
    """Hand the worker's item back to the head of its queue (work restarts later)."""
    w.token += 1
    if w.item is not None:
        m.queues[w.sector].push(w.item, front=True)
        w.item = None


def send(m: OperationModel, w: Worker, sector: int, delay: float, t: float) -> None:
    """Start moving ``w`` to ``sector``; it becomes idle there after ``delay`` minutes."""
    preempt(m, w)
    if m.event_log is not None:
        kind = "flex_request" if w.flex else "transfer_start"
        m.event_log.floor.append((kind, t, w.unique_id, sector))
    if delay <= 0:
        move(m, w, IDLE, sector, t)
        if m.event_log is not None:
            kind = "flex_arrive" if w.flex else "transfer_end"
            m.event_log.floor.append((kind, t, w.unique_id))
        return
    move(m, w, TRANSFER, sector, t)
    w.ready = t + delay
    m._push(w.ready, TRANSFER_DONE, w, w.token)


def set_lent(m: OperationModel, s: int, target: int, n: int) -> None:
    """Make ``n`` of sector ``s``'s on-shift workers be at ``target`` (sending or recalling)."""
    t = m.minute
    delay = m.scenario.workforce.transfer_minutes
    on_shift = (IDLE, BUSY, BREAK, TRANSFER)
    mine = [w for k in m.shift_workers for w in k if w.home == s and w.state in on_shift]
    there = [w for w in mine if w.sector == target]
    if len(there) < n:
        at_home = [w for w in mine if w.sector == s and w.state in (IDLE, BUSY)]
        at_home.sort(key=lambda w: w.state is BUSY)  # idle ones first
        for w in at_home[: n - len(there)]:
            send(m, w, target, delay, t)
            m.transfers[s] += 1
    elif len(there) > n:
        there = [w for w in there if w.state is not TRANSFER]
        there.sort(key=lambda w: w.state is not IDLE)
        for w in there[: len(there) - n]:
            send(m, w, s, delay, t)
            m.transfers[s] += 1
        m._dispatch(target, t)


def set_flex(m: OperationModel, s: int, n: int) -> None:
    """Call agency workers to, or release them from, sector ``s`` to reach ``n``."""
    t = m.minute
    mine = [w for w in m.flex_workers if w.home == s and w.state is not OFF]
    if len(mine) < n:
        pool = [w for w in m.flex_workers if w.state is OFF]
        for w in pool[: n - len(mine)]:
            w.home = s
            send(m, w, s, m.scenario.workforce.flex.lead_minutes, t)
    elif len(mine) > n:
        order = {TRANSFER: 0, IDLE: 1, BREAK: 2, BUSY: 3}
        mine.sort(key=lambda w: order.get(w.state, 4))
        for w in mine[: len(mine) - n]:
            preempt(m, w)
            move(m, w, OFF, m.pool_index, t)
            w.home = m.pool_index
            if m.event_log is not None:
                m.event_log.floor.append(("flex_release", t, w.unique_id))


# ---------------------------------------------------------------------- event handlers
# Worker events carry the worker's token when scheduled: a worker whose token has
# moved on since (preempted, sent home) ignores them.


def on_transfer_done(m: OperationModel, t: float, w: Worker, token: int) -> None:
    if w.token == token and w.state is TRANSFER:
        move(m, w, IDLE, w.sector, t)
        if m.event_log is not None:
            kind = "flex_arrive" if w.flex else "transfer_end"
            m.event_log.floor.append((kind, t, w.unique_id))
        m._dispatch(w.sector, t)


def on_overtime_limit(m: OperationModel, t: float, w: Worker, token: int) -> None:
    if w.token == token and w.state is OVERTIME:
        s = w.sector
        preempt(m, w)
        move(m, w, OFF, w.home, t)
        if m.event_log is not None:
            m.event_log.floor.append(("clock_out", t, w.unique_id))
        m._dispatch(s, t)


def on_shift_start(m: OperationModel, t: float, k: int, day: int) -> None:
    """Shift ``k`` of ``day`` starts: its workers come in, or are absent (one draw each)."""
    workers = [w for w in m.shift_workers[k] if w.state is OFF]
    base = m.scenario.workforce.absence_rate
    extra = [0.0] * len(m.sector_names)
    for d in m.disruptions:
        if isinstance(d, Absenteeism) and d.day == day:
            for s, name in enumerate(m.sector_names):
                if d.sector in (None, name):
                    extra[s] += d.rate
    u = m._rng_absence.random(len(workers)).tolist()
    for w, x in zip(workers, u, strict=True):
        w.overtime_used = 0.0
        absent = x < base + extra[w.home]
        move(m, w, ABSENT if absent else IDLE, w.home, t)
        if m.event_log is not None:
            m.event_log.attendance.append((day, k, w.home, w.unique_id, not absent))
            m.event_log.floor.append(("absence" if absent else "clock_in", t, w.unique_id, w.home))
    m._dispatch_all(t)


def on_shift_end(m: OperationModel, t: float, k: int, _: None) -> None:
    """Shift ``k`` ends: busy workers go on in overtime where it is authorised."""
    limit = m.scenario.workforce.max_overtime_minutes
    for w in m.shift_workers[k]:
        if w.state is OFF:
            continue
        if w.state is BUSY and m._overtime_ok[w.sector] and limit > 0:
            move(m, w, OVERTIME, w.sector, t)
            if m.event_log is not None:
                m.event_log.floor.append(("overtime_start", t, w.unique_id))
            m._push(t + limit - w.overtime_used, OT_LIMIT, w, w.token)
            continue
        if w.state is not OVERTIME:
            preempt(m, w)
            move(m, w, OFF, w.home, t)
            if m.event_log is not None:
                m.event_log.floor.append(("clock_out", t, w.unique_id))
    m._dispatch_all(t)


def on_break_start(m: OperationModel, t: float, k: int, until: float) -> None:
    for w in m.shift_workers[k]:
        if w.state is IDLE or w.state is BUSY:
            preempt(m, w)
            move(m, w, BREAK, w.sector, t)
            if m.event_log is not None:
                m.event_log.floor.append(("break_start", t, w.unique_id))
    m._push(until, BREAK_END, k)
    m._dispatch_all(t)


def on_break_end(m: OperationModel, t: float, k: int, _: None) -> None:
    for w in m.shift_workers[k]:
        if w.state is BREAK:
            move(m, w, IDLE, w.sector, t)
            if m.event_log is not None:
                m.event_log.floor.append(("break_end", t, w.unique_id))
    m._dispatch_all(t)
