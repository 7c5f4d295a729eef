"""``synctwin bench train``: how fast PPO trains for env runners x envs per runner.

One local Ray for the whole grid; for every setting an Algorithm is built from the
same config the trainer uses (:func:`training.rllib.build_config`), one warm-up
iteration runs untimed (actor start, first weight sync), then ``iterations`` timed
iterations give env steps per second (sampled steps / wall time, learning included)
and seconds per iteration. Numbers are wall-clock on whatever else the machine runs.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any


def bench_train(
    runners: list[int],
    envs: list[int],
    *,
    iterations: int = 2,
    batch_size: int = 1000,
    scenario: str = "default",
) -> dict[str, Any]:
    """Time PPO iterations for every (env runners, envs per runner) pair."""
    import ray

    from training.rllib import RLlibSettings, build_config, connect_ray, single_thread_torch
    from twin.scenario import load_scenario

    sectors = list(load_scenario(scenario).sector_names)
    single_thread_torch()
    # every Algorithm built in this process re-registers RLlib's env id with gymnasium
    warnings.filterwarnings("ignore", message=".*Overriding environment rllib")
    started = connect_ray(None, num_cpus=max(os.cpu_count() or 1, max(runners)))
    rows = []
    try:
        for n_runners in runners:
            for n_envs in envs:
                settings = RLlibSettings(
                    scenarios=[scenario],
                    num_env_runners=n_runners,
                    envs_per_runner=n_envs,
                    train_batch_size=batch_size,
                    minibatch_size=min(250, batch_size),
                    num_epochs=4,
                )
                algo = build_config(settings, sectors).build_algo()
                try:
                    algo.train()  # warm-up
                    steps, t0 = 0, time.perf_counter()
                    for _ in range(iterations):
                        result = algo.train()
                        steps += int(result["env_runners"]["num_env_steps_sampled"])
                    wall = time.perf_counter() - t0
                finally:
                    algo.stop()
                rows.append(
                    {
                        "num_env_runners": n_runners,
                        "envs_per_runner": n_envs,
                        "env_steps": steps,
                        "seconds": wall,
                        "env_steps_per_s": steps / wall,
                        "seconds_per_iteration": wall / iterations,
                    }
                )
    finally:
        if started:
            ray.shutdown()
    return {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "scenario": scenario,
        "batch_size": batch_size,
        "iterations": iterations,
        "rows": rows,
    }


def time_to_beat(run_dir: Path) -> dict[str, Any]:
    """When a run's held-out evaluation first beat ``threshold`` (from its metrics.csv)."""
    from training.runs import TrainingError, read_metrics

    rows = read_metrics(Path(run_dir))
    if not rows:
        raise TrainingError(f"{run_dir}: no metrics.csv to read")
    evals = [r for r in rows if r.get("eval_vs_threshold")]
    best = min(evals, key=lambda r: float(r["eval_vs_threshold"])) if evals else None
    first = next((r for r in evals if float(r["eval_vs_threshold"]) < 0), None)
    return {
        "run": str(run_dir),
        "beat_threshold": first is not None,
        "seconds": float(first["time_s"]) if first else None,
        "env_steps": int(first["env_steps"]) if first else None,
        "best_vs_threshold": float(best["eval_vs_threshold"]) if best else None,
        "best_at_env_steps": int(best["env_steps"]) if best else None,
    }
