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
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training.rllib_config import (
    POLICY_MODES,
    RLlibSettings,
    build_config,
    check_address,
    connect_ray,
    policy_ids,
    single_thread_torch,
)
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


__all__ = [  # the settings and the config live in training.rllib_config
    "METRIC_COLUMNS",
    "POLICY_MODES",
    "RLlibSettings",
    "build_config",
    "check_address",
    "connect_ray",
    "learner_modules",
    "policy_ids",
    "save_checkpoint",
    "single_thread_torch",
    "summarise",
    "train_rllib",
    "warm_start",
]


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
    on_round: OnIteration | None = None,
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
        on_round: called with each imitation / DAgger round's report (progress display).

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
            "reward": settings.reward,
            "blind": list(settings.blind),
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
            blind=tuple(settings.blind),
        )

    try:
        algo = build_config(settings, sectors).build_algo()
        if checkpoint is not None:
            algo.restore_from_path(str(checkpoint.resolve()))
        elif settings.warm_start:
            report = warm_start(
                algo, settings, scenarios, ids, evaluate, on_round, on_cluster=bool(address)
            )
            last = report["rounds"][-1]
            report["evaluation"] = {
                "mean_total_cost": last["mean_total_cost"],
                "vs_threshold": last["vs_threshold"],
            }
            manifest["warm_start"] = report
            # the imitated policies' held-out evaluation, until PPO replaces it
            manifest["evaluation"] = _evaluation_record(
                settings,
                scenarios,
                iteration=0,
                env_steps=0,
                cost=last["mean_total_cost"],
                threshold=baseline,
                vs_threshold=last["vs_threshold"],
            )
            _write_json(run_dir / "evaluation.json", manifest["evaluation"])
            # a checkpoint of the imitation alone: the run exports even with 0 PPO steps
            manifest["last_checkpoint"] = save_checkpoint(algo, run_dir, 0)
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
                last_eval = _evaluation_record(
                    settings,
                    scenarios,
                    iteration=it,
                    env_steps=row["env_steps"],
                    cost=ev.policy_cost,
                    threshold=ev.threshold_cost,
                    vs_threshold=ev.vs_threshold,
                )
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
    algo: Any,
    settings: RLlibSettings,
    scenarios: list[Any],
    ids: list[str],
    evaluate: Callable[[], Any],
    on_round: OnIteration | None = None,
    *,
    on_cluster: bool = False,
) -> dict[str, Any]:
    """Imitate the teacher ``settings.warm_start`` on training seeds, then DAgger.

    Round 0 clones the teacher's own course (:func:`training.warm_start.collect`);
    each of ``settings.dagger_rounds`` further rounds lets the current policies drive
    on fresh training seeds, labels every state they visit with the teacher's action,
    and refits on everything labelled so far (Ross et al., 2011). The policies are
    evaluated on the held-out seeds after every round (the report's ``rounds``).
    Seeds come from the training pool in consecutive blocks, so evaluation seeds stay
    held out. On one machine, teachers that roll out (``lookahead``, ``hindsight``)
    share one process pool of all cores; ``on_cluster`` (the trainer joined a Ray
    cluster) runs every episode as a one-CPU task on the cluster instead
    (:func:`training.warm_start.label_on_cluster`). The labels are the same either way.
    """
    from agents.evaluation import process_pool
    from training.evaluate import ModuleController
    from training.warm_start import collect, digest, merge, pretrain
    from twin.spaces import codecs

    t0 = time.perf_counter()
    nvec = next(iter(codecs(scenarios[0], settings.max_lend, settings.max_flex).values())).nvec
    shared = settings.policy_mode == "shared"
    common: dict[str, Any] = dict(
        baseline=settings.warm_start,
        team_weight=settings.team_weight,
        reward=settings.reward,
        blind=tuple(settings.blind),
        max_lend=settings.max_lend,
        max_flex=settings.max_flex,
        gamma=settings.gamma,
        shared=shared,
    )
    rounds: list[dict[str, Any]] = []
    from training.warm_start import label_on_cluster

    pool = None if on_cluster else process_pool(None)
    spread = label_on_cluster if on_cluster else None
    try:
        start = settings.train_seed_base
        data = None
        for r in range(settings.dagger_rounds + 1):
            count = settings.warm_start_seeds if r == 0 else settings.dagger_seeds
            seeds = range(start, start + count)
            start += count
            actors = None
            if r > 0:
                modules = learner_modules(algo, ids)
                actors = [
                    ModuleController(
                        sc,
                        modules,
                        shared=shared,
                        max_lend=settings.max_lend,
                        max_flex=settings.max_flex,
                        blind=tuple(settings.blind),
                    )
                    for sc in scenarios
                ]
            fresh = collect(scenarios, seeds, actors=actors, pool=pool, spread=spread, **common)
            data = fresh if data is None else merge(data, fresh)
            fit = pretrain(
                learner_modules(algo, ids),
                data,
                nvec,
                epochs=settings.warm_start_epochs,
                seed=settings.seed + r,
            )
            algo.env_runner_group.sync_weights(
                from_worker_or_learner_group=algo.learner_group, inference_only=True
            )
            ev = evaluate()
            rounds.append(
                {
                    "round": r,
                    "episodes": len(scenarios) * count,
                    "labels": int(sum(len(v) for v in data.actions.values())),
                    "labelled_on": "cluster" if on_cluster else "local",
                    "labels_digest": digest(fresh),
                    "seconds": time.perf_counter() - t0,
                    "fit": fit,
                    "mean_total_cost": ev.policy_cost,
                    "vs_threshold": ev.vs_threshold,
                }
            )
            if on_round is not None:
                on_round(rounds[-1])
    finally:
        if pool is not None:
            pool.shutdown()
    return {
        "baseline": settings.warm_start,
        "episodes": sum(r["episodes"] for r in rounds),
        "seconds": time.perf_counter() - t0,
        "fit": rounds[-1]["fit"],
        "rounds": rounds,
    }


def _evaluation_record(
    settings: RLlibSettings,
    scenarios: list[Any],
    *,
    iteration: int,
    env_steps: int,
    cost: float,
    threshold: float,
    vs_threshold: float,
) -> dict[str, Any]:
    """The held-out evaluation as ``evaluation.json`` and the manifest keep it (and the
    exported bundle copies it)."""
    return {
        "iteration": iteration,
        "env_steps": env_steps,
        "seeds": settings.eval_seed_list,
        "scenarios": [sc.name for sc in scenarios],
        "mean_total_cost": cost,
        "threshold_mean_total_cost": threshold,
        "vs_threshold": vs_threshold,
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
