"""The planner's comparison report: one self-contained HTML file, plots embedded as PNG.

For each scenario: a headline table (means with 95% intervals, paired differences,
cost normalised to the plan), then the plots a planner would rather look at than read:

1. total cost normalised to ``static`` = 1.0, with the 95% interval of the per-seed ratio;
2. KPI bars with 95% intervals (cost, SLA misses, attainment, overtime, flex, transfers);
3. where the money goes: regular, overtime, flex and transfer labour vs SLA penalties;
4. SLA misses by sector;
5. backlog and staffing over the day per sector, for the representative seed.

Then the compute cost per decision of each strategy. Matplotlib draws with the Agg
backend; nothing is fetched from outside the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from experiments.reporting.document import Document, Section, bold, ci, code, fixed, italic
from twin.scenario import Scenario
from twin.stats import t_interval

if TYPE_CHECKING:
    from experiments.comparison.compare import Comparison

KPI_PANELS = (
    ("total_cost", "total cost"),
    ("sla_misses", "SLA misses (items)"),
    ("sla_attainment", "SLA attainment"),
    ("overtime_hours", "overtime (hours)"),
    ("flex_hours", "flex (hours)"),
    ("transfers", "transfers (workers moved)"),
)
COST_PARTS = ("regular", "overtime", "flex", "transfer", "SLA penalty")


def _colors(strategies: Sequence[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def cost_parts(results: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Split each run's total cost into regular, overtime, flex, transfer labour and penalty."""
    c = scenario.costs
    overtime = results["overtime_hours"] * c.overtime_rate_per_hour
    flex = results["flex_hours"] * c.flex_rate_per_hour
    transfer = results["transfers"] * c.transfer_cost
    regular = results["regular_cost"]
    return pd.DataFrame(
        {
            "strategy": results["strategy"],
            "regular": regular,
            "overtime": overtime,
            "flex": flex,
            "transfer": transfer,
            "SLA penalty": results["penalty_cost"],
        }
    )


def _headline_table(summary: pd.DataFrame, strategies: Sequence[str]) -> list[list[str]]:
    ref = summary["diff_vs"].iloc[0]
    rows = []
    for s in strategies:
        kpis = summary[summary["strategy"] == s].set_index("kpi")
        cost = kpis.loc["total_cost"]
        cells = [
            s,
            ci(cost["mean"], cost["ci95_low"], cost["ci95_high"], 0),
            fixed(cost["normalized"], 3),
            "–"
            if s == ref
            else ci(cost["diff_mean"], cost["diff_ci95_low"], cost["diff_ci95_high"], 0),
        ]
        avoidable = kpis.loc["avoidable_cost"]
        cells.append(ci(avoidable["mean"], avoidable["ci95_low"], avoidable["ci95_high"], 0))
        if _has_gap(summary):
            cells.append(ci(cost["gap_closed"], cost["gap_ci95_low"], cost["gap_ci95_high"], 2))
        for k in ("sla_misses", "overtime_hours", "flex_hours", "transfers"):
            r = kpis.loc[k]
            cells.append(ci(r["mean"], r["ci95_low"], r["ci95_high"]))
        rows.append(cells)
    return rows


def _has_gap(summary: pd.DataFrame) -> bool:
    """Whether threshold and hindsight both ran (``gap_closed`` is in the summary)."""
    return "gap_closed" in summary.columns and bool(summary["gap_closed"].notna().any())


def _headline_columns(summary: pd.DataFrame) -> list[str]:
    ref = summary["diff_vs"].iloc[0]
    return [
        "strategy",
        "total cost, mean [95% CI]",
        "cost normalised to static = 1.0",
        f"Δ cost vs {ref} [95% CI, paired]",
        "avoidable cost (total − regular pay)",
        *(["gap closed, threshold → hindsight [95% CI]"] if _has_gap(summary) else []),
        "SLA misses",
        "overtime h",
        "flex h",
        "transfers",
    ]


def _normalized_plot(
    res: pd.DataFrame, strategies: Sequence[str], colors, baseline: str
) -> plt.Figure:
    ref = baseline if baseline in strategies else strategies[0]
    base = res[res["strategy"] == ref].set_index("seed")["total_cost"]
    means, los, his = [], [], []
    for s in strategies:
        cur = res[res["strategy"] == s].set_index("seed")["total_cost"]
        seeds = cur.index.intersection(base.index)
        ratio = t_interval((cur.loc[seeds] / base.loc[seeds]).to_numpy())
        m, lo, hi = ratio.mean, ratio.low, ratio.high
        means.append(m)
        los.append(m - lo if np.isfinite(lo) else 0.0)
        his.append(hi - m if np.isfinite(hi) else 0.0)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(len(strategies))
    ax.bar(x, means, yerr=[los, his], capsize=4, color=[colors[s] for s in strategies])
    ax.axhline(1.0, color="#444", lw=1, ls="--")
    ax.set_xticks(x, strategies)
    ax.set_ylabel(f"total cost / {ref}")
    ax.set_title(f"Total cost normalised to {ref} = 1.0 (95% CI of the per-seed ratio)")
    lo_lim = min(m - e for m, e in zip(means, los, strict=True))
    ax.set_ylim(max(0.0, min(0.9, lo_lim - 0.02)), None)
    for xi, m in zip(x, means, strict=True):
        ax.annotate(f"{m:.3f}", (xi, m), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")  # fmt: skip
    return fig


def _kpi_bars(summary: pd.DataFrame, strategies: Sequence[str], colors) -> plt.Figure:
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.5))
    x = np.arange(len(strategies))
    for ax, (kpi, label) in zip(axes.flat, KPI_PANELS, strict=True):
        rows = summary[summary["kpi"] == kpi].set_index("strategy").loc[list(strategies)]
        mean = rows["mean"].to_numpy()
        lo = np.nan_to_num(mean - rows["ci95_low"].to_numpy())
        hi = np.nan_to_num(rows["ci95_high"].to_numpy() - mean)
        ax.bar(x, mean, yerr=[lo, hi], capsize=3, color=[colors[s] for s in strategies])
        ax.set_xticks(x, strategies, rotation=20, fontsize=8)
        ax.set_title(label, fontsize=10)
        if kpi == "sla_attainment":
            low = float(np.nanmin(rows["ci95_low"].fillna(rows["mean"])))
            ax.set_ylim(max(0.0, low - 0.01), 1.0)
    fig.suptitle("KPIs, mean over seeds with 95% confidence intervals")
    fig.tight_layout()
    return fig


def _cost_breakdown(res: pd.DataFrame, sc: Scenario, strategies: Sequence[str]) -> plt.Figure:
    parts = cost_parts(res, sc).groupby("strategy").mean().loc[list(strategies)]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bottom = np.zeros(len(strategies))
    cmap = plt.get_cmap("Set2")
    for i, part in enumerate(COST_PARTS):
        vals = parts[part].to_numpy()
        ax.bar(strategies, vals, bottom=bottom, label=part, color=cmap(i))
        bottom += vals
    ax.set_ylabel("mean cost per run")
    ax.set_title("Where the money goes: labour (regular, overtime, flex, transfer) vs SLA penalty")
    ax.legend(fontsize=8, ncols=3, loc="lower right")
    ax.tick_params(axis="x", labelsize=8)
    return fig


def _sector_misses(summary: pd.DataFrame, sc: Scenario, strategies, colors) -> plt.Figure:
    sectors = sc.sector_names
    width = 0.8 / len(strategies)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    x = np.arange(len(sectors))
    for i, s in enumerate(strategies):
        rows = summary[summary["strategy"] == s].set_index("kpi")
        keys = [f"{n}.sla_misses" for n in sectors]
        mean = rows.loc[keys, "mean"].to_numpy()
        lo = np.nan_to_num(mean - rows.loc[keys, "ci95_low"].to_numpy())
        hi = np.nan_to_num(rows.loc[keys, "ci95_high"].to_numpy() - mean)
        ax.bar(x + i * width, mean, width, yerr=[lo, hi], capsize=2, label=s, color=colors[s])
    ax.set_xticks(x + width * (len(strategies) - 1) / 2, sectors, fontsize=8)
    ax.set_ylabel("SLA misses charged")
    ax.set_title("SLA misses by sector (95% CI)")
    ax.legend(fontsize=8)
    return fig


def _over_time(ts: pd.DataFrame, sc: Scenario, strategies, colors, seed: int) -> plt.Figure:
    sectors = sc.sector_names
    fig, axes = plt.subplots(len(sectors), 2, figsize=(11, 1.9 * len(sectors)), sharex=True)
    axes = np.atleast_2d(axes)
    for s in strategies:
        run = ts[ts["strategy"] == s]
        hours = run["minute"] / 60.0
        for r, name in enumerate(sectors):
            axes[r, 0].plot(hours, run[f"{name}.queue"], color=colors[s], lw=1.2, label=s)
            axes[r, 1].plot(hours, run[f"{name}.staff_present"], color=colors[s], lw=1.2)
    for r, name in enumerate(sectors):
        axes[r, 0].set_ylabel(name, fontsize=9)
    axes[0, 0].set_title("backlog (items queued)", fontsize=10)
    axes[0, 1].set_title("staff present (own + borrowed + flex)", fontsize=10)
    axes[-1, 0].set_xlabel("hour")
    axes[-1, 1].set_xlabel("hour")
    axes[0, 0].legend(fontsize=7, ncols=len(strategies))
    fig.suptitle(f"Backlog and staffing over time per sector (seed {seed})")
    fig.tight_layout()
    return fig


TIMING_COLUMNS = {
    "scenario": "scenario",
    "strategy": "strategy",
    "decisions_per_run": "decisions / run",
    "decide_ms_mean": "ms / decision (mean)",
    "decide_ms_max": "ms / decision (max)",
    "run_seconds_mean": "s / run",
}


def _timing_table(timing: pd.DataFrame) -> pd.DataFrame:
    t = timing[list(TIMING_COLUMNS)].astype({"scenario": str, "strategy": str})
    return t.astype({c: float for c in list(TIMING_COLUMNS)[2:]}).rename(columns=TIMING_COLUMNS)


def _tuning_notes(cmp: Comparison, scenario: str, section: Section) -> None:
    """A warning for every baseline whose thresholds were not tuned for this scenario."""
    for (name, strategy), label in cmp.tuning.items():
        if name != scenario or label == "tuned":
            continue
        base = strategy.split(":")[0]
        why = (
            "no tuned parameters exist for this scenario, so it ran with the untuned defaults"
            if label == "untuned"
            else "its tuned parameters are for an earlier version of this scenario"
        )
        section.warning(
            bold(strategy),
            f": {why} and may be far from its best. Tune it with ",
            code("synctwin tune-baseline --scenario FILE --out TUNED.json"),
            ", then compare ",
            code(f"{base}:TUNED.json"),
            ".",
        )


def build_report(cmp: Comparison) -> Document:
    """The report as a :class:`~experiments.reporting.document.Document`."""
    strategies = cmp.strategies
    colors = _colors(strategies)
    seed = cmp.seeds[0]
    doc = Document(
        "SyncTwin strategy comparison",
        subtitle=[
            "Strategies: ",
            bold(", ".join(strategies)),
            f"; seeds {cmp.seeds[0]}..{cmp.seeds[-1]} ({len(cmp.seeds)} per strategy, common "
            "random numbers: seed ",
            italic("k"),
            " gives every strategy the same demand and absences). Intervals are Student-t 95% "
            "intervals over seeds; differences are paired by seed against ",
            bold(strategies[0]),
            ".",
        ],
    )
    for name, sc in cmp.scenarios.items():
        res = cmp.results[cmp.results["scenario"] == name]
        summ = cmp.summary[cmp.summary["scenario"] == name]
        ts = cmp.timeseries[cmp.timeseries["scenario"] == name] if len(cmp.timeseries) else None
        section = doc.section("Scenario ", code(name))
        if sc.description:
            section.note(sc.description)
        _tuning_notes(cmp, name, section)
        section.table(_headline_table(summ, strategies), _headline_columns(summ))
        section.figure(_normalized_plot(res, strategies, colors, cmp.baseline))
        section.figure(_kpi_bars(summ, strategies, colors))
        section.figure(_cost_breakdown(res, sc, strategies))
        section.figure(_sector_misses(summ, sc, strategies, colors))
        if ts is not None and len(ts):
            section.figure(_over_time(ts, sc, strategies, colors, seed))
    timing = doc.section("Compute cost per decision")
    timing.table(
        _timing_table(cmp.timing),
        digits={"decisions / run": 0, "ms / decision (mean)": 2, "ms / decision (max)": 2,
                "s / run": 2},
    )  # fmt: skip
    timing.note(
        "Wall time of ",
        code("decide(snapshot)"),
        " per decision interval, measured inside each run (lookahead's includes its twin "
        "rollouts).",
    )
    return doc


def render_report(cmp: Comparison) -> str:
    """The report as an HTML string."""
    return build_report(cmp).render_html()


def write_report(cmp: Comparison, path: Path) -> Path:
    """Write :func:`render_report` to ``path``."""
    path.write_text(render_report(cmp), encoding="utf-8")
    return path
