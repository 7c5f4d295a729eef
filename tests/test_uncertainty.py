"""Plan vs reality: the scenario's uncertainty block, the realized reality and its use.

The plan is what controllers and snapshots know; reality is drawn per seed from the
twin's own stream (common random numbers across strategies) and never leaks into the
scenario the controllers read.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import agents
from agents import make_controller
from twin.model import OperationModel
from twin.reality import PLAN, draw_reality
from twin.rollout import run_for
from twin.runner import simulate
from twin.scenario import ScenarioError, load_scenario, scenario_from_dict

UNCERTAIN = {
    "demand": {"day_cv": 0.1, "hourly_cv": 0.1, "hourly_correlation": 0.6},
    "surges": {
        "per_day": 1.5,
        "window": ["09:00", "15:00"],
        "duration_minutes": [60, 180],
        "multiplier": [1.3, 1.8],
        "item_classes": ["standard", "express"],
    },
    "absence": [{"sectors": ["picking"], "chance": 0.5, "rate": [0.05, 0.15]}],
    "outages": [
        {"sector": "packing", "per_day": 2.0, "duration_minutes": [30, 90], "share": [0.2, 0.5]}
    ],
}


def with_uncertainty(block: dict, base: str = "default", name: str = "uncertain"):
    data = load_scenario(base).model_dump(mode="json")
    data.update(name=name, uncertainty=block)
    return scenario_from_dict(data, f"{name}.yaml")


@pytest.fixture(scope="module")
def uncertain():
    return with_uncertainty(UNCERTAIN)


# --------------------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    ("patch", "where", "problem"),
    [
        (("demand", "day_cv", -0.1), "uncertainty.demand.day_cv", "greater than or equal to 0"),
        (("demand", "hourly_correlation", 1.0), "uncertainty.demand.hourly_correlation", "less"),
        (("surges", "multiplier", [0, 1.5]), "uncertainty.surges.multiplier.0", "greater than 0"),
        (("surges", "multiplier", [1.8, 1.3]), "uncertainty.surges.multiplier", "low <= high"),
        (("surges", "window", ["15:00", "09:00"]), "uncertainty.surges.window", "start before"),
        (("surges", "window", ["09:00", "25:00"]), "uncertainty.surges.window.1", "00:00..24:00"),
        (("surges", "item_classes", ["standrad"]), "uncertainty.surges.item_classes.0", "standrad"),
        (("surges", "per_day", 0), "uncertainty.surges.per_day", "greater than 0"),
    ],
)
def test_an_impossible_uncertainty_names_the_field(patch, where, problem):
    block = json.loads(json.dumps(UNCERTAIN))
    part, key, value = patch
    block[part][key] = value
    with pytest.raises(ScenarioError) as err:
        with_uncertainty(block)
    assert where in str(err.value)
    assert problem in str(err.value)


@pytest.mark.parametrize(
    ("entry", "where", "problem"),
    [
        ({"share": [0.5, 1.5]}, "uncertainty.outages.0.share.1", "less than or equal to 1"),
        ({"sector": "pakcing"}, "uncertainty.outages.0.sector", "unknown sector 'pakcing'"),
        ({"sector": "picking"}, "uncertainty.outages.0.sector", "no stations"),
        ({"duration_minutes": [-5, 10]}, "uncertainty.outages.0.duration_minutes.0", "greater"),
    ],
)
def test_an_impossible_outage_names_the_field(entry, where, problem):
    block = json.loads(json.dumps(UNCERTAIN))
    block["outages"][0].update(entry)
    with pytest.raises(ScenarioError) as err:
        with_uncertainty(block)
    assert where in str(err.value) and problem in str(err.value)


def test_all_uncertainty_problems_are_reported_at_once():
    block = json.loads(json.dumps(UNCERTAIN))
    block["demand"]["day_cv"] = -1
    block["absence"][0]["rate"] = [0.2, 1.2]
    block["absence"][0]["sectors"] = ["nowhere"]
    with pytest.raises(ScenarioError) as err:
        with_uncertainty(block)
    text = str(err.value)
    assert "uncertainty.demand.day_cv" in text
    assert "uncertainty.absence.0.rate.1" in text


def test_a_plan_only_scenario_keeps_its_digest_and_draws_nothing():
    sc = load_scenario("default")
    assert sc.uncertainty is None
    assert draw_reality(sc, np.random.default_rng(0)) is PLAN
    # tuned files and bundles name a scenario by digest: the new field left it as it was
    tuned = json.loads((Path(agents.__file__).parent / "tuned" / "default.json").read_text())
    assert tuned["scenario_digest"] == sc.digest


def test_an_empty_uncertainty_block_changes_no_kpi():
    plain = load_scenario("default")
    empty = with_uncertainty({}, name="default-empty")
    a = simulate(plain, make_controller("threshold", plain), 3).kpis()
    b = simulate(empty, make_controller("threshold", plain), 3).kpis()
    assert a.flat() == b.flat()


# --------------------------------------------------------------------------- reality


def test_reality_is_the_same_for_every_strategy_and_differs_across_seeds(uncertain):
    runs = {
        name: simulate(uncertain, make_controller(name, uncertain, 0), 5)
        for name in ("static", "threshold")
    }
    a, b = (m.reality for m in runs.values())
    assert a.surges == b.surges and a.absences == b.absences and a.outages == b.outages
    assert np.array_equal(a.demand, b.demand)
    # arrivals do not depend on what the controllers do
    assert runs["static"].arrived == runs["threshold"].arrived
    other = OperationModel(uncertain, 6).reality
    assert other.surges != a.surges or not np.array_equal(other.demand, a.demand)


def test_the_plan_never_learns_the_realized_future(uncertain):
    m = OperationModel(uncertain, 5)
    assert m.scenario is uncertain
    assert m.scenario.disruptions == ()  # what controllers and features read
    assert len(m.disruptions) == len(m.reality.disruptions) > 0  # what the twin runs


def test_forecast_error_has_mean_one_and_surges_add_demand():
    """Over many seeds, realized arrivals match the plan under forecast error alone (the
    factors have mean 1) and exceed it with unplanned surges."""
    noisy = with_uncertainty({"demand": UNCERTAIN["demand"]}, name="noisy")
    plan = load_scenario("default")
    seeds = range(24)
    base = np.array([_arrivals(plan, s) for s in seeds], float)
    noise = np.array([_arrivals(noisy, s) for s in seeds], float)
    ratio = noise / base
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert abs(ratio.mean() - 1) < 3 * se + 0.01
    assert ratio.std() > 0.03  # the day factor's cv of 0.1 shows
    surged = with_uncertainty({"surges": UNCERTAIN["surges"]}, name="surged")
    assert np.mean([_arrivals(surged, s) for s in seeds]) > base.mean() * 1.05


def _arrivals(sc, seed: int) -> int:
    m = OperationModel(sc, seed, record_every_minutes=None)
    run_for(m)
    return m.arrived


def test_unplanned_outages_take_stations_down_and_never_overlap(uncertain):
    for seed in range(6):
        m = OperationModel(uncertain, seed, record_every_minutes=60)
        spans = sorted(
            (o.start_minute, o.start_minute + o.duration_minutes) for o in m.reality.outages
        )
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
        run_for(m)
        down = m.timeseries()["packing.stations_down"]
        if spans:
            assert down.max() >= 1


def test_a_snapshot_during_an_unplanned_outage_rebuilds_and_the_outage_ends(uncertain):
    for seed in range(20):
        m = OperationModel(uncertain, seed, record_every_minutes=None)
        if m.reality.outages:
            break
    o = m.reality.outages[0]
    run_for(m, o.start_minute + 5)
    snap = m.snapshot()
    packing = next(s for s in snap.sectors if s.name == "packing")
    assert packing.outage_stations == o.stations
    rebuilt = OperationModel.from_snapshot(uncertain, snap, 1, record_every_minutes=None)
    assert rebuilt.outage[rebuilt.sector_index["packing"]] == o.stations
    run_for(rebuilt, 120 + 5)  # longer than the longest outage the model expects
    assert rebuilt.outage[rebuilt.sector_index["packing"]] == 0


@pytest.mark.parametrize("name", ["volatile-peak", "lean-week", "peak-surge", "breakdowns"])
def test_builtins_with_uncertainty_run_and_report_the_realized(name):
    sc = load_scenario(name)
    assert sc.uncertainty is not None
    m = OperationModel(sc, 0, record_every_minutes=None)
    summary = m.reality.summary(sc)
    assert json.loads(json.dumps(summary))["scenario"] == name


# --------------------------------------------------------------------------- KPIs


def test_avoidable_cost_is_total_minus_regular_pay():
    sc = load_scenario("peak-surge")
    k = simulate(sc, make_controller("threshold", sc), 0).kpis()
    for rec in (k.total, *k.sectors.values()):
        assert rec.avoidable_cost == pytest.approx(rec.total_cost - rec.regular_cost)
        assert 0 < rec.regular_cost <= rec.labor_cost + 1e-9
    assert k.total.regular_cost == pytest.approx(sum(r.regular_cost for r in k.sectors.values()))
    assert k.total.avoidable_cost > 0
