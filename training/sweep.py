"""Hyperparameter sweeps with Ray Tune: each trial is a complete RLlib run directory.

A sweep file is a small YAML::

    base:              # fixed RLlibSettings fields for every trial
      timesteps: 40000
      train_batch_size: 2000
    grid:              # every combination (tune.grid_search)
      lr: [0.0001, 0.0003]
    choice:            # sampled per trial (tune.choice), num_samples times per grid point
      entropy_coeff: [0.0, 0.01]
    num_samples: 1
    max_concurrent: 2  # trials at once (each takes one CPU, plus one per env runner)

Trials call :func:`training.rllib.train_rllib` inside Tune, so every trial writes the
usual run layout under ``RUN_DIR/trials/<trial>/`` (exportable with ``synctwin export``),
and reports each iteration's metrics to Tune. The sweep ranks trials by their last
evaluation cost (lower is better) and writes ``RUN_DIR/sweep.csv`` (one row per trial:
parameters, evaluation cost, mean return) and ``RUN_DIR/sweep.json`` (the best trial).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from training.rllib import RLlibSettings
from training.runs import TrainingError, git_commit, now, versions, write_manifest

SWEEP_KEYS = ("base", "grid", "choice", "num_samples", "max_concurrent")


def load_sweep(path: Path) -> dict[str, Any]:
    """Read and check a sweep file; unknown keys or settings fail, naming them."""
    if not Path(path).is_file():
        raise TrainingError(f"sweep file {path} does not exist")
    try:
        spec = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise TrainingError(f"sweep file {path}: not valid YAML ({err})") from None
    if not isinstance(spec, dict):
        raise TrainingError(f"sweep file {path}: expected a mapping with {', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise TrainingError(f"sweep file {path}: unknown key(s) {', '.join(unknown)}")
    names = {f.name for f in fields(RLlibSettings)}
    for part in ("base", "grid", "choice"):
        section = spec.get(part) or {}
        if not isinstance(section, dict):
            raise TrainingError(f"sweep file {path}: {part} must be a mapping")
        bad = sorted(set(section) - names)
        if bad:
            raise TrainingError(f"sweep file {path}: {part}: unknown setting(s) {', '.join(bad)}")
        if part != "base":
            for key, values in section.items():
                if not isinstance(values, list) or not values:
                    raise TrainingError(f"sweep file {path}: {part}.{key} must be a non-empty list")
    return spec


def _trial(config: dict[str, Any]) -> None:
    """One Tune trial: a full training run in its own run directory."""
    from ray import tune

    from training.rllib import train_rllib

    run_root = Path(config.pop("_run_dir"))
    trial_dir = run_root / "trials" / tune.get_context().get_trial_name()
    settings = RLlibSettings.from_dict(config)

    def report(row: dict[str, Any]) -> None:
        tune.report({k: v for k, v in row.items() if isinstance(v, int | float) and v is not None})

    train_rllib(settings, trial_dir, on_iteration=report)


def run_sweep(
    spec: dict[str, Any],
    settings: RLlibSettings,
    run_dir: Path,
    *,
    address: str | None = None,
) -> dict[str, Any]:
    """Run the sweep ``spec`` on top of ``settings``; results in ``run_dir``.

    Returns:
        The sweep summary (also written to ``run_dir/sweep.json``).
    """
    from ray import tune

    from training.rllib import connect_ray

    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainingError(f"run directory {run_dir} already exists; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    base = asdict(settings) | dict(spec.get("base") or {})
    param_space: dict[str, Any] = dict(base)
    param_space.update({k: tune.grid_search(v) for k, v in (spec.get("grid") or {}).items()})
    param_space.update({k: tune.choice(v) for k, v in (spec.get("choice") or {}).items()})
    param_space["_run_dir"] = str(run_dir.resolve())
    write_manifest(
        run_dir,
        {
            "backend": "rllib-sweep",
            "sweep": spec,
            "base_config": base,
            "created": now(),
            "versions": versions(),
            "git_commit": git_commit(),
        },
    )
    started = connect_ray(address)
    try:
        # one CPU for the trial (learner + local sampling), one per remote env runner
        bundles = [{"CPU": 1}] * (1 + int(base.get("num_env_runners", 0)))
        tuner = tune.Tuner(
            tune.with_resources(_trial, tune.PlacementGroupFactory(bundles)),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                num_samples=int(spec.get("num_samples", 1)),
                max_concurrent_trials=int(spec.get("max_concurrent", 1)),
            ),
            run_config=tune.RunConfig(name="tune", storage_path=str(run_dir.resolve()), verbose=0),
        )
        grid = tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return summarise(grid, spec, run_dir)


def summarise(grid: Any, spec: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Write ``sweep.csv`` and ``sweep.json``; the best trial has the lowest eval cost."""
    swept = sorted(set(spec.get("grid") or {}) | set(spec.get("choice") or {}))
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        rows.append(
            {
                "trial": _trial_name(run_dir, result),
                **{k: result.config.get(k) for k in swept},
                "iterations": metrics.get("iteration"),
                "env_steps": metrics.get("env_steps"),
                "episode_return_mean": metrics.get("episode_return_mean"),
                "eval_cost": metrics.get("eval_cost"),
                "eval_vs_threshold": metrics.get("eval_vs_threshold"),
                "error": str(result.error).splitlines()[0] if result.error else None,
            }
        )
    with (run_dir / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    scored = [r for r in rows if r["eval_cost"] is not None]
    best = min(scored, key=lambda r: r["eval_cost"]) if scored else None
    summary = {"trials": len(rows), "swept": swept, "best": best, "rows": rows}
    (run_dir / "sweep.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _trial_name(run_dir: Path, result: Any) -> str | None:
    """The trial's run directory under ``trials/`` (what ``synctwin export`` takes).

    Trials name their run directory after Tune's trial name, which Tune's own trial
    directory name starts with.
    """
    trials = run_dir / "trials"
    tune_dir = Path(result.path).name if result.path else ""
    for cand in sorted(trials.iterdir()) if trials.is_dir() else []:
        if tune_dir.startswith(cand.name):
            return cand.name
    return None
