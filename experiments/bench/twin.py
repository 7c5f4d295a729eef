"""Benchmarks: numbers, not pass/fail. ``synctwin bench ...`` prints them and writes JSON.

``bench twin`` times the twin at 1x, 2x and 10x the default's size (:func:`bench_twin`);
``bench twin --vs-simpy`` times it against a SimPy model of the same queueing network and
checks that both simulate that network (:func:`bench_vs_simpy`).
"""

from __future__ import annotations

import math
import platform
import time
from statistics import median

import numpy as np

from agents.static import StaticController
from experiments.bench.tandem import Design, Replication, TandemLine, twin_replication
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


# --------------------------------------------------------------------------- vs SimPy

#: the peers' mean waits agree when they differ by at most this many combined standard errors
AGREE_SE = 2.0
#: a model's mean wait is close to theory within this many of its standard errors
THEORY_SE = 3.0


def _mean_se(values: list[float]) -> tuple[float, float]:
    """Mean over replications and its standard error (sample sd / sqrt(n))."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def _model_summary(reps: list[Replication], line: TandemLine, design: Design) -> dict:
    """Speed and per-station waits of one model over its replications."""
    wall = sum(r.wall_seconds for r in reps)
    cpu = sum(r.cpu_seconds for r in reps)
    events = sum(r.events for r in reps)
    stations = []
    for s, name in enumerate(line.station_names):
        wait, wait_se = _mean_se([r.waits[s] for r in reps])
        in_station, in_station_se = _mean_se([r.times_in_station[s] for r in reps])
        stations.append(
            {
                "station": name,
                "mean_wait_minutes": wait,
                "wait_se_minutes": wait_se,
                "wait_z_vs_theory": (wait - line.theory_wait_minutes) / wait_se,
                "mean_time_in_station_minutes": in_station,
                "time_in_station_se_minutes": in_station_se,
                "items_per_replication": float(np.mean([r.completed[s] for r in reps])),
            }
        )
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "sim_days_per_wall_second": len(reps) * design.horizon_days / wall,
        "sim_days_per_cpu_second": len(reps) * design.horizon_days / cpu,
        "events": events,
        "us_per_event": wall / events * 1e6,
        "cpu_us_per_event": cpu / events * 1e6,
        "stations": stations,
    }


def bench_vs_simpy(design: Design, line: TandemLine | None = None) -> dict:
    """The twin against its SimPy peer on the tandem line, with one replication design.

    Replications alternate between the models (twin ``i``, SimPy ``i``, twin ``i + 1``,
    ...) so a change in the machine's load falls on both. Speed is simulated days
    (warm-up included: both simulate it) per wall second (and per CPU second), the
    median over replications of the paired speed ratio, and µs per network event
    (arrivals plus service completions, the same count in both). Correctness: per
    station, the two mean waits agree within :data:`AGREE_SE` combined standard errors,
    and each lies within :data:`THEORY_SE` of its standard errors of Jackson's
    ``Wq = ρ / (μ − λ)``. Needs ``simpy`` (``ImportError`` otherwise).
    """
    from experiments.bench.simpy_peer import VERSION, simpy_replication

    line = line or TandemLine()
    scenario = line.scenario(design.horizon_days)
    twin_reps: list[Replication] = []
    simpy_reps: list[Replication] = []
    for seed in range(design.replications):
        twin_reps.append(twin_replication(scenario, design, seed))
        simpy_reps.append(simpy_replication(line, design, seed))
    twin = _model_summary(twin_reps, line, design)
    peer = _model_summary(simpy_reps, line, design)
    # each twin run against the SimPy run next to it in time: robust to load changes
    paired = [b.wall_seconds / a.wall_seconds for a, b in zip(twin_reps, simpy_reps, strict=True)]
    stations = []
    for a, b in zip(twin["stations"], peer["stations"], strict=True):
        diff = a["mean_wait_minutes"] - b["mean_wait_minutes"]
        se = math.hypot(a["wait_se_minutes"], b["wait_se_minutes"])
        stations.append(
            {
                "station": a["station"],
                "theory_wait_minutes": line.theory_wait_minutes,
                "wait_difference_minutes": diff,
                "combined_se_minutes": se,
                "agree": abs(diff) <= AGREE_SE * se,
                "twin_close_to_theory": abs(a["wait_z_vs_theory"]) <= THEORY_SE,
                "simpy_close_to_theory": abs(b["wait_z_vs_theory"]) <= THEORY_SE,
            }
        )
    return {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "network": {
            "kind": "jackson_tandem",
            "stations": line.stations,
            "servers_per_station": 1,
            "rho": line.rho,
            "service_minutes": line.service_minutes,
            "arrivals_per_minute": line.arrivals_per_minute,
            "theory_wait_minutes": line.theory_wait_minutes,
            "theory_time_in_station_minutes": line.theory_time_in_station_minutes,
            "twin_scenario": scenario.name,
            "tick_minutes": scenario.tick_minutes,
        },
        "design": {
            "replications": design.replications,
            "horizon_days": design.horizon_days,
            "warmup_minutes": design.warmup_minutes,
            "seeds": list(range(design.replications)),
        },
        "criteria": {"agree_within_se": AGREE_SE, "theory_within_se": THEORY_SE},
        "twin": twin,
        "simpy": {**peer, "version": VERSION},
        "speed_ratio_twin_over_simpy": twin["sim_days_per_wall_second"]
        / peer["sim_days_per_wall_second"],
        "speed_ratio_median_of_pairs": float(np.median(paired)),
        "stations": stations,
        "all_agree": all(s["agree"] for s in stations),
        "all_close_to_theory": all(
            s["twin_close_to_theory"] and s["simpy_close_to_theory"] for s in stations
        ),
    }
