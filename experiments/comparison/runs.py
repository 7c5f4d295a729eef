"""One comparison run, and batches of them: the unit of work of every executor.

A run is one (scenario, strategy, seed) simulated to the horizon and flattened into a row
of KPIs (:func:`run_one`). Executors (:mod:`experiments.comparison.executors`) never ship
single runs: they ship a :class:`Batch`, a few runs of one scenario and strategy, because a
task costs a few milliseconds to schedule on a process pool and more on Ray, while a cheap
run (a one-day scenario under ``static``) takes about 0.15 s. :func:`runs_per_task` sizes
batches from a measured run so a task is worth its overhead.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.comparison.strategies import controller_for
from twin.actions import SectorAction, TwinAware
from twin.model import OperationModel
from twin.runner import simulate
from twin.scenario import Scenario, load_scenario
from twin.snapshot import OperationSnapshot

#: a task should take at least this long (scheduling a task costs milliseconds)
MIN_TASK_SECONDS = 0.25
#: and at most about this long, so progress moves and a kill loses little
MAX_TASK_SECONDS = 5.0
#: at least this many tasks per CPU when there are runs enough, so no CPU idles at the end
TASKS_PER_CPU = 4


class TimedController:
    """Wraps a controller and measures the wall time of every decision."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seconds: list[float] = []

    def attach(self, model: OperationModel) -> None:
        """Pass the twin on to a controller that needs it (the hindsight bound)."""
        if isinstance(self.inner, TwinAware):
            self.inner.attach(model)

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        t0 = time.perf_counter()
        actions = self.inner.decide(snapshot)
        self.seconds.append(time.perf_counter() - t0)
        return actions


@dataclass(frozen=True)
class Run:
    """One run to do: a scenario (loaded, or a name or path), a strategy, a seed.

    ``strategy`` is the name as the user wrote it (it goes into the results);
    ``controller`` is what builds the controller, with any file path made absolute, so a
    worker whose working directory is not the user's (a Ray worker) finds the same file.
    """

    scenario: Scenario | str
    strategy: str
    seed: int
    keep_timeseries: bool = False
    controller: str | None = None


@dataclass
class RunResult:
    """A finished run: its KPI row and, for a representative seed, its time series."""

    row: dict[str, object]
    timeseries: pd.DataFrame | None = field(default=None)


@dataclass(frozen=True)
class Batch:
    """Runs shipped as one task: ``indices[i]`` is the plan index of ``runs[i]``."""

    indices: tuple[int, ...]
    runs: tuple[Run, ...]


def portable_strategy(name: str) -> str:
    """``name`` with the path of ``kind:PATH`` made absolute when it names a file here."""
    kind, sep, rest = name.partition(":")
    if sep and rest and Path(rest).expanduser().exists():
        return f"{kind}:{Path(rest).expanduser().resolve()}"
    return name


def run_one(job: Run) -> RunResult:
    """Simulate one (scenario, strategy, seed) and flatten its KPIs into a row."""
    sc = job.scenario if isinstance(job.scenario, Scenario) else load_scenario(job.scenario)
    controller = TimedController(controller_for(job.controller or job.strategy, sc, job.seed))
    t0 = time.perf_counter()
    model = simulate(sc, controller, job.seed)
    wall = time.perf_counter() - t0
    close = getattr(controller.inner, "close", None)
    if close is not None:
        close()
    row: dict[str, object] = {"scenario": sc.name, "strategy": job.strategy, "seed": job.seed}
    row.update(model.kpis().flat())
    ts = model.timeseries()
    for name in sc.sector_names:
        q = ts[f"{name}.queue"]
        row[f"{name}.queue_mean"] = float(q.mean())
        row[f"{name}.queue_peak"] = float(q.max())
    secs = controller.seconds
    row["decisions"] = len(secs)
    row["decide_seconds_mean"] = float(np.mean(secs)) if secs else 0.0
    row["decide_seconds_max"] = float(np.max(secs)) if secs else 0.0
    row["wall_seconds"] = wall
    if job.keep_timeseries:
        ts = ts.copy()
        ts.insert(0, "strategy", job.strategy)
        ts.insert(0, "scenario", sc.name)
        return RunResult(row, ts)
    return RunResult(row)


def run_batch(batch: Batch) -> list[tuple[int, RunResult]]:
    """Every run of a batch, in order, with its plan index (the body of one task)."""
    return [(i, run_one(job)) for i, job in zip(batch.indices, batch.runs, strict=True)]


def runs_per_task(run_seconds: float, runs: int, cpus: int) -> int:
    """How many runs one task carries, from the measured wall time of one run.

    At least enough that a task takes :data:`MIN_TASK_SECONDS`; otherwise as many as keep
    :data:`TASKS_PER_CPU` tasks per CPU (a short tail), capped at :data:`MAX_TASK_SECONDS`
    of work so progress moves and a kill loses little.
    """
    run_seconds = max(run_seconds, 1e-3)
    at_least = math.ceil(MIN_TASK_SECONDS / run_seconds)
    balanced = math.ceil(runs / (TASKS_PER_CPU * max(cpus, 1)))
    at_most = max(1, math.floor(MAX_TASK_SECONDS / run_seconds))
    return max(1, at_least, min(balanced, at_most))


def make_batches(jobs: list[Run], todo: list[int], size: int) -> list[Batch]:
    """Cut the runs ``todo`` (plan indices into ``jobs``) into batches of at most ``size``.

    A batch holds one scenario and one strategy, so its results form one homogeneous part
    file and its task ships one scenario. The slowest strategies (lookahead) go first, so
    the executor is not left waiting on one of them at the end.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i in todo:
        job = jobs[i]
        name = job.scenario.name if isinstance(job.scenario, Scenario) else job.scenario
        groups.setdefault((name, job.strategy), []).append(i)
    order = sorted(groups, key=lambda key: not key[1].startswith("lookahead"))
    batches = []
    for key in order:
        idx = groups[key]
        for start in range(0, len(idx), size):
            chunk = tuple(idx[start : start + size])
            batches.append(Batch(chunk, tuple(jobs[i] for i in chunk)))
    return batches
