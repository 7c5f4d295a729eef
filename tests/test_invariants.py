"""Property tests: the twin's conservation laws hold at every tick, whatever happens.

Hypothesis draws small random operations (a DAG of 1-3 sectors, branching routes,
every service-time family, stations with breakdowns and outages, shifts with breaks,
cross-training, a flex pool, overtime, absence, surges) and, separately, the
built-in scenarios with random seeds; a random controller changes lending, flex,
overtime and queue priority at every decision interval. After every tick:

- ``check_invariants()`` (items arrived = completed + queued + in service; each
  worker in exactly one state, matching the state counts; worker-minutes add up);
- independently, from the public API: items that entered = items completed + backlog
  (KPIs), the workforce is the roster plus the flex pool, and at each decision the
  snapshot fits the scenario and accounts for every worker.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.actions import SectorAction
from twin.model import OperationModel, check_snapshot
from twin.scenario import (
    MINUTES_PER_DAY,
    Scenario,
    builtin_names,
    load_scenario,
    scenario_from_dict,
)
from twin.workers import WorkerState

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples in every run: CI failures reproduce locally
)

DISTRIBUTIONS = st.one_of(
    st.builds(lambda v: {"dist": "deterministic", "value": v}, st.floats(0.5, 20)),
    st.builds(lambda m: {"dist": "exponential", "mean": m}, st.floats(0.5, 20)),
    st.builds(
        lambda m, cv: {"dist": "lognormal", "mean": m, "cv": cv},
        st.floats(0.5, 20),
        st.floats(0.1, 1.5),
    ),
    st.builds(
        lambda xs: {"dist": "empirical", "samples": xs},
        st.lists(st.floats(0.5, 20), min_size=1, max_size=5),
    ),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A small valid operation; sectors are numbered so routes only go forward (a DAG)."""
    n = draw(st.integers(1, 3))
    names = [f"s{i}" for i in range(n)]
    sectors = []
    for name in names:
        sector: dict[str, Any] = {"name": name, "service": draw(DISTRIBUTIONS)}
        if draw(st.booleans()):
            sector["stations"] = draw(st.integers(1, 4))
            if draw(st.booleans()):
                sector["breakdowns"] = {
                    "time_to_failure": {"dist": "exponential", "mean": draw(st.floats(30, 600))},
                    "repair": {"dist": "exponential", "mean": draw(st.floats(5, 60))},
                }
        sectors.append(sector)
    classes = []
    for k in range(draw(st.integers(1, 2))):
        entry = draw(st.integers(0, n - 1))
        routing = {}
        for i in range(entry, n - 1):
            later = names[i + 1 :]
            targets = draw(st.lists(st.sampled_from(later), min_size=0, max_size=2, unique=True))
            if targets:
                share = draw(st.floats(0.2, 1.0))
                routing[names[i]] = {t: share / len(targets) for t in targets}
        classes.append(
            {
                "name": f"c{k}",
                "entry": names[entry],
                "routing": routing,
                "hourly_rates": [draw(st.floats(0, 90))] * 24,
                "due": {"within_minutes": draw(st.integers(10, 600))},
            }
        )
    shifts = []
    for j in range(draw(st.integers(1, 2))):
        start = draw(st.integers(0, 23)) * 60
        length = draw(st.integers(2, 12)) * 60
        shift: dict[str, Any] = {
            "name": f"shift{j}",
            "start": start,
            "end": (start + length) % MINUTES_PER_DAY,
        }
        if draw(st.booleans()):
            shift["breaks"] = [{"start": (start + length // 2) % MINUTES_PER_DAY, "minutes": 30}]
        shifts.append(shift)
    headcount = {name: {s["name"]: draw(st.integers(0, 4)) for s in shifts} for name in names}
    cross = {
        a: {b: draw(st.floats(0.1, 1.0)) for b in names if b != a and draw(st.booleans())}
        for a in names
    }
    disruptions: list[dict[str, Any]] = []
    if draw(st.booleans()):
        start = draw(st.integers(0, 1200))
        disruptions.append(
            {
                "kind": "demand_surge",
                "start_minute": start,
                "end_minute": start + 120,
                "multiplier": draw(st.floats(1.5, 3.0)),
            }
        )
    if draw(st.booleans()):
        disruptions.append({"kind": "absenteeism", "day": 0, "rate": draw(st.floats(0, 0.5))})
    with_stations = [s for s in sectors if "stations" in s]
    if with_stations and draw(st.booleans()):
        sector = draw(st.sampled_from(with_stations))
        disruptions.append(
            {
                "kind": "equipment_breakdown",
                "sector": sector["name"],
                "start_minute": draw(st.integers(0, 1300)),
                "duration_minutes": 90,
                "stations": draw(st.integers(1, sector["stations"])),
            }
        )
    return scenario_from_dict(
        {
            "name": "random",
            "decision_interval_minutes": draw(st.sampled_from([15, 30, 60])),
            "sectors": sectors,
            "item_classes": classes,
            "workforce": {
                "shifts": shifts,
                "headcount": headcount,
                "cross_training": cross,
                "transfer_minutes": draw(st.integers(0, 20)),
                "max_overtime_minutes": draw(st.sampled_from([0, 30, 120])),
                "absence_rate": draw(st.floats(0, 0.3)),
                "flex": {"max_workers": draw(st.integers(0, 3)), "lead_minutes": 30},
            },
            "costs": {
                "regular_rate_per_hour": 20,
                "overtime_rate_per_hour": 30,
                "flex_rate_per_hour": 35,
                "sla_miss_penalty": 5,
            },
            "disruptions": disruptions,
        },
        source="hypothesis",
    )


def random_actions(scenario: Scenario, rng: np.random.Generator) -> dict[str, SectorAction]:
    """Any mix of lending (including to untrained or unknown sectors), flex, overtime, EDD."""
    names = [*scenario.sector_names, None, "nowhere"]
    return {
        s: SectorAction(
            lend_to=names[rng.integers(len(names))],
            lend_count=int(rng.integers(0, 6)),
            flex_count=int(rng.integers(0, 4)),
            overtime=bool(rng.integers(2)),
            priority="edd" if rng.integers(2) else "fifo",
        )
        for s in scenario.sector_names
    }


def run_checked(scenario: Scenario, seed: int, action_seed: int, minutes: float) -> None:
    """Run under random actions, checking every conservation law after every tick."""
    model = OperationModel(scenario, rng=np.random.default_rng(seed))
    rng = np.random.default_rng(action_seed)
    workforce = scenario.total_headcount + scenario.workforce.flex.max_workers
    interval = scenario.decision_interval_minutes
    model.check_invariants()
    while model.minute < minutes - 1e-9:
        if model.minute % interval < 1e-9:
            snap = model.snapshot()
            check_snapshot(scenario, snap)
            assert sum(g.count for g in snap.workers) == workforce
            model.apply(random_actions(scenario, rng))
        model.step()
        model.check_invariants()
        k = model.kpis()
        assert model.arrived == k.total.items_completed + k.total.backlog_end
        assert k.total.backlog_end == sum(r.backlog_end for r in k.sectors.values())
        assert len(model.agents) == workforce
        assert all(isinstance(w.state, WorkerState) for w in model.agents)
        assert k.total.overtime_hours >= 0 and k.total.flex_hours >= 0
    assert model.minute == minutes


@SETTINGS
@given(scenario=scenarios(), seed=st.integers(0, 2**32 - 1), action_seed=st.integers(0, 1000))
def test_random_operations_keep_their_invariants(
    scenario: Scenario, seed: int, action_seed: int
) -> None:
    run_checked(scenario, seed, action_seed, scenario.horizon_minutes)


@settings(SETTINGS, max_examples=6)
@given(
    name=st.sampled_from(builtin_names()),
    seed=st.integers(0, 2**32 - 1),
    action_seed=st.integers(0, 1000),
    hours=st.integers(6, 24),
)
def test_builtins_keep_their_invariants(name: str, seed: int, action_seed: int, hours: int) -> None:
    run_checked(load_scenario(name), seed, action_seed, hours * 60.0)
