"""KPI accounting, the recorded time series, and the twin's conservation laws.

:func:`kpis` turns the model's worker-minute accounts and item counters into the
:class:`~twin.kpis.Kpis` record (definitions in :mod:`twin.kpis`). The Mesa
``DataCollector`` built from :func:`reporters` records one row every
``record_every_minutes`` (:func:`maybe_record`). :func:`check_invariants` checks
that items and worker-minutes are conserved. Functions take the model; it owns the
state.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from twin.kpis import KpiRecord, Kpis
from twin.workers import N_STATES, PAID_FLEX, PAID_REGULAR, WorkerState

if TYPE_CHECKING:
    from twin.model import OperationModel

OFF, ABSENT, IDLE, BUSY, BREAK, TRANSFER, OVERTIME = WorkerState


class InvariantError(AssertionError):
    """A conservation law of the twin was broken (a bug, never user error)."""


def accounts(m: OperationModel) -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
    """Worker-minute accounts ``(by location, by home, flex)`` including spells under way."""
    loc = [row[:] for row in m.acc_loc]
    home = [row[:] for row in m.acc_home]
    flex = [row[:] for row in m.acc_flex]
    for w in m.agents:
        d = m.minute - w.since
        loc[w.sector][w.state] += d
        if w.flex:
            flex[w.sector][w.state] += d
        else:
            home[w.home][w.state] += d
    return loc, home, flex


def kpis(m: OperationModel) -> Kpis:
    """The KPI record of ``m`` so far (see :mod:`twin.kpis` for the definitions)."""
    costs = m.scenario.costs
    loc, home, flex = accounts(m)
    sectors: dict[str, KpiRecord] = {}
    for s, name in enumerate(m.sector_names):
        busy = loc[s][BUSY] + loc[s][OVERTIME]
        present = busy + loc[s][IDLE]
        ot_h = loc[s][OVERTIME] / 60
        flex_h = sum(flex[s][k] for k in PAID_FLEX) / 60
        regular_h = sum(home[s][k] for k in PAID_REGULAR) / 60
        regular = regular_h * costs.regular_rate_per_hour
        labor = (
            regular
            + ot_h * costs.overtime_rate_per_hour
            + flex_h * costs.flex_rate_per_hour
            + m.transfers[s] * costs.transfer_cost
        )
        penalty = m.misses[s] * costs.sla_miss_penalty
        sectors[name] = KpiRecord(
            overtime_hours=ot_h,
            sla_misses=m.misses[s],
            sla_attainment=max(0.0, 1 - m.misses[s] / max(1, m.processed[s])),
            items_completed=m.processed[s],
            backlog_end=m.queues[s].n + m.count[s][BUSY] + m.count[s][OVERTIME],
            mean_cycle_minutes=m.sector_time_sum[s] / m.processed[s] if m.processed[s] else 0.0,
            utilization=busy / present if present else 0.0,
            transfers=m.transfers[s],
            flex_hours=flex_h,
            regular_cost=regular,
            labor_cost=labor,
            penalty_cost=penalty,
            avoidable_cost=labor + penalty - regular,
            total_cost=labor + penalty,
        )
    recs = list(sectors.values())
    misses = sum(r.sla_misses for r in recs)
    busy = sum(loc[s][BUSY] + loc[s][OVERTIME] for s in range(len(recs)))
    present = busy + sum(loc[s][IDLE] for s in range(len(recs)))
    regular = sum(r.regular_cost for r in recs)
    labor = sum(r.labor_cost for r in recs)
    penalty = sum(r.penalty_cost for r in recs)
    total = KpiRecord(
        overtime_hours=sum(r.overtime_hours for r in recs),
        sla_misses=misses,
        sla_attainment=m.on_time / (m.on_time + misses) if m.on_time + misses else 1.0,
        items_completed=m.exited,
        backlog_end=sum(r.backlog_end for r in recs),
        mean_cycle_minutes=m.cycle_sum / m.exited if m.exited else 0.0,
        utilization=busy / present if present else 0.0,
        transfers=sum(r.transfers for r in recs),
        flex_hours=sum(r.flex_hours for r in recs),
        regular_cost=regular,
        labor_cost=labor,
        penalty_cost=penalty,
        avoidable_cost=labor + penalty - regular,
        total_cost=labor + penalty,
    )
    return Kpis(minute=m.minute, total=total, sectors=sectors)


# ---------------------------------------------------------------------- time series


def _minute(m: OperationModel) -> float:
    return m.minute


def _row_value(m: OperationModel, key: str) -> float:
    return m._row[key]


def reporters(m: OperationModel) -> dict[str, object]:
    """DataCollector reporters: each reads one field of the row built in :func:`maybe_record`.

    ``partial`` of a module-level function rather than lambdas, so the model pickles.
    """
    out: dict[str, object] = {"minute": _minute}
    for key in _row_keys(m):
        out[key] = partial(_row_value, key=key)
    return out


def _row_keys(m: OperationModel) -> list[str]:
    keys = ["backlog", "items_completed", "sla_misses", "overtime_hours", "total_cost"]
    for n in m.sector_names:
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


def maybe_record(m: OperationModel) -> None:
    """Record a row of the time series if one is due (never if ``record_every_minutes`` is None)."""
    if m.record_every_minutes is None or m.minute + 1e-9 < m._record_due:
        return
    k = kpis(m)
    row: dict[str, float] = {
        "backlog": k.total.backlog_end,
        "items_completed": k.total.items_completed,
        "sla_misses": k.total.sla_misses,
        "overtime_hours": k.total.overtime_hours,
        "total_cost": k.total.total_cost,
    }
    lent_in = [0] * len(m.sector_names)
    for w in m.agents:
        if w.sector != w.home and w.sector < m.pool_index and w.state in (IDLE, BUSY, BREAK):
            lent_in[w.sector] += 1
    for s, n in enumerate(m.sector_names):
        c = m.count[s]
        row[f"{n}.queue"] = m.queues[s].n
        row[f"{n}.in_service"] = c[BUSY] + c[OVERTIME]
        row[f"{n}.staff_present"] = c[IDLE] + c[BUSY] + c[OVERTIME] + c[BREAK]
        row[f"{n}.staff_lent_in"] = lent_in[s]
        row[f"{n}.stations_down"] = m.down[s] + m.outage[s]
        row[f"{n}.sla_misses"] = m.misses[s]
        row[f"{n}.overtime_hours"] = k.sectors[n].overtime_hours
    m._row = row
    m.datacollector.collect(m)
    m._record_due = m.minute + m.record_every_minutes


# ---------------------------------------------------------------------- checks


def check_invariants(m: OperationModel) -> None:
    """Raise :class:`InvariantError` if a conservation law of ``m`` is broken.

    - items arrived = items exited + queued + in service
    - every worker is in exactly one state, and the state counts match the workers
    - worker-minutes add up: all accounts together = workers x minutes elapsed
    """
    queued = sum(q.n for q in m.queues)
    in_service = sum(1 for w in m.agents if w.item is not None)
    working = sum(m.count[s][BUSY] + m.count[s][OVERTIME] for s in range(len(m.queues)))
    if m.arrived + m._initial_items != m.exited + queued + in_service:
        raise InvariantError(
            f"items: arrived {m.arrived} + initial {m._initial_items} != exited "
            f"{m.exited} + queued {queued} + in service {in_service}"
        )
    if in_service != working:
        raise InvariantError(f"{in_service} items in service but {working} workers working")
    expected = [[0] * N_STATES for _ in m.count]
    for w in m.agents:
        expected[w.sector][w.state] += 1
        if (w.item is not None) != (w.state in (BUSY, OVERTIME)):
            raise InvariantError(f"worker {w.unique_id} in {w.state.name} holds item {w.item}")
    if expected != m.count:
        raise InvariantError(f"state counts {m.count} != recount {expected}")
    for s, q in enumerate(m.queues):
        if len(q.items()) != q.n:
            raise InvariantError(f"sector {s}: queue length {q.n} != {len(q.items())} items")
    loc, _, _ = accounts(m)
    total = sum(map(sum, loc))
    elapsed = (m.minute - m._created_minute) * len(m.agents)
    if abs(total - elapsed) > 1e-6 * max(1.0, elapsed):
        raise InvariantError(f"worker-minutes {total} != workers x elapsed {elapsed}")
