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
import itertools
import json
import re
from collections.abc import Mapping
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from twin.distributions import Distribution

MINUTES_PER_DAY = 24 * 60
EXIT = "exit"  # routing target meaning "the item leaves the operation"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"  # sector, item class and shift names

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]  # (field path as pydantic spells it, message)


class ScenarioError(ValueError):
    """A scenario could not be loaded; the message names the field and the problem."""


def _parse_clock(v: Any) -> int:
    """``"06:30"`` or ``390`` -> 390 (minutes after midnight)."""
    if isinstance(v, bool):
        raise ValueError("expected a time of day like '06:30' or minutes after midnight")
    if isinstance(v, int):
        minute = v
    elif isinstance(v, str) and (m := re.fullmatch(r"(\d{1,2}):(\d{2})", v.strip())):
        hours, minutes = int(m[1]), int(m[2])
        if minutes >= 60:
            raise ValueError(f"minutes must be < 60 in {v!r}")
        minute = hours * 60 + minutes
    else:
        raise ValueError(
            f"expected a time of day like '06:30' or minutes after midnight, got {v!r}"
        )
    if not 0 <= minute <= MINUTES_PER_DAY:
        raise ValueError(f"time of day must be within 00:00..24:00, got {v!r}")
    return minute


ClockMinute = Annotated[int, BeforeValidator(_parse_clock)]


def _non_empty(what: str) -> AfterValidator:
    """Refuse an empty list saying what is missing ("needs at least one sector"), where
    ``min_length=1`` would say "Tuple should have at least 1 item after validation"."""

    def check(v: tuple[Any, ...]) -> tuple[Any, ...]:
        if not v:
            raise ValueError(f"needs at least one {what}")
        return v

    return AfterValidator(check)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


def _route_as_routing(data: Any) -> Any:
    """Expand ``route: [a, b, c]`` into ``entry`` + ``routing`` (a fixed path).

    Shared by :class:`ItemClass` and the cross-reference checks over raw data, so both
    see the same routing and name the same paths.
    """
    if not isinstance(data, Mapping) or data.get("route") is None:
        return data
    data = dict(data)
    route = data.pop("route")
    if data.get("routing") is not None or data.get("entry") is not None:
        raise ValueError("give either 'route' or 'entry' + 'routing', not both")
    if not isinstance(route, list | tuple) or not route:
        raise ValueError("'route' must be a non-empty list of sector names")
    if len(set(map(str, route))) != len(route):
        raise ValueError("'route' visits a sector twice")
    data["entry"] = route[0]
    data["routing"] = {a: {b: 1.0} for a, b in itertools.pairwise(route)}
    return data


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
        return _route_as_routing(data)

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
    tick_minutes: int = Field(1, ge=1, le=60)
    decision_interval_minutes: int = Field(30, ge=1)
    sectors: Annotated[tuple[Sector, ...], _non_empty("sector")]
    item_classes: Annotated[tuple[ItemClass, ...], _non_empty("item class")]
    workforce: Workforce
    plan: dict[str, SectorPlan] = Field(default_factory=dict)
    costs: Costs
    disruptions: tuple[Disruption, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        """The cross-references between fields (:func:`_cross_reference_problems`), all
        raised at once, each at its own path: pydantic turns a ``ValidationError`` raised
        here into its line errors. Pydantic runs this only when every field is valid, so
        :func:`scenario_from_dict` also runs the checks over the raw mapping."""
        problems = _cross_reference_problems(self.model_dump())
        if problems:
            raise ValidationError.from_exception_data(
                "Scenario",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(_CROSS_REFERENCE, "{problem}", {"problem": msg}),
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
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
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


# --------------------------------------------------------------------------- cross-references

# The pydantic error type of these checks: it tells scenario_from_dict that they ran.
_CROSS_REFERENCE = "scenario_cross_reference"


def _seq(v: Any) -> list[Any] | tuple[Any, ...]:
    return v if isinstance(v, list | tuple) else ()


def _map(v: Any) -> Mapping[Any, Any]:
    return v if isinstance(v, Mapping) else {}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _names(entries: Any) -> list[str]:
    """The ``name`` of each entry that has a string one (for the duplicate checks)."""
    return [e["name"] for e in _seq(entries) if isinstance(_map(e).get("name"), str)]


def _known(entries: Any, reserved: str | None = None) -> list[str] | None:
    """The names references may point at, or ``None`` when they cannot be trusted.

    With an empty list, a malformed entry, an invalid, duplicated or reserved name the
    real mistake is already reported, and "unknown sector" for every reference to the
    entry that lost its name would only bury it.
    """
    names = _names(entries)
    if (
        not names
        or len(names) != len(_seq(entries))
        or len(set(names)) != len(names)
        or reserved in names
        or not all(re.fullmatch(NAME_PATTERN, n) for n in names)
    ):
        return None
    return names


def _cross_reference_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Every problem between fields: unknown names, duplicates, counts, order, cycles.

    The one owner of these checks. It reads a plain mapping, either a validated
    scenario's ``model_dump()`` or the raw file when some field failed validation (so a
    misspelled sector shows up together with a bad ``hourly_rates``, not after it). It
    never raises: whatever has the wrong shape is skipped, pydantic reports that.
    Paths use list indices, the way pydantic names them.
    """
    problems: list[Problem] = []
    workforce = _map(data.get("workforce"))
    groups = {
        "sector": (("sectors",), data.get("sectors")),
        "shift": (("workforce", "shifts"), workforce.get("shifts")),
        "item class": (("item_classes",), data.get("item_classes")),
    }
    for kind, (path, entries) in groups.items():
        seen: set[str] = set()
        for j, e in enumerate(_seq(entries)):
            name = _map(e).get("name")
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(
                    (
                        (*path, j, "name"),
                        f"{kind} name {name!r} is used twice; names must be unique",
                    )
                )
            if kind == "sector" and name == EXIT:
                problems.append(((*path, j, "name"), f"{EXIT!r} is reserved as a routing target"))
            seen.add(name)
    sectors = _known(data.get("sectors"), reserved=EXIT)
    shifts = _known(workforce.get("shifts"))
    classes = _known(data.get("item_classes"))

    def ref(loc: Loc, name: Any, known: list[str] | None, kind: str, plural: str) -> None:
        if known is not None and isinstance(name, str) and name not in known:
            problems.append((loc, f"unknown {kind} {name!r} ({plural}: {', '.join(known)})"))

    def sector(loc: Loc, name: Any) -> None:
        ref(loc, name, sectors, "sector", "sectors")

    routings: list[tuple[int, Any, Any]] = []
    for i, raw in enumerate(_seq(data.get("item_classes"))):
        try:
            c = _map(_route_as_routing(raw))
        except ValueError:
            continue
        sector(("item_classes", i, "entry"), c.get("entry"))
        routing = _map(c.get("routing"))
        routings.append((i, c.get("name"), routing))
        for src, targets in routing.items():
            sector(("item_classes", i, "routing", src), src)
            for dst in _map(targets):
                if dst != EXIT:
                    sector(("item_classes", i, "routing", src, dst), dst)
    for s, per_shift in _map(workforce.get("headcount")).items():
        sector(("workforce", "headcount", s), s)
        for shift in _map(per_shift):
            ref(("workforce", "headcount", s, shift), shift, shifts, "shift", "shifts")
    for src, targets in _map(workforce.get("cross_training")).items():
        sector(("workforce", "cross_training", src), src)
        for dst in _map(targets):
            sector(("workforce", "cross_training", src, dst), dst)
    for s in _map(data.get("plan")):
        sector(("plan", s), s)
    for i, raw in enumerate(_seq(data.get("disruptions"))):
        d = _map(raw)
        sector(("disruptions", i, "sector"), d.get("sector"))
        if d.get("kind") == "equipment_breakdown" and sectors and d.get("sector") in sectors:
            has = _map(_seq(data["sectors"])[sectors.index(d["sector"])]).get("stations")
            out = d.get("stations", 1)
            if _is_int(out) and out >= 1 and (has is None or (_is_int(has) and out > has >= 1)):
                problems.append(
                    (
                        ("disruptions", i),
                        f"{d['sector']!r} has {has or 'no'} stations, cannot take {out} out",
                    )
                )
        if d.get("kind") == "demand_surge":
            start, end = d.get("start_minute"), d.get("end_minute")
            if _is_int(start) and _is_int(end) and end <= start:
                problems.append((("disruptions", i), "end_minute must be after start_minute"))
            ref(
                ("disruptions", i, "item_class"),
                d.get("item_class"),
                classes,
                "item class",
                "item classes",
            )
    defaults = Scenario.model_fields
    interval = data.get("decision_interval_minutes", defaults["decision_interval_minutes"].default)
    tick = data.get("tick_minutes", defaults["tick_minutes"].default)
    if _is_int(interval) and _is_int(tick) and tick >= 1 and interval % tick:
        problems.append(
            (("decision_interval_minutes",), f"must be a multiple of tick_minutes ({tick})")
        )
    if sectors is not None:
        problems += _routing_cycles(sectors, routings)
    return problems


def _routing_cycles(sectors: list[str], routings: list[tuple[int, Any, Any]]) -> list[Problem]:
    """One problem per hand-off that closes a loop, at that hand-off in the first item class
    routing it. Dicts keep insertion order, so the same file gives the same message."""
    edges: dict[str, dict[str, int]] = {s: {} for s in sectors}  # from -> {to: class index}
    names = {i: str(name) for i, name, _ in routings}
    for i, _, routing in routings:
        for src, targets in _map(routing).items():
            for dst, p in _map(targets).items():
                if src in edges and dst in edges and isinstance(p, int | float) and p > 0:
                    edges[src].setdefault(dst, i)
    problems: list[Problem] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt, i in edges[node].items():
            if state.get(nxt) == 1:
                loop = [*path[path.index(nxt) :], nxt]
                culprits = sorted({names[edges[a][b]] for a, b in itertools.pairwise(loop)})
                problems.append(
                    (
                        ("item_classes", i, "routing", node, nxt),
                        f"routing has a cycle: {' -> '.join(loop)} "
                        f"(item classes {', '.join(culprits)}); handoffs must form a DAG",
                    )
                )
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for s in edges:
        if s not in state:
            visit(s, [s])
    return problems


# --------------------------------------------------------------------------- loading


def _field_path(loc: Loc, data: Any) -> Loc:
    """``loc`` without the tag pydantic inserts for a discriminated union.

    Pydantic reports ``disruptions.0.absenteeism.rate`` and
    ``sectors.0.service.lognormal.cv``; the file has no ``absenteeism`` or ``lognormal``
    key there, so the path a reader can follow drops it.
    """
    out: list[str | int] = []
    node = data
    for part in loc:
        tags = (node.get("kind"), node.get("dist")) if isinstance(node, Mapping) else ()
        if part in tags and part not in node:
            continue
        out.append(part)
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list | tuple) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _message(e: ErrorDetails) -> str:
    """Pydantic's message, reworded where it is vague or speaks pydantic's language."""
    ctx = e.get("ctx") or {}
    if e["type"] == "union_tag_invalid":
        field = str(ctx["discriminator"]).strip("'")
        return f"unknown {field} {ctx['tag']!r} (expected one of {ctx['expected_tags']})"
    if e["type"] == "union_tag_not_found":
        return f"needs a {ctx['discriminator']} field"
    if e["type"] in {"tuple_type", "list_type"}:
        return "should be a list"
    if e["type"] in {"model_type", "model_attributes_type", "dict_type"}:
        return "should be a mapping of keys to values"
    if e["type"] == "too_short":
        return f"needs at least {ctx['min_length']} value(s), got {ctx['actual_length']}"
    return e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _format_errors(problems: list[Problem], source: str) -> str:
    """``invalid scenario SOURCE:`` and one ``  - path: message`` line per problem, once."""
    lines = dict.fromkeys(
        f"  - {'.'.join(map(str, loc)) or '(top level)'}: {msg}" for loc, msg in problems
    )
    return "\n".join([f"invalid scenario {source}:", *lines])


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    root = resources.files("twin") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


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
        problems = [(_field_path(e["loc"], data), _message(e)) for e in errors]
        if not any(e["type"] == _CROSS_REFERENCE for e in errors):
            problems += _cross_reference_problems(data)
        raise ScenarioError(_format_errors(problems, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of silently keeping the last."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """``at line L, column C: problem`` (1-based) for a YAML error.

    PyYAML's own text names the stream ``"<unicode string>"`` (it parsed a string) and
    spreads over several lines; the caller names the file instead.
    """

    def where(line: int, column: int) -> str:  # PyYAML counts from 0
        return f"line {line + 1}, column {column + 1}"

    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        problem = err.problem or "invalid syntax"
        if err.context and err.context_mark is not None:
            start = err.context_mark
            problem += f" ({err.context} from {where(start.line, start.column)})"
        elif err.context:
            problem += f" ({err.context})"
        return f"at {where(err.problem_mark.line, err.problem_mark.column)}: {problem}"
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position)
        column = err.position - (text.rfind("\n", 0, err.position) + 1)
        char = f"character #x{err.character:04x}: " if isinstance(err.character, int) else ""
        return f"at {where(line, column)}: {char}{err.reason}"
    return "(no position given): " + str(err).replace('"<unicode string>"', "the file")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base``: mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(name_or_path: str | Path, chain: tuple[str, ...] = ()) -> tuple[dict, str]:
    """The raw mapping of a scenario, with ``extends:`` resolved, and a label for errors."""
    name = str(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise ScenarioError(f"scenario file not found: {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    elif name in builtin_names():
        text = (resources.files("twin") / "scenarios" / f"{name}.yaml").read_text("utf-8")
        source = f"{name!r} (built-in)"
    elif path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        raise ScenarioError(
            f"unknown scenario {name!r}: not a file, and not a built-in "
            f"(built-ins: {', '.join(builtin_names())})"
        )
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ScenarioError(
            f"invalid scenario {source}: not valid YAML {_yaml_problem(err, text)}"
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"invalid scenario {source}: expected a mapping at the top level")
    parent = data.pop("extends", None)
    if parent is not None:
        if source in chain:
            raise ScenarioError(f"invalid scenario {source}: 'extends' loops back to itself")
        if not Path(str(parent)).is_absolute() and path.parent != Path() and path.is_file():
            candidate = path.parent / str(parent)
            parent = candidate if candidate.is_file() else parent
        base, _ = _read_yaml(parent, (*chain, source))
        data = _merge(base, data)
    return data, source


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path.

    A file may start from another scenario with ``extends: NAME_OR_PATH`` and give only
    what differs: mappings are merged key by key, lists and values replace.
    """
    data, source = _read_yaml(name_or_path)
    return scenario_from_dict(data, source)
