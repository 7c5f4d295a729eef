"""The screen of predicted impact: arms that cannot save ``min_saving`` stop at half the seeds.

:func:`policies.impact.estimate_impact` with ``min_saving`` runs every arm on the first
half of the seeds, stops the arms whose paired savings show they cannot be
recommended, and runs the rest on the remaining seeds. An arm that goes on must get
exactly the numbers it gets without the screen (same seeds, same pairing); a stopped
one must report the samples it ran, paired with the ``without`` arm's first samples.
The state is ``default`` at 14:30 (static plan, seed 1), where the shipped policy
proposes a Picking change that saves about 210 and a Shipping change without effect.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from experiments.bench.serve_rollouts import rollouts_of
from policies.impact import (
    Rollout,
    RolloutJob,
    Runner,
    cannot_reach,
    estimate_impact,
    run_here,
    screen_samples,
)
from policies.rollout_pool import RolloutPool
from policies.runtime import BundlePolicy
from policies.server import Settings, create_app, load_served
from twin.actions import Controller, SectorAction
from twin.model import OperationModel
from twin.scenario import Scenario, load_scenario
from twin.snapshot import OperationSnapshot

HORIZON = 90
MIN_SAVING = 20.0


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("default")


@pytest.fixture(scope="module")
def state(scenario: Scenario) -> OperationSnapshot:
    model = OperationModel(scenario, rng=np.random.default_rng(1), record_every_minutes=None)
    model.run_minutes(14.5 * 60)
    return model.snapshot()


@pytest.fixture(scope="module")
def recommended(policy_bundle: Path, state: OperationSnapshot) -> dict[str, SectorAction]:
    return BundlePolicy(policy_bundle).decide(state)


def counting(batches_seen: list[list[RolloutJob]]) -> Runner:
    """``run_here`` that records the jobs of every batch it is given."""

    def run(
        scenario: Scenario,
        snapshot: OperationSnapshot,
        jobs: Sequence[RolloutJob],
        policy: Controller | None,
    ) -> list[Rollout]:
        batches_seen.append(list(jobs))
        return run_here(scenario, snapshot, jobs, policy)

    return run


def test_cannot_reach() -> None:
    assert cannot_reach([0.0, 0.0, 0.0, 0.0], MIN_SAVING)  # no effect: nothing to gain
    assert cannot_reach([-15.0] * 4, MIN_SAVING)  # a fixed extra cost
    assert cannot_reach([0.0] * 4, 0.0)  # a saving must be positive
    assert cannot_reach([1.0, 3.0, 2.0, 2.5], MIN_SAVING)  # small and steady
    assert not cannot_reach([210.0] * 4, MIN_SAVING)
    assert not cannot_reach([140.0, -30.0, 90.0, 20.0], MIN_SAVING)  # wide: could be worth it
    assert not cannot_reach([-40.0, 10.0, -90.0, -35.0], MIN_SAVING)  # wide at 99%
    assert not cannot_reach([-50.0], MIN_SAVING)  # one sample says nothing
    assert [screen_samples(n) for n in (2, 3, 4, 5, 8, 32)] == [2, 3, 2, 2, 4, 16]


def test_arms_that_go_on_get_the_numbers_of_the_full_run(
    scenario: Scenario, state: OperationSnapshot, recommended: dict[str, SectorAction]
) -> None:
    full = estimate_impact(scenario, state, recommended, horizon_minutes=HORIZON, samples=8, seed=3)
    half = estimate_impact(scenario, state, recommended, horizon_minutes=HORIZON, samples=4, seed=3)
    seen: list[list[RolloutJob]] = []
    screened = estimate_impact(
        scenario, state, recommended, horizon_minutes=HORIZON, samples=8, seed=3,
        min_saving=MIN_SAVING, runner=counting(seen),
    )  # fmt: skip
    in_force = {s.name: s.action for s in state.sectors}
    changed = [s for s, a in recommended.items() if a != in_force[s]]
    went_on = [s for s in changed if screened.per_sector[s].samples == 8]
    stopped = [s for s in changed if screened.per_sector[s].samples == 4]
    assert went_on and stopped and sorted(went_on + stopped) == sorted(changed)
    for s in went_on:
        assert screened.per_sector[s] == full.per_sector[s]
    for s in stopped:
        got, first = screened.per_sector[s], half.per_sector[s]
        for field in ("slowdown_minutes_avoided", "sla_misses_avoided", "overtime_hours_saved"):
            assert getattr(got, field) == getattr(first, field)
        assert got.cost_saved == first.cost_saved
        assert got.cost_saved.mean < MIN_SAVING  # declined by every rule
        # what the arm without the actions says uses all of its samples
        assert got.wait_minutes_without == full.per_sector[s].wait_minutes_without
    for s in recommended:
        if s not in changed:
            assert screened.per_sector[s].samples == 8
    assert screened.total == full.total  # the whole recommendation includes Picking's
    # two batches: every arm on seeds 3..6, then the arms that went on on 7..10
    assert len(seen) == 2
    together = {s: recommended[s] for s in changed}
    arms = [None, *({s: recommended[s]} for s in changed), together]
    assert [(j.actions, j.seed) for j in seen[0]] == [(a, 3 + i) for a in arms for i in range(4)]
    assert screened.total is not None and screened.total.samples == 8
    on = [None, *({s: recommended[s]} for s in went_on), together]
    assert [(j.actions, j.seed) for j in seen[1]] == [(a, 7 + i) for a in on for i in range(4)]


def test_without_a_minimum_or_with_few_samples_every_arm_runs_every_seed(
    scenario: Scenario, state: OperationSnapshot, recommended: dict[str, SectorAction]
) -> None:
    for options in ({"samples": 8}, {"samples": 3, "min_saving": MIN_SAVING}):
        seen: list[list[RolloutJob]] = []
        report = estimate_impact(
            scenario, state, recommended, horizon_minutes=30, runner=counting(seen), **options
        )
        assert len(seen) == 1
        assert all(i.samples == options["samples"] for i in report.per_sector.values())


def test_a_minimum_no_arm_can_reach_stops_every_arm_and_the_baseline(
    scenario: Scenario, state: OperationSnapshot, recommended: dict[str, SectorAction]
) -> None:
    seen: list[list[RolloutJob]] = []
    report = estimate_impact(
        scenario, state, recommended, horizon_minutes=HORIZON, samples=8,
        min_saving=1e6, runner=counting(seen),
    )  # fmt: skip
    assert len(seen) == 1 and {j.seed for j in seen[0]} == {0, 1, 2, 3}
    assert all(i.samples == 4 for i in report.per_sector.values())


@pytest.fixture(scope="module")
def pool(scenario: Scenario) -> Iterator[RolloutPool]:
    p = RolloutPool(scenario, workers=2)
    p.warm()
    yield p
    p.close()


@pytest.mark.slow
def test_the_pool_screens_like_the_process(
    pool: RolloutPool,
    scenario: Scenario,
    state: OperationSnapshot,
    recommended: dict[str, SectorAction],
) -> None:
    here = estimate_impact(
        scenario, state, recommended, horizon_minutes=60, samples=8, min_saving=MIN_SAVING
    )
    with pool.ticket() as ticket:
        there = estimate_impact(
            scenario, state, recommended, horizon_minutes=60, samples=8,
            min_saving=MIN_SAVING, runner=pool.runner(ticket),
        )  # fmt: skip
    assert there == here


def test_bench_serve_reads_the_rollouts_from_an_answer(
    policy_bundle: Path,
    scenario: Scenario,
    state: OperationSnapshot,
    recommended: dict[str, SectorAction],
) -> None:
    """``bench serve`` counts each answer's rollouts from its JSON: the count must be the
    number of rollouts :func:`estimate_impact` ran for that question."""
    settings = Settings(policy=policy_bundle, rollout_workers=0)
    with TestClient(create_app(settings, load_served(policy_bundle))) as client:
        r = client.post("/v1/recommend", json=state.model_dump(mode="json"))
    assert r.status_code == 200, r.text
    seen: list[list[RolloutJob]] = []
    estimate_impact(
        scenario, state, recommended, horizon_minutes=90, samples=8, seed=0,
        min_saving=20.0, runner=counting(seen),
    )  # fmt: skip
    rollouts, arms, stopped = rollouts_of(r.json(), 8)
    assert rollouts == sum(len(b) for b in seen)
    in_force = {s.name: s.action for s in state.sectors}
    changed = sum(1 for s, a in recommended.items() if a != in_force[s])
    assert arms == changed + (1 if changed > 1 else 0)
    assert 0 < stopped < arms
