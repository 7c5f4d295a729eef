"""Benchmarks: numbers, not pass/fail. ``synctwin bench ...`` prints them and writes JSON."""

from __future__ import annotations

import platform
import time
from statistics import median

from agents.static import StaticController
from twin.runner import simulate
from twin.scenario import Scenario, load_scenario

SCALES = (1, 2, 10)


def _time_day(scenario: Scenario, seed: int) -> tuple[float, int]:
    """Wall seconds to simulate the horizon once under the static plan, and items arrived."""
    t0 = time.perf_counter()
    model = simulate(scenario, StaticController(scenario), seed)
    return time.perf_counter() - t0, model.arrived


def bench_twin(scenario: str = "default", repeats: int = 3) -> dict:
    """Simulated minutes per wall second at 1x, 2x and 10x the default's workers and demand.

    The median of ``repeats`` runs (different seeds) is reported; a single process,
    so one core.
    """
    base = load_scenario(scenario)
    rows = []
    for scale in SCALES:
        sc = base if scale == 1 else base.scaled(scale)
        runs = [_time_day(sc, seed) for seed in range(repeats)]
        wall = median(r[0] for r in runs)
        days = sc.horizon_days
        rows.append(
            {
                "scenario": sc.name,
                "scale": scale,
                "workers": sc.total_headcount,
                "items_per_day": round(median(r[1] for r in runs) / days),
                "wall_seconds_per_sim_day": wall / days,
                "sim_minutes_per_wall_second": sc.horizon_minutes / wall,
            }
        )
    for r in rows:
        r["cost_ratio_vs_1x"] = r["wall_seconds_per_sim_day"] / rows[0]["wall_seconds_per_sim_day"]
    return {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "repeats": repeats,
        "twin": rows,
    }
