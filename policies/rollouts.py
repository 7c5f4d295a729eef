"""Rollouts of a question: one twin run from a snapshot, the jobs that describe them,
the runners that run them.

A question (a recommendation's impact, a risk forecast, a site's alerts) is answered
by short twin rollouts from one live snapshot. Each is described by a
:class:`RolloutJob` (its seed, length, actions, whether the policy acts) and measured
as a :class:`Rollout` (KPIs at checkpoints, the queue integral). A question hands all
its jobs at once to a *runner* (:data:`Runner`): :func:`run_here` runs them one after
another in this process; the policy server passes one that spreads them over worker
processes (:class:`policies.rollout_pool.RolloutPool`). A job's result depends only on
the scenario, the snapshot and the job, so every runner gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twin.actions import Controller, SectorAction
from twin.model import OperationModel
from twin.rollout import close, rollout_twin, run_for
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

# --------------------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class Rollout:
    """What one rollout measured, per sector in scenario order.

    ``misses``, ``overtime_hours`` and ``cost`` are cumulative at each checkpoint
    (rows: checkpoints in the order asked; columns: sectors); ``queue_item_minutes``
    and ``entered`` cover the whole rollout.
    """

    minutes: float
    misses: np.ndarray
    overtime_hours: np.ndarray
    cost: np.ndarray
    queue_item_minutes: np.ndarray
    entered: np.ndarray


def rollout(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    seed: int,
    minutes: float,
    actions: Mapping[str, SectorAction] | None = None,
    controller: Controller | None = None,
    checkpoints: Sequence[float] = (),
    *,
    checked: bool = False,
    interrupt: Callable[[], bool] | None = None,
    demand_factors: Sequence[float] | None = None,
) -> Rollout:
    """Run a twin rebuilt from ``snapshot`` for ``minutes`` (or to the scenario's horizon).

    Args:
        scenario: the scenario the snapshot belongs to.
        snapshot: the start state.
        seed: the rollout's seed (arms compared with each other use the same one).
        minutes: how far to run.
        actions: actions put in force at the start (sectors left out keep theirs).
        controller: if given, decides at the start and then on the scenario's decision
            grid (:func:`twin.rollout.run_for`).
        checkpoints: minutes from the start at which to read the cumulative KPIs
            (the end of the rollout is always read last).
        checked: the snapshot already passed :func:`twin.live.check_snapshot`.
        interrupt: asked after every tick; when it answers true the rollout stops
            with :class:`RolloutInterrupted` (a deadline passed, the client left).
        demand_factors: per item class, a factor on the planned arrival rate (the
            demand observed so far, :mod:`twin.adaptive`); ``None``: the plan's.

    Raises:
        twin.live.SnapshotError: (unless ``checked``) the snapshot does not fit the scenario.
        RolloutInterrupted: ``interrupt`` answered true.
    """
    model = rollout_twin(scenario, snapshot, seed, checked=checked, demand_factors=demand_factors)
    try:
        return _run(model, minutes, actions, controller, checkpoints, interrupt)
    finally:
        close(model)


class RolloutInterrupted(Exception):
    """A rollout stopped before its end because it was no longer wanted."""


def _run(
    model: OperationModel,
    minutes: float,
    actions: Mapping[str, SectorAction] | None,
    controller: Controller | None,
    checkpoints: Sequence[float],
    interrupt: Callable[[], bool] | None = None,
) -> Rollout:
    scenario = model.scenario
    start = model.minute
    tick = scenario.tick_minutes
    n = len(scenario.sector_names)
    queues = model.queues
    waiting = np.array([q.n for q in queues], dtype=np.float64)
    queue_sum = [0.0] * n
    marks = sorted(set(checkpoints))
    reads: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def on_tick(model: OperationModel) -> None:
        for s in range(n):
            queue_sum[s] += queues[s].n * tick
        elapsed = model.minute - start
        while marks and elapsed >= marks[0] - 1e-9:
            reads[marks.pop(0)] = _read(model)
        if interrupt is not None and interrupt():
            raise RolloutInterrupted

    run_for(model, minutes, controller, actions=actions, decide_at_start=True, on_tick=on_tick)
    end = _read(model)
    rows = [reads.get(m, end) for m in sorted(set(checkpoints))] + [end]
    return Rollout(
        minutes=model.minute - start,
        misses=np.stack([r[0] for r in rows]),
        overtime_hours=np.stack([r[1] for r in rows]),
        cost=np.stack([r[2] for r in rows]),
        queue_item_minutes=np.asarray(queue_sum),
        entered=waiting + np.asarray(model.sector_arrived, dtype=np.float64),
    )


def _read(model: OperationModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = model.kpis()
    recs = [k.sectors[s] for s in model.sector_names]
    return (
        np.array([r.sla_misses for r in recs], dtype=np.float64),
        np.array([r.overtime_hours for r in recs], dtype=np.float64),
        np.array([r.total_cost for r in recs], dtype=np.float64),
    )


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class RolloutJob:
    """One rollout of a question: its seed, length, actions, and whether the policy acts.

    ``with_policy`` jobs are run with the question's policy as controller (a
    forecast's ``policy`` arm); the others keep the actions in force, after putting
    ``actions`` in force at the start. ``demand_factors`` (per item class) scale the
    plan's arrival rates (:mod:`twin.adaptive`; ``None``: the plan).
    """

    seed: int
    minutes: float
    actions: Mapping[str, SectorAction] | None = None
    with_policy: bool = False
    checkpoints: tuple[float, ...] = ()
    demand_factors: tuple[float, ...] | None = None


#: Runs the rollouts of one question: ``runner(scenario, snapshot, jobs, policy)``
#: returns one :class:`Rollout` per job, in the jobs' order. ``policy`` is the
#: controller of the ``with_policy`` jobs (``None`` if there are none).
Runner = Callable[
    [Scenario, OperationSnapshot, Sequence[RolloutJob], Controller | None], list[Rollout]
]


def run_job(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    job: RolloutJob,
    policy: Controller | None,
    interrupt: Callable[[], bool] | None = None,
) -> Rollout:
    """Run one job (the snapshot is already checked)."""
    return rollout(
        scenario,
        snapshot,
        job.seed,
        job.minutes,
        actions=job.actions,
        controller=policy if job.with_policy else None,
        checkpoints=job.checkpoints,
        checked=True,
        interrupt=interrupt,
        demand_factors=job.demand_factors,
    )


def run_here(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    jobs: Sequence[RolloutJob],
    policy: Controller | None,
) -> list[Rollout]:
    """The default :data:`Runner`: every job in turn, in this process."""
    return [run_job(scenario, snapshot, job, policy) for job in jobs]
