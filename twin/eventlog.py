"""The twin's own event log, in the format an operation's systems record.

``synctwin simulate --log-events DIR`` writes it, and ``synctwin calibrate`` reads
logs in the same format, so calibration can be tested end to end: simulate a known
scenario, calibrate from its log, compare.

Files (CSV, one row per event):

``events.csv``
    ``item_id, item_class, sector, event, timestamp, worker_id`` with ``event`` one of
    ``arrive`` (the item entered the sector's queue), ``start`` (a worker began it),
    ``finish`` (the worker completed it). A ``start`` with no ``finish`` before the
    next ``start`` of the same item in the same sector is work that was handed back.
``attendance.csv``
    ``date, shift, sector, worker_id, status`` (``present``/``absent``) per rostered
    worker and shift.
``roster.csv``
    ``shift, start, end, sector, headcount``: the planned shifts.
``equipment.csv``
    ``sector, event, timestamp`` with ``event`` ``failure`` or ``repair``.

And one file for a live twin (:mod:`twin.floor_events`, :mod:`twin.live_twin`):

``floor_events.jsonl``
    every event of the run in the order the twin made it happen (items, attendance,
    breaks, moves, flex, overtime, equipment, actions), one JSON object a line; a
    :class:`~twin.live_twin.LiveTwin` started at :func:`log_start` replays it to the
    twin's own snapshots.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from twin.floor_events import FLOOR_EVENTS_FILE, records, write_jsonl
from twin.scenario import Scenario

EVENT_COLUMNS = ("item_id", "item_class", "sector", "event", "timestamp", "worker_id")
DEFAULT_START = datetime(2026, 1, 5)  # a Monday; day 0 of the simulation


def log_start(scenario: Scenario) -> datetime:
    """Wall clock of minute 0 in the twin's logs: a Monday in 2026 plus the start weekday."""
    return DEFAULT_START + timedelta(days=scenario.start_weekday)


class EventLog:
    """Collects the twin's events as plain tuples (cheap in the hot loop).

    ``floor`` holds every event in the order it happened, as ``(kind, minute,
    *payload)`` with the payload of :data:`twin.floor_events.PAYLOAD` (indices for
    sectors and classes, worker unique ids): one list, so events at equal times keep
    the order a live twin must apply them in.
    """

    def __init__(self) -> None:
        self.items: list[tuple[int, int, int, str, float, int]] = []
        self.attendance: list[tuple[int, int, int, int, bool]] = []
        self.equipment: list[tuple[int, str, float]] = []
        self.floor: list[tuple] = []

    def write(self, out: Path, scenario: Scenario, start: datetime | None = None) -> list[Path]:
        """Write the log files into ``out``; timestamps count from ``start`` (a date)."""
        base = start or log_start(scenario)
        out.mkdir(parents=True, exist_ok=True)
        sectors, classes = scenario.sector_names, scenario.class_names
        shifts = scenario.workforce.shifts

        def ts(minutes: pd.Series) -> pd.Series:
            return (pd.Timestamp(base) + pd.to_timedelta(minutes, unit="min")).dt.round("ms")

        ev = pd.DataFrame(self.items, columns=list(EVENT_COLUMNS))
        ev["item_class"] = ev["item_class"].map(dict(enumerate(classes)))
        ev["sector"] = ev["sector"].map(dict(enumerate(sectors)))
        ev["timestamp"] = ts(ev["timestamp"])
        ev["worker_id"] = ev["worker_id"].astype("Int64").where(ev["worker_id"] >= 0)
        att = pd.DataFrame(
            self.attendance, columns=["day", "shift", "sector", "worker_id", "present"]
        )
        att.insert(0, "date", [(base + timedelta(days=int(d))).date() for d in att.pop("day")])
        att["shift"] = att["shift"].map(lambda k: shifts[k].name)
        att["sector"] = att["sector"].map(dict(enumerate(sectors)))
        att["status"] = att.pop("present").map({True: "present", False: "absent"})
        roster = pd.DataFrame(
            [
                {
                    "shift": sh.name,
                    "start": f"{sh.start // 60:02d}:{sh.start % 60:02d}",
                    "end": f"{sh.end // 60 % 24:02d}:{sh.end % 60:02d}",
                    "sector": sector,
                    "headcount": n,
                }
                for sh in shifts
                for sector, per_shift in scenario.workforce.headcount.items()
                for shift_name, n in per_shift.items()
                if shift_name == sh.name
            ]
        )
        eq = pd.DataFrame(self.equipment, columns=["sector", "event", "timestamp"])
        eq["sector"] = eq["sector"].map(dict(enumerate(sectors)))
        eq["timestamp"] = ts(eq["timestamp"])
        files = {
            "events.csv": ev,
            "attendance.csv": att,
            "roster.csv": roster,
            "equipment.csv": eq,
        }
        for name, frame in files.items():
            frame.to_csv(out / name, index=False)
        write_jsonl(out / FLOOR_EVENTS_FILE, records(self.floor, scenario, base))
        return [*(out / n for n in files), out / FLOOR_EVENTS_FILE]
