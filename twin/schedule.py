"""The twin's calendar and its stations: what is put on the event heap, and when.

:func:`schedule_calendar` pushes the scenario's shift starts and ends, breaks and
scheduled outages; :func:`schedule_failures` starts each station's failure clock,
drawn from the model's equipment stream. The failure, repair and outage events of
the model's event loop are handled here (``on_*``, called as
``handler(model, time, a, b)``). Functions take the model; it owns the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.events import BREAK_END, BREAK_START, FAIL, OUTAGE, REPAIR, SHIFT_END, SHIFT_START
from twin.scenario import MINUTES_PER_DAY, EquipmentBreakdown

if TYPE_CHECKING:
    from twin.distributions import Distribution
    from twin.model import OperationModel


def schedule_calendar(m: OperationModel, t0: float, fresh: bool) -> None:
    """Push shift starts/ends, breaks and scheduled outages at or after ``t0``.

    A fresh twin starts any shift already under way at ``t0``; a twin rebuilt from a
    snapshot already has those workers in place, so only their ends and breaks are due.
    """
    horizon = m.scenario.horizon_minutes
    first_day = int(t0 // MINUTES_PER_DAY) - 1
    for k, shift in enumerate(m.scenario.workforce.shifts):
        for day in range(first_day, m.scenario.horizon_days + 1):
            start = day * MINUTES_PER_DAY + shift.start
            end = start + shift.length_minutes
            if end <= t0 or start >= horizon + MINUTES_PER_DAY:
                continue
            if start >= t0:
                m._push(start, SHIFT_START, k, day)
            elif fresh:
                m._push(t0, SHIFT_START, k, day)
            m._push(end, SHIFT_END, k)
            for brk in shift.breaks:
                b_start = start + (brk.start - shift.start) % MINUTES_PER_DAY
                b_end = b_start + brk.minutes
                if b_start >= t0:
                    m._push(b_start, BREAK_START, k, b_end)
                elif b_end > t0 and not fresh:
                    m._push(b_end, BREAK_END, k)
    for d in m.disruptions:
        if isinstance(d, EquipmentBreakdown):
            s = m.sector_index[d.sector]
            end = d.start_minute + d.duration_minutes
            if d.start_minute >= t0:
                m._push(d.start_minute, OUTAGE, s, d.stations)
                m._push(end, OUTAGE, s, -d.stations)
            elif end > t0:
                if fresh:
                    m._push(t0, OUTAGE, s, d.stations)
                m._push(end, OUTAGE, s, -d.stations)


def schedule_failures(m: OperationModel, t0: float, down: list[int]) -> None:
    """Start each station's failure clock; ``down[s]`` stations start under repair."""
    for s, sec in enumerate(m.scenario.sectors):
        if sec.stations is None:
            continue
        n_down = min(down[s], sec.stations)
        m.down[s] = n_down
        if sec.breakdowns is None:
            continue  # reported failures with no repair model stay down
        for i in range(sec.stations):
            if i < n_down:
                m._push(t0 + equipment_minutes(m, sec.breakdowns.repair), REPAIR, s)
            else:
                m._push(t0 + equipment_minutes(m, sec.breakdowns.time_to_failure), FAIL, s)


def equipment_minutes(m: OperationModel, dist: Distribution) -> float:
    """One draw (minutes) from the equipment stream: a time to failure or a repair time."""
    return float(dist.sample(m._rng_equipment, 1)[0])


# ---------------------------------------------------------------------- event handlers


def on_failure(m: OperationModel, t: float, s: int, _: None) -> None:
    bd = m.scenario.sectors[s].breakdowns
    assert bd is not None  # failures are scheduled only where breakdowns are modelled
    if m.down[s] + m.outage[s] >= m._stations[s]:
        # every station is already out: this one cannot fail on top
        m._push(t + equipment_minutes(m, bd.time_to_failure), FAIL, s)
        return
    m.down[s] += 1
    if m.event_log is not None:
        m.event_log.equipment.append((s, "failure", t))
        m.event_log.floor.append(("equipment_failure", t, s))
    m._push(t + equipment_minutes(m, bd.repair), REPAIR, s)


def on_repair(m: OperationModel, t: float, s: int, _: None) -> None:
    m.down[s] -= 1
    if m.event_log is not None:
        m.event_log.equipment.append((s, "repair", t))
        m.event_log.floor.append(("equipment_repair", t, s))
    bd = m.scenario.sectors[s].breakdowns
    assert bd is not None
    m._push(t + equipment_minutes(m, bd.time_to_failure), FAIL, s)
    m._dispatch(s, t)


def on_outage(m: OperationModel, t: float, s: int, stations: int) -> None:
    m.outage[s] += stations
    if m.event_log is not None and stations:
        kind = "outage_start" if stations > 0 else "outage_end"
        m.event_log.floor.append((kind, t, s, abs(stations)))
    m._dispatch(s, t)
