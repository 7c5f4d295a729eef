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
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from twin.distributions import Distribution

MINUTES_PER_DAY = 24 * 60
EXIT = "exit"  # routing target meaning "the item leaves the operation"


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

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
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
    cutoffs: tuple[ClockMinute, ...] | None = Field(None, min_length=1)
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

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
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
        """Expand ``route: [a, b, c]`` into ``entry`` + ``routing`` (a fixed path)."""
        if not isinstance(data, Mapping) or data.get("route") is None:
            return data
        data = dict(data)
        route = data.pop("route")
        if data.get("routing") is not None or data.get("entry") is not None:
            raise ValueError("give either 'route' or 'entry' + 'routing', not both")
        if not isinstance(route, list | tuple) or not route:
            raise ValueError("'route' must be a non-empty list of sector names")
        if len(set(route)) != len(route):
            raise ValueError("'route' visits a sector twice")
        data["entry"] = route[0]
        data["routing"] = {a: {b: 1.0} for a, b in itertools.pairwise(route)}
        return data

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

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
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
    shifts: tuple[Shift, ...] = Field(min_length=1)
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
    sectors: tuple[Sector, ...]
    item_classes: tuple[ItemClass, ...]
    workforce: Workforce
    plan: dict[str, SectorPlan] = Field(default_factory=dict)
    costs: Costs
    disruptions: tuple[Disruption, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if not self.sectors or not self.item_classes:
            raise ValueError("needs at least one sector and one item class")
        names = [s.name for s in self.sectors]
        known = set(names)
        _unique("sector", names)
        _unique("shift", [s.name for s in self.workforce.shifts])
        _unique("item class", [c.name for c in self.item_classes])
        if EXIT in known:
            raise ValueError(f"{EXIT!r} is reserved as a routing target")
        if self.decision_interval_minutes % self.tick_minutes:
            raise ValueError("decision_interval_minutes must be a multiple of tick_minutes")
        shift_names = {s.name for s in self.workforce.shifts}

        def check_sector(where: str, sector: str) -> None:
            if sector not in known:
                raise ValueError(f"{where}: unknown sector {sector!r} (sectors: {sorted(known)})")

        classes = [c.name for c in self.item_classes]
        for c in self.item_classes:
            check_sector(f"item_classes.{c.name}.entry", c.entry)
            for src, targets in c.routing.items():
                check_sector(f"item_classes.{c.name}.routing", src)
                for dst in targets:
                    if dst != EXIT:
                        check_sector(f"item_classes.{c.name}.routing.{src}", dst)
        for sector, per_shift in self.workforce.headcount.items():
            check_sector("workforce.headcount", sector)
            for shift in per_shift:
                if shift not in shift_names:
                    raise ValueError(
                        f"workforce.headcount.{sector}: unknown shift {shift!r} "
                        f"(shifts: {sorted(shift_names)})"
                    )
        for src, targets in self.workforce.cross_training.items():
            check_sector("workforce.cross_training", src)
            for dst in targets:
                check_sector(f"workforce.cross_training.{src}", dst)
        for sector in self.plan:
            check_sector("plan", sector)
        for i, d in enumerate(self.disruptions):
            sector = getattr(d, "sector", None)
            if sector is not None:
                check_sector(f"disruptions.{i}", sector)
            if isinstance(d, EquipmentBreakdown):
                stations = self.sectors[names.index(d.sector)].stations
                if stations is None or d.stations > stations:
                    raise ValueError(
                        f"disruptions.{i}: {d.sector!r} has {stations or 'no'} stations, "
                        f"cannot take {d.stations} out"
                    )
            if isinstance(d, Surge):
                if d.end_minute <= d.start_minute:
                    raise ValueError(f"disruptions.{i}: end_minute must be after start_minute")
                if d.item_class is not None and d.item_class not in classes:
                    raise ValueError(f"disruptions.{i}: unknown item_class {d.item_class!r}")
        self._check_acyclic()
        return self

    def _check_acyclic(self) -> None:
        edges: dict[str, set[str]] = {s.name: set() for s in self.sectors}
        owners: dict[tuple[str, str], str] = {}
        for c in self.item_classes:
            for src, targets in c.routing.items():
                for t, p in targets.items():
                    if t != EXIT and p > 0:
                        edges[src].add(t)
                        owners.setdefault((src, t), c.name)
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for nxt in edges[node]:
                if state.get(nxt) == 1:
                    loop = [*path[path.index(nxt) :], nxt]
                    cycle = " -> ".join(loop)
                    culprits = sorted({owners[(a, b)] for a, b in itertools.pairwise(loop)})
                    raise ValueError(
                        f"routing has a cycle: {cycle} (item classes {', '.join(culprits)}); "
                        "handoffs must form a DAG"
                    )
                if nxt not in state:
                    visit(nxt, [*path, nxt])
            state[node] = 2

        for s in edges:
            if s not in state:
                visit(s, [s])

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


def _unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{kind} name {n!r} is used twice; names must be unique")
        seen.add(n)


# --------------------------------------------------------------------------- loading


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid scenario {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    root = resources.files("twin") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def scenario_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Scenario:
    """Validate a mapping into a :class:`Scenario`, raising :class:`ScenarioError` on problems."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"invalid scenario {source}: expected a mapping at the top level")
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as err:
        raise ScenarioError(_format_errors(err, source)) from None


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
    path = Path(name_or_path)
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
        raise ScenarioError(f"invalid scenario {source}: not valid YAML: {err}") from None
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
