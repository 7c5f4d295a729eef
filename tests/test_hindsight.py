"""The hindsight bound: never worse than threshold, deterministic, and never a controller.

The bound's guarantee holds for any candidate set and screening (the threshold
manager's own decision is always judged to the horizon), so the property test over
every built-in uses the cheap setting; the headroom experiment uses the default one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run

from agents import BOUNDS, StrategyError, check_strategy, make_controller, strategy_names
from agents.hindsight import HindsightBound, HindsightError, fork
from agents.threshold import ThresholdController
from experiments.comparison.compare import run_compare
from twin.model import OperationModel
from twin.rollout import run_for
from twin.runner import simulate
from twin.scenario import builtin_names, load_scenario


@pytest.fixture(scope="module")
def default():
    return load_scenario("default")


@pytest.fixture(scope="module")
def midday_snapshot(default):
    model = OperationModel(default, 7)
    run_for(model, 12 * 60, make_controller("static", default))
    return model.snapshot()


def test_hindsight_is_a_bound_not_a_controller(default, midday_snapshot):
    assert "hindsight" in BOUNDS and "hindsight" not in strategy_names()
    check_strategy("hindsight")
    with pytest.raises(StrategyError, match="hindsight"):
        check_strategy("hindsihgt")
    bound = make_controller("hindsight", default)
    with pytest.raises(HindsightError, match="never from a snapshot or in the server"):
        bound.decide(midday_snapshot)
    rebuilt = OperationModel.from_snapshot(default, midday_snapshot, 0)
    with pytest.raises(HindsightError, match="rebuilt from a snapshot"):
        bound.attach(rebuilt)


def test_a_fork_has_the_same_future():
    sc = load_scenario("volatile-peak")
    m = OperationModel(sc, 4, record_every_minutes=None)
    run_for(m, 600, ThresholdController(sc))
    twin = fork(m)
    for model in (m, twin):
        run_for(model, None, ThresholdController(sc))
    assert m.kpis().flat() == twin.kpis().flat()


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_names())
def test_hindsight_never_loses_to_threshold(name):
    sc = load_scenario(name)
    for seed in (0, 1) if sc.horizon_days == 1 else (0,):
        threshold = simulate(sc, make_controller("threshold", sc), seed, record_every_minutes=None)
        bound = HindsightBound(sc, wide=False, finalists=1, screen_minutes=60)
        model = simulate(sc, bound, seed, record_every_minutes=None)
        cost = model.kpis().total.total_cost
        assert cost <= threshold.kpis().total.total_cost + 1e-6, (name, seed)
        # deterministic forks: the course it chose last is exactly what happened
        assert bound.incumbent == pytest.approx(cost, rel=0, abs=1e-6)
        assert bound.rollouts > 0


@pytest.mark.slow
def test_compare_reports_avoidable_cost_and_gap_closed():
    cmp = run_compare(["peak-surge"], ["threshold", "static", "hindsight"], 2, workers=2)
    s = cmp.summary
    cost = s[s["kpi"] == "total_cost"].set_index("strategy")
    assert cost.loc["threshold", "gap_closed"] == 0
    assert cost.loc["hindsight", "gap_closed"] == pytest.approx(1)
    assert cost.loc["static", "gap_closed"] < 0  # static is worse than threshold here
    avoid = s[s["kpi"] == "avoidable_cost"].set_index("strategy")
    regular = s[s["kpi"] == "regular_cost"].set_index("strategy")
    assert np.allclose(avoid["mean"] + regular["mean"], cost["mean"])
    assert avoid.loc["hindsight", "mean"] < avoid.loc["threshold", "mean"]


@pytest.mark.slow
def test_experiment_headroom_as_a_user_runs_it(tmp_path):
    proc = run(tmp_path, "experiment", "headroom", "--scenario", "claims", "--seeds", "2",
               "--out", "hr", timeout=1200)  # fmt: skip
    out = tmp_path / "hr"
    doc = json.loads((out / "headroom.json").read_text())
    (row,) = doc["scenarios"]
    assert row["scenario"] == "claims" and row["seeds"] == 2
    assert row["hindsight"] <= row["threshold"]
    assert row["regular_cost"] + row["avoidable_cost"] == pytest.approx(row["threshold"])
    assert row["headroom_pct"] == pytest.approx(
        100 * (row["threshold"] - row["hindsight"]) / row["threshold"]
    )
    assert "| claims |" in proc.stdout and (out / "headroom.md").read_text() in proc.stdout
    assert (out / "runs").is_dir() and (out / "summary.csv").is_file()
    # a second run refuses to overwrite, and --resume finds everything finished
    again = run(tmp_path, "experiment", "headroom", "--scenario", "claims", "--seeds", "2",
                "--out", "hr", ok=False)  # fmt: skip
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run(tmp_path, "experiment", "headroom", "--scenario", "claims", "--seeds", "2",
                  "--out", "hr", "--resume")  # fmt: skip
    assert json.loads((out / "headroom.json").read_text())["scenarios"][0] == row
    assert "| claims |" in resumed.stdout
