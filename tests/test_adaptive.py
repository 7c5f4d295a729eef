"""Adaptive planning: the demand estimator, its plumbing into rollouts, the experiment
command and the live site's forecast.

Known answers: with no arrivals the belief is the plan (factor 1); with many, the
observed ratio; with as many prior arrivals as expected ones, exactly half way. The
plan's expected arrivals are the per-minute sum of ``rate_per_hour``. A rollout with
every factor 1.0 is the rollout without factors, to the last float; factor 0 stops
arrivals. The command runs as a user runs it; the site forecast's factors are the
estimator's on the site's own arrivals, and ``adaptive: false`` is the plain forecast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import run as run_cli
from test_live_twin import recorded
from test_sites import Server, post_all, start, stop, workdir

from agents import make_controller
from policies.impact import forecast, rollout
from twin.adaptive import DemandEstimator, adapting_classes, expected_arrivals
from twin.demand import rate_per_hour
from twin.eventlog import log_start
from twin.live_twin import LiveTwin
from twin.rollout import rollout_twin, run_for
from twin.scenario import load_scenario
from twin.wallclock import format_timestamp

SC = load_scenario("default")
STANDARD = SC.class_names.index("standard")


def planned(start: int, end: int, cls: int) -> float:
    """Arrivals the plan expects in ``[start, end)``, minute by minute."""
    return sum(rate_per_hour(SC, cls, m) for m in range(start, end)) / 60.0


def even(n: int, start: float, end: float) -> list[float]:
    """``n`` arrival minutes spread evenly over ``[start, end)``."""
    return list(np.linspace(start, end, n, endpoint=False))


def test_expected_arrivals_are_the_plans_rate_integrated() -> None:
    sc = load_scenario("peak-surge")  # planned surges cut the hours at 10:00 and 14:00
    for a, b in [(0, 1440), (545, 901), (600, 840)]:
        got = expected_arrivals(sc, a, b)
        for c in range(len(sc.class_names)):
            want = sum(rate_per_hour(sc, c, m) for m in range(a, b)) / 60.0
            assert got[c] == pytest.approx(want, rel=1e-12)
    assert expected_arrivals(sc, 600, 720, [2.0, 0.0, 1.0])[1] == 0.0


def test_no_arrivals_is_the_plan_and_none_expected_is_no_news() -> None:
    est = DemandEstimator()
    assert est.belief(SC, {}, 0.0).factors == (1.0, 1.0, 1.0)  # nothing expected yet
    # a morning with no standard orders at all: the factor drops, but not to zero
    b = est.belief(SC, {"standard": []}, 600.0)
    assert 0 < b.factors[STANDARD] < 0.5
    assert b.observed[STANDARD] == 0.0 and b.expected[STANDARD] > 30


def test_much_data_gives_the_observed_ratio_and_shrinkage_sits_in_between() -> None:
    now = 720
    expected = planned(0, now, STANDARD)
    seen = {"standard": even(round(1.5 * expected), 0, now)}
    flat = DemandEstimator(prior_arrivals=1.0, half_life_minutes=math.inf)
    b = flat.belief(SC, seen, now)
    assert b.expected[STANDARD] == pytest.approx(expected, rel=1e-12)
    assert b.factors[STANDARD] == pytest.approx(1.5, abs=0.01)
    # as many prior arrivals as expected ones: half way between plan and observation
    half = DemandEstimator(prior_arrivals=expected, half_life_minutes=math.inf)
    assert half.belief(SC, seen, now).factors[STANDARD] == pytest.approx(1.25, abs=0.01)
    # the stronger the prior, the closer to the plan
    factors = [
        DemandEstimator(a, math.inf).belief(SC, seen, now).factors[STANDARD]
        for a in (1.0, 100.0, 1000.0, 1e6)
    ]
    assert factors == sorted(factors, reverse=True) and 1.0 < factors[-1] < 1.001


def test_a_recent_surge_shows_sooner_with_a_short_half_life() -> None:
    """The plan's rate until 11:00, twice it 11:00-12:00: a 30-minute half-life sees
    most of it by noon, an infinite one dilutes it over the morning."""
    surge = planned(660, 720, STANDARD)
    seen = even(round(planned(0, 660, STANDARD)), 0, 660) + even(round(2 * surge), 660, 720)
    short = DemandEstimator(30.0, 30.0).belief(SC, {"standard": seen}, 720).factors[STANDARD]
    flat = DemandEstimator(30.0, math.inf).belief(SC, {"standard": seen}, 720).factors[STANDARD]
    assert short > 1.45 and 1.0 < flat < 1.3


def test_classes_the_uncertainty_model_keeps_at_the_plan_do_not_adapt() -> None:
    vp = load_scenario("volatile-peak")  # demand error and surges: standard and express
    assert adapting_classes(vp) == (False, True, True)
    assert adapting_classes(SC) == (True, True, True)  # no model: everything may depart
    seen = {"inbound": even(1000, 0, 600)}  # twice the plan's morning
    assert DemandEstimator().belief(vp, seen, 600.0).factors[0] == 1.0
    assert DemandEstimator().belief(SC, seen, 600.0).factors[0] > 1.3


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="prior_arrivals"):
        DemandEstimator(prior_arrivals=0.0)
    with pytest.raises(KeyError, match="pallet"):
        DemandEstimator().belief(SC, {"pallet": [1.0]}, 10.0)
    snap = _snapshot()
    with pytest.raises(ValueError, match="expected 3 finite numbers"):
        rollout_twin(SC, snap, 0, demand_factors=[1.0, 1.0])
    with pytest.raises(ValueError, match="expected 3 finite numbers"):
        rollout_twin(SC, snap, 0, demand_factors=[1.0, -1.0, math.nan])


# --------------------------------------------------------------------------- rollouts


def _snapshot():  # type: ignore[no-untyped-def]
    return recorded("default", "threshold", 0)[2][22][0]  # 11:00


def test_factors_of_one_roll_out_exactly_the_plan() -> None:
    snap = _snapshot()
    for seed in (0, 1):
        base = rollout(SC, snap, seed, 90, checkpoints=(30, 60))
        ones = rollout(SC, snap, seed, 90, checkpoints=(30, 60), demand_factors=(1.0, 1.0, 1.0))
        for field in ("misses", "overtime_hours", "cost", "queue_item_minutes", "entered"):
            assert np.array_equal(getattr(base, field), getattr(ones, field)), field
    policy = make_controller("threshold", SC, 0)
    kw = {"hours": [1.0, 2.0], "samples": 2, "seed": 5}
    assert forecast(SC, snap, policy, **kw) == forecast(
        SC, snap, policy, **kw, demand_factors=[1.0, 1.0, 1.0]
    )


def test_factors_scale_the_arrivals_of_their_class() -> None:
    snap = _snapshot()

    def arrived(factors: list[float] | None) -> int:
        m = rollout_twin(SC, snap, 3, demand_factors=factors)
        run_for(m, 120)
        return m.arrived

    plan = arrived(None)
    assert arrived([0.0, 0.0, 0.0]) == 0
    assert arrived([1.0, 2.0, 1.0]) > 1.6 * plan * 0.85  # standard is most of the demand
    assert 0 < arrived([1.0, 0.0, 1.0]) < 0.3 * plan


# --------------------------------------------------------------------------- the command


def test_experiment_adaptive_runs_as_a_user_runs_it(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "experiment", "adaptive", "-s", "claims", "--seeds", "2",
                "--out", "out/adaptive.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "claims" in r.stdout and "adaptive - plan" in r.stdout
    data = json.loads((tmp_path / "out" / "adaptive.json").read_text())
    assert data["seeds"] == [0, 1] and data["estimator"]["prior_arrivals"] > 0
    rows = {row["item_class"]: row for row in data["rows"]}
    assert set(rows) == {"motor", "property", "complex", "total"}
    total = rows["total"]
    assert total["decisions_per_seed"] > 10 and total["realized_mean"] > 0
    assert total["plan_mae"]["mean"] > 0 and total["adaptive_mae"]["mean"] > 0
    d = total["difference_mae"]
    diff = total["adaptive_mae"]["mean"] - total["plan_mae"]["mean"]
    assert d["mean"] == pytest.approx(diff) and d["low"] <= d["mean"] <= d["high"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "default"], "scenario 'default' has no uncertainty block"),
        (["-s", "nowhere"], "nowhere"),
        (["--first-seed", "995", "--seeds", "10"], "overlap the tuning seeds"),
    ],
)
def test_experiment_adaptive_bad_input_is_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    r = run_cli(tmp_path, "experiment", "adaptive", *args, ok=False)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "reports").exists()


# --------------------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = start(workdir(tmp_path_factory.mktemp("adaptive")), "--site", "main=default")
    yield srv
    stop(srv.proc)


def test_the_site_forecast_rolls_out_the_observed_demand(server: Server) -> None:
    sc, events, seen = recorded("default", "threshold", 0)
    want, n = seen[24]  # noon
    post_all(server, "main", events[:n])
    at = format_timestamp(want.minute, log_start(sc))
    twin = LiveTwin(sc, log_start(sc))
    twin.ingest(events[:n])
    belief = DemandEstimator().belief(sc, twin.observed(want.minute).arrivals, want.minute)
    opts = {"hours": [1.0], "samples": 2, "at": at}
    adaptive = server.post("/v1/sites/main/forecast", json=opts)
    assert adaptive.status_code == 200, adaptive.text
    factors = adaptive.json()["demand_factors"]
    assert factors == pytest.approx(belief.as_dict(), rel=1e-12)
    assert any(abs(f - 1) > 0.01 for f in factors.values())  # reality is not the plan
    plan = server.post("/v1/sites/main/forecast", json={**opts, "adaptive": False})
    snap = server.get("/v1/sites/main/state", params={"at": at}).json()
    plain = server.post("/v1/forecast", json={"hours": [1.0], "samples": 2, "snapshot": snap})
    assert plan.status_code == plain.status_code == 200
    assert plan.json() == plain.json() and plan.json()["demand_factors"] is None
