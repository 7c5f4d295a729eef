"""Headroom: how much could decisions save on each scenario, and where is nothing to gain?

``synctwin experiment headroom [--scenario S,..] [--seeds N] [--out DIR]`` runs, on the
same seeds (common random numbers), the plan (``static``), the tuned ``threshold``
manager, the ``lookahead`` planner and the ``hindsight`` bound (:mod:`agents.hindsight`),
and reports per scenario:

- the **regular payroll** (``regular_cost`` under threshold): pay no decision changes;
- the **avoidable cost** (``avoidable_cost`` = total - regular: overtime, flex,
  transfers, SLA penalties), the part decisions can reduce;
- the **headroom**: ``(threshold - hindsight) / threshold`` in total cost, seed by seed,
  with its paired 95% interval, and the share of threshold's avoidable cost it is.

A scenario belongs to the **headroom suite** when hindsight costs at most
:data:`SUITE_RATIO` of threshold and the paired interval of the saving excludes 0:
there, a learned policy has something to learn. **Sanity checks** are those where even
the interval's upper end is below 3%: a tuned rule already sits near the payroll floor,
and a policy can only tie it. The rest are **undecided** on the seeds given.

Outputs in ``DIR``: every run as it finishes (``runs/``, resumable as ``compare``),
``results.parquet``, ``summary.csv``, ``headroom.csv``, ``headroom.json`` and
``headroom.md`` (README-ready).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.comparison.compare import ComparePlan, Comparison, check_plan, run_plan
from twin.scenario import builtin_names
from twin.stats import paired_difference

ARMS = ("static", "threshold", "lookahead", "hindsight")
#: hindsight at most this share of threshold's total cost (and significant): in the suite
SUITE_RATIO = 0.97


@dataclass
class Headroom:
    comparison: Comparison
    table: pd.DataFrame  # one row per scenario


def default_scenarios() -> list[str]:
    return builtin_names()


def headroom_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per scenario: mean total cost per arm, payroll, avoidable cost, headroom, suite."""
    rows = []
    for scenario in dict.fromkeys(results["scenario"]):
        sub = results[results["scenario"] == scenario]
        cost = sub.pivot_table(index="seed", columns="strategy", values="total_cost")
        thr = sub[sub["strategy"] == "threshold"]
        saved = paired_difference(cost["threshold"], cost["hindsight"])
        base = float(cost["threshold"].mean())
        avoidable = float(thr["avoidable_cost"].mean())
        ratio = float(cost["hindsight"].mean()) / base
        row: dict[str, object] = {"scenario": scenario, "seeds": len(cost)}
        for arm in ARMS:
            row[arm] = float(cost[arm].mean()) if arm in cost else float("nan")
        row.update(
            regular_cost=float(thr["regular_cost"].mean()),
            avoidable_cost=avoidable,
            headroom_pct=100 * saved.mean / base,
            headroom_ci95_low_pct=100 * saved.low / base,
            headroom_ci95_high_pct=100 * saved.high / base,
            headroom_of_avoidable_pct=100 * saved.mean / avoidable if avoidable > 0 else np.nan,
            hindsight_vs_threshold=ratio,
            suite=bool(ratio <= SUITE_RATIO and saved.low > 0),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def headroom_plan(scenarios: Sequence[str], seeds: int) -> ComparePlan:
    """The four arms on ``scenarios`` x seeds ``0..seeds-1``, checked (see ``check_plan``)."""
    return check_plan(list(scenarios), list(ARMS), seeds)


def run_headroom(
    plan: ComparePlan,
    *,
    out: Path,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    address: str | None = None,
) -> Headroom:
    """Run a :func:`headroom_plan` (not checked again), keeping every run in ``out``
    (on the Ray cluster at ``address``, if given)."""
    cmp = run_plan(
        plan,
        workers=workers,
        progress=progress,
        out=out,
        resume=resume,
        overwrite=overwrite,
        address=address,
    )
    return Headroom(cmp, headroom_table(cmp.results))


def markdown(table: pd.DataFrame) -> str:
    """The README's headroom table."""
    lines = [
        "| scenario | seeds | static | threshold | lookahead | hindsight | regular pay"
        " | avoidable | headroom [95% CI] | of avoidable | role |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table.itertuples():
        role = _role(r.suite, r.headroom_ci95_high_pct)
        lines.append(
            f"| {r.scenario} | {r.seeds} | {r.static:,.0f} | {r.threshold:,.0f} | "
            f"{r.lookahead:,.0f} | {r.hindsight:,.0f} | {r.regular_cost:,.0f} | "
            f"{r.avoidable_cost:,.0f} | "
            f"{r.headroom_pct:.1f}% [{r.headroom_ci95_low_pct:.1f}, "
            f"{r.headroom_ci95_high_pct:.1f}] | {r.headroom_of_avoidable_pct:.0f}% | {role} |"
        )
    lines.append("")
    lines.append(
        "Mean total cost over the scenario's horizon (common random numbers)."
        " Headroom = (threshold − hindsight) / threshold, paired by seed; suite = hindsight"
        f" ≤ {SUITE_RATIO:g} × threshold with the interval excluding 0; sanity check = the"
        f" interval's upper end is below {100 * (1 - SUITE_RATIO):g}%; undecided = neither,"
        " more seeds would tell."
    )
    return "\n".join(lines) + "\n"


def _role(suite: bool, high_pct: float) -> str:
    if suite:
        return "suite"
    return "sanity check" if high_pct < 100 * (1 - SUITE_RATIO) else "undecided"


def write(result: Headroom, out: Path) -> list[Path]:
    """Write the outputs (see the module docstring); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    cmp = result.comparison
    paths = [out / "results.parquet", out / "summary.csv", out / "headroom.csv"]
    cmp.results.to_parquet(paths[0], index=False)
    cmp.summary.to_csv(paths[1], index=False)
    result.table.to_csv(paths[2], index=False)
    doc = {
        "seeds": cmp.seeds,
        "suite_ratio": SUITE_RATIO,
        "scenarios": json.loads(result.table.to_json(orient="records")),
        "suite": [r.scenario for r in result.table.itertuples() if r.suite],
    }
    (out / "headroom.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "headroom.md").write_text(markdown(result.table))
    return [*paths, out / "headroom.json", out / "headroom.md"]
