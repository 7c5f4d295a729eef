"""``synctwin bench strategies``: compute cost per decision of every strategy.

Each strategy runs the scenario's horizon on ``seeds`` seeds in this process (one core),
its ``decide(snapshot)`` timed at every decision interval. The snapshot itself is taken
outside the timer (every strategy pays the same for it), so the numbers are the
controller's own cost; ``run_seconds`` is the whole simulated horizon.
"""

from __future__ import annotations

import platform
import time

import numpy as np

from agents import make_controller, strategy_names
from experiments.comparison.compare import TimedController
from twin.runner import simulate
from twin.scenario import load_scenario


def bench_strategies(
    scenario: str = "default", seeds: int = 1, strategies: list[str] | None = None
) -> dict:
    """Per strategy: decisions per run, ms per decision (mean, median, p95, max), s per run."""
    sc = load_scenario(scenario)
    rows = []
    for name in strategies or strategy_names():
        secs: list[float] = []
        walls: list[float] = []
        decisions: list[int] = []
        rollouts: list[float] = []
        for seed in range(seeds):
            controller = TimedController(make_controller(name, sc, seed))
            t0 = time.perf_counter()
            simulate(sc, controller, seed)
            walls.append(time.perf_counter() - t0)
            secs += controller.seconds
            decisions.append(len(controller.seconds))
            rollouts += list(getattr(controller.inner, "rollouts", []))
        ms = np.asarray(secs) * 1e3
        row = {
            "strategy": name,
            "decisions_per_run": float(np.mean(decisions)),
            "ms_per_decision_mean": float(ms.mean()),
            "ms_per_decision_median": float(np.median(ms)),
            "ms_per_decision_p95": float(np.percentile(ms, 95)),
            "ms_per_decision_max": float(ms.max()),
            "run_seconds_mean": float(np.mean(walls)),
        }
        if rollouts:
            row["rollouts_per_decision_mean"] = float(np.mean(rollouts))
        rows.append(row)
    return {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "scenario": sc.name,
        "horizon_days": sc.horizon_days,
        "decision_interval_minutes": sc.decision_interval_minutes,
        "seeds": seeds,
        "strategies": rows,
    }
