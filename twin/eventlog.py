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
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from twin.scenario import Scenario

EVENT_COLUMNS = ("item_id", "item_class", "sector", "event", "timestamp", "worker_id")
DEFAULT_START = datetime(2026, 1, 5)  # a Monday; day 0 of the simulation


class EventLog:
    """Collects the twin's events as plain tuples (cheap in the hot loop)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, int, str, float, int]] = []
        self.attendance: list[tuple[int, int, int, int, bool]] = []
        self.equipment: list[tuple[int, str, float]] = []

    def write(self, out: Path, scenario: Scenario, start: datetime | None = None) -> list[Path]:
        """Write the log files into ``out``; timestamps count from ``start`` (a date)."""
        base = start or DEFAULT_START + timedelta(days=scenario.start_weekday)
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
        return [out / n for n in files]
