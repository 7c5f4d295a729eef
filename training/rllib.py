"""PPO with Ray RLlib (new API stack): one policy per sector, or one shared policy.

``train_rllib(settings, run_dir)`` trains, evaluates and checkpoints into a run
directory that :func:`training.export.export_run` turns into a policy bundle.

Why it is built this way:

- **Per-sector policies** (``policy_mapping_fn``: sector -> policy of that name) let each
  sector learn its own trade-offs; ``shared`` maps every sector to one policy fed the
  sector one-hot (:mod:`training.envs`), fewer weights to learn from the same samples.
- **Vectorised envs per env runner** (``num_envs_per_env_runner``): on a CPU, sampling
  the twin dominates; batching the forward passes of several envs is the cheap win.
- **Domain randomisation**: every episode draws a training scenario and a twin seed
  from a training pool; evaluation uses other seeds, so its numbers are held out.
- **Evaluation** runs the learner's current modules greedily in the twin against the
  tuned ``threshold`` baseline on the same seeds (:mod:`training.evaluate`); cheap
  enough to do every few iterations on the driver.
- **Fault tolerance**: ``fault_tolerance(restart_failed_env_runners=True)`` has RLlib
  restart a lost env runner (same index, latest weights synced) while training goes
  on; a lost trainer resumes from ``checkpoints/latest`` with ``resume=True``.
- **Ray**: without an address a local Ray is started on the machine's cores and shut
  down at the end; with an address the trainer joins that cluster (and only
  disconnects from it).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from training.runs import (
    MetricsSink,
    TrainingError,
    git_commit,
    latest_checkpoint,
    mark_latest,
    now,
    prepare_run_dir,
    versions,
    write_manifest,
)
from training.scenarios import EVAL_SEED_BASE, TRAIN_SEED_BASE, TRAIN_SEED_COUNT

POLICY_MODES = ("per_sector", "shared")
METRIC_COLUMNS = [
    "iteration",
    "env_steps",
    "time_s",
    "iter_s",
    "env_steps_per_s",
    "episode_return_mean",
    "episodes",
    "entropy",
    "vf_loss",
    "eval_cost",
    "threshold_cost",
    "eval_vs_threshold",
    "env_runner_restarts",
]


@dataclass
class RLlibSettings:
    """Everything that defines an RLlib training run (stored in ``run.json`` as ``config``).

    ``timesteps``, ``num_env_runners``, ``envs_per_runner`` and the evaluation cadence may
    change on ``--resume``; the rest is taken from the run being resumed.
    """

    scenarios: list[str] = field(default_factory=lambda: ["default"])
    timesteps: int = 100_000  # env steps to train in this invocation
    policy_mode: str = "per_sector"
    seed: int = 0
    num_env_runners: int = 0
    envs_per_runner: int = 8
    team_weight: float = 0.5
    max_lend: int = 5
    max_flex: int = 5
    lr: float = 3e-4
    gamma: float = 0.99
    lambda_: float = 0.95
    entropy_coeff: float = 0.01
    clip_param: float = 0.2
    train_batch_size: int = 4000
    minibatch_size: int = 500
    num_epochs: int = 6
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    warm_start: str | None = None  # a baseline to imitate first (training.warm_start)
    warm_start_seeds: int = 40
    warm_start_epochs: int = 30
    checkpoint_every: int = 5
    eval_every: int = 5
    eval_seeds: int = 4
    train_seed_base: int = TRAIN_SEED_BASE
    train_seed_count: int = TRAIN_SEED_COUNT
    eval_seed_base: int = EVAL_SEED_BASE

    #: fields that a resumed run may override
    RUNTIME = ("timesteps", "num_env_runners", "envs_per_runner", "checkpoint_every", "eval_every")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLlibSettings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainingError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)

    def check(self) -> None:
        if self.policy_mode not in POLICY_MODES:
            raise TrainingError(
                f"policy mode {self.policy_mode!r} is not one of {', '.join(POLICY_MODES)}"
            )
        if self.timesteps < 1 or self.train_batch_size < 1 or self.minibatch_size < 1:
            raise TrainingError("timesteps, train_batch_size and minibatch_size must be >= 1")
        if self.num_env_runners < 0 or self.envs_per_runner < 1:
            raise TrainingError("num_env_runners must be >= 0 and envs_per_runner >= 1")
        if self.warm_start is not None:
            from agents import StrategyError, check_strategy

            try:
                check_strategy(self.warm_start)
            except StrategyError as err:
                raise TrainingError(f"--warm-start: {err}") from None

    @property
    def env_config(self) -> dict[str, Any]:
        return {
            "scenarios": list(self.scenarios),
            "team_weight": self.team_weight,
            "max_lend": self.max_lend,
            "max_flex": self.max_flex,
            "seed_base": self.train_seed_base,
            "seed_count": self.train_seed_count,
            "shared": self.policy_mode == "shared",
        }

    @property
    def eval_seed_list(self) -> list[int]:
        return list(range(self.eval_seed_base, self.eval_seed_base + self.eval_seeds))


# --------------------------------------------------------------------------- ray


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast with a clear message when nothing listens at ``host:port``.

    ``ray.init(address=...)`` retries for a long time before giving up; a plain TCP
    connect answers in milliseconds.
    """
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise TrainingError(f"--address {address!r}: expected HOST:PORT (e.g. 127.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise TrainingError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); "
            "start one with `ray start --head` or drop --address"
        ) from None


def connect_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` or start a local Ray; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_address(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ray.exceptions.RayError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TrainingError(
                f"cannot join the Ray cluster at {address}: {first[:200]} (a cluster started "
                "with token auth needs RAY_AUTH_MODE=token and its token here too)"
            ) from None
        return False
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    return True


def single_thread_torch() -> None:
    """One torch thread in this process: the networks are tiny, and on a busy CPU torch's
    thread pool spins against the env runners (measured: ~10x slower iterations). Ray
    already gives its worker processes one thread each."""
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------- config


def policy_ids(sectors: tuple[str, ...] | list[str], mode: str) -> list[str]:
    return ["shared"] if mode == "shared" else list(sectors)


def build_config(settings: RLlibSettings, sectors: list[str]) -> Any:
    """The ``PPOConfig`` of a run (new API stack, one learner on the driver)."""
    import logging

    # RLlib warns at every config that PPO runs on the new API stack: that is the point
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from training.envs import TrainingEnv

    ids = policy_ids(sectors, settings.policy_mode)
    shared = settings.policy_mode == "shared"

    def mapping(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
        return "shared" if shared else agent_id

    return (
        PPOConfig()
        .environment(TrainingEnv, env_config=settings.env_config, disable_env_checking=True)
        .env_runners(
            num_env_runners=settings.num_env_runners,
            num_envs_per_env_runner=settings.envs_per_runner,
            num_cpus_per_env_runner=1,
            rollout_fragment_length="auto",
        )
        .learners(num_learners=0)
        .training(
            lr=settings.lr,
            gamma=settings.gamma,
            lambda_=settings.lambda_,
            entropy_coeff=settings.entropy_coeff,
            clip_param=settings.clip_param,
            train_batch_size_per_learner=settings.train_batch_size,
            minibatch_size=settings.minibatch_size,
            num_epochs=settings.num_epochs,
        )
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={i: RLModuleSpec() for i in ids}),
            model_config={"fcnet_hiddens": list(settings.hidden), "vf_share_layers": False},
        )
        .multi_agent(policies=set(ids), policy_mapping_fn=mapping)
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=1000,
            delay_between_env_runner_restarts_s=1.0,
        )
        .debugging(seed=settings.seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=20)
    )


# --------------------------------------------------------------------------- helpers


def learner_modules(algo: Any, ids: list[str]) -> dict[str, Any]:
    """The learner's current modules (the env runners' copies lack trained value heads)."""
    group = algo.learner_group
    if group.is_local:
        multi = group._learner.module
        return {i: multi[i] for i in ids}
    return {i: algo.get_module(i) for i in ids}


def _num(value: Any) -> float:
    """A metric as a number: missing or NaN (an iteration whose env runner died) is 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(value) else value


def _get(result: dict[str, Any], *path: str) -> Any:
    cur: Any = result
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _mean_over_modules(result: dict[str, Any], ids: list[str], key: str) -> float | None:
    vals = [_get(result, "learners", i, key) for i in ids]
    vals = [float(v) for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def summarise(result: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """The few numbers of an RLlib result that go into ``metrics.csv``."""
    return {
        "iteration": int(result.get("training_iteration", 0)),
        "env_steps": int(
            _num(_get(result, "env_runners", "num_env_steps_sampled_lifetime"))
            or _num(result.get("num_env_steps_sampled_lifetime"))
        ),
        "episode_return_mean": _get(result, "env_runners", "episode_return_mean"),
        "episodes": _get(result, "env_runners", "num_episodes_lifetime"),
        "entropy": _mean_over_modules(result, ids, "entropy"),
        "vf_loss": _mean_over_modules(result, ids, "vf_loss"),
        "env_runner_restarts": _get(result, "fault_tolerance", "num_remote_worker_restarts"),
    }


#: consecutive iterations without samples (every env runner lost) before giving up
MAX_IDLE_ITERATIONS = 30

OnIteration = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- train


def train_rllib(
    settings: RLlibSettings,
    run_dir: Path,
    *,
    resume: bool = False,
    address: str | None = None,
    on_iteration: OnIteration | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Train (or continue) an RLlib run in ``run_dir``; returns the final manifest.

    Args:
        settings: the run's settings; on ``resume`` only :attr:`RLlibSettings.RUNTIME`
            fields are taken from it, the rest from the run's ``run.json``.
        run_dir: the run directory (must be new or empty unless ``resume``).
        resume: continue from ``checkpoints/latest``.
        address: a Ray cluster to join; None starts a local Ray.
        on_iteration: called with each iteration's metrics row (progress display).
        on_start: called with the built Algorithm before the first iteration (tests use
            it to reach the env runner actors).

    Raises:
        TrainingError: bad settings, a run dir that exists without ``resume``, nothing
            to resume, an unreachable ``address``.
        twin.scenario.ScenarioError: an unknown scenario.
    """
    from training.scenarios import load_training_scenarios

    run_dir = Path(run_dir)
    if address:
        check_address(address)
    settings.check()
    previous = prepare_run_dir(run_dir, resume) if resume else None
    checkpoint = None
    if resume:
        assert previous is not None
        if previous.get("backend") != "rllib":
            raise TrainingError(f"--resume: {run_dir} is a {previous.get('backend')} run")
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise TrainingError(f"--resume: {run_dir} has no checkpoint to continue from")
        stored = RLlibSettings.from_dict(previous["config"])
        for name in RLlibSettings.RUNTIME:
            setattr(stored, name, getattr(settings, name))
        settings = stored
    scenarios = load_training_scenarios(settings.scenarios, settings.max_lend, settings.max_flex)
    if not resume:
        prepare_run_dir(run_dir, resume=False)
    sectors = list(scenarios[0].sector_names)
    ids = policy_ids(sectors, settings.policy_mode)

    manifest: dict[str, Any] = previous or {
        "backend": "rllib",
        "scenarios": [sc.name for sc in scenarios],
        "scenario_sources": list(settings.scenarios),
        "scenario_digests": {sc.name: sc.digest for sc in scenarios},
        "policy_mode": settings.policy_mode,
        "env_config": {
            "team_weight": settings.team_weight,
            "max_lend": settings.max_lend,
            "max_flex": settings.max_flex,
        },
        "created": now(),
        "sessions": [],
    }
    manifest.update(
        config=asdict(settings),
        train_seeds={
            "base": settings.train_seed_base,
            "count": settings.train_seed_count,
            "rllib_seed": settings.seed,
        },
        eval_seeds=settings.eval_seed_list,
        versions=versions(),
        git_commit=git_commit(),
        finished=False,
    )
    manifest.setdefault("sessions", []).append(
        {
            "started": now(),
            "address": address or "local",
            "resumed_from": checkpoint and checkpoint.name,
        }
    )
    write_manifest(run_dir, manifest)

    from training.evaluate import evaluate_modules, threshold_cost

    single_thread_torch()
    baseline = threshold_cost(scenarios, settings.eval_seed_list)
    started_ray = connect_ray(address)
    sink = MetricsSink(run_dir, METRIC_COLUMNS)
    algo = None

    def evaluate() -> Any:
        """The current policies, greedy, on the held-out seeds next to ``threshold``."""
        return evaluate_modules(
            learner_modules(algo, ids),
            scenarios,
            settings.eval_seed_list,
            shared=settings.policy_mode == "shared",
            max_lend=settings.max_lend,
            max_flex=settings.max_flex,
            baseline=baseline,
        )

    try:
        algo = build_config(settings, sectors).build_algo()
        if checkpoint is not None:
            algo.restore_from_path(str(checkpoint.resolve()))
        elif settings.warm_start:
            report = warm_start(algo, settings, scenarios, ids)
            ev = evaluate()
            report["evaluation"] = {
                "mean_total_cost": ev.policy_cost,
                "vs_threshold": ev.vs_threshold,
            }
            manifest["warm_start"] = report
            write_manifest(run_dir, manifest)
        if on_start is not None:
            on_start(algo)
        t0 = time.perf_counter()
        trained = 0
        last_eval: dict[str, Any] = {}
        last_saved = None
        start_steps: int | None = None
        idle = 0
        while trained < settings.timesteps:
            t_iter = time.perf_counter()
            result = algo.train()
            row = summarise(result, ids)
            if start_steps is None:
                start_steps = row["env_steps"] - _sampled(result)
            trained = row["env_steps"] - start_steps
            row["trained"] = trained  # this invocation's env steps (progress display)
            idle = idle + 1 if _sampled(result) == 0 else 0
            if idle >= MAX_IDLE_ITERATIONS:
                raise TrainingError(
                    f"no env runner sampled anything for {idle} iterations (all lost and "
                    "not restarted); continue later with --resume"
                )
            done = trained >= settings.timesteps
            row["iter_s"] = time.perf_counter() - t_iter
            row["time_s"] = time.perf_counter() - t0
            row["env_steps_per_s"] = _sampled(result) / max(row["iter_s"], 1e-9)
            it = row["iteration"]
            if done or it % max(1, settings.eval_every) == 0:
                ev = evaluate()
                last_eval = {
                    "iteration": it,
                    "env_steps": row["env_steps"],
                    "seeds": settings.eval_seed_list,
                    "scenarios": [sc.name for sc in scenarios],
                    "mean_total_cost": ev.policy_cost,
                    "threshold_mean_total_cost": ev.threshold_cost,
                    "vs_threshold": ev.vs_threshold,
                }
                row.update(
                    eval_cost=ev.policy_cost,
                    threshold_cost=ev.threshold_cost,
                    eval_vs_threshold=ev.vs_threshold,
                )
                _write_json(run_dir / "evaluation.json", last_eval)
            if done or it % max(1, settings.checkpoint_every) == 0:
                last_saved = save_checkpoint(algo, run_dir, it)
            sink.write(row, row["env_steps"])
            manifest.update(
                iterations=it,
                env_steps=row["env_steps"],
                timesteps=row["env_steps"],
                last_checkpoint=last_saved or manifest.get("last_checkpoint"),
                evaluation=last_eval or manifest.get("evaluation"),
                updated=now(),
            )
            write_manifest(run_dir, manifest)
            if on_iteration is not None:
                on_iteration(row)
        manifest["sessions"][-1].update(ended=now(), seconds=time.perf_counter() - t0)
        manifest["finished"] = True
        write_manifest(run_dir, manifest)
        return manifest
    finally:
        sink.close()
        if algo is not None:
            algo.stop()
        if started_ray:
            import ray

            ray.shutdown()


def warm_start(
    algo: Any, settings: RLlibSettings, scenarios: list[Any], ids: list[str]
) -> dict[str, Any]:
    """Imitate ``settings.warm_start`` on training seeds, then push the weights to sampling.

    See :mod:`training.warm_start`; the seeds are the first of the training pool, so
    evaluation seeds stay held out.
    """
    from training.warm_start import collect, pretrain
    from twin.spaces import codecs

    t0 = time.perf_counter()
    seeds = range(settings.train_seed_base, settings.train_seed_base + settings.warm_start_seeds)
    data = collect(
        scenarios,
        seeds,
        baseline=settings.warm_start,
        team_weight=settings.team_weight,
        max_lend=settings.max_lend,
        max_flex=settings.max_flex,
        gamma=settings.gamma,
        shared=settings.policy_mode == "shared",
    )
    nvec = next(iter(codecs(scenarios[0], settings.max_lend, settings.max_flex).values())).nvec
    report = pretrain(
        learner_modules(algo, ids),
        data,
        nvec,
        epochs=settings.warm_start_epochs,
        seed=settings.seed,
    )
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )
    return {
        "baseline": settings.warm_start,
        "episodes": len(scenarios) * settings.warm_start_seeds,
        "seconds": time.perf_counter() - t0,
        "fit": report,
    }


def _sampled(result: dict[str, Any]) -> int:
    return int(_num(_get(result, "env_runners", "num_env_steps_sampled")))


def save_checkpoint(algo: Any, run_dir: Path, iteration: int) -> str:
    """Save ``checkpoints/iter_N`` and point ``checkpoints/latest`` at it."""
    name = f"iter_{iteration:06d}"
    path = (run_dir / "checkpoints" / name).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    algo.save_to_path(str(path))
    mark_latest(run_dir, name)
    return name


def _write_json(path: Path, data: dict[str, Any]) -> None:
    import json

    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
