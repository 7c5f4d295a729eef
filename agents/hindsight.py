"""``hindsight``: a bound, not a controller. How much could a floor manager who knew the
day in advance have saved over the tuned threshold manager?

At every decision the bound forks the twin that runs reality (a pickle round trip:
its pending events and the state of every random stream included, so the fork's
future *is* the run's future), and for each candidate action set
(:func:`agents.candidates.candidates` with ``wide=True``, the threshold manager's
own decision first) holds the candidate until the next decision, follows the
threshold manager to the end of the horizon and reads the total cost. It keeps the
cheapest, ties going to the threshold manager's decision.

**Never worse than threshold, by construction.** Call ``V_k`` the cost of following
the bound's choices up to decision ``k`` and the threshold manager after. ``V_0`` is
the threshold manager's cost on this seed. At decision ``k`` the threshold manager's
own decision is a candidate, and its rollout is exactly ``V_k`` (the fork is
deterministic and the threshold manager is stateless), so the choice made there has
cost ``V_{k+1} <= V_k``. The bound's cost is the last ``V``, hence at most ``V_0``.
A test checks it on every built-in scenario and several seeds.

It needs the future, so it refuses to run beside a twin rebuilt from a snapshot (whose
future is a sample) and is never served: the server loads policy bundles only.

Cost: ``candidates x decisions`` rollouts to the horizon, about ``decisions^2 / 2``
decision intervals of simulation per candidate; ``workers > 1`` spreads a decision's
candidates over a process pool.
"""

from __future__ import annotations

import pickle
import time
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from agents.candidates import candidates
from agents.lookahead import terminal_penalty
from agents.threshold import ThresholdController, ThresholdParams
from twin.actions import SectorAction
from twin.model import OperationModel
from twin.rollout import close, run_for
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

Actions = dict[str, SectorAction]


class HindsightError(RuntimeError):
    """The bound was asked to decide without the twin that runs reality."""


def freeze(model: OperationModel) -> bytes:
    """``model`` with its whole future (pending events, random streams) as bytes."""
    return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


def thaw(blob: bytes) -> OperationModel:
    """A twin from :func:`freeze`'s bytes, independent of every other; it neither records a
    time series nor logs events (a rollout's are nobody's)."""
    model: OperationModel = pickle.loads(blob)
    model.record_every_minutes = None
    model.event_log = None
    return model


def fork(model: OperationModel) -> OperationModel:
    """An independent copy of ``model`` with the same future."""
    return thaw(freeze(model))


def cost_to_go(
    blob: bytes, actions: Actions, base: ThresholdController, minutes: float | None = None
) -> float:
    """Cost of the twin pickled in ``blob`` holding ``actions`` until the next decision,
    then following ``base``: the total cost at the horizon (``minutes=None``), or, for
    screening, the cost ``minutes`` later plus lookahead's terminal estimate of the
    misses then unavoidable."""
    model = thaw(blob)
    try:
        run_for(model, minutes, base, actions=actions, decide_at_start=False)
        cost = model.kpis().total.total_cost
        if minutes is not None and model.minute < model.scenario.horizon_minutes - 1e-9:
            cost += terminal_penalty(base, model.snapshot(), float(base.params.horizon_minutes))
        return cost
    finally:
        close(model)


def _job(args: tuple[bytes, Actions, ThresholdController, float | None]) -> float:
    return cost_to_go(*args)


class HindsightBound:
    """The hindsight bound (see the module docstring).

    Args:
        scenario: the scenario.
        seed: unused (the bound is deterministic given the run); kept for the factory.
        base_params: the threshold manager's parameters (default: the tuned file).
        wide: the wide candidate set (default); ``False`` uses lookahead's.
        finalists: candidates rolled out to the horizon besides the base decision, the
            best after a ``screen_minutes`` screening rollout (``None``: all of them, no
            screening). The base decision is always judged to the horizon, so the bound
            stays never worse than threshold whatever the screening keeps.
        screen_minutes: length of the screening rollouts.
        pool: an executor to spread each decision's candidates over (default: serial).
    """

    name = "hindsight"

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        *,
        base_params: ThresholdParams | Path | str | None = None,
        wide: bool = True,
        finalists: int | None = 1,
        screen_minutes: float = 120.0,
        pool: Executor | None = None,
    ) -> None:
        self.scenario = scenario
        self.base = ThresholdController(scenario, base_params)
        self.wide = wide
        self.finalists = finalists
        self.screen_minutes = screen_minutes
        self.pool = pool
        self._model: OperationModel | None = None
        self.rollouts = 0
        #: the cost at the horizon the current course leads to (the last choice's
        #: rollout); once the run ends, its total cost equals this exactly
        self.incumbent: float | None = None
        self.decision_seconds: list[float] = []
        self.chosen: list[str] = []

    def use_pool(self, pool: Executor) -> None:
        """Spread each decision's candidates over ``pool`` (the caller's)."""
        self.pool = pool

    def attach(self, model: OperationModel) -> None:
        if model.rebuilt:
            raise HindsightError(
                "hindsight needs the future of the run itself; a twin rebuilt from a "
                "snapshot only has a sampled one"
            )
        self._model = model
        self.incumbent = None

    def decide(self, snapshot: OperationSnapshot) -> Actions:
        model = self._model
        if model is None or abs(model.minute - snapshot.minute) > 1e-6:
            raise HindsightError(
                "hindsight is a bound, not a controller: it decides only beside the twin "
                "that runs reality (compare, simulate), never from a snapshot or in the server"
            )
        t0 = time.perf_counter()
        decision = self.base.decide(snapshot)
        named = candidates(self.base, snapshot, decision, wide=self.wide)
        # the base decision's cost to go is the incumbent's: the rollout chosen at the
        # last decision continued with exactly this decision (the fork is deterministic)
        costs = np.full(len(named), np.inf)
        todo = list(range(len(named)))
        if self.incumbent is not None:
            costs[0] = self.incumbent
            todo.remove(0)
        if todo:
            blob = freeze(model)
            variants = [i for i in todo if i != 0]
            if self.finalists is not None and len(variants) > self.finalists:
                screened = self._rollouts(blob, named, variants, self.screen_minutes)
                keep = set(
                    np.asarray(variants)[np.argsort(screened, kind="stable")][: self.finalists]
                )
                todo = [i for i in todo if i == 0 or i in keep]
            costs[todo] = self._rollouts(blob, named, todo, None)
        # strictly cheaper only: ties (and float noise) keep the base decision
        best = int(np.argmin(costs))
        choice = best if costs[best] < costs[0] - 1e-6 else 0
        self.incumbent = float(costs[choice])
        self.chosen.append(named[choice][0])
        self.decision_seconds.append(time.perf_counter() - t0)
        return named[choice][1]

    def _rollouts(
        self, blob: bytes, named: list[tuple[str, Actions]], which: list[int], minutes: float | None
    ) -> np.ndarray:
        jobs = [(blob, named[i][1], self.base, minutes) for i in which]
        runs = map(_job, jobs) if self.pool is None else self.pool.map(_job, jobs)
        self.rollouts += len(jobs)
        return np.fromiter(runs, dtype=float, count=len(jobs))
