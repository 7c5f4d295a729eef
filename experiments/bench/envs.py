"""Benchmark of the env wrappers: decision steps per wall second under random actions.

``synctwin bench twin`` reports the raw twin; this measures what training sees:
each env step is one decision interval (apply actions, simulate the interval,
snapshot, features, KPIs, rewards). Numbers, not pass/fail.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from twin.env import OperationEnv
from twin.model import OperationModel
from twin.multi_agent import OperationParallelEnv
from twin.scenario import load_scenario
from twin.spaces import ActionCodec


def _run_gym(env: OperationEnv, steps: int, seed: int) -> float:
    env.action_space.seed(seed)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - t0


def _run_parallel(env: OperationParallelEnv, steps: int, seed: int) -> float:
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed + i)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        actions = {a: env.action_space(a).sample() for a in env.agents}
        env.step(actions)
        if not env.agents:
            env.reset()
    return time.perf_counter() - t0


def _run_bare(scenario_name: str, steps: int, seed: int) -> float:
    """The model alone under the same random actions: no snapshot, features or rewards."""
    scenario = load_scenario(scenario_name)
    interval = scenario.decision_interval_minutes
    codecs = [ActionCodec(scenario, s) for s in scenario.sector_names]
    space = OperationEnv(scenario).action_space
    space.seed(seed)
    rng = np.random.default_rng(seed)
    model = OperationModel(scenario, rng, record_every_minutes=interval)
    t0 = time.perf_counter()
    for _ in range(steps):
        parts = space.sample().reshape(len(codecs), -1)
        model.apply({c.sector: c.decode(p) for c, p in zip(codecs, parts, strict=True)})
        model.run_minutes(interval)
        if model.done:
            model = OperationModel(scenario, rng, record_every_minutes=interval)
    return time.perf_counter() - t0


def _observation_cost(env: OperationEnv, steps: int, seed: int) -> dict[str, float]:
    """Snapshot and feature matrix, timed on the states random actions lead to.

    Each is timed alone on the state the env just reached (the env's own call is not
    counted), so the numbers are what one observation costs, not what it costs inside
    a profiler.
    """
    core = env.core
    env.action_space.seed(seed)
    env.reset(seed=seed)
    snap_s = feat_s = 0.0
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
        assert core.model is not None
        t0 = time.perf_counter()
        snap = core.model.snapshot()
        t1 = time.perf_counter()
        core.featurizer.matrix(snap)
        t2 = time.perf_counter()
        snap_s, feat_s = snap_s + (t1 - t0), feat_s + (t2 - t1)
    n = len(env.scenario.sector_names)
    return {
        "snapshot_ms": 1e3 * snap_s / steps,
        "features_ms": 1e3 * feat_s / steps,
        "ms_per_sector": 1e3 * (snap_s + feat_s) / steps / n,
    }


def bench_envs(scenario_name: str = "default", steps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Env steps per wall second with random actions (one process, one core).

    Args:
        scenario_name: built-in scenario name or YAML path.
        steps: decision steps per env (episodes restart at the horizon).
        seed: seeds the envs and the action sampling.

    Returns:
        ``{"machine", "scenario", "steps", "decision_interval_minutes", "envs": [...]}``;
        one row per env: ``env``, ``env_steps_per_second``, ``agent_steps_per_second``
        (env steps x agents), ``sim_minutes_per_second``, ``ms_per_step``. The
        ``twin_only`` row steps the bare model by the same intervals under the same
        random actions (no snapshot, features, KPIs or rewards): the wrappers'
        overhead is the difference. ``observation``: the snapshot and the feature
        matrix of one step, in ms, and both per sector (the goal is 0.1 ms per sector).
    """
    scenario = load_scenario(scenario_name)
    interval = scenario.decision_interval_minutes
    n_agents = len(scenario.sector_names)
    runs = [
        ("OperationEnv", 1, _run_gym(OperationEnv(scenario), steps, seed)),
        (
            "OperationParallelEnv",
            n_agents,
            _run_parallel(OperationParallelEnv(scenario), steps, seed),
        ),
        ("twin_only", 1, _run_bare(scenario_name, steps, seed)),
    ]
    rows = [
        {
            "env": name,
            "agents": agents,
            "env_steps_per_second": steps / wall,
            "agent_steps_per_second": steps * agents / wall,
            "sim_minutes_per_second": steps * interval / wall,
            "ms_per_step": 1000.0 * wall / steps,
        }
        for name, agents, wall in runs
    ]
    return {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "scenario": scenario.name,
        "steps": steps,
        "decision_interval_minutes": interval,
        "envs": rows,
        "observation": _observation_cost(OperationEnv(scenario), steps, seed),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(bench_envs(), indent=2))
