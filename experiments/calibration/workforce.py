"""The workforce: absenteeism from attendance, shifts and headcount from a roster.

The event log says who worked, not who was rostered, so the workforce is fitted
from the side files: the absence rate (a Bernoulli MLE with its Wilson interval) and
each worker's home sector from attendance, shifts and headcount from a roster or,
without one, the median rostered headcount in attendance. Home sectors matter
beyond the workforce: they say whose services count as a fully trained worker's
(:mod:`experiments.calibration.service`), so this part is fitted first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.calibration.common import Window, clock
from experiments.calibration.data import ROSTER_COLUMNS, CalibrationError, read_table
from twin.scenario import MINUTES_PER_DAY, Scenario
from twin.stats import wilson_interval

Roster = tuple[list[dict[str, Any]], dict[str, dict[str, int]], list[str]]
"""What :func:`fit_roster` returns: shifts, headcount per sector and shift, notes."""


@dataclass(frozen=True)
class WorkforceFit:
    """Absenteeism, shifts and headcount from attendance and roster files."""

    absence_rate: float | None = None
    absence_ci: tuple[float, float] | None = None
    shifts_rostered: int = 0
    absence_by_sector: dict[str, float] = field(default_factory=dict)
    headcount: dict[str, dict[str, int]] | None = None
    headcount_source: str = ""
    shifts: list[dict[str, Any]] | None = None
    worker_home: dict[str, str] = field(default_factory=dict)
    rejected: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def fit_absence(attendance: pd.DataFrame) -> tuple[float, tuple[float, float], dict[str, float]]:
    """Absence rate = absent / rostered worker-shifts (the MLE of a Bernoulli chance).

    Returns:
        The rate, its 95% Wilson interval and the rate per sector (for the report;
        the scenario has one rate for everyone).
    """
    absent = attendance["status"] == "absent"
    n, k = len(attendance), int(absent.sum())
    share = wilson_interval(k, n)
    by_sector = absent.groupby(attendance["sector"]).mean().to_dict()
    return share.mean, (share.low, share.high), by_sector


def headcount_from_attendance(attendance: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Workers rostered per sector and shift: the median over dates (present or absent)."""
    per_day = attendance.groupby(["sector", "shift", "date"]).size()
    med = per_day.groupby(["sector", "shift"]).median()
    out: dict[str, dict[str, int]] = {}
    for (sector, shift), v in med.items():
        out.setdefault(str(sector), {})[str(shift)] = round(float(v))
    return out


def worker_homes(attendance: pd.DataFrame) -> dict[str, str]:
    """Each worker's home sector: the sector it is most often rostered in."""
    if attendance.empty:
        return {}
    mode = attendance.groupby("worker_id")["sector"].agg(lambda s: s.value_counts().index[0])
    return {str(k): str(v) for k, v in mode.items()}


def fit_roster(path: Path, base: Scenario) -> Roster:
    """Shifts and headcount from a roster ``shift, start, end, sector, headcount``.

    Breaks are not in a roster: a shift keeps the breaks of the base scenario's
    shift with the same name if they fit, and has none otherwise (noted).
    """
    raw, _ = read_table(path, "roster file", ROSTER_COLUMNS)
    notes: list[str] = []
    base_shifts = {s.name: s for s in base.workforce.shifts}
    shifts: dict[str, dict[str, Any]] = {}
    headcount: dict[str, dict[str, int]] = {}
    for i, r in raw.iterrows():
        line = int(str(i)) + 2
        name = str(r["shift"]).strip().lower()
        sector = str(r["sector"]).strip().lower()
        if sector not in base.sector_names:
            raise CalibrationError(f"roster file {path} line {line}: unknown sector {sector!r}")
        try:
            count = int(float(str(r["headcount"]).strip()))
        except ValueError:
            raise CalibrationError(
                f"roster file {path} line {line}: headcount {r['headcount']!r} is not a number"
            ) from None
        spec = {"name": name, "start": str(r["start"]).strip(), "end": str(r["end"]).strip()}
        if name in shifts and (shifts[name]["start"], shifts[name]["end"]) != (
            spec["start"],
            spec["end"],
        ):
            raise CalibrationError(f"roster file {path} line {line}: shift {name!r} changes times")
        shifts.setdefault(name, spec)
        headcount.setdefault(sector, {})[name] = headcount.get(sector, {}).get(name, 0) + count
    out = []
    for name, spec in shifts.items():
        b = base_shifts.get(name)
        if b is not None:
            spec["breaks"] = [{"start": clock(x.start), "minutes": x.minutes} for x in b.breaks]
        else:
            notes.append(f"shift {name!r} is not in the base scenario: no breaks")
        out.append(spec)
    return out, headcount, notes


# --------------------------------------------------------------------------- the part


@dataclass(frozen=True)
class WorkforcePart:
    """The workforce part of a calibration.

    Attributes:
        fit: what the report shows (absence rate and interval, headcount, home sectors).
        workforce: the fitted fields of the scenario's ``workforce`` (``absence_rate``,
            ``shifts``, ``headcount``); the others keep the base's.
        notes: attendance that could not be used, and why.
    """

    fit: WorkforceFit
    workforce: dict[str, Any]
    notes: tuple[str, ...]


def fit_workforce_part(
    attendance: pd.DataFrame | None,
    roster: Roster | None,
    origin: pd.Timestamp,
    window: Window,
    base: Scenario,
) -> WorkforcePart:
    """Absence and home sectors from ``attendance``, shifts and headcount from ``roster``.

    Attendance rows count from the day before ``window`` (a night shift started then
    works into it). Headcount comes from the roster if given, else from attendance
    when it names only the base's shifts.

    Raises:
        CalibrationError: the roster lists no shifts.
    """
    fit: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    notes: list[str] = []
    if attendance is not None and not attendance.empty:
        dmin = (attendance["date"] - origin.normalize()) / pd.Timedelta(minutes=1)
        att = attendance[(dmin >= window.start - MINUTES_PER_DAY) & (dmin < window.end)]
        if att.empty:
            notes.append("attendance has no rows in the fitted period: absence rate kept")
        else:
            rate, ci, by_sector = fit_absence(att)
            fit.update(
                absence_rate=rate,
                absence_ci=ci,
                absence_by_sector=by_sector,
                shifts_rostered=len(att),
                worker_home=worker_homes(att),
            )
            fields["absence_rate"] = round(rate, 4)
            if roster is None:
                known = {s.name for s in base.workforce.shifts}
                hc = headcount_from_attendance(att)
                unknown = {sh for per in hc.values() for sh in per} - known
                if unknown:
                    notes.append(
                        f"attendance names shifts {sorted(unknown)} not in the base: "
                        "headcount kept from base (give --roster)"
                    )
                else:
                    fit.update(headcount=hc, headcount_source="attendance (median per date)")
                    fields["headcount"] = hc
    if roster is not None:
        shifts, hc, roster_notes = roster
        fit.update(shifts=shifts, headcount=hc, headcount_source="roster", notes=list(roster_notes))
        fields["shifts"] = shifts
        fields["headcount"] = hc
        if not shifts:
            raise CalibrationError("roster file lists no shifts")
    return WorkforcePart(fit=WorkforceFit(**fit), workforce=fields, notes=tuple(notes))
