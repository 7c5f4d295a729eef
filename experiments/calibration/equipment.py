"""Station breakdowns per sector, from equipment failure and repair events.

Only sectors whose base scenario has stations can break down. Equipment logs say
when *a* station of a sector failed or was repaired, not which one, so the fit works
on the pooled count of stations down (:func:`fit_breakdowns`). A sector with no
failures in the log loses its breakdowns; one with too few matched repairs to
choose a family gets a simpler repair time, and the report says so
(:func:`fit_equipment_part`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from experiments.calibration.common import Window
from experiments.calibration.durations import fit_durations
from experiments.calibration.service import MIN_SERVICE_SAMPLES, ServiceFit
from twin.scenario import Scenario

# --------------------------------------------------------------------------- one sector


@dataclass(frozen=True)
class BreakdownFit:
    """Station failures of one sector from equipment events."""

    sector: str
    stations: int
    failures: int
    repairs: int
    up_station_minutes: float
    mttf_minutes: float  # mean time to failure of one station
    repair: ServiceFit | None  # None with fewer than MIN_SERVICE_SAMPLES matched repairs
    repair_minutes: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def repair_distribution(self) -> dict[str, Any] | None:
        """The repair distribution for the scenario: the fitted family, or with only a few
        matched repairs an exponential with their mean, or ``None`` without any."""
        if self.repair is not None and self.repair.chosen is not None:
            return self.repair.distribution()
        if len(self.repair_minutes):
            return {"dist": "exponential", "mean": round(float(self.repair_minutes.mean()), 4)}
        return None


def fit_breakdowns(
    equipment: pd.DataFrame, sector: str, stations: int, window: Window
) -> BreakdownFit:
    """Failure and repair times of one sector's stations from pooled events.

    The log says when *a* station failed or was repaired, not which one. With
    ``down(t)`` the number of stations out (failures minus repairs so far):

    - time to failure: each working station fails at a constant rate, estimated
      as failures / station-minutes up (the exponential MLE with exposure); the
      scenario gets an exponential with mean 1 / rate;
    - repair: failures and repairs are matched first in, first out. The matched
      durations add up to the true total downtime, so their mean is exact
      (Little's law); their spread is approximate when repairs overlap. Their
      family is chosen like a service time (:func:`fit_durations`).
    """
    ev = window.select(equipment[(equipment["sector"] == sector)]).sort_values("t", kind="stable")
    step = np.where(ev["event"] == "failure", 1, -1)
    down = np.clip(np.cumsum(step), 0, stations)
    times = np.concatenate([[window.start], ev["t"].to_numpy(), [window.end]])
    levels = np.concatenate([[0], down])
    up = float(np.sum((stations - levels) * np.diff(times)))
    fail_t = ev.loc[ev["event"] == "failure", "t"].to_numpy()
    rep_t = ev.loc[ev["event"] == "repair", "t"].to_numpy()
    durations = []
    queue: list[float] = []
    i = j = 0
    while i < len(fail_t) or j < len(rep_t):
        if j >= len(rep_t) or (i < len(fail_t) and fail_t[i] <= rep_t[j]):
            queue.append(float(fail_t[i]))
            i += 1
        else:
            if queue:
                durations.append(float(rep_t[j]) - queue.pop(0))
            j += 1
    x = np.asarray([d for d in durations if d > 0])
    repair = None
    if len(x) >= MIN_SERVICE_SAMPLES:
        chosen, cands, rule = fit_durations(x)
        repair = ServiceFit(f"{sector} repair", chosen, cands, x, np.ones(len(x)), len(queue),
                            rule=rule)  # fmt: skip
    n_fail = len(fail_t)
    mttf = up / n_fail if n_fail else float("inf")
    return BreakdownFit(sector, stations, n_fail, len(rep_t), up, mttf, repair, x)


# --------------------------------------------------------------------------- every sector


@dataclass(frozen=True)
class EquipmentPart:
    """The breakdown part of a calibration.

    Attributes:
        fits: the fit of every sector with stations (none without an equipment file).
        breakdowns: per fitted sector, its scenario ``breakdowns`` (``None``: no
            failures observed, so none); other sectors keep the base's.
        notes: unknown sectors, sectors without stations, repairs too few to fit.
    """

    fits: dict[str, BreakdownFit]
    breakdowns: dict[str, dict[str, Any] | None]
    notes: tuple[str, ...]


def fit_equipment_part(
    equipment: pd.DataFrame | None, window: Window, base: Scenario
) -> EquipmentPart:
    """:func:`fit_breakdowns` for every sector of ``base`` that has stations."""
    if equipment is None:
        return EquipmentPart(fits={}, breakdowns={}, notes=())
    fits: dict[str, BreakdownFit] = {}
    out: dict[str, dict[str, Any] | None] = {}
    notes: list[str] = []
    seen = set(equipment["sector"])
    for name_ in sorted(seen - set(base.sector_names)):
        notes.append(f"equipment events for unknown sector {name_!r} ignored")
    for sector in base.sectors:
        sec = sector.model_dump(mode="json")
        stations = sec.get("stations")
        if stations is None:
            if sec["name"] in seen:
                notes.append(
                    f"sector {sec['name']!r}: equipment events, but the base gives it no "
                    "stations: breakdowns not modelled"
                )
            continue
        bf = fit_breakdowns(equipment, sec["name"], stations, window)
        fits[sec["name"]] = bf
        if bf.failures == 0:
            if sec.get("breakdowns") is not None:
                notes.append(f"sector {sec['name']!r}: no failures observed: breakdowns removed")
            out[sec["name"]] = None
            continue
        repair = bf.repair_distribution()
        if bf.repair is None:
            base_bd = sec.get("breakdowns")
            if repair is None:
                repair = base_bd["repair"] if base_bd else {"dist": "exponential", "mean": 30.0}
            how = "an exponential with their mean" if len(bf.repair_minutes) else (
                "kept from base" if base_bd else "assumed exponential, 30 min"
            )  # fmt: skip
            notes.append(
                f"sector {sec['name']!r}: {len(bf.repair_minutes)} matched repair(s), "
                f"too few to choose a family: repair time {how}"
            )
        out[sec["name"]] = {
            "time_to_failure": {"dist": "exponential", "mean": round(bf.mttf_minutes, 2)},
            "repair": repair,
        }
    return EquipmentPart(fits=fits, breakdowns=out, notes=tuple(notes))
