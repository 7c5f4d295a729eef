"""Process pools and the cost of strategies over seeds: the one place that owns both.

- :func:`process_pool` starts a ``spawn`` process pool (or returns ``None`` when one
  worker is asked for); tuning, lookahead rollouts, comparisons and bounds share it.
- :func:`costs` runs a strategy on every (scenario, seed) to the horizon and returns the
  total costs; :func:`grid_costs` does the same for several (strategy, scenario) rows at
  once, so a pool is kept busy across them. Runs go through the pool when one is given;
  the result does not depend on it (every run is seeded, common random numbers).

A *strategy* here is a factory ``(scenario, seed) -> Controller``; to go through a pool it
must pickle (a module-level function or a :func:`functools.partial` of one).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

import numpy as np

from twin.actions import Controller
from twin.runner import simulate
from twin.scenario import Scenario

#: builds the controller of one run: ``factory(scenario, seed)``
Factory = Callable[[Scenario, int], Controller]


def process_pool(workers: int | None, jobs: int | None = None) -> Executor | None:
    """A process pool of ``workers`` (default: all cores), or ``None`` for one worker.

    ``jobs`` caps the workers at the number of jobs to run (``None`` also when there is at
    most one). Processes are started with ``spawn`` explicitly (Mesa switches the global
    default to it on import anyway), so behaviour does not depend on import order.
    """
    workers = workers or os.cpu_count() or 1
    if jobs is not None:
        workers = min(workers, jobs)
    if workers <= 1:
        return None
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))


def run_cost(factory: Factory, scenario: Scenario, seed: int) -> float:
    """Total cost of one full run of ``factory(scenario, seed)`` on seed ``seed``."""
    controller = factory(scenario, seed)
    model = simulate(scenario, controller, seed, record_every_minutes=scenario.horizon_minutes)
    return model.kpis().total.total_cost


def _job_cost(job: tuple[Factory, Scenario, int]) -> float:
    return run_cost(*job)


def grid_costs(
    rows: Sequence[tuple[Factory, Scenario]],
    seeds: Sequence[int],
    pool: Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``cost[i, k]``: total cost of strategy ``rows[i]`` (factory, scenario) on ``seeds[k]``.

    Runs in ``pool`` if given (in order, ``len(seeds) // 2`` runs per task), else here;
    ``progress`` is called with 1 after every run.
    """
    jobs = [(factory, scenario, seed) for factory, scenario in rows for seed in seeds]
    results = (
        map(_job_cost, jobs)
        if pool is None
        else pool.map(_job_cost, jobs, chunksize=max(1, len(seeds) // 2))
    )
    out: list[float] = []
    for cost in results:
        out.append(cost)
        if progress is not None:
            progress(1)
    return np.asarray(out, dtype=float).reshape(len(rows), len(seeds))


def costs(
    factory: Factory,
    scenarios: Sequence[Scenario],
    seeds: Sequence[int],
    pool: Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``cost[i, k]``: total cost of the strategy ``factory`` on ``scenarios[i]``, ``seeds[k]``.

    Its ``.mean()`` is the strategy's mean cost over the runs (see :func:`grid_costs`).
    """
    return grid_costs([(factory, sc) for sc in scenarios], seeds, pool, progress)
