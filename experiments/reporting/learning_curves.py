"""Learning curves of training runs: held-out cost against training effort.

A run's held-out evaluations come from two places: the imitation / DAgger rounds
(``run.json``'s ``warm_start.rounds``: labelled decisions, seconds, cost) and the PPO
iterations (``metrics.csv``: env steps, seconds, ``eval_cost``). Both are drawn on one
time axis (minutes of training) and on an effort axis (decisions the run learnt from:
labelled decisions for imitation, env steps times sectors for PPO, so both count one
sector's decision once), each next to ``threshold``'s cost on the same seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


class CurveError(ValueError):
    """A run directory without the files a learning curve needs."""


@dataclass(frozen=True)
class Curve:
    """One run's held-out evaluations, in the order they were made."""

    label: str
    minutes: list[float]
    decisions: list[int]
    cost: list[float]
    threshold: float | None


def read_curve(run_dir: Path) -> Curve:
    """The held-out evaluations of the run in ``run_dir`` (imitation rounds, then PPO)."""
    manifest_file = run_dir / "run.json"
    if not manifest_file.is_file():
        raise CurveError(f"{run_dir}: no run.json (not a training run directory)")
    run = json.loads(manifest_file.read_text())
    sectors = _sector_count(run)
    minutes: list[float] = []
    decisions: list[int] = []
    cost: list[float] = []
    rounds = (run.get("warm_start") or {}).get("rounds", [])
    for r in rounds:
        minutes.append(r["seconds"] / 60)
        decisions.append(int(r["labels"]))
        cost.append(float(r["mean_total_cost"]))
    evaluation = run.get("evaluation") or {}
    if not evaluation and (run_dir / "evaluation.json").is_file():
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
    threshold = evaluation.get("threshold_mean_total_cost")
    offset_min = minutes[-1] if minutes else 0.0
    offset_dec = decisions[-1] if decisions else 0
    metrics = run_dir / "metrics.csv"
    if metrics.is_file() and metrics.stat().st_size:
        df = pd.read_csv(metrics)
        if "eval_cost" in df:
            df = df.dropna(subset=["eval_cost"])
            for row in df.itertuples():
                minutes.append(offset_min + float(row.time_s) / 60)
                decisions.append(offset_dec + int(row.env_steps) * sectors)
                cost.append(float(row.eval_cost))
                threshold = float(row.threshold_cost)
    if not cost:
        raise CurveError(f"{run_dir}: no held-out evaluation yet")
    return Curve(run_dir.name, minutes, decisions, cost, threshold)


def _sector_count(run: dict) -> int:
    """Sectors per env step (one policy decision each)."""
    from twin.scenario import ScenarioError, load_scenario

    try:
        return len(load_scenario(run["scenario_sources"][0]).sector_names)
    except (KeyError, IndexError, ScenarioError, OSError) as err:
        raise CurveError(f"run.json names no loadable training scenario ({err})") from None


def plot_curves(curves: list[Curve], out: Path) -> Path:
    """Draw ``curves`` against minutes and against decisions learnt from; write ``out``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for curve in curves:
        for ax, x in zip(axes, (curve.minutes, curve.decisions), strict=True):
            (line,) = ax.plot(x, curve.cost, marker="o", label=curve.label)
            if curve.threshold is not None:
                ax.axhline(curve.threshold, color=line.get_color(), linestyle="--", linewidth=1)
    axes[0].set_xlabel("minutes of training")
    axes[1].set_xlabel("sector decisions learnt from")
    for ax in axes:
        ax.set_ylabel("held-out mean total cost")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="run (dashed: threshold)", title_fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
