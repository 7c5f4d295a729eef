"""How reality departs from the plan: the scenario's optional ``uncertainty:`` block.

A scenario's demand profile, roster and ``disruptions`` are the **plan**: what the
controllers, the featurizer, the server and every rollout from a snapshot know. The
``uncertainty`` block is a model of what the plan does not know::

    uncertainty:
      demand:                   # forecast error, multiplicative, mean 1
        day_cv: 0.08            #   one factor per day (lognormal)
        hourly_cv: 0.10         #   hour-to-hour deviations (lognormal, AR(1) in log)
        hourly_correlation: 0.6
      surges:                   # unplanned demand surges
        per_day: 0.8            #   Poisson mean
        window: ["09:00", "15:00"]   # when they start
        duration_minutes: [60, 180]  # uniform
        multiplier: [1.3, 1.8]       # uniform
        item_classes: [standard, express]   # null = all
      absence:                  # unplanned absence waves
        - {sectors: null, chance: 0.25, rate: [0.04, 0.12]}
      outages:                  # unplanned station outages
        - {sector: picking, per_day: 0.5, duration_minutes: [30, 120], share: [0.2, 0.5]}

Each seed's reality is drawn from it once, when the twin is built
(:func:`twin.reality.draw_reality`), from the twin's own random stream: every
strategy meets the same reality for the same seed. This module is the schema; the
draws live in :mod:`twin.reality`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from twin.schema import MINUTES_PER_DAY, ClockMinute, Frozen

Positive = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(gt=0, le=1)]
Probability = Annotated[float, Field(ge=0, le=1)]


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"a range is [low, high] with low <= high, got [{v[0]:g}, {v[1]:g}]")
    return v


def _window(v: tuple[int, int]) -> tuple[int, int]:
    if v[0] >= v[1]:
        raise ValueError("a window is [start, end] with start before end")
    return v


Minutes = Annotated[tuple[Positive, Positive], AfterValidator(_ordered)]
Multiplier = Annotated[tuple[Positive, Positive], AfterValidator(_ordered)]
ShareRange = Annotated[tuple[Share, Share], AfterValidator(_ordered)]
RateRange = Annotated[tuple[Probability, Probability], AfterValidator(_ordered)]
Window = Annotated[tuple[ClockMinute, ClockMinute], AfterValidator(_window)]


class DemandError(Frozen):
    """Realized demand = planned rate x day factor x hourly deviation (both mean 1)."""

    day_cv: float = Field(0.0, ge=0, le=2, description="cv of the day-level factor")
    hourly_cv: float = Field(0.0, ge=0, le=2, description="cv of the hour-to-hour deviation")
    hourly_correlation: float = Field(
        0.0, ge=0, lt=1, description="correlation of consecutive hours' deviations"
    )
    per_class: bool = Field(False, description="independent factors per class (else shared)")
    item_classes: tuple[str, ...] | None = Field(None, description="classes affected; null = all")


class UnplannedSurges(Frozen):
    """Surges nobody announced: a Poisson number per day, uniform start, size, length."""

    per_day: float = Field(gt=0, le=24, description="mean number of surges per day")
    window: Window = Field((0, MINUTES_PER_DAY), description="when a surge may start")
    duration_minutes: Minutes
    multiplier: Multiplier
    item_classes: tuple[str, ...] | None = Field(None, description="classes affected; null = all")


class UnplannedAbsence(Frozen):
    """Absence waves: on a day, each listed sector has one with probability ``chance``."""

    sectors: tuple[str, ...] | None = Field(None, description="sectors affected; null = all")
    chance: Probability = Field(description="probability per sector and day")
    rate: RateRange = Field(description="extra absence probability on such a day (uniform)")


class UnplannedOutages(Frozen):
    """Station outages of one sector: a Poisson number per day, uniform start and length."""

    sector: str
    per_day: float = Field(gt=0, le=24, description="mean number of outages per day")
    window: Window = Field((0, MINUTES_PER_DAY), description="when an outage may start")
    duration_minutes: Minutes
    share: ShareRange = Field(description="share of the sector's stations down (uniform)")


class Uncertainty(Frozen):
    """The scenario's model of reality; every part is optional."""

    demand: DemandError | None = None
    surges: UnplannedSurges | None = None
    absence: tuple[UnplannedAbsence, ...] = ()
    outages: tuple[UnplannedOutages, ...] = ()


Loc = tuple[str | int, ...]


def uncertainty_problems(
    data: Any,
    sectors: list[str] | None,
    classes: list[str] | None,
    stations: Mapping[str, Any],
) -> list[tuple[Loc, str]]:
    """Names in the raw ``uncertainty`` mapping that do not exist in the scenario.

    Reads the plain mapping (like the scenario's other cross-reference checks) and
    never raises: a wrong shape is pydantic's to report. ``stations`` maps a sector
    name to its station count (``None``: no station limit, so nothing to break down).
    """
    problems: list[tuple[Loc, str]] = []
    if not isinstance(data, Mapping):
        return problems
    root: Loc = ("uncertainty",)

    def known(loc: Loc, name: Any, names: list[str] | None, kind: str, plural: str) -> bool:
        if names is not None and isinstance(name, str) and name not in names:
            problems.append((loc, f"unknown {kind} {name!r} ({plural}: {', '.join(names)})"))
            return False
        return True

    for part in ("demand", "surges"):
        entry = data.get(part)
        if isinstance(entry, Mapping) and isinstance(entry.get("item_classes"), list | tuple):
            for j, c in enumerate(entry["item_classes"]):
                known((*root, part, "item_classes", j), c, classes, "item class", "classes")
    absence = data.get("absence")
    for i, entry in enumerate(absence if isinstance(absence, list | tuple) else ()):
        if isinstance(entry, Mapping) and isinstance(entry.get("sectors"), list | tuple):
            for j, s in enumerate(entry["sectors"]):
                known((*root, "absence", i, "sectors", j), s, sectors, "sector", "sectors")
    outages = data.get("outages")
    for i, entry in enumerate(outages if isinstance(outages, list | tuple) else ()):
        if not isinstance(entry, Mapping):
            continue
        loc = (*root, "outages", i, "sector")
        name = entry.get("sector")
        if known(loc, name, sectors, "sector", "sectors") and isinstance(name, str):
            if name in stations and stations[name] is None:
                problems.append(
                    (loc, f"sector {name!r} has no stations to break down (set its 'stations')")
                )
    return problems
