"""Running a twin forward: the one loop behind runs, rollouts, forecasts and lookahead.

**The decision grid.** A controller decides on the scenario's grid: the minutes
``k * decision_interval_minutes`` counted from minute 0 of day 0 (00:00, 00:30,
01:00, ... with the default 30-minute interval), at the first tick boundary at or
after each grid point. A twin that starts off the grid (a snapshot at 10:15) next
decides at 10:30, then 11:00, ... At the start of a run the caller chooses:
``decide_at_start=None`` (the default) decides there only if the start is a grid
point; ``True`` decides there whatever the minute (a forecast under a policy: the
policy acts now); ``False`` never does (a lookahead candidate holds until the next
grid point). Actions given as ``actions`` are put in force at the start, before
any decision.

**Rollout twins** (:func:`rollout_twin`) are rebuilt from a snapshot with
``record_every_minutes=None``: they never record a time series (the one spelling of
"do not record"). :func:`close` frees a finished one at once.

**No fork.** A copy of a built twin was measured against rebuilding one from its
snapshot (default scenario at 10:00, 129 workers, 135 pending events): with the
compiled event core, rebuilding 0.8 ms, ``copy.deepcopy`` 3.3 ms, a pickle round
trip 4.6 ms, against about 3 ms for the 90-minute rollout that follows (before it:
3.8, 13.4, 5.2 and 25 ms). A rebuild is now a fifth of a rollout, but a copy still
costs more than a rebuild (most of either is creating the workers and registering
them with Mesa), so a fork would not pay: there is none; rebuild from the snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from twin.actions import Controller, SectorAction, TwinAware
from twin.model import OperationModel
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

_EPS = 1e-9  # minutes: clock comparisons


def rollout_twin(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    seed: np.random.Generator | int,
    *,
    checked: bool = False,
    demand_factors: Sequence[float] | None = None,
) -> OperationModel:
    """A twin rebuilt from ``snapshot`` for a rollout: seeded by ``seed``, never recording.

    Args:
        scenario: the scenario the snapshot belongs to.
        snapshot: the start state.
        seed: the rollout's seed (arms compared with each other use the same one).
        checked: the snapshot already passed :func:`twin.live.check_snapshot` (check it
            once at the border, not once per sample and arm).
        demand_factors: per item class, a factor on the planned arrival rate from the
            snapshot on (what was observed so far says, :mod:`twin.adaptive`); ``None``
            (and all ones) runs the plan.

    Raises:
        twin.live.SnapshotError: (unless ``checked``) the snapshot does not fit.
    """
    return OperationModel.from_snapshot(
        scenario,
        snapshot,
        seed,
        record_every_minutes=None,
        checked=checked,
        demand_factors=demand_factors,
    )


def run_for(
    model: OperationModel,
    minutes: float | None = None,
    controller: Controller | None = None,
    *,
    actions: Mapping[str, SectorAction] | None = None,
    decide_at_start: bool | None = None,
    on_tick: Callable[[OperationModel], None] | None = None,
) -> OperationModel:
    """Step ``model`` for ``minutes`` (default and at most: to the scenario's horizon).

    Args:
        model: the twin, run in place.
        minutes: how far to run.
        controller: decides on the decision grid (see the module docstring).
        actions: put in force at the start (sectors left out keep theirs).
        decide_at_start: whether ``controller`` decides at the start (``None``: only if
            the start is a grid point).
        on_tick: called after every tick.

    Returns:
        ``model``.
    """
    scenario = model.scenario
    horizon = scenario.horizon_minutes
    stop = horizon if minutes is None else min(model.minute + minutes, horizon)
    interval = scenario.decision_interval_minutes
    start = model.minute
    if isinstance(controller, TwinAware):
        controller.attach(model)
    if actions:
        model.apply(actions)
    if decide_at_start is None:
        decide_at_start = abs(start - round(start / interval) * interval) < _EPS
    next_decision = start if decide_at_start else _grid_after(start, interval)
    while model.minute < stop - _EPS:
        if controller is not None and model.minute >= next_decision - _EPS:
            model.apply(controller.decide(model.snapshot()))
            next_decision = _grid_after(model.minute, interval)
        if on_tick is None:  # the same ticks, to the next decision in one call (the core's loop)
            until = stop if controller is None else min(stop, next_decision)
            model.run_minutes(until - model.minute)
            continue
        model.step()
        on_tick(model)
    return model


def _grid_after(minute: float, interval: float) -> float:
    """The first grid point strictly after ``minute``."""
    return (math.floor((minute + _EPS) / interval) + 1) * interval


def close(model: OperationModel) -> None:
    """Free a finished twin at once; it is unusable afterwards.

    The model and its workers reference each other (Mesa agents hold their model, the
    model holds them in its agent registry, shift lists and event heap). Clearing the
    model's attributes breaks those cycles, so reference counting frees a rollout
    immediately instead of leaving it to the cyclic garbage collector, whose full
    passes over a server's heap take 100 ms or more. (Mesa 3.3's class-level agent-id
    registry would keep every model alive regardless; :class:`twin.workers.Worker`
    keeps its id counter on the model instead, so nothing global refers to a twin.)
    """
    model.__dict__.clear()
