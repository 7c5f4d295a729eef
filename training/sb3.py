"""The light backend: stable-baselines3 PPO on one machine, no Ray.

It trains one centralised policy on :class:`twin.env.OperationEnv` (every sector's
features in, every sector's action out), which is what a single-agent library can
do; :func:`training.export.export_run` exports it as a ``centralised`` bundle that
:class:`policies.runtime.BundlePolicy` runs like any other. Several training
scenarios are spread over the vectorised envs (env ``i`` runs scenario
``i % len(scenarios)``); each env's twin seed stream starts from the run's seed, far
from the held-out evaluation seeds.

Run directory: ``sb3/model.zip``, ``run.json`` (``backend: sb3``, ``policy_mode:
centralised``), ``metrics.csv`` (one row per rollout), ``evaluation.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.runs import (
    MetricsSink,
    TrainingError,
    git_commit,
    now,
    prepare_run_dir,
    versions,
    write_manifest,
)
from training.scenarios import EVAL_SEED_BASE, TRAIN_SEED_BASE

METRIC_COLUMNS = [
    "iteration",
    "env_steps",
    "time_s",
    "env_steps_per_s",
    "episode_return_mean",
    "entropy",
    "eval_cost",
    "threshold_cost",
    "eval_vs_threshold",
]


@dataclass
class SB3Settings:
    """An SB3 run's settings (stored in ``run.json`` as ``config``)."""

    scenarios: list[str] = field(default_factory=lambda: ["default"])
    timesteps: int = 50_000
    seed: int = 0
    n_envs: int = 4
    max_lend: int = 5
    max_flex: int = 5
    lr: float = 3e-4
    gamma: float = 0.99
    n_steps: int = 512  # per env and rollout
    batch_size: int = 256
    n_epochs: int = 6
    entropy_coeff: float = 0.01
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    eval_seeds: int = 4
    eval_seed_base: int = EVAL_SEED_BASE


class SB3Controller:
    """The SB3 policy, greedy, as a Controller (evaluation without an export)."""

    def __init__(self, model: Any, env: Any) -> None:
        self.model, self.env = model, env

    def decide(self, snapshot: Any) -> dict:
        obs = self.env.core.featurizer.matrix(snapshot).astype(np.float32).reshape(-1)
        action, _ = self.model.predict(obs, deterministic=True)
        return self.env.decode(action)


def _callback(sink: MetricsSink, t0: float, on_iteration: Callable | None) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class Metrics(BaseCallback):
        """One metrics row per rollout: returns of finished episodes, throughput."""

        def __init__(self) -> None:
            super().__init__()
            self.iteration = 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            self.iteration += 1
            buf = self.model.ep_info_buffer
            elapsed = time.perf_counter() - t0
            row = {
                "iteration": self.iteration,
                "env_steps": int(self.model.num_timesteps),
                "time_s": elapsed,
                "env_steps_per_s": self.model.num_timesteps / max(elapsed, 1e-9),
                "episode_return_mean": float(np.mean([e["r"] for e in buf])) if buf else None,
                "entropy": self.model.logger.name_to_value.get("train/entropy_loss"),
            }
            sink.write(row, row["env_steps"])
            if on_iteration is not None:
                on_iteration(row | {"trained": row["env_steps"]})

    return Metrics()


def train_sb3(
    settings: SB3Settings,
    run_dir: Path,
    *,
    resume: bool = False,
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or continue) SB3 PPO in ``run_dir``; returns the final manifest."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from training.evaluate import mean_cost, threshold_cost
    from training.scenarios import load_training_scenarios
    from twin.env import OperationEnv

    run_dir = Path(run_dir)
    previous = prepare_run_dir(run_dir, resume) if resume else None
    model_zip = run_dir / "sb3" / "model.zip"
    if resume:
        assert previous is not None
        if previous.get("backend") != "sb3" or not model_zip.is_file():
            raise TrainingError(f"--resume: {run_dir} has no SB3 model to continue from")
        stored = dict(previous["config"])
        stored["timesteps"] = settings.timesteps
        settings = SB3Settings(**stored)
    scenarios = load_training_scenarios(settings.scenarios, settings.max_lend, settings.max_flex)
    if not resume:
        prepare_run_dir(run_dir, resume=False)

    def make(i: int) -> Callable[[], Any]:
        sc = scenarios[i % len(scenarios)]
        return lambda: Monitor(
            OperationEnv(sc, max_lend=settings.max_lend, max_flex=settings.max_flex)
        )

    vec = DummyVecEnv([make(i) for i in range(settings.n_envs)])
    vec.seed(TRAIN_SEED_BASE + settings.seed)
    torch.set_num_threads(1)
    if resume:
        model = PPO.load(model_zip, env=vec, device="cpu")
    else:
        model = PPO(
            "MlpPolicy",
            vec,
            learning_rate=settings.lr,
            gamma=settings.gamma,
            n_steps=settings.n_steps,
            batch_size=settings.batch_size,
            n_epochs=settings.n_epochs,
            ent_coef=settings.entropy_coeff,
            policy_kwargs={"net_arch": list(settings.hidden)},
            seed=settings.seed,
            device="cpu",
            verbose=0,
        )
    manifest: dict[str, Any] = previous or {
        "backend": "sb3",
        "scenarios": [sc.name for sc in scenarios],
        "scenario_sources": list(settings.scenarios),
        "policy_mode": "centralised",
        "env_config": {"max_lend": settings.max_lend, "max_flex": settings.max_flex},
        "created": now(),
        "sessions": [],
    }
    seeds = list(range(settings.eval_seed_base, settings.eval_seed_base + settings.eval_seeds))
    manifest.update(
        config=asdict(settings),
        train_seeds={"vec_env_seed": TRAIN_SEED_BASE + settings.seed},
        eval_seeds=seeds,
        versions=versions(),
        git_commit=git_commit(),
        finished=False,
    )
    manifest.setdefault("sessions", []).append({"started": now(), "address": "local"})
    write_manifest(run_dir, manifest)

    sink = MetricsSink(run_dir, METRIC_COLUMNS)
    t0 = time.perf_counter()
    callback = _callback(sink, t0, on_iteration)
    try:
        model.learn(
            total_timesteps=settings.timesteps,
            callback=callback,
            reset_num_timesteps=not resume,
        )
        model_zip.parent.mkdir(parents=True, exist_ok=True)
        model.save(model_zip)
        controllers = [
            SB3Controller(
                model, OperationEnv(sc, max_lend=settings.max_lend, max_flex=settings.max_flex)
            )
            for sc in scenarios
        ]
        cost = mean_cost(controllers, scenarios, seeds)
        base = threshold_cost(scenarios, seeds)
        evaluation = {
            "env_steps": int(model.num_timesteps),
            "seeds": seeds,
            "scenarios": [sc.name for sc in scenarios],
            "mean_total_cost": cost,
            "threshold_mean_total_cost": base,
            "vs_threshold": cost / base - 1.0,
        }
        sink.write(
            {
                "iteration": callback.iteration,
                "env_steps": int(model.num_timesteps),
                "time_s": time.perf_counter() - t0,
                "eval_cost": cost,
                "threshold_cost": base,
                "eval_vs_threshold": cost / base - 1.0,
            },
            int(model.num_timesteps),
        )
    finally:
        sink.close()
        vec.close()
    import json

    (run_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    manifest["sessions"][-1].update(ended=now(), seconds=time.perf_counter() - t0)
    manifest.update(
        timesteps=int(model.num_timesteps), evaluation=evaluation, finished=True, updated=now()
    )
    write_manifest(run_dir, manifest)
    return manifest
