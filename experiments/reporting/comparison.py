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

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; display: block; margin: 1em 0; }
.note { color: #555; font-size: .9em; }
.warn { color: #8a4b00; background: #fff4e0; padding: .4em .6em; }
"""


def png(fig: plt.Figure) -> str:
    """The figure as a base64 PNG ``<img>`` tag (and the figure closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _colors(strategies: Sequence[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def cost_parts(results: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Split each run's total cost into regular, overtime, flex, transfer labour and penalty."""
    c = scenario.costs
    overtime = results["overtime_hours"] * c.overtime_rate_per_hour
    flex = results["flex_hours"] * c.flex_rate_per_hour
    transfer = results["transfers"] * c.transfer_cost
    regular = results["labor_cost"] - overtime - flex - transfer
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


def _fmt(x: float, digits: int = 1) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:,.{digits}f}"


def _ci(mean: float, lo: float, hi: float, digits: int = 1) -> str:
    if not np.isfinite(lo):
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _headline_table(summary: pd.DataFrame, strategies: Sequence[str]) -> str:
    ref = summary["diff_vs"].iloc[0]
    head = (
        "<tr><th>strategy</th><th>total cost, mean [95% CI]</th>"
        "<th>cost normalised to static = 1.0</th>"
        f"<th>Δ cost vs {html.escape(ref)} [95% CI, paired]</th><th>SLA misses</th>"
        "<th>overtime h</th><th>flex h</th><th>transfers</th></tr>"
    )
    body = []
    for s in strategies:
        rows = summary[summary["strategy"] == s].set_index("kpi")
        cost = rows.loc["total_cost"]
        cells = [
            html.escape(s),
            _ci(cost["mean"], cost["ci95_low"], cost["ci95_high"], 0),
            _fmt(cost["normalized"], 3),
            "–"
            if s == ref
            else _ci(cost["diff_mean"], cost["diff_ci95_low"], cost["diff_ci95_high"], 0),
        ]
        for k in ("sla_misses", "overtime_hours", "flex_hours", "transfers"):
            r = rows.loc[k]
            cells.append(_ci(r["mean"], r["ci95_low"], r["ci95_high"]))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _normalized_plot(
    res: pd.DataFrame, strategies: Sequence[str], colors, baseline: str
) -> str | None:
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
    return png(fig)


def _kpi_bars(summary: pd.DataFrame, strategies: Sequence[str], colors) -> str:
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
    return png(fig)


def _cost_breakdown(res: pd.DataFrame, sc: Scenario, strategies: Sequence[str]) -> str:
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
    return png(fig)


def _sector_misses(summary: pd.DataFrame, sc: Scenario, strategies, colors) -> str:
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
    return png(fig)


def _over_time(ts: pd.DataFrame, sc: Scenario, strategies, colors, seed: int) -> str:
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
    return png(fig)


def _timing_table(timing: pd.DataFrame) -> str:
    cols = [
        ("scenario", "scenario"),
        ("strategy", "strategy"),
        ("decisions_per_run", "decisions / run"),
        ("decide_ms_mean", "ms / decision (mean)"),
        ("decide_ms_max", "ms / decision (max)"),
        ("run_seconds_mean", "s / run"),
    ]
    head = "".join(f"<th>{label}</th>" for _, label in cols)
    body = []
    for _, r in timing.iterrows():
        cells = [html.escape(str(r["scenario"])), html.escape(str(r["strategy"]))]
        cells += [_fmt(r[c], 2 if "ms" in c or "seconds" in c else 0) for c, _ in cols[2:]]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _tuning_notes(cmp: Comparison, scenario: str) -> list[str]:
    """A warning for every baseline whose thresholds were not tuned for this scenario."""
    notes = []
    for (name, strategy), label in cmp.tuning.items():
        if name != scenario or label == "tuned":
            continue
        base = html.escape(strategy.split(":")[0])
        why = (
            "no tuned parameters exist for this scenario, so it ran with the untuned defaults"
            if label == "untuned"
            else "its tuned parameters are for an earlier version of this scenario"
        )
        notes.append(
            f'<p class="warn"><b>{html.escape(strategy)}</b>: {why} and may be far from its '
            "best. Tune it with <code>synctwin tune-baseline --scenario FILE --out "
            f"TUNED.json</code>, then compare <code>{base}:TUNED.json</code>.</p>"
        )
    return notes


def render_report(cmp: Comparison) -> str:
    """The report as an HTML string."""
    strategies = cmp.strategies
    colors = _colors(strategies)
    seed = cmp.seeds[0]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>SyncTwin strategy comparison</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>SyncTwin strategy comparison</h1>",
        f"<p>Strategies: <b>{html.escape(', '.join(strategies))}</b>; seeds "
        f"{cmp.seeds[0]}..{cmp.seeds[-1]} ({len(cmp.seeds)} per strategy, common random "
        "numbers: seed <i>k</i> gives every strategy the same demand and absences). "
        "Intervals are Student-t 95% intervals over seeds; differences are paired by seed "
        f"against <b>{html.escape(strategies[0])}</b>.</p>",
    ]
    for name, sc in cmp.scenarios.items():
        res = cmp.results[cmp.results["scenario"] == name]
        summ = cmp.summary[cmp.summary["scenario"] == name]
        ts = cmp.timeseries[cmp.timeseries["scenario"] == name] if len(cmp.timeseries) else None
        parts.append(f"<h2>Scenario <code>{html.escape(name)}</code></h2>")
        if sc.description:
            parts.append(f'<p class="note">{html.escape(sc.description)}</p>')
        parts.extend(_tuning_notes(cmp, name))
        parts.append(_headline_table(summ, strategies))
        parts.append(_normalized_plot(res, strategies, colors, cmp.baseline) or "")
        parts.append(_kpi_bars(summ, strategies, colors))
        parts.append(_cost_breakdown(res, sc, strategies))
        parts.append(_sector_misses(summ, sc, strategies, colors))
        if ts is not None and len(ts):
            parts.append(_over_time(ts, sc, strategies, colors, seed))
    parts.append("<h2>Compute cost per decision</h2>")
    parts.append(_timing_table(cmp.timing))
    parts.append(
        '<p class="note">Wall time of <code>decide(snapshot)</code> per decision interval, '
        "measured inside each run (lookahead's includes its twin rollouts).</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(cmp: Comparison, path: Path) -> Path:
    """Write :func:`render_report` to ``path``."""
    path.write_text(render_report(cmp), encoding="utf-8")
    return path
