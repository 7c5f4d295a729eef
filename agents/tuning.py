"""Tuning the ``threshold`` manager per scenario: a documented, reproducible random search.

``synctwin tune-baseline --scenario S [--seeds N] [--budget K]`` runs :func:`tune_threshold`:

1. **Random search.** Candidate 0 is the documented defaults; the next ``ceil(3K/4) - 1``
   candidates are drawn from :data:`SEARCH_SPACE` with ``numpy.random.default_rng(search_seed)``
   (values rounded to 3 decimals, so the file holds exactly what was evaluated).
2. **Local refinement.** The remaining candidates perturb the best one found so far
   (continuous values x U[0.8, 1.25], each discrete value redrawn with probability 1/4).
3. **Confirmation.** The best ``finalists`` candidates are evaluated on ``N`` more seeds and
   the one with the lowest mean over all ``2N`` seeds wins (against the winner's curse).

Every candidate is scored by the mean ``total_cost`` of full runs on the same *training*
seeds ``TRAIN_SEED_BASE + 0 .. N-1`` (common random numbers: every candidate sees the same
demand and absences). Training seeds never overlap the evaluation seeds ``0, 1, ...`` that
``synctwin compare`` uses. Runs are spread over a process pool; the result does not depend
on the number of workers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import grid_costs, process_pool
from agents.threshold import DEFAULT_PARAMS, ThresholdController, ThresholdParams, tuned_path
from twin.scenario import Scenario, builtin_names

TRAIN_SEED_BASE = 10_000  # training seeds: TRAIN_SEED_BASE + k (compare uses 0, 1, ...)
HORIZON_CHOICES = (60, 120, 240, 480)
EDD_CHOICES = (0, 1, 5, 20, None)

#: what is searched, for the file and the README (ranges are sampled uniformly)
SEARCH_SPACE: dict[str, str] = {
    "horizon_minutes": f"one of {HORIZON_CHOICES}",
    "help_ratio": "U[0.5, 1.3]",
    "target_ratio": "help_ratio x U[0.6, 1.0]",
    "keep_ratio": "U[0.6, 1.0]",
    "release_ratio": "help_ratio x U[0.3, 0.9]",
    "max_lend_fraction": "U[0.2, 0.8]",
    "flex_ratio": "never (p=1/2) or U[1.0, 3.0]",
    "overtime_ratio": "never (p=1/2) or U[0.8, 2.0]",
    "edd_min_items": f"one of {EDD_CHOICES} (0: always, null: never)",
    "flow_weight": "one of (0, 0.5, 1)",
}


def _r(x: float) -> float:
    return round(float(x), 3)


def sample_params(rng: np.random.Generator) -> ThresholdParams:
    """One candidate drawn from :data:`SEARCH_SPACE`."""
    help_ratio = _r(rng.uniform(0.5, 1.3))
    flex = _r(rng.uniform(1.0, 3.0))
    overtime = _r(rng.uniform(0.8, 2.0))
    return ThresholdParams(
        horizon_minutes=HORIZON_CHOICES[int(rng.integers(len(HORIZON_CHOICES)))],
        help_ratio=help_ratio,
        target_ratio=_r(help_ratio * rng.uniform(0.6, 1.0)),
        keep_ratio=_r(rng.uniform(0.6, 1.0)),
        release_ratio=_r(help_ratio * rng.uniform(0.3, 0.9)),
        max_lend_fraction=_r(rng.uniform(0.2, 0.8)),
        flex_ratio=flex if rng.random() < 0.5 else None,
        overtime_ratio=overtime if rng.random() < 0.5 else None,
        edd_min_items=EDD_CHOICES[int(rng.integers(len(EDD_CHOICES)))],
        flow_weight=(0.0, 0.5, 1.0)[int(rng.integers(3))],
    )


def perturb_params(best: ThresholdParams, rng: np.random.Generator) -> ThresholdParams:
    """A neighbour of ``best``: continuous values scaled, discrete ones sometimes redrawn."""
    fresh = sample_params(rng)
    data = best.model_dump()
    for key in ("help_ratio", "target_ratio", "keep_ratio", "release_ratio"):
        data[key] = _r(data[key] * rng.uniform(0.8, 1.25))
    data["max_lend_fraction"] = _r(min(1.0, data["max_lend_fraction"] * rng.uniform(0.8, 1.25)))
    for key in ("flex_ratio", "overtime_ratio"):
        factor = rng.uniform(0.8, 1.25)
        if data[key] is not None:
            data[key] = _r(data[key] * factor)
    for key in ("horizon_minutes", "edd_min_items", "flow_weight", "flex_ratio", "overtime_ratio"):
        if rng.random() < 0.25:
            data[key] = getattr(fresh, key)
    return ThresholdParams.model_validate(data)


def _threshold(params: ThresholdParams, scenario: Scenario, seed: int) -> ThresholdController:
    return ThresholdController(scenario, params)


def evaluate(
    scenario: Scenario,
    candidates: Sequence[ThresholdParams],
    seeds: Sequence[int],
    pool: Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``cost[i, k]``: total cost of candidate ``i`` on seed ``seeds[k]`` (in ``pool`` if given)."""
    rows = [(partial(_threshold, p), scenario) for p in candidates]
    return grid_costs(rows, seeds, pool, progress)


def tune_threshold(
    scenario: Scenario,
    seeds: int = 8,
    budget: int = 40,
    search_seed: int = 0,
    finalists: int = 3,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Tune the threshold manager for ``scenario`` (see the module docstring).

    Args:
        scenario: the scenario.
        seeds: training seeds per candidate (``N``); finalists get ``N`` more.
        budget: candidates evaluated (``K``, the defaults included).
        search_seed: seed of the search's own generator.
        finalists: candidates confirmed on the extra seeds.
        workers: processes (default: all cores).
        progress: called with the number of runs just finished.

    Returns:
        The tuned-file content: scenario name and digest, winning ``params``, the
        objective of the winner and of the defaults on all ``2N`` seeds, and the search
        settings (enough to reproduce it).
    """
    if seeds < 1 or budget < 1:
        raise ValueError("seeds and budget must be >= 1")
    rng = np.random.default_rng(search_seed)
    train = [TRAIN_SEED_BASE + k for k in range(seeds)]
    confirm = [TRAIN_SEED_BASE + seeds + k for k in range(seeds)]
    n_random = max(1, math.ceil(3 * budget / 4))
    candidates = [DEFAULT_PARAMS] + [sample_params(rng) for _ in range(n_random - 1)]
    pool = process_pool(workers)
    try:
        cost = evaluate(scenario, candidates, train, pool, progress)
        if budget > n_random:
            best = candidates[int(np.argmin(cost.mean(axis=1)))]
            local = [perturb_params(best, rng) for _ in range(budget - n_random)]
            cost = np.vstack([cost, evaluate(scenario, local, train, pool, progress)])
            candidates += local
        order = [int(i) for i in np.argsort(cost.mean(axis=1), kind="stable")]
        top = order[: max(1, finalists)]
        if 0 not in top:
            top.append(0)  # the defaults are always confirmed, for the record
        extra = evaluate(scenario, [candidates[i] for i in top], confirm, pool, progress)
    finally:
        if pool is not None:
            pool.shutdown()
    full = {i: np.concatenate([cost[i], extra[n]]) for n, i in enumerate(top)}
    winner = min(top, key=lambda i: (float(full[i].mean()), i))
    return {
        "scenario": scenario.name,
        "scenario_digest": scenario.digest,
        "strategy": "threshold",
        "params": candidates[winner].model_dump(mode="json"),
        "objective": {
            "metric": "mean total_cost over the training seeds",
            "tuned": round(float(full[winner].mean()), 2),
            "defaults": round(float(full[0].mean()), 2),
            "seeds": train + confirm,
        },
        "search": {
            "method": "random search + local refinement + confirmation (agents/tuning.py)",
            "budget": budget,
            "seeds_per_candidate": seeds,
            "search_seed": search_seed,
            "finalists": finalists,
            "space": SEARCH_SPACE,
            "candidates_evaluated": len(candidates),
            "winner_index": winner,
        },
        "command": f"synctwin tune-baseline --scenario {scenario.name} --seeds {seeds} "
        f"--budget {budget} --search-seed {search_seed}",
    }


def default_output(scenario: Scenario) -> Path:
    """Where ``tune-baseline`` writes by default: the package's tuned dir for a built-in
    scenario, else ``./<name>.threshold.json``."""
    if scenario.name in builtin_names():
        return tuned_path(scenario.name)
    return Path(f"{scenario.name}.threshold.json")


def write_tuned(result: dict[str, Any], path: Path) -> None:
    """Write a tuning result as stable, diff-friendly JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
