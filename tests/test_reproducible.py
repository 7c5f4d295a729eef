"""Reproducibility and no global state.

- The same scenario, strategy and seed give identical KPIs and time series, for every
  built-in scenario and the baseline strategies; different seeds give different days.
- Nothing depends on global random state: drawing from (or reseeding) numpy's and
  Python's global generators between ticks changes nothing.
- No twin outlives its last reference: Mesa 3.3 numbers agents in a class-level dict
  keyed by the model, which kept every model alive; the twin keeps that counter on
  the model itself (see ``twin.workers``), so many rollouts do not accumulate.

``lookahead`` is left out of the full-day matrix: it runs twin rollouts at every
decision and takes far longer than a day of the others; it is checked on a two-hour
window of ``default`` instead.
"""

from __future__ import annotations

import gc
import random
import weakref

import mesa
import numpy as np
import pandas as pd
import pytest

from agents import make_controller, strategy_names
from twin.model import OperationModel
from twin.runner import run, simulate
from twin.scenario import builtin_names, load_scenario
from twin.workers import Worker

FAST_STRATEGIES = [s for s in strategy_names() if s != "lookahead"]


def day(name: str, strategy: str, seed: int, **kw) -> OperationModel:
    scenario = load_scenario(name)
    return simulate(scenario, make_controller(strategy, scenario, seed), seed, **kw)


def assert_same_run(a: OperationModel, b: OperationModel) -> None:
    assert a.kpis() == b.kpis()
    pd.testing.assert_frame_equal(a.timeseries(), b.timeseries(), check_exact=True)


def test_the_matrix_covers_the_baselines() -> None:
    assert {"static", "threshold", "random"} <= set(FAST_STRATEGIES)


@pytest.mark.parametrize("strategy", FAST_STRATEGIES)
@pytest.mark.parametrize("name", builtin_names())
def test_same_seed_same_day(name: str, strategy: str) -> None:
    assert_same_run(day(name, strategy, 7), day(name, strategy, 7))


@pytest.mark.parametrize("name", builtin_names())
def test_different_seeds_differ(name: str) -> None:
    a, b = day(name, "static", 1), day(name, "static", 2)
    assert a.kpis().total != b.kpis().total
    assert not a.timeseries().equals(b.timeseries())


def test_lookahead_is_reproducible_over_two_hours() -> None:
    scenario = load_scenario("default")

    def window(seed: int) -> OperationModel:
        model = OperationModel(scenario, rng=np.random.default_rng(seed))
        model.run_minutes(8 * 60)  # into the morning peak, where it has choices to make
        return run(model, make_controller("lookahead", scenario, seed), minutes=120)

    assert_same_run(window(4), window(4))


@pytest.mark.parametrize("strategy", ["static", "random"])
def test_global_random_state_is_not_used(strategy: str) -> None:
    reference = day("default", strategy, 3)
    scenario = load_scenario("default")

    # the legacy global generators on purpose: they are what a careless model would use
    def meddle(model: OperationModel) -> None:
        np.random.seed(int(model.minute))  # noqa: NPY002
        np.random.random(3)  # noqa: NPY002
        random.seed(model.minute)
        random.random()

    np.random.seed(99)  # noqa: NPY002
    random.seed(99)
    meddled = simulate(scenario, make_controller(strategy, scenario, 3), 3, on_tick=meddle)
    assert_same_run(reference, meddled)


# --------------------------------------------------------------------------- no leak


def test_many_twins_do_not_accumulate() -> None:
    """Fresh and rebuilt twins are freed once unreferenced; Mesa's registry stays empty."""
    scenario = load_scenario("default")
    live = OperationModel(scenario, rng=0)
    live.run_minutes(600)
    snap = live.snapshot()

    def rollouts(n: int) -> list[weakref.ref]:
        refs = []
        for seed in range(n):
            model = (
                OperationModel(scenario, rng=seed)
                if seed % 2
                else OperationModel.from_snapshot(scenario, snap, rng=seed)
            )
            model.run_minutes(10)
            refs += [weakref.ref(model), weakref.ref(next(iter(model.agents)))]
        return refs

    def live_objects(kind: type) -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, kind))

    registry = len(mesa.Agent._ids)
    rollouts(5)  # warm up: first-use caches, lazily built tables
    models, workers = live_objects(OperationModel), live_objects(Worker)
    refs = rollouts(40)
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert live_objects(OperationModel) == models
    assert live_objects(Worker) == workers
    assert len(mesa.Agent._ids) == registry


def test_worker_ids_still_count_from_one_per_model() -> None:
    scenario = load_scenario("claims")
    for seed in (0, 1):
        model = OperationModel(scenario, rng=seed)
        ids = sorted(w.unique_id for w in model.agents)
        assert ids == list(range(1, len(ids) + 1))
