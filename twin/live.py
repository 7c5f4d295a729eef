"""Live state in and out of a twin: ``snapshot``, ``from_snapshot`` and ``check_snapshot``.

A snapshot (:mod:`twin.snapshot`) is what a live system sends and what every
rollout starts from. This module reads one off a running twin, checks one against
the scenario a twin would run, and rebuilds a twin from one.

A snapshot is checked once, at the border (the server, the CLI, the first line of
a domain function such as :func:`policies.impact.estimate_impact`); the many
twins rebuilt from it afterwards (one per sample and arm) pass ``checked=True``.
Errors are data: :class:`SnapshotError` carries the location of the field (``loc``,
as in a pydantic error) and the problem (``msg``); the HTTP layer or CLI renders it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from twin import accounting, schedule, staffing
from twin.events import COMPLETE, DUE, OT_LIMIT, OUTAGE, TRANSFER_DONE
from twin.queues import Item, ItemState
from twin.reality import expected_remaining_outage
from twin.scenario import EquipmentBreakdown, Scenario
from twin.snapshot import (
    DUE_BUCKET_REPRESENTATIVE,
    N_BUCKETS,
    SCHEMA_VERSION,
    OperationSnapshot,
    SectorState,
    StateName,
    WorkerGroup,
    due_bucket,
)
from twin.workers import Worker, WorkerState

if TYPE_CHECKING:
    from twin.model import OperationModel

BUSY, OVERTIME, TRANSFER = WorkerState.BUSY, WorkerState.OVERTIME, WorkerState.TRANSFER

Loc = tuple[str | int, ...]


class SnapshotError(ValueError):
    """A snapshot does not fit the scenario.

    Attributes:
        loc: where, as in a pydantic error: ``("sectors", 3, "in_service")`` (a sector
            by its index in the snapshot's ``sectors``), ``("workers", 2, "shift")``.
        msg: the problem.

    ``str(err)`` is ``"snapshot {where}: {msg}"``, with ``where`` naming sectors by name
    (``sectors.packing.in_service``) and list items by index (``workers[2].shift``).
    """

    def __init__(self, loc: Loc, msg: str, *, where: str | None = None) -> None:
        self.loc = tuple(loc)
        self.msg = msg
        self.where = where if where is not None else _where(self.loc)
        super().__init__(f"snapshot {self.where}: {msg}")

    def __reduce__(self) -> tuple:
        return (_rebuild_error, (self.loc, self.msg, self.where))


def _rebuild_error(loc: Loc, msg: str, where: str) -> SnapshotError:
    return SnapshotError(loc, msg, where=where)


def _where(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


# --------------------------------------------------------------------------- check


def check_snapshot(scenario: Scenario, snap: OperationSnapshot) -> None:
    """Raise :class:`SnapshotError` naming the first field that does not fit ``scenario``.

    The pydantic schema checks a snapshot on its own (types, signs, bucket counts, no
    NaN); this checks it against the scenario a twin would run: known sectors, item
    classes and shifts, and counts that agree with each other. :func:`from_snapshot`
    calls it unless told the snapshot is already ``checked``; the policy server calls
    it once per request, to refuse a request before any rollout.
    """
    sectors = set(scenario.sector_names)
    classes = set(scenario.class_names)
    shifts = {s.name for s in scenario.workforce.shifts}
    if snap.scenario != scenario.name:
        raise SnapshotError(
            ("scenario",), f"is {snap.scenario!r} but the twin runs {scenario.name!r}"
        )
    names = [s.name for s in snap.sectors]
    if sorted(names) != sorted(sectors):
        raise SnapshotError(("sectors",), f"must list each of {sorted(sectors)} once, got {names}")
    working = dict.fromkeys(sectors, 0)
    flex = 0
    for i, g in enumerate(snap.workers):
        for field, value in (("home", g.home), ("sector", g.sector)):
            if value is not None and value not in sectors:
                raise SnapshotError(("workers", i, field), f"unknown sector {value!r}")
        if g.flex:
            flex += g.count
        else:
            if g.home is None or g.sector is None:
                raise SnapshotError(("workers", i), "regular workers need a home and a sector")
            if g.shift not in shifts:
                raise SnapshotError(
                    ("workers", i, "shift"), f"unknown shift {g.shift!r} (shifts: {sorted(shifts)})"
                )
        if g.state in ("busy", "overtime"):
            if g.sector is None:
                raise SnapshotError(("workers", i), f"{g.state} workers need a sector")
            working[g.sector] += g.count
        if g.state != "off_shift" and g.flex and g.sector is None:
            raise SnapshotError(("workers", i), f"flex workers in state {g.state!r} need a sector")
    pool = scenario.workforce.flex.max_workers
    if flex > pool:
        raise SnapshotError(("workers",), f"{flex} flex workers, but the pool holds {pool}")
    for i, st in enumerate(snap.sectors):
        _check_sector(scenario, i, st, classes, sectors, working[st.name])


def _check_sector(
    scenario: Scenario,
    i: int,
    st: SectorState,
    classes: set[str],
    sectors: set[str],
    working: int,
) -> None:
    def fail(path: tuple[str, ...], problem: str) -> SnapshotError:
        return SnapshotError(
            ("sectors", i, *path), problem, where=".".join(("sectors", st.name, *path))
        )

    for field, table in (("queue", st.queue), ("in_service", st.in_service)):
        for c in table:
            if c not in classes:
                raise fail((field,), f"unknown item class {c!r}")
    if st.serving != working:
        problem = f"{st.serving} items in service but {working} workers busy there"
        raise fail(("in_service",), problem)
    if st.outage_stations > st.stations_down:
        raise fail(("outage_stations",), "exceeds stations_down")
    stations = scenario.sectors[scenario.sector_names.index(st.name)].stations
    if st.stations_down > (stations or 0):
        raise fail(
            ("stations_down",),
            f"{st.stations_down} stations down, but the sector has {stations or 'no'} stations",
        )
    if st.action.lend_to is not None and st.action.lend_to not in sectors:
        raise fail(("action", "lend_to"), f"unknown sector {st.action.lend_to!r}")


# --------------------------------------------------------------------------- out of a twin


def snapshot(model: OperationModel) -> OperationSnapshot:
    """The live state of ``model`` now, in the schema live systems send.

    Built with ``model_construct``: every field comes from the twin's own state,
    which is valid by construction (the types are made exact here), so the schema's
    validation would only repeat what the model already guarantees. A snapshot is
    taken at every env step, so this is on training's hot path.
    """
    scenario = model.scenario
    classes = scenario.class_names
    now = model.minute
    queue = [{c: [0] * N_BUCKETS for c in classes} for _ in model.sector_names]
    serving = [{c: [0] * N_BUCKETS for c in classes} for _ in model.sector_names]
    for s, q in enumerate(model.queues):
        table = queue[s]
        for item in q.items():
            table[classes[item.cls]][due_bucket(item.due - now)] += 1
    for w in model.agents:
        if w.item is not None:
            serving[w.sector][classes[w.item.cls]][due_bucket(w.item.due - now)] += 1
    workers = worker_groups(scenario, model.agents, now, model.pool_index)
    sectors = [
        SectorState.model_construct(
            name=name,
            queue=queue[s],
            in_service=serving[s],
            stations_down=int(model.down[s] + model.outage[s]),
            outage_stations=int(model.outage[s]),
            arrival_rate_per_hour=float(model.arrival_rate[s]),
            completion_rate_per_hour=float(model.completion_rate[s]),
            action=model.actions[name],
        )
        for s, name in enumerate(model.sector_names)
    ]
    return OperationSnapshot.model_construct(
        schema_version=SCHEMA_VERSION,
        scenario=scenario.name,
        scenario_digest=scenario.digest,
        minute=float(now),
        sectors=sectors,
        workers=workers,
    )


#: A worker state's name in the snapshot (``WorkerState.BREAK`` -> ``"break"``).
_STATE_NAMES: dict[WorkerState, StateName] = {
    st: cast("StateName", st.name.lower()) for st in WorkerState
}


def worker_groups(
    scenario: Scenario, workers: Iterable[Any], now: float, pool: int
) -> list[WorkerGroup]:
    """Workers summarised as the snapshot's groups (identical home, place, shift, state).

    ``workers`` are the twin's agents or the live twin's records of the floor
    (:mod:`twin.live_state`): anything with ``home``, ``sector``, ``shift`` (indices;
    ``pool`` is the agency pool's sector index, ``-1`` no shift), ``flex``, ``state``,
    ``overtime_used``, ``since`` and ``ready``. One function, so both report a state the
    same way, down to the overtime minutes of a worker in overtime now. The groups are
    built with ``model_construct`` (see :func:`snapshot`), their types made exact here.
    """
    names = scenario.sector_names
    shifts = scenario.workforce.shifts
    groups: dict[tuple, int] = {}
    for w in workers:
        state = w.state
        overtime = w.overtime_used + (now - w.since if state is OVERTIME else 0.0)
        key = (
            names[w.home] if w.home < pool else None,
            names[w.sector] if w.sector < pool else None,
            shifts[w.shift].name if w.shift >= 0 else None,
            w.flex,
            state,
            overtime,
            w.ready if state is TRANSFER else None,
        )
        groups[key] = groups.get(key, 0) + 1
    return [
        WorkerGroup.model_construct(
            home=h,
            sector=sec,
            shift=sh,
            flex=bool(fx),
            state=_STATE_NAMES[st],
            count=n,
            overtime_minutes=float(ot),
            ready_minute=None if ready is None else float(ready),
        )
        for (h, sec, sh, fx, st, ot, ready), n in groups.items()
    ]


# --------------------------------------------------------------------------- into a twin


M = TypeVar("M", bound="OperationModel")


def from_snapshot(
    model_cls: type[M],
    scenario: Scenario,
    snap: OperationSnapshot,
    rng: np.random.Generator | int | None = None,
    *,
    record_every_minutes: int | None = 15,
    checked: bool = False,
    demand_factors: Sequence[float] | None = None,
) -> M:
    """A twin that starts from a live state.

    Items are rebuilt from their due buckets (due at the bucket's representative
    time; overdue ones already late); busy workers restart their item's service;
    rostered workers the snapshot leaves out are added off shift, as is the rest
    of the flex pool. KPIs of the rebuilt twin count from the snapshot's minute.

    Called as ``OperationModel.from_snapshot(scenario, snap, ...)``.

    Args:
        model_cls: the model class to build (``OperationModel`` or a subclass).
        scenario: the scenario the twin runs.
        snap: the live state.
        rng: the twin's one source of randomness.
        record_every_minutes: DataCollector period (``None``: never record).
        checked: ``snap`` already passed :func:`check_snapshot` against ``scenario``
            (the border checked it once; rollouts rebuilt from it skip the check).
        demand_factors: per item class (scenario order), a factor on the rate of every
            arrival from the snapshot on (:mod:`twin.adaptive`); ``None``: the plan's.

    Raises:
        SnapshotError: (unless ``checked``) the snapshot names unknown sectors, classes
            or shifts, or its counts contradict each other.
        ValueError: ``demand_factors`` is not one finite factor >= 0 per class.
    """
    if not checked:
        check_snapshot(scenario, snap)
    m = model_cls(
        scenario,
        rng,
        record_every_minutes=record_every_minutes,
        start_minute=snap.minute,
        _fresh=False,
    )
    if demand_factors is not None:
        m._arrivals.set_factors(demand_factors)
    now = snap.minute
    si, ki = m.sector_index, m.shift_index
    states = {st.name.lower(): st for st in WorkerState}
    working: list[list[Worker]] = [[] for _ in m.sector_names]
    for g in snap.workers:
        for _ in range(g.count):
            if g.flex:
                w = m._new_worker(m.pool_index, -1, flex=True)
                w.home = si[g.home] if g.home is not None else m.pool_index
            else:
                assert g.home is not None and g.shift is not None  # check_snapshot
                w = m._new_worker(si[g.home], ki[g.shift])
            state = states[g.state]
            sector = si[g.sector] if g.sector is not None else m.pool_index
            staffing.move(m, w, state, sector, now)
            w.overtime_used = g.overtime_minutes
            if state is TRANSFER:
                # a transfer a live system reports as due already ends now: an event
                # in the past would book negative minutes to the transfer account
                w.ready = max(now, g.ready_minute if g.ready_minute is not None else now)
                m._push(w.ready, TRANSFER_DONE, w, w.token)
            elif state is OVERTIME:
                limit = scenario.workforce.max_overtime_minutes
                m._push(now + max(0.0, limit - w.overtime_used), OT_LIMIT, w, w.token)
            if state in (BUSY, OVERTIME):
                working[sector].append(w)
    wf = scenario.workforce
    for home, per_shift in wf.headcount.items():
        for shift, n in per_shift.items():
            have = sum(1 for w in m.shift_workers[ki[shift]] if w.home == si[home])
            for _ in range(n - have):
                m._new_worker(si[home], ki[shift])
    for _ in range(wf.flex.max_workers - len(m.flex_workers)):
        m._new_worker(m.pool_index, -1, flex=True)

    for st in snap.sectors:
        s = si[st.name]
        m.arrival_rate[s] = st.arrival_rate_per_hour
        m.completion_rate[s] = st.completion_rate_per_hour
        m.actions[st.name] = st.action
        m._priority[s] = st.action.priority
        m._overtime_ok[s] = st.action.overtime
        m.outage[s] = st.outage_stations
        for c, counts in st.queue.items():
            for b, n in enumerate(counts):
                for _ in range(n):
                    m.queues[s].push(_rebuilt_item(m, m.class_index[c], s, b))
        busy = iter(working[s])
        for c, counts in st.in_service.items():
            for b, n in enumerate(counts):
                for _ in range(n):
                    item = _rebuilt_item(m, m.class_index[c], s, b)
                    item.state = ItemState.IN_SERVICE
                    w = next(busy)
                    w.item = item
                    duration = m._service[s].next() / m._efficiency(w, s)
                    m._push(now + duration, COMPLETE, w, w.token)
    schedule.schedule_calendar(m, now, fresh=False)
    _end_unexplained_outages(m, now)
    schedule.schedule_failures(
        m, now, down=[st.stations_down - st.outage_stations for st in snap.sectors]
    )
    m._needs_dispatch = True
    accounting.maybe_record(m)
    return m


def _end_unexplained_outages(m: OperationModel, now: float) -> None:
    """Give outages no planned disruption explains (unplanned ones, reported by the floor
    or by the twin that ran reality) the end the uncertainty model expects; without a
    model of that sector's outages they stay out, like a failure with no repair model."""
    for s, name in enumerate(m.sector_names):
        planned = sum(
            d.stations
            for d in m.scenario.disruptions
            if isinstance(d, EquipmentBreakdown)
            and d.sector == name
            and d.start_minute < now < d.start_minute + d.duration_minutes
        )
        extra = m.outage[s] - planned
        remaining = expected_remaining_outage(m.scenario, name)
        if extra > 0 and remaining is not None:
            m._push(now + remaining, OUTAGE, s, -extra)


def _rebuilt_item(m: OperationModel, cls: int, s: int, bucket: int) -> Item:
    now = m.minute
    item = Item(m._next_item_id, cls, now, now + DUE_BUCKET_REPRESENTATIVE[bucket], s)
    m._next_item_id += 1
    m._initial_items += 1
    if bucket == 0:
        item.late = True
    else:
        m._push(item.due, DUE, item)
    return item
