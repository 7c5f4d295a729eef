"""Differential test: the compiled event core does exactly what the reference core does.

The reference is the Python event loop of ``OperationModel``; the compiled core
(``twin/_core.py`` and its C event heap, built by Cython at install) replaces it where it
is built (:mod:`twin._core_select`). For random small operations (hypothesis, the
generator of ``test_invariants.py``) and every built-in scenario, under a random
controller that changes lending, flex, overtime and queue priority at every decision,
both cores run the same seed and must give the same event trace (every item, attendance,
equipment and floor event, in order, with its exact time), the same snapshot and KPIs at
every decision, and the same end state. A twin rebuilt from a snapshot and a pickled twin
must run on identically too.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_invariants import SETTINGS, random_actions, scenarios

from twin import _core_select
from twin.eventlog import EventLog
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import Scenario, builtin_names, load_scenario


@contextmanager
def core(compiled: bool) -> Iterator[None]:
    """Twins built inside run on the compiled core (``True``) or the reference."""
    before = _core_select.USE_COMPILED
    _core_select.USE_COMPILED = compiled
    try:
        yield
    finally:
        _core_select.USE_COMPILED = before


def trace(model: OperationModel, log: EventLog, decisions: list[Any]) -> dict[str, Any]:
    """Everything observable about a run: its events, decisions and end state."""
    return {
        "items": log.items,
        "floor": log.floor,
        "attendance": log.attendance,
        "equipment": log.equipment,
        "decisions": decisions,
        "kpis": model.kpis(),
        "snapshot": model.snapshot(),
        "minute": model.minute,
        "steps": model.steps,
        "counters": (model.arrived, model.exited, model.processed, model.misses),
        "rates": (model.arrival_rate, model.completion_rate),
        "timeseries": model.timeseries().to_dict("list"),
    }


def run(scenario: Scenario, seed: int, action_seed: int, minutes: float, compiled: bool) -> dict:
    """A run under random actions at every decision, alternating ``step`` and ``run_minutes``."""
    with core(compiled):
        log = EventLog()
        model = OperationModel(scenario, rng=np.random.default_rng(seed), event_log=log)
    assert model._compiled is compiled
    rng = np.random.default_rng(action_seed)
    interval = scenario.decision_interval_minutes
    decisions = []
    k = 0
    while model.minute < minutes - 1e-9:
        decisions.append((model.minute, model.snapshot(), model.kpis()))
        model.apply(random_actions(scenario, rng))
        if k % 2:
            model.run_minutes(min(interval, minutes - model.minute))
        else:
            for _ in range(int(min(interval, minutes - model.minute))):
                model.step()
        k += 1
    model.check_invariants()
    return trace(model, log, decisions)


def assert_same(scenario: Scenario, seed: int, action_seed: int, minutes: float) -> None:
    reference = run(scenario, seed, action_seed, minutes, compiled=False)
    compiled = run(scenario, seed, action_seed, minutes, compiled=True)
    assert reference["floor"], "the run made no events: nothing was compared"
    for key, value in reference.items():
        assert compiled[key] == value, f"{scenario.name}: the cores differ in {key}"


def test_the_compiled_core_is_built() -> None:
    """``pip install -e .`` built it here (a C compiler is present), so the rest compares."""
    assert _core_select.COMPILED is not None
    assert not _core_select.COMPILED.__file__.endswith(".py")
    assert OperationModel(load_scenario("default"), rng=0)._compiled


@SETTINGS
@given(scenario=scenarios(), seed=st.integers(0, 2**32 - 1), action_seed=st.integers(0, 1000))
def test_random_operations_give_the_same_trace(
    scenario: Scenario, seed: int, action_seed: int
) -> None:
    assert_same(scenario, seed, action_seed, scenario.horizon_minutes)


@pytest.mark.parametrize("name", builtin_names())
def test_builtins_give_the_same_trace(name: str) -> None:
    scenario = load_scenario(name)
    assert_same(scenario, seed=7, action_seed=3, minutes=min(scenario.horizon_minutes, 1440.0))


@pytest.mark.parametrize("name", ["default", "breakdowns"])
def test_rollouts_from_a_snapshot_give_the_same_trace(name: str) -> None:
    """A twin rebuilt from a live state (another heap, filled by ``live``) runs the same."""
    scenario = load_scenario(name)
    with core(False):
        base = OperationModel(scenario, rng=np.random.default_rng(1))
        base.run_minutes(10 * 60)
    snap = base.snapshot()
    out = []
    for compiled in (False, True):
        with core(compiled):
            log = EventLog()
            twin = OperationModel.from_snapshot(scenario, snap, rng=np.random.default_rng(2))
            twin.event_log = log
        run_for(twin, 240.0, actions=random_actions(scenario, np.random.default_rng(5)))
        out.append(trace(twin, log, []))
    assert out[0]["items"]
    assert out[0] == out[1]


def test_a_pickled_compiled_twin_runs_on_the_same() -> None:
    """The C event heap pickles with its events: a copy continues exactly as the original."""
    scenario = load_scenario("default")
    with core(True):
        model = OperationModel(scenario, rng=np.random.default_rng(4))
    model.run_minutes(9 * 60)
    assert len(model._heap) > 0
    clone = pickle.loads(pickle.dumps(model))
    assert clone._heap.entries() != [] and len(clone._heap) == len(model._heap)
    model.run_minutes(120)
    clone.run_minutes(120)
    assert clone.kpis() == model.kpis()
    assert clone.snapshot() == model.snapshot()


def test_synctwin_core_python_selects_the_reference() -> None:
    """``SYNCTWIN_CORE=python`` runs the reference; a misspelt value warns and compiles."""
    code = (
        "import warnings; warnings.simplefilter('always');"
        "from twin.model import OperationModel; from twin.scenario import load_scenario;"
        "print(OperationModel(load_scenario('default'), rng=0)._compiled)"
    )
    for value, expect, warned in (("python", "False", False), ("fast", "True", True)):
        env = {**os.environ, "SYNCTWIN_CORE": value}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == expect
        assert ("SYNCTWIN_CORE='fast'" in done.stderr) is warned
