"""Run a twin under a controller: the entry points commands and comparisons call.

The loop itself, and its decision grid, is :func:`twin.rollout.run_for`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from twin.actions import Controller
from twin.eventlog import EventLog
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import Scenario


def run(
    model: OperationModel,
    controller: Controller | None,
    minutes: float | None = None,
    on_tick: Callable[[OperationModel], None] | None = None,
) -> OperationModel:
    """Step ``model`` for ``minutes`` (default: to the horizon), asking ``controller``
    for actions on the scenario's decision grid (counted from minute 0; at the start
    only if it is a grid point): :func:`twin.rollout.run_for`."""
    return run_for(model, minutes, controller, on_tick=on_tick)


def simulate(
    scenario: Scenario,
    controller: Controller | None,
    seed: int,
    on_tick: Callable[[OperationModel], None] | None = None,
    record_every_minutes: int = 15,
    event_log: EventLog | None = None,
) -> OperationModel:
    """A fresh twin of ``scenario`` seeded with ``seed``, run to the horizon."""
    model = OperationModel(
        scenario,
        rng=np.random.default_rng(seed),
        record_every_minutes=record_every_minutes,
        event_log=event_log,
    )
    return run(model, controller, on_tick=on_tick)
