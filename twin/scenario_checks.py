"""The scenario's checks that pydantic's field validation cannot make, and its error text.

Cross-references (unknown names, duplicates, counts, routing cycles) read a plain
mapping, so they run over a raw file whose fields failed validation as well as over a
valid scenario; :func:`format_errors` turns every problem into the one message a user
reads (``invalid scenario FILE:`` and a ``path: problem`` line each).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from pydantic_core import ErrorDetails

from twin.uncertainty import uncertainty_problems

EXIT = "exit"  # routing target meaning "the item leaves the operation"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"  # sector, item class and shift names
#: defaults of the two scenario fields the checks compare
DEFAULT_TICK_MINUTES = 1
DEFAULT_DECISION_INTERVAL_MINUTES = 30

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]  # (field path as pydantic spells it, message)


class ScenarioError(ValueError):
    """A scenario could not be loaded; the message names the field and the problem."""


# --------------------------------------------------------------------------- cross-references

# The pydantic error type of these checks: it tells scenario_from_dict that they ran.
CROSS_REFERENCE = "scenario_cross_reference"


def route_as_routing(data: Any) -> Any:
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


def _seq(v: Any) -> list[Any] | tuple[Any, ...]:
    return v if isinstance(v, list | tuple) else ()


def _map(v: Any) -> Mapping[Any, Any]:
    return v if isinstance(v, Mapping) else {}


def _is_int(v: Any) -> TypeGuard[int]:
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


def cross_reference_problems(data: Mapping[str, Any]) -> list[Problem]:
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
            c = _map(route_as_routing(raw))
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
    interval = data.get("decision_interval_minutes", DEFAULT_DECISION_INTERVAL_MINUTES)
    tick = data.get("tick_minutes", DEFAULT_TICK_MINUTES)
    if _is_int(interval) and _is_int(tick) and tick >= 1 and interval % tick:
        problems.append(
            (("decision_interval_minutes",), f"must be a multiple of tick_minutes ({tick})")
        )
    if sectors is not None:
        problems += _routing_cycles(sectors, routings)
    stations: dict[Any, Any] = {  # raw YAML: names and counts not validated yet
        _map(e).get("name"): _map(e).get("stations") for e in _seq(data.get("sectors"))
    }
    problems += uncertainty_problems(data.get("uncertainty"), sectors, classes, stations)
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


def field_path(loc: Loc, data: Any) -> Loc:
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


def message(e: ErrorDetails) -> str:
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


def format_errors(problems: list[Problem], source: str) -> str:
    """``invalid scenario SOURCE:`` and one ``  - path: message`` line per problem, once."""
    lines = dict.fromkeys(
        f"  - {'.'.join(map(str, loc)) or '(top level)'}: {msg}" for loc, msg in problems
    )
    return "\n".join([f"invalid scenario {source}:", *lines])
