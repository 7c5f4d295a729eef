"""The baselines: registry, tuned parameters, determinism, and that they are good."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents import STRATEGIES, StrategyError, make_controller, strategy_names
from agents.lookahead import LookaheadController
from agents.silo import SiloController
from agents.threshold import (
    DEFAULT_PARAMS,
    ThresholdController,
    ThresholdParams,
    tuned_path,
)
from agents.tuning import TRAIN_SEED_BASE, tune_threshold
from agents.view import HORIZONS, FlowView, ScenarioFacts
from twin.actions import Controller, SectorAction
from twin.model import OperationModel
from twin.runner import run, simulate
from twin.scenario import builtin_names, load_scenario
from twin.stats import paired_difference

EVAL_SEEDS = range(10)


@pytest.fixture(scope="module")
def default():
    return load_scenario("default")


@pytest.fixture(scope="module")
def midday_snapshot(default):
    model = OperationModel(default, rng=np.random.default_rng(7))
    run(model, make_controller("static", default), minutes=17 * 60)
    return model.snapshot()


@pytest.fixture(scope="module")
def costs(default) -> dict[str, np.ndarray]:
    """Total cost per evaluation seed for the fast strategies (common random numbers)."""
    out = {}
    for name in ("static", "threshold", "random"):
        out[name] = np.array(
            [
                simulate(default, make_controller(name, default, s), s).kpis().total.total_cost
                for s in EVAL_SEEDS
            ]
        )
    return out


# --------------------------------------------------------------------------- registry


def test_every_strategy_is_a_controller_that_acts_for_every_sector(default, midday_snapshot):
    assert {"static", "threshold", "lookahead", "random", "silo"} <= set(STRATEGIES)
    for name in strategy_names():
        controller = make_controller(name, default, seed=1)
        assert isinstance(controller, Controller), name
        actions = controller.decide(midday_snapshot)
        assert set(actions) == set(default.sector_names), name
        assert all(isinstance(a, SectorAction) for a in actions.values())
        for sector, a in actions.items():
            if a.lend_to is not None:
                assert a.lend_to != sector
                assert default.efficiency(sector, a.lend_to) > 0, (name, sector, a)


def test_unknown_strategy_lists_valid_names(default):
    with pytest.raises(StrategyError) as err:
        make_controller("thresh", default)
    for name in ("static", "threshold", "lookahead", "random"):
        assert name in str(err.value)
    with pytest.raises(StrategyError, match="takes no argument"):
        make_controller("static:foo.json", default)
    with pytest.raises(StrategyError, match="not found"):
        make_controller("threshold:/nonexistent/params.json", default)


def test_random_is_seeded(default, midday_snapshot):
    def decisions(seed: int) -> list:
        c = make_controller("random", default, seed)
        return [c.decide(midday_snapshot) for _ in range(5)]

    assert decisions(3) == decisions(3)
    assert decisions(3) != decisions(4)


# --------------------------------------------------------------------------- tuned parameters


@pytest.mark.parametrize("name", builtin_names())
def test_each_builtin_has_a_current_tuned_file(name):
    path = tuned_path(name)
    assert path.is_file(), f"run: synctwin tune-baseline --scenario {name}"
    data = json.loads(path.read_text())
    sc = load_scenario(name)
    assert data["scenario"] == name
    assert data["scenario_digest"] == sc.digest, (
        f"{path} was tuned for another version of {name!r}; re-run: {data['command']}"
    )
    ThresholdParams.model_validate(data["params"])
    assert data["command"].startswith(f"synctwin tune-baseline --scenario {name} ")
    assert all(s >= TRAIN_SEED_BASE for s in data["objective"]["seeds"])  # never eval seeds
    assert data["objective"]["tuned"] <= data["objective"]["defaults"]


def test_threshold_reuses_the_tuned_file_and_falls_back_to_defaults(default, tmp_path):
    c = ThresholdController(default)
    tuned = json.loads(tuned_path("default").read_text())["params"]
    assert c.params == ThresholdParams.model_validate(tuned)
    assert c.params_source.endswith("default.json")
    renamed = default.model_copy(update={"name": "no-such-tuned-file"})
    assert ThresholdController(renamed).params == DEFAULT_PARAMS
    assert ThresholdController(renamed).params_source == "defaults"
    mine = tmp_path / "mine.json"
    params = DEFAULT_PARAMS.model_copy(update={"help_ratio": 0.777})
    mine.write_text(json.dumps({"scenario_digest": "x", "params": params.model_dump()}))
    c = make_controller(f"threshold:{mine}", default)
    assert c.params.help_ratio == 0.777
    assert c.params_source.endswith("(stale)")


def test_tuning_is_reproducible_and_never_worse_than_defaults():
    sc = load_scenario("claims")  # the quickest built-in
    a = tune_threshold(sc, seeds=1, budget=3, finalists=1, workers=1)
    b = tune_threshold(sc, seeds=1, budget=3, finalists=1, workers=1)
    assert a == b
    assert a["search"]["candidates_evaluated"] == 3
    assert a["objective"]["seeds"] == [TRAIN_SEED_BASE, TRAIN_SEED_BASE + 1]
    assert a["objective"]["tuned"] <= a["objective"]["defaults"]
    ThresholdParams.model_validate(a["params"])


# --------------------------------------------------------------------------- the flow view


def test_reach_follows_routing_probabilities(default):
    f = ScenarioFacts(default)
    std = f.class_index["standard"]
    i = f.index
    assert f.reach[std, i["picking"], i["packing"]] == pytest.approx(0.85)
    assert f.reach[std, i["picking"], i["shipping"]] == pytest.approx(1.0)
    assert f.reach[std, i["packing"], i["picking"]] == 0.0
    assert f.reach[std, i["picking"], i["picking"]] == 0.0


def test_view_counts_queue_staff_and_capacity(default, midday_snapshot):
    f = ScenarioFacts(default)
    v = FlowView.read(f, midday_snapshot, flow=True)
    picking = f.index["picking"]
    assert v.queued[picking] == midday_snapshot.sector("picking").queued
    assert v.staff[picking] > 0
    assert (np.diff(v.capacity, axis=1) >= -1e-9).all()  # more time, more capacity
    # at 17:00 the late shift runs to 22:00: capacity over 360 minutes stops at 300
    per_minute = v.capacity[picking, 0] / 15.0
    assert v.capacity[picking, -1] == pytest.approx(per_minute * 300.0, rel=0.05)
    work_local = v.work_due(f, flow_weight=0.0)
    work_flow = v.work_due(f, flow_weight=1.0)
    assert (work_flow >= work_local - 1e-9).all()
    assert work_flow[f.index["packing"], -1] > work_local[f.index["packing"], -1]
    assert len(HORIZONS) == work_flow.shape[1]


def test_silo_lends_upstream_to_its_feeder(default):
    c = SiloController(default)
    names = default.sector_names
    feeder = {names[s]: (names[u] if u is not None else None) for s, u in enumerate(c.feeder)}
    assert feeder["packing"] == "picking"
    assert feeder["shipping"] == "packing"
    assert feeder["putaway"] == "receiving"
    assert feeder["picking"] is None


# --------------------------------------------------------------------------- lookahead


def test_lookahead_is_deterministic_measured_and_small(default, midday_snapshot):
    a = LookaheadController(default, seed=5)
    b = LookaheadController(default, seed=5)
    assert a.decide(midday_snapshot) == b.decide(midday_snapshot)
    assert len(a.decision_seconds) == 1 and a.decision_seconds[0] > 0
    named = a.candidates(midday_snapshot, a.base.decide(midday_snapshot))
    assert named[0][0] == "base"
    assert 2 <= len(named) <= 7
    assert a.rollouts[0] == len(named) * a.samples


# --------------------------------------------------------------------------- quality


def test_threshold_beats_static_significantly(costs):
    d = paired_difference(costs["threshold"], costs["static"])
    mean, lo, hi = d.mean, d.low, d.high
    assert hi < 0, f"paired difference {mean:.0f} [{lo:.0f}, {hi:.0f}] does not exclude 0"


def test_baselines_beat_random(costs):
    hi = paired_difference(costs["threshold"], costs["random"]).high
    assert hi < 0
    assert costs["static"].mean() < costs["random"].mean()


@pytest.mark.slow
def test_lookahead_beats_random_and_static(default):
    def cost(controller, seed: int) -> float:
        return simulate(default, controller, seed).kpis().total.total_cost

    seeds = range(4)
    la = [cost(LookaheadController(default, s), s) for s in seeds]
    rnd = [cost(make_controller("random", default, s), s) for s in seeds]
    st = [cost(make_controller("static", default, s), s) for s in seeds]
    assert np.mean(la) < np.mean(rnd)
    assert np.mean(la) < np.mean(st)


def test_tuned_path_is_package_data():
    assert tuned_path("default").parent == Path(__file__).parents[1] / "agents" / "tuned"
