"""Advice: one function, :func:`policies.advice.advise`, behind the server and the dashboard.

advise() is called directly on the shipped bundle and compared with what
``POST /v1/recommend`` answers (the app in-process, through FastAPI's TestClient) and
with what the dashboard's advice panel shows, for the same state and options.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from experiments.dashboard.session import NO_COMPARE, STEP_MINUTES, PlannerTwin
from policies.advice import (
    IMPACT_HORIZON_MINUTES,
    IMPACT_SAMPLES,
    AdviceError,
    AdviceOptions,
    OptionError,
    advise,
)
from policies.runtime import BundlePolicy
from policies.server import Settings, advice_defaults, create_app, load_served, recommendation
from twin.actions import SectorAction
from twin.model import OperationModel
from twin.scenario import load_scenario
from twin.snapshot import OperationSnapshot

FAST = {"samples": 3, "horizon_minutes": 45}


@pytest.fixture(scope="module")
def client(policy_bundle: Path) -> TestClient:
    settings = Settings(policy=policy_bundle)
    return TestClient(create_app(settings, load_served(policy_bundle)))


@pytest.fixture(scope="module")
def policy(policy_bundle: Path) -> BundlePolicy:
    return BundlePolicy(policy_bundle)


@pytest.fixture(scope="module")
def snapshots() -> list[OperationSnapshot]:
    """Real states of ``default`` (static plan, seed 3) at 11:00 and 15:30."""
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(3))
    shots = []
    for minute in (660, 930):
        model.run_minutes(minute - model.minute)
        shots.append(model.snapshot())
    return shots


def _post(client: TestClient, snap: OperationSnapshot, **options: object) -> dict:
    r = client.post("/v1/recommend", json={"snapshot": snap.model_dump(mode="json"), **options})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    "options",
    [
        {"impact": False},
        {**FAST, "impact": True, "seed": 11},
        {**FAST, "impact_scope": "total"},
        {"impact": False, "explain": False},
    ],
    ids=["no-impact", "per-sector", "total", "no-explain"],
)
def test_advise_is_what_the_server_answers(
    client: TestClient,
    policy: BundlePolicy,
    policy_bundle: Path,
    snapshots: list[OperationSnapshot],
    options: dict,
) -> None:
    defaults = advice_defaults(Settings(policy=policy_bundle))
    for snap in snapshots:
        body = _post(client, snap, **options)
        advice = advise(policy, snap, defaults.requested(**options))
        # the server's JSON is advise()'s result, shaped
        assert [s["sector"] for s in body["sectors"]] == [a.sector for a in advice.sectors]
        for out, a in zip(body["sectors"], advice.sectors, strict=True):
            assert SectorAction.model_validate(out["action"]) == a.action
            assert SectorAction.model_validate(out["action_in_force"]) == a.in_force
            assert tuple(out["kinds"]) == a.kinds
            assert out["message"] == a.message
            assert out["confidence"] == pytest.approx(a.confidence, abs=1e-6)
            assert out["probabilities"].keys() == a.probabilities.keys()
            for field, probs in a.probabilities.items():
                assert out["probabilities"][field] == pytest.approx(probs, abs=1e-6)
            assert [d["feature"] for d in out["drivers"]] == [d.name for d in a.drivers]
            if a.impact is None:
                assert out["impact"] is None
            else:
                got = out["impact"]["sla_misses_avoided"]["mean"]
                assert got == pytest.approx(a.impact.sla_misses_avoided.mean, abs=1e-4)
        assert body["impact_seed"] == advice.impact_seed
        assert body["impact_scope"] == advice.impact_scope
        assert (body["total_impact"] is None) == (advice.total_impact is None)
        # and exactly so: the same shaping of the same advice gives the same bytes
        served = client.app.state.synctwin.holder.current
        expected = recommendation(advice, served.ref, body["recommendation_id"])
        assert expected.model_dump(mode="json") == body
    if options.get("explain") is False:
        assert all(not a.drivers for a in advice.sectors)
    if options.get("impact") is False:
        assert advice.total_impact is None and advice.impact_seed is None


def test_the_servers_defaults_are_advises(policy_bundle: Path) -> None:
    defaults = advice_defaults(Settings(policy=policy_bundle))
    assert defaults == AdviceOptions()
    assert (defaults.samples, defaults.horizon_minutes) == (IMPACT_SAMPLES, IMPACT_HORIZON_MINUTES)
    configured = advice_defaults(Settings(policy=policy_bundle, impact_samples=4, seed=7))
    assert (configured.samples, configured.seed) == (4, 7)


def test_options_beyond_their_limits_name_the_option() -> None:
    opts = AdviceOptions(max_samples=16)
    assert opts.requested(samples=16).samples == 16
    assert opts.requested() is opts
    with pytest.raises(OptionError, match="samples must be <= 16") as err:
        opts.requested(samples=17)
    assert err.value.option == "samples"
    with pytest.raises(OptionError) as err:
        opts.requested(horizon_minutes=opts.max_horizon_minutes + 1)
    assert err.value.option == "horizon_minutes"
    with pytest.raises(ValueError, match="max_samples"):
        AdviceOptions(samples=40)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_features_are_an_advice_error(
    policy: BundlePolicy, snapshots: list[OperationSnapshot]
) -> None:
    snap = snapshots[0]
    bad = snap.model_copy(
        update={
            "sectors": [
                snap.sectors[0].model_copy(update={"arrival_rate_per_hour": float("inf")}),
                *snap.sectors[1:],
            ]
        }
    )
    with pytest.raises(AdviceError, match="non-finite"):
        advise(policy, bad, AdviceOptions(impact=False))


def _planner(advisor: str) -> PlannerTwin:
    m = PlannerTwin(strategy="static", compare=NO_COMPARE, advisor=advisor, seed=2)
    for _ in range(11 * 60 // STEP_MINUTES):  # to 11:00, picking's queue is long by then
        m.step()
    return m


def test_the_dashboard_advises_with_advise(policy_bundle: Path) -> None:
    m = _planner(f"policy:{policy_bundle}")
    assert m.scenario is not None and m.a is not None
    answer = m.advice_answer()
    shown = answer.sectors
    snap = m.a.model.snapshot()
    bundle = BundlePolicy(policy_bundle, m.scenario)
    direct = advise(bundle, snap, AdviceOptions(seed=2), scenario=m.scenario)
    assert shown == direct.sectors
    # the panel's headline, ranked actions and declined proposals are advise()'s
    assert (answer.status, answer.headline) == (direct.status, direct.headline)
    assert answer.actions == direct.actions and answer.declined == direct.declined
    assert answer.status in ("act", "hold")
    assert any(a.impact is not None for a in shown)  # with the server's default impact
    assert all(a.confidence is not None for a in shown)


def test_the_dashboard_advises_a_baseline_with_advise() -> None:
    from agents import make_controller

    m = _planner("threshold")
    m.predict_impact = False
    assert m.scenario is not None and m.a is not None
    shown = m.advice()
    threshold = make_controller("threshold", m.scenario, 2)
    direct = advise(
        threshold, m.a.model.snapshot(), AdviceOptions(impact=False), scenario=m.scenario
    )
    assert shown == direct.sectors
    assert [a.sector for a in shown] == list(m.scenario.sector_names)
    assert all(a.confidence is None and a.probabilities is None for a in shown)
    with pytest.raises(ValueError, match="pass the scenario"):
        advise(threshold, m.a.model.snapshot(), AdviceOptions(impact=False))
