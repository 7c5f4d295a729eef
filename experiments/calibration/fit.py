"""Calibrate a scenario from an operation's own event log.

Planners have event logs, not YAML. Given a log in the format of :mod:`twin.eventlog`
(``item_id, item_class, sector, event, timestamp, worker_id``, optionally ``due``),
read and checked row by row by :mod:`experiments.calibration.data`, calibration fits
the parts of a scenario the data determine, each in its own module:

- :mod:`~experiments.calibration.arrivals`: hourly arrival rates and weekday factors
  per item class;
- :mod:`~experiments.calibration.service`: service-time distributions per sector
  (families chosen by :mod:`~experiments.calibration.durations`);
- :mod:`~experiments.calibration.routing`: routing probabilities;
- :mod:`~experiments.calibration.due`: due rules (when the log has a ``due`` column);
- :mod:`~experiments.calibration.workforce`: absenteeism (attendance), shifts and
  headcount (roster or attendance);
- :mod:`~experiments.calibration.equipment`: station breakdowns (equipment events).

Everything else is taken from a base scenario.

Every fit is a pure function over DataFrames whose docstring states its estimator;
each part's ``fit_*_part`` returns a frozen result with the fitted scenario values,
the fits for the report and its notes. :func:`calibrate` (this module) runs the parts
in order, writes their values into the base scenario and returns a
:class:`Calibration` (the fitted, validated :class:`~twin.scenario.Scenario` plus the
fits, for the report); :mod:`~experiments.calibration.output` writes it as YAML.

A file that cannot be used at all, or a fit that is not a valid scenario, raises
:class:`~experiments.calibration.data.CalibrationError` (the CLI: exit code 2).
Times inside these modules are minutes since midnight of the log's first day (``t``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.calibration.arrivals import WEEKDAYS, ArrivalFit, ArrivalsPart, fit_arrivals_part
from experiments.calibration.common import Window, observed_window
from experiments.calibration.data import (
    CalibrationError,
    EventTable,
    load_attendance,
    load_equipment,
    load_events,
)
from experiments.calibration.due import DueFit, DuePart, fit_due_part
from experiments.calibration.durations import FamilyFit, weighted_quantiles
from experiments.calibration.equipment import BreakdownFit, EquipmentPart, fit_equipment_part
from experiments.calibration.routing import RoutingFit, RoutingPart, fit_routing_part
from experiments.calibration.service import ServiceFit, ServicePart, fit_service_part
from experiments.calibration.workforce import (
    Roster,
    WorkforceFit,
    WorkforcePart,
    fit_roster,
    fit_workforce_part,
)
from twin.scenario import Scenario, ScenarioError, scenario_from_dict

# the pipeline, plus the fit types experiments.reporting.calibration imports from here
# (they live in their parts' modules; new code should import them from there)
__all__ = [
    "WEEKDAYS",
    "ArrivalFit",
    "Calibration",
    "FamilyFit",
    "Inputs",
    "ServiceFit",
    "calibrate",
    "calibrate_inputs",
    "load_inputs",
    "weighted_quantiles",
]


@dataclass(frozen=True)
class Inputs:
    """Every file of an operation's log, read and checked.

    Attributes:
        table: the checked event log.
        attendance: usable attendance rows, if a file was given.
        roster: shifts and headcount from the roster, if a file was given.
        equipment: usable equipment events, if a file was given.
        side_files: for attendance and equipment: ``(file, rows read, rejected rows)``.
    """

    table: EventTable
    attendance: pd.DataFrame | None = None
    roster: Roster | None = None
    equipment: pd.DataFrame | None = None
    side_files: dict[str, tuple[str, int, pd.DataFrame]] = field(default_factory=dict)


def load_inputs(
    events: Path,
    base: Scenario,
    roster: Path | None = None,
    attendance: Path | None = None,
    equipment: Path | None = None,
) -> Inputs:
    """Read and check the event log and the optional roster, attendance and equipment files.

    Raises:
        CalibrationError: a file is missing, unreadable, lacks a column, or has no usable row.
    """
    table = load_events(events, base)
    side_files: dict[str, tuple[str, int, pd.DataFrame]] = {}
    att = eq = None
    if attendance is not None:
        att, rejected = load_attendance(attendance, base)
        side_files["attendance"] = (str(attendance), len(att) + len(rejected), rejected)
        if att.empty:
            raise CalibrationError(f"attendance file {attendance}: no usable rows")
    fitted_roster = fit_roster(roster, base) if roster is not None else None
    if equipment is not None:
        eq, rejected = load_equipment(equipment, table.origin)
        side_files["equipment"] = (str(equipment), len(eq) + len(rejected), rejected)
    return Inputs(table, att, fitted_roster, eq, side_files)


def calibrate_inputs(
    inputs: Inputs, base: Scenario, name: str = "calibrated", window: Window | None = None
) -> Calibration:
    """:func:`calibrate` on everything :func:`load_inputs` read."""
    cal = calibrate(
        inputs.table,
        base,
        name=name,
        attendance=inputs.attendance,
        roster=inputs.roster,
        equipment=inputs.equipment,
        window=window,
    )
    return replace(cal, side_files=inputs.side_files)


@dataclass(frozen=True)
class Calibration:
    """A fitted scenario and everything the report shows about how it was fitted."""

    scenario: Scenario
    base: Scenario
    table: EventTable
    window: Window
    arrivals: dict[str, ArrivalFit]
    service: dict[str, ServiceFit]
    routing: dict[str, RoutingFit]
    due: dict[str, DueFit]
    workforce: WorkforceFit
    breakdowns: dict[str, BreakdownFit]
    notes: list[str]
    stats: dict[str, int]
    side_files: dict[str, tuple[str, int, pd.DataFrame]] = field(default_factory=dict)


def calibrate(
    table: EventTable,
    base: Scenario,
    *,
    name: str = "calibrated",
    attendance: pd.DataFrame | None = None,
    roster: Roster | None = None,
    equipment: pd.DataFrame | None = None,
    window: Window | None = None,
) -> Calibration:
    """Fit a scenario to a checked event log; what the data do not determine comes from ``base``.

    Args:
        table: the checked log (:func:`load_events` / :func:`clean_events`).
        base: the scenario supplying sectors, classes, costs, cross-training, plan, ...
        name: the fitted scenario's name.
        attendance: checked attendance rows (:func:`load_attendance`), if any.
        roster: shifts and headcount from :func:`fit_roster`, if any.
        equipment: checked equipment events (:func:`load_equipment`), if any.
        window: the period to fit on (default: all of the log). Events outside it are
            ignored, so a log can be split into fitting and held-out days.

    Raises:
        CalibrationError: the fitted scenario is not valid (the message says why).
    """
    window = window or observed_window(table.events)
    ev = window.select(table.events)
    # workforce first: attendance tells whose services count as fully trained
    workforce = fit_workforce_part(attendance, roster, table.origin, window, base)
    arrivals = fit_arrivals_part(ev, window, int(table.origin.weekday()), base)
    routing = fit_routing_part(ev, window, base)
    due = fit_due_part(ev, table.origin, arrivals.arrivals, base)
    service = fit_service_part(ev, base, workforce.fit.worker_home)
    breakdowns = fit_equipment_part(equipment, window, base)

    data, notes = _base_data(table, base, name, window)
    _apply(data, workforce, arrivals, routing, due, service, breakdowns)
    for part in (workforce, arrivals, routing, due, service, breakdowns):
        notes += part.notes
    try:
        scenario = scenario_from_dict(data, f"calibrated from {table.source}")
    except ScenarioError as err:
        raise CalibrationError(f"the fitted scenario is not valid: {err}") from None
    items, arrived = int(ev["item_id"].nunique()), len(arrivals.arrivals)
    return Calibration(
        scenario=scenario,
        base=base,
        table=table,
        window=window,
        arrivals=arrivals.fits,
        service=service.fits,
        routing=routing.fits,
        due=due.fits,
        workforce=workforce.fit,
        breakdowns=breakdowns.fits,
        notes=notes,
        stats={
            "rows_read": table.rows_read,
            "rows_used": table.rows_used,
            "rows_rejected": table.rows_rejected,
            "rows_in_window": len(ev),
            "items": items,
            "arrivals": arrived,
            "in_progress_at_start": items - arrived,
            "service_pairs": service.pairs,
            "interrupted_services": service.interrupted,
        },
    )


def _base_data(
    table: EventTable, base: Scenario, name: str, window: Window
) -> tuple[dict[str, Any], list[str]]:
    """The base scenario as a dict, renamed and re-dated to ``window``, and its notes.

    The base's disruptions are dropped: surges, outages and absence spikes in the
    data are part of the fitted rates.
    """
    notes: list[str] = list(table.notes)
    data = base.model_dump(mode="json")
    data["name"] = name
    data["start_weekday"] = (int(table.origin.weekday()) + window.first_day) % 7
    data["horizon_days"] = int(min(max(window.days, 1), 366))
    first = table.origin + pd.Timedelta(minutes=window.start)
    last = table.origin + pd.Timedelta(minutes=window.end)
    data["description"] = (
        f"Calibrated from {Path(table.source).name or 'an event log'} "
        f"({first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}) on base '{base.name}'."
    )
    if data.get("disruptions"):
        notes.append(
            f"the base's {len(data['disruptions'])} disruption(s) were dropped: surges, "
            "outages and absence spikes in the data are part of the fitted rates"
        )
        data["disruptions"] = []
    return data, notes


def _apply(
    data: dict[str, Any],
    workforce: WorkforcePart,
    arrivals: ArrivalsPart,
    routing: RoutingPart,
    due: DuePart,
    service: ServicePart,
    breakdowns: EquipmentPart,
) -> None:
    """Write the fitted values of every part into the scenario dict ``data``."""
    classes = {c["name"]: c for c in data["item_classes"]}
    sectors = {s["name"]: s for s in data["sectors"]}
    data["workforce"].update(workforce.workforce)
    for cls, demand in arrivals.demand.items():
        classes[cls].update(demand)
    for cls, routes in routing.routing.items():
        classes[cls]["routing"] = routes
    for cls, rule in due.rules.items():
        classes[cls]["due"] = rule
    for sec, dist in service.services.items():
        sectors[sec]["service"] = dist
    for sec, bd in breakdowns.breakdowns.items():
        sectors[sec]["breakdowns"] = bd
