"""The event loop runs with the cyclic collector paused (:mod:`twin.collector`).

That is only safe while the loop makes no reference cycles: garbage in a cycle would
pile up until the collector runs again. So a whole day of every kind of event (the
breakdowns scenario: failures, repairs, shifts, breaks, transfers, overtime) must
leave nothing for the collector to find, and the collector must be back as it was.
"""

from __future__ import annotations

import gc

import numpy as np

from agents.threshold import ThresholdController
from twin.collector import collector_paused
from twin.env import OperationEnv
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import load_scenario


def test_the_event_loop_makes_no_reference_cycles() -> None:
    scenario = load_scenario("breakdowns")
    model = OperationModel(scenario, rng=np.random.default_rng(4))
    controller = ThresholdController(scenario)
    run_for(model, 60, controller)  # the controller builds what it keeps (a closure cycle)
    gc.collect()
    gc.disable()
    try:
        run_for(model, None, controller)
        assert model.done and model.arrived > 1000
        assert gc.collect() == 0  # nothing unreachable: every object freed by refcount
    finally:
        gc.enable()


def test_env_steps_make_no_reference_cycles() -> None:
    """An env step runs with the collector paused too: the twin, the snapshot, the
    features and the reward of a whole episode must leave nothing cyclic behind."""
    env = OperationEnv(load_scenario("breakdowns"))
    env.reset(seed=4)
    env.action_space.seed(0)
    env.step(env.action_space.sample())
    gc.collect()
    gc.disable()
    try:
        steps, done = 1, False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
            steps += 1
        assert steps > 20
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert gc.isenabled()


def test_the_collector_comes_back_as_it_was() -> None:
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(0))
    assert gc.isenabled()
    model.run_minutes(60)
    assert gc.isenabled()
    gc.disable()
    try:
        model.run_minutes(60)
        assert not gc.isenabled()  # not switched on behind its caller's back
        with collector_paused():
            with collector_paused():
                assert not gc.isenabled()
    finally:
        gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
