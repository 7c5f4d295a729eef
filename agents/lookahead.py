"""``lookahead``: model-predictive control by twin rollouts around the threshold manager.

Every decision interval:

1. the tuned threshold manager (:mod:`agents.threshold`) proposes an action set (the
   *base*); a handful of variants are built around it (see :meth:`LookaheadController.candidates`):
   the plan as written, no loans, more help for the most pressed sector, more or no flex,
   overtime switched for sectors whose shift ends before the next decision;
2. each candidate is rolled forward ``horizon_minutes`` in a twin cloned from the snapshot
   (:func:`twin.rollout.rollout_twin`) on ``samples`` sampled futures (demand, absences,
   service times), with **common random numbers**: sample ``k`` uses the same seed for
   every candidate. The candidate holds until the next decision; after that the base
   manager decides inside the rollout (a rollout policy, so a candidate is judged by what
   actually follows it);
3. the candidate with the lowest mean cost wins: total cost accrued in the rollout plus a
   terminal estimate (the SLA penalty of work due within ``terminal_minutes`` after the
   rollout that the capacity then cannot finish in time, up to the base manager's
   look-ahead horizon). Ties go to the base.

Compute cost per decision is ``candidates x samples`` rollouts; it is measured
(``decision_seconds``) and reported by ``synctwin bench strategies`` and ``compare``.
``workers > 1`` spreads the rollouts over a process pool (useful when one decision
matters, e.g. behind a server; comparisons already run one process per run).
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from agents.candidates import candidates
from agents.evaluation import process_pool
from agents.threshold import ThresholdController, ThresholdParams
from agents.view import HORIZONS, FlowView
from twin.actions import SectorAction
from twin.live import check_snapshot
from twin.rollout import close, rollout_twin, run_for
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

Actions = dict[str, SectorAction]


def rollout(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    actions: Actions,
    seed: int,
    horizon_minutes: float,
    base: ThresholdController,
    terminal_minutes: float,
) -> float:
    """Cost of holding ``actions`` until the next decision, then following ``base``, for
    ``horizon_minutes`` from ``snapshot`` on the future drawn from ``seed``.

    ``base`` decides on the scenario's decision grid (:func:`twin.rollout.run_for`),
    never at the start: the candidate is the decision there. ``snapshot`` must fit the
    scenario (the controller checks it once per decision).
    """
    model = rollout_twin(scenario, snapshot, seed, checked=True)
    try:
        run_for(model, horizon_minutes, base, actions=actions, decide_at_start=False)
        cost = model.kpis().total.total_cost
        if terminal_minutes > 0 and model.minute < scenario.horizon_minutes - 1e-9:
            cost += terminal_penalty(base, model.snapshot(), terminal_minutes)
        return cost
    finally:
        close(model)


def terminal_penalty(
    base: ThresholdController, snapshot: OperationSnapshot, minutes: float
) -> float:
    """SLA penalty of the work due within ``minutes`` that the capacity then cannot finish
    in time: per sector, the worst shortfall over the due horizons up to ``minutes`` (work
    there and forecast arrivals due in time vs capacity), in items, at most the items not
    yet overdue plus the forecast ones (overdue items already count as misses)."""
    f = base.facts
    v = FlowView.read(f, snapshot, flow=True)
    j = min(int(np.searchsorted(HORIZONS, minutes)), len(HORIZONS) - 1) + 1
    # the sector's own work plus forecast arrivals due in time (not work still upstream:
    # that is counted where it is now)
    own = np.cumsum(v.items, axis=1)[:, 1 : 1 + len(HORIZONS)] + v.forecast
    work = (own * f.service_minutes[:, None])[:, :j]
    short = np.maximum(0.0, work - v.capacity[:, :j]) / f.service_minutes[:, None]
    savable = (np.cumsum(v.items[:, 1:], axis=1)[:, : len(HORIZONS)] + v.forecast)[:, :j]
    short_items = np.minimum(short, savable).max(axis=1)
    return float(short_items.sum()) * f.scenario.costs.sla_miss_penalty


def _rollout_job(args: tuple) -> float:
    return rollout(*args)


class LookaheadController:
    """Rollout-based model-predictive control (see the module docstring).

    Args:
        scenario: the scenario.
        seed: seeds the generator the rollout futures are drawn from.
        base_params: the base manager's thresholds (default: tuned file, else defaults).
        horizon_minutes: how far each rollout looks ahead.
        samples: sampled futures per candidate (common random numbers across candidates).
        terminal_minutes: window of the terminal penalty estimate (0: none; default: the
            base manager's look-ahead horizon).
        workers: processes for the rollouts (0 or 1: in this process).
        min_gain: predicted saving a variant needs to replace the base (default: one SLA
            miss's penalty; rollouts are noisy, the base is a good default).
    """

    name = "lookahead"
    # A class default, so ``close`` (and ``__del__``) work on a controller whose
    # ``__init__`` was interrupted (e.g. by Ctrl-C while the tuned file loads).
    _pool: Executor | None = None
    _own_pool = True  # False once a caller's pool is lent (:meth:`use_pool`)

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        *,
        base_params: ThresholdParams | Path | str | None = None,
        horizon_minutes: float = 90.0,
        samples: int = 3,
        terminal_minutes: float | None = None,
        workers: int = 0,
        min_gain: float | None = None,
    ) -> None:
        self.scenario = scenario
        self.base = ThresholdController(scenario, base_params)
        self.horizon_minutes = horizon_minutes
        self.samples = samples
        if terminal_minutes is None:
            terminal_minutes = float(self.base.params.horizon_minutes)
        self.terminal_minutes = terminal_minutes
        self.workers = workers
        if min_gain is None:
            min_gain = scenario.costs.sla_miss_penalty
        self.min_gain = min_gain
        self._rng = np.random.default_rng(seed)
        self.decision_seconds: list[float] = []
        self.rollouts: list[int] = []
        self.chosen: list[str] = []

    # ------------------------------------------------------------------ decisions

    def decide(self, snapshot: OperationSnapshot) -> Actions:
        t0 = time.perf_counter()
        base = self.base.decide(snapshot)
        named = self.candidates(snapshot, base)
        seeds = [int(s) for s in self._rng.integers(0, 2**63 - 1, size=self.samples)]
        if len(named) == 1:
            choice = 0
            self.rollouts.append(0)
        else:
            costs = self._evaluate(snapshot, [a for _, a in named], seeds)
            mean = costs.mean(axis=1)
            # a variant replaces the base only if it is better on every sampled future
            # and by at least min_gain on average
            ok = (costs < costs[0]).all(axis=1) & (mean <= mean[0] - self.min_gain)
            choice = int(np.argmin(np.where(ok, mean, np.inf))) if ok.any() else 0
            self.rollouts.append(costs.size)
        self.chosen.append(named[choice][0])
        self.decision_seconds.append(time.perf_counter() - t0)
        return named[choice][1]

    def _evaluate(
        self, snapshot: OperationSnapshot, candidates: list[Actions], seeds: list[int]
    ) -> np.ndarray:
        check_snapshot(self.scenario, snapshot)  # once: the rollouts rebuild it unchecked
        jobs = [
            (
                self.scenario,
                snapshot,
                actions,
                seed,
                self.horizon_minutes,
                self.base,
                self.terminal_minutes,
            )
            for actions in candidates
            for seed in seeds
        ]
        if self._pool is None and self.workers > 1:
            self._pool = process_pool(self.workers)
        if self._pool is not None:
            out = list(self._pool.map(_rollout_job, jobs))
        else:
            out = [_rollout_job(j) for j in jobs]
        return np.asarray(out).reshape(len(candidates), len(seeds))

    def use_pool(self, pool: Executor) -> None:
        """Spread the rollouts over ``pool`` (the caller's; :meth:`close` leaves it running)."""
        self.close()
        self._pool, self._own_pool = pool, False

    def close(self) -> None:
        """Shut the rollout pool down (if this controller started it)."""
        if self._pool is not None and self._own_pool:
            self._pool.shutdown()
        self._pool, self._own_pool = None, True

    def __del__(self) -> None:  # pragma: no cover - best effort
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    # ------------------------------------------------------------------ candidates

    def candidates(self, snapshot: OperationSnapshot, base: Actions) -> list[tuple[str, Actions]]:
        """The base and a few variants around it, without duplicates (base first):
        :func:`agents.candidates.candidates`."""
        return candidates(self.base, snapshot, base)
