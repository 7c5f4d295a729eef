"""The scenario: one frozen, validated description of an operation.

A scenario is parsed once, at the border, from YAML (a file or a built-in name)
into a frozen pydantic object; everything inward receives that object. Derived
values are properties. Times of day are ``"HH:MM"`` strings or minutes after
midnight; all durations are minutes; rates are items per hour; money is in one
currency unit.

See ``README.md`` ("Scenario format") for an annotated example.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from twin.distributions import Distribution
from twin.scenario_checks import (
    CROSS_REFERENCE,
    DEFAULT_DECISION_INTERVAL_MINUTES,
    DEFAULT_TICK_MINUTES,
    EXIT,
    NAME_PATTERN,
    Loc,
    Problem,
    ScenarioError,
    cross_reference_problems,
    field_path,
    format_errors,
    message,
    route_as_routing,
)
from twin.scenario_yaml import builtin_names, read_yaml
from twin.schema import MINUTES_PER_DAY, ClockMinute
from twin.schema import Frozen as _Frozen
from twin.schema import non_empty as _non_empty
from twin.uncertainty import Uncertainty

__all__ = [
    "EXIT",
    "MINUTES_PER_DAY",
    "NAME_PATTERN",
    "Loc",
    "Problem",
    "ScenarioError",
    "builtin_names",
    "load_scenario",
    "scenario_from_dict",
]


# --------------------------------------------------------------------------- sectors


class Breakdowns(_Frozen):
    """Random station failures: each station fails independently."""

    time_to_failure: Distribution = Field(
        description="minutes from a repair (or the start) to the next failure, in clock time"
    )
    repair: Distribution = Field(description="minutes to repair a failed station")


class Sector(_Frozen):
    """A stage of the operation with its own queue, staff and stations."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    label: str | None = Field(None, description="display name; defaults to the name, titled")
    service: Distribution = Field(description="work minutes per item for a fully trained worker")
    stations: int | None = Field(
        None, ge=1, description="stations limiting parallel work; null = no limit"
    )
    breakdowns: Breakdowns | None = None

    @model_validator(mode="after")
    def _breakdowns_need_stations(self) -> Sector:
        if self.breakdowns is not None and self.stations is None:
            raise ValueError("'breakdowns' needs a number of 'stations' that can break")
        return self

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ").title()


# --------------------------------------------------------------------------- demand & SLA


class Due(_Frozen):
    """When an item is due: a fixed lead time, or the next carrier cut-off it can make.

    With ``cutoffs`` (times of day, e.g. carrier pick-ups), an item is due at the first
    cut-off at least ``lead_minutes`` after it arrives, on the same day or a later one.
    """

    within_minutes: int | None = Field(None, gt=0)
    cutoffs: Annotated[tuple[ClockMinute, ...], _non_empty("cut-off time")] | None = None
    lead_minutes: int = Field(0, ge=0, lt=MINUTES_PER_DAY)

    @model_validator(mode="after")
    def _one_rule(self) -> Due:
        if (self.within_minutes is None) == (self.cutoffs is None):
            raise ValueError("give exactly one of 'within_minutes' or 'cutoffs'")
        if self.cutoffs is not None:
            object.__setattr__(self, "cutoffs", tuple(sorted(set(self.cutoffs))))
        return self

    def due_minute(self, arrive_minute: float) -> float:
        """Absolute due minute for an item arriving at ``arrive_minute``."""
        if self.within_minutes is not None:
            return arrive_minute + self.within_minutes
        assert self.cutoffs is not None
        earliest = arrive_minute + self.lead_minutes
        day = int(earliest // MINUTES_PER_DAY)
        for d in (day, day + 1):
            for c in self.cutoffs:
                due = d * MINUTES_PER_DAY + c
                if due >= earliest:
                    return float(due)
        raise AssertionError("unreachable: a cut-off exists every day")


class ItemClass(_Frozen):
    """A kind of work item: where it enters, how it is routed, how much of it comes, when it is due.

    ``route`` is shorthand for a fixed path; ``routing`` gives branching
    probabilities per sector (``{picking: {packing: 0.9, exit: 0.1}}``). A sector
    absent from ``routing`` sends the item out of the operation.
    """

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    entry: str = Field(description="the sector where items of this class arrive")
    routing: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="{from: {to: probability}}; 'exit' leaves"
    )
    hourly_rates: tuple[float, ...] = Field(
        description="arrivals per hour for each hour of the day (24 values)"
    )
    weekday_factors: tuple[float, ...] = Field(
        (1.0,) * 7, description="multiplier per weekday, Monday first (7 values)"
    )
    due: Due

    @field_validator("hourly_rates")
    @classmethod
    def _rates(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) != 24:
            raise ValueError(f"needs 24 hourly values (one per hour of the day), got {len(v)}")
        if any(r < 0 for r in v):
            raise ValueError("rates must be >= 0 items per hour")
        return v

    @field_validator("weekday_factors")
    @classmethod
    def _weekdays(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) != 7 or any(f < 0 for f in v):
            raise ValueError("needs 7 non-negative multipliers, Monday first")
        return v

    @model_validator(mode="before")
    @classmethod
    def _expand_route(cls, data: Any) -> Any:
        return route_as_routing(data)

    @field_validator("routing")
    @classmethod
    def _probabilities(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for src, targets in v.items():
            total = sum(targets.values())
            if any(p < 0 for p in targets.values()) or total > 1 + 1e-9:
                raise ValueError(
                    f"from {src!r}: probabilities must be >= 0 and sum to <= 1 "
                    f"(the rest exits), got {total:g}"
                )
        return v


class Surge(_Frozen):
    """Demand multiplied by ``multiplier`` between two absolute minutes of the horizon."""

    kind: Literal["demand_surge"] = "demand_surge"
    start_minute: int = Field(ge=0)
    end_minute: int = Field(gt=0)
    multiplier: float = Field(gt=0)
    item_class: str | None = Field(None, description="only this class; null = all")


class Absenteeism(_Frozen):
    """Extra absence probability for shifts starting on the given day (a labour shortage)."""

    kind: Literal["absenteeism"] = "absenteeism"
    day: int = Field(0, ge=0)
    rate: float = Field(ge=0, le=1, description="extra probability a worker is absent")
    sector: str | None = Field(None, description="only this sector; null = all")


class EquipmentBreakdown(_Frozen):
    """A scheduled outage: ``stations`` stations of a sector down for a period."""

    kind: Literal["equipment_breakdown"] = "equipment_breakdown"
    sector: str
    start_minute: int = Field(ge=0)
    duration_minutes: int = Field(gt=0)
    stations: int = Field(1, ge=1)


Disruption = Annotated[Surge | Absenteeism | EquipmentBreakdown, Field(discriminator="kind")]


# --------------------------------------------------------------------------- workforce


class Break(_Frozen):
    start: ClockMinute
    minutes: int = Field(gt=0)


class Shift(_Frozen):
    """A shift; ``end`` earlier than ``start`` means it runs past midnight."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    start: ClockMinute
    end: ClockMinute
    breaks: tuple[Break, ...] = ()

    @property
    def length_minutes(self) -> int:
        return (self.end - self.start) % MINUTES_PER_DAY or MINUTES_PER_DAY

    @model_validator(mode="after")
    def _breaks_inside(self) -> Shift:
        for b in self.breaks:
            offset = (b.start - self.start) % MINUTES_PER_DAY
            if offset + b.minutes > self.length_minutes:
                raise ValueError(f"break at minute {b.start} does not fit inside the shift")
        return self


class Flex(_Frozen):
    """An agency pool the operation can call on; staff arrive after a lead time."""

    max_workers: int = Field(0, ge=0)
    lead_minutes: int = Field(60, ge=0)
    efficiency: float = Field(0.8, gt=0, le=1)


class Workforce(_Frozen):
    shifts: Annotated[tuple[Shift, ...], _non_empty("shift")]
    headcount: dict[str, dict[str, int]] = Field(
        description="workers per sector per shift: {sector: {shift: count}}"
    )
    cross_training: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="efficiency (0..1] of a worker from sector A working in B: {A: {B: e}}",
    )
    transfer_minutes: int = Field(10, ge=0, description="walking/handover time between sectors")
    max_overtime_minutes: int = Field(120, ge=0, description="per worker per shift")
    absence_rate: float = Field(0.0, ge=0, le=1, description="chance a worker misses a shift")
    flex: Flex = Flex()

    @field_validator("headcount")
    @classmethod
    def _counts(cls, v: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for sector, per_shift in v.items():
            for shift, n in per_shift.items():
                if n < 0:
                    raise ValueError(f"{sector}.{shift}: headcount must be >= 0, got {n}")
        return v

    @field_validator("cross_training")
    @classmethod
    def _efficiency(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for src, targets in v.items():
            for dst, e in targets.items():
                if not 0 <= e <= 1:
                    raise ValueError(f"{src}->{dst}: efficiency must be within [0, 1], got {e}")
        return v


# --------------------------------------------------------------------------- plan & costs


class SectorPlan(_Frozen):
    """The plan as written for one sector: what the ``static`` strategy does."""

    overtime: bool = False
    priority: Literal["fifo", "edd"] = "fifo"
    flex_workers: int = Field(0, ge=0)


class Costs(_Frozen):
    regular_rate_per_hour: float = Field(ge=0)
    overtime_rate_per_hour: float = Field(ge=0)
    flex_rate_per_hour: float = Field(ge=0)
    transfer_cost: float = Field(0.0, ge=0, description="per worker moved between sectors")
    sla_miss_penalty: float = Field(ge=0, description="per item that misses its due time")


# --------------------------------------------------------------------------- scenario


class Scenario(_Frozen):
    """A whole operation. Construct with :func:`load_scenario`."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str = ""
    domain: str = "operation"
    horizon_days: int = Field(1, ge=1, le=366)
    start_weekday: int = Field(0, ge=0, le=6, description="0 = Monday")
    tick_minutes: int = Field(DEFAULT_TICK_MINUTES, ge=1, le=60)
    decision_interval_minutes: int = Field(DEFAULT_DECISION_INTERVAL_MINUTES, ge=1)
    sectors: Annotated[tuple[Sector, ...], _non_empty("sector")]
    item_classes: Annotated[tuple[ItemClass, ...], _non_empty("item class")]
    workforce: Workforce
    plan: dict[str, SectorPlan] = Field(default_factory=dict)
    costs: Costs
    disruptions: tuple[Disruption, ...] = ()
    uncertainty: Uncertainty | None = Field(
        None, description="how reality departs from the plan (twin.uncertainty)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        """The cross-references between fields (:func:`_cross_reference_problems`), all
        raised at once, each at its own path: pydantic turns a ``ValidationError`` raised
        here into its line errors. Pydantic runs this only when every field is valid, so
        :func:`scenario_from_dict` also runs the checks over the raw mapping."""
        problems = cross_reference_problems(self.model_dump())
        if problems:
            raise ValidationError.from_exception_data(
                "Scenario",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(CROSS_REFERENCE, "{problem}", {"problem": msg}),
                        loc=loc,
                        input=None,
                    )
                    for loc, msg in problems
                ],
            )
        return self

    # ------------------------------------------------------------------ derived values

    @property
    def sector_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sectors)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.item_classes)

    @property
    def horizon_minutes(self) -> int:
        return self.horizon_days * MINUTES_PER_DAY

    @property
    def total_headcount(self) -> int:
        return sum(sum(per_shift.values()) for per_shift in self.workforce.headcount.values())

    def sector_plan(self, sector: str) -> SectorPlan:
        return self.plan.get(sector, SectorPlan())

    def efficiency(self, home: str, sector: str) -> float:
        """How fast a worker from ``home`` works in ``sector`` (1.0 at home, 0 = not trained)."""
        if home == sector:
            return 1.0
        return self.workforce.cross_training.get(home, {}).get(sector, 0.0)

    @cached_property
    def digest(self) -> str:
        """A short content hash: bundles and reports name the exact scenario they used."""
        data = self.model_dump(mode="json")
        if data.get("uncertainty") is None:
            # a plan-only scenario keeps the digest it had before uncertainty existed
            # (tuned files and bundles name scenarios by digest)
            data.pop("uncertainty", None)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def scaled(self, factor: float) -> Scenario:
        """The same operation with workers, stations, flex pool and demand times ``factor``."""
        data = self.model_dump(mode="json")
        data["name"] = f"{self.name}-x{factor:g}".replace(".", "_")
        for c in data["item_classes"]:
            c["hourly_rates"] = [r * factor for r in c["hourly_rates"]]
        for per_shift in data["workforce"]["headcount"].values():
            for shift in per_shift:
                per_shift[shift] = round(per_shift[shift] * factor)
        data["workforce"]["flex"]["max_workers"] = round(
            data["workforce"]["flex"]["max_workers"] * factor
        )
        for s in data["sectors"]:
            if s["stations"] is not None:
                s["stations"] = max(1, round(s["stations"] * factor))
        return Scenario.model_validate(data)


# --------------------------------------------------------------------------- loading


def scenario_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Scenario:
    """Validate a mapping into a :class:`Scenario`, raising :class:`ScenarioError` on problems.

    The error lists every problem: the fields pydantic refused and, since pydantic skips
    the cross-reference validator when any field fails, those checks run over the raw
    mapping too.
    """
    if not isinstance(data, Mapping):
        raise ScenarioError(f"invalid scenario {source}: expected a mapping at the top level")
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as err:
        errors = err.errors()
        problems = [(field_path(e["loc"], data), message(e)) for e in errors]
        if not any(e["type"] == CROSS_REFERENCE for e in errors):
            problems += cross_reference_problems(data)
        raise ScenarioError(format_errors(problems, source)) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path.

    A file may start from another scenario with ``extends: NAME_OR_PATH`` and give only
    what differs: mappings are merged key by key, lists and values replace.
    """
    data, source = read_yaml(name_or_path)
    return scenario_from_dict(data, source)
