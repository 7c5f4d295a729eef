"""Run a twin under a controller: the loop every command, env and comparison shares."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from twin.actions import Controller
from twin.eventlog import EventLog
from twin.model import OperationModel
from twin.scenario import Scenario


def run(
    model: OperationModel,
    controller: Controller | None,
    minutes: float | None = None,
    on_tick: Callable[[OperationModel], None] | None = None,
) -> OperationModel:
    """Step ``model`` for ``minutes`` (default: to the horizon), asking ``controller``
    for actions at every decision interval (counted from minute 0)."""
    interval = model.scenario.decision_interval_minutes
    stop = model.scenario.horizon_minutes if minutes is None else model.minute + minutes
    stop = min(stop, model.scenario.horizon_minutes)
    while model.minute < stop - 1e-9:
        if controller is not None and model.minute % interval < 1e-9:
            model.apply(controller.decide(model.snapshot()))
        model.step()
        if on_tick is not None:
            on_tick(model)
    return model


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
