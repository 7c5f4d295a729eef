"""The live-state schema: snapshots round-trip exactly, and bad ones are refused clearly.

What :meth:`OperationModel.from_snapshot` promises, and so what is tested:

- the rebuilt twin reports the same state: ``snapshot()`` of the rebuilt twin equals
  the snapshot it was built from (queues by due bucket, workers by group, stations,
  flow rates, the actions in force), through JSON too;
- its KPIs count from the snapshot's minute, and it runs on with every conservation
  law intact;
- it is deterministic: the same snapshot and seed give the same continuation.

It does *not* promise that a rebuilt twin continues exactly like the live one: a
snapshot summarises items by due bucket and restarts the service of items in hand,
so only the rebuilt twins are compared with each other.

Malformed snapshots fail with a pydantic ``ValidationError`` (the schema alone:
missing fields, negative counts, NaN, a wrong schema version) or a
:class:`SnapshotError` (the snapshot does not fit the scenario), naming the field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from agents import make_controller
from twin.model import OperationModel, SnapshotError, check_snapshot
from twin.runner import run
from twin.scenario import builtin_names, load_scenario
from twin.snapshot import OperationSnapshot

#: minutes into the day: night (no shift), early shift, break, late-shift evening, overtime
MOMENTS = (300.0, 615.0, 1000.0, 1330.0)


def live_snapshot(name: str, minute: float, seed: int = 3) -> OperationSnapshot:
    """A twin of built-in ``name`` under random actions (lending, flex, overtime, EDD)."""
    scenario = load_scenario(name)
    model = OperationModel(scenario, rng=np.random.default_rng(seed))
    run(model, make_controller("random", scenario, seed), minutes=minute)
    return model.snapshot()


@pytest.fixture(scope="module")
def default_snapshot() -> OperationSnapshot:
    return live_snapshot("default", 615.0)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("minute", MOMENTS)
@pytest.mark.parametrize("name", builtin_names())
def test_rebuilt_twin_reports_the_same_state(name: str, minute: float) -> None:
    scenario = load_scenario(name)
    snap = live_snapshot(name, minute)
    rebuilt = OperationModel.from_snapshot(scenario, snap, rng=np.random.default_rng(1))
    assert rebuilt.snapshot() == snap
    assert rebuilt.minute == snap.minute
    rebuilt.check_invariants()


@pytest.mark.parametrize("minute", MOMENTS)
@pytest.mark.parametrize("name", builtin_names())
def test_the_twin_s_snapshot_is_what_validation_gives(name: str, minute: float) -> None:
    """``snapshot()`` skips validation (``model_construct``): it must lose nothing by it."""
    snap = live_snapshot(name, minute)
    validated = OperationSnapshot.model_validate(snap.model_dump())
    assert validated == snap
    assert validated.model_dump_json() == snap.model_dump_json()  # same types: 0.0, not 0
    assert repr(validated) == repr(snap)


def test_json_round_trip(default_snapshot: OperationSnapshot) -> None:
    text = default_snapshot.model_dump_json()
    again = OperationSnapshot.model_validate_json(text)
    assert again == default_snapshot
    assert again.model_dump_json() == text
    # the same through a plain JSON document (what a live system sends)
    assert OperationSnapshot.model_validate(json.loads(text)) == default_snapshot
    scenario = load_scenario("default")
    rebuilt = OperationModel.from_snapshot(scenario, again, rng=np.random.default_rng(0))
    assert rebuilt.snapshot().model_dump_json() == text


def test_rebuilt_twin_counts_kpis_from_the_snapshot(default_snapshot: OperationSnapshot) -> None:
    scenario = load_scenario("default")
    rebuilt = OperationModel.from_snapshot(scenario, default_snapshot, rng=0)
    k = rebuilt.kpis()
    assert k.minute == default_snapshot.minute
    assert k.total.items_completed == 0 and k.total.sla_misses == 0
    assert k.total.overtime_hours == 0 and k.total.labor_cost == 0
    backlog = sum(s.queued + s.serving for s in default_snapshot.sectors)
    assert k.total.backlog_end == backlog


def test_rebuilt_twins_continue_identically(default_snapshot: OperationSnapshot) -> None:
    scenario = load_scenario("default")

    def continuation(seed: int) -> tuple[Any, Any]:
        model = OperationModel.from_snapshot(scenario, default_snapshot, rng=seed)
        run(model, make_controller("threshold", scenario, seed), minutes=240)
        model.check_invariants()
        return model.kpis(), model.snapshot()

    first, again, other = continuation(5), continuation(5), continuation(6)
    assert first == again
    assert first[0] != other[0], "a different seed should give a different continuation"


def test_snapshot_of_a_rebuilt_twin_runs_to_the_horizon(
    default_snapshot: OperationSnapshot,
) -> None:
    scenario = load_scenario("default")
    model = OperationModel.from_snapshot(scenario, default_snapshot, rng=2)
    model.run_minutes(60)
    second = OperationModel.from_snapshot(scenario, model.snapshot(), rng=2)
    second.run_minutes(scenario.horizon_minutes)
    assert second.done
    second.check_invariants()


# --------------------------------------------------------------------------- malformed: schema

Mutation = Callable[[dict[str, Any]], None]


def _sector(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["sectors"] if s["name"] == name)


def _first_busy(doc: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in doc["workers"] if g["state"] == "busy")


def _set(path: str, value: Any) -> Mutation:
    """Set ``a.b.0.c`` in the document."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]

    return mutate


SCHEMA_ERRORS: list[tuple[str, Mutation, str]] = [
    ("wrong schema version", _set("schema_version", 2), "schema_version"),
    ("missing minute", _drop("minute"), "minute"),
    ("missing sectors", _drop("sectors"), "sectors"),
    ("missing worker state", _drop("workers.0.state"), "workers.0.state"),
    ("missing sector queue", _drop("sectors.0.queue"), "sectors.0.queue"),
    ("negative minute", _set("minute", -5.0), "minute"),
    ("negative queue count", _set("sectors.2.queue.standard.3", -1), "sectors.2.queue"),
    ("zero worker count", _set("workers.0.count", 0), "workers.0.count"),
    ("negative stations down", _set("sectors.3.stations_down", -1), "sectors.3.stations_down"),
    ("NaN minute", _set("minute", float("nan")), "minute"),
    ("NaN rate", _set("sectors.1.arrival_rate_per_hour", float("nan")), "arrival_rate_per_hour"),
    ("infinite overtime", _set("workers.0.overtime_minutes", float("inf")), "overtime_minutes"),
    ("unknown state", _set("workers.0.state", "asleep"), "workers.0.state"),
    ("short due buckets", _set("sectors.2.queue.standard", [1, 2]), "sectors.2.queue"),
    ("unknown field", _set("sectors.0.colour", "red"), "sectors.0.colour"),
    ("bad priority", _set("sectors.0.action.priority", "random"), "sectors.0.action.priority"),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [p[1:] for p in SCHEMA_ERRORS], ids=[p[0] for p in SCHEMA_ERRORS]
)
def test_schema_refuses_and_names_the_field(
    default_snapshot: OperationSnapshot, mutate: Mutation, field: str
) -> None:
    doc = json.loads(default_snapshot.model_dump_json())
    mutate(doc)
    with pytest.raises(ValidationError) as err:
        OperationSnapshot.model_validate(doc)
    locations = [".".join(map(str, e["loc"])) for e in err.value.errors()]
    assert any(field in loc for loc in locations), locations


def test_nan_in_json_text_is_refused(default_snapshot: OperationSnapshot) -> None:
    text = default_snapshot.model_dump_json().replace('"minute":615.0', '"minute":NaN', 1)
    assert "NaN" in text
    with pytest.raises(ValidationError, match="minute"):
        OperationSnapshot.model_validate_json(text)


# --------------------------------------------------------------------------- malformed: scenario


def _unknown_sector(doc: dict[str, Any]) -> None:
    doc["sectors"][0]["name"] = "loading_bay"


def _duplicate_sector(doc: dict[str, Any]) -> None:
    doc["sectors"][1] = copy.deepcopy(doc["sectors"][0])


def _busy_without_items(doc: dict[str, Any]) -> None:
    _first_busy(doc)["count"] += 1


def _flex_beyond_pool(doc: dict[str, Any]) -> None:
    doc["workers"].append(
        {"home": None, "sector": None, "shift": None, "flex": True, "state": "off_shift"}
        | {"count": 1000}
    )


FIT_ERRORS: list[tuple[str, Mutation, str]] = [
    ("other scenario", _set("scenario", "claims"), "snapshot scenario"),
    ("unknown sector", _unknown_sector, "snapshot sectors"),
    ("duplicate sector", _duplicate_sector, "snapshot sectors"),
    ("worker in unknown sector", lambda d: _first_busy(d).update(sector="roof"), "sector"),
    ("worker from unknown home", lambda d: _first_busy(d).update(home="roof"), "home"),
    ("unknown shift", lambda d: _first_busy(d).update(shift="night"), "shift"),
    ("unknown item class", lambda d: _sector(d, "picking")["queue"].update(bulk=[0] * 7), "bulk"),
    ("busy workers without items", _busy_without_items, "in_service"),
    ("more flex than the pool", _flex_beyond_pool, "flex workers"),
    ("outage beyond stations down", _set("sectors.3.outage_stations", 5), "outage_stations"),
    ("more stations down than exist", _set("sectors.3.stations_down", 21), "stations_down"),
    ("stations down where none exist", _set("sectors.1.stations_down", 1), "stations_down"),
    ("lending to an unknown sector", _set("sectors.0.action.lend_to", "roof"), "lend_to"),
]


@pytest.mark.parametrize(
    ("mutate", "needle"), [p[1:] for p in FIT_ERRORS], ids=[p[0] for p in FIT_ERRORS]
)
def test_snapshot_that_does_not_fit_the_scenario(
    default_snapshot: OperationSnapshot, mutate: Mutation, needle: str
) -> None:
    scenario = load_scenario("default")
    doc = json.loads(default_snapshot.model_dump_json())
    mutate(doc)
    snap = OperationSnapshot.model_validate(doc)  # the schema alone accepts it
    with pytest.raises(SnapshotError, match=needle) as err:
        check_snapshot(scenario, snap)
    assert str(err.value).startswith("snapshot ")
    with pytest.raises(SnapshotError):
        OperationModel.from_snapshot(scenario, snap, rng=0)


def test_the_unbroken_snapshot_fits(default_snapshot: OperationSnapshot) -> None:
    assert [s.name for s in default_snapshot.sectors][1] == "putaway"  # station-free
    assert [s.name for s in default_snapshot.sectors][3] == "packing"  # 20 benches
    assert any(g["state"] == "busy" for g in default_snapshot.model_dump()["workers"])
    check_snapshot(load_scenario("default"), default_snapshot)


def test_a_transfer_already_due_ends_at_once(default_snapshot: OperationSnapshot) -> None:
    """A live system may report a transfer whose ready time has passed: it ends now."""
    scenario = load_scenario("default")
    doc = json.loads(default_snapshot.model_dump_json())
    group = next(g for g in doc["workers"] if g["state"] == "break" and not g["flex"])
    group["count"] -= 1
    doc["workers"].append(group | {"state": "transfer", "count": 1, "ready_minute": 500.0})
    doc["workers"] = [g for g in doc["workers"] if g["count"] > 0]
    model = OperationModel.from_snapshot(scenario, OperationSnapshot.model_validate(doc), rng=0)
    model.step()
    model.check_invariants()
    assert all(w.since >= doc["minute"] for w in model.agents)
