"""The tables the commands print (rich), one definition each."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table


def kpi_table(title: str, kpis: dict[str, dict[str, float]]) -> Table:
    """A KPI table: one row per KPI, one column per run/sector label."""
    from twin.kpis import KPI_NAMES

    table = Table(title=title, show_lines=False)
    table.add_column("kpi", no_wrap=True)
    for label in kpis:
        table.add_column(label, justify="right")
    for k in KPI_NAMES:
        row = [k]
        for rec in kpis.values():
            v = rec[k]
            row.append(f"{v:,.3f}" if k in ("sla_attainment", "utilization") else f"{v:,.1f}")
        table.add_row(*row)
    return table


def comparison_table(summary, scenario: str) -> Table:
    """One scenario's comparison, one row per strategy; fits an 80-column terminal.

    Total cost is mean ± the 95% interval's half-width; the paired difference against the
    first strategy is starred when its 95% interval excludes zero; avoidable is total
    minus regular pay; with threshold and hindsight both run, "gap closed" is the share
    of the threshold -> hindsight gap a strategy closes (summary.csv has all intervals).
    """
    import math

    from rich import box

    rows = summary[summary["scenario"] == scenario]
    ref = rows["diff_vs"].iloc[0]

    def label(strategy: str) -> str:
        base, sep, path = strategy.partition(":")
        return f"{base}:{Path(path).name}" if sep and base == "policy" else strategy

    table = Table(
        title=f"{scenario}: mean over seeds; Δ paired vs {label(ref)} (* = 95% CI excludes 0)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    gap = "gap_closed" in rows.columns and rows["gap_closed"].notna().any()
    heads = ("strategy", "cost ± 95%", "/static", "Δ cost", "avoidable", "misses", "OT h")
    tail = ("gap closed",) if gap else ("flex h", "moves")
    for col in (*heads, *tail):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for strategy in dict.fromkeys(rows["strategy"]):
        k = rows[rows["strategy"] == strategy].set_index("kpi")
        cost = k.loc["total_cost"]
        half = (cost["ci95_high"] - cost["ci95_low"]) / 2
        norm = cost["normalized"]
        star = not (cost["diff_ci95_low"] <= 0 <= cost["diff_ci95_high"])
        if gap:
            g = cost["gap_closed"]
            last = ["–" if math.isnan(g) else f"{g:.2f}"]
        else:
            last = [f"{k.loc['flex_hours', 'mean']:,.1f}", f"{k.loc['transfers', 'mean']:,.0f}"]
        avoidable = k.loc["avoidable_cost", "mean"] if "avoidable_cost" in k.index else math.nan
        table.add_row(
            label(strategy),
            f"{cost['mean']:,.0f}" + ("" if math.isnan(half) else f" ± {half:,.0f}"),
            "–" if math.isnan(norm) else f"{norm:.3f}",
            "–" if strategy == ref else f"{cost['diff_mean']:+,.0f}{' *' if star else ''}",
            "–" if math.isnan(avoidable) else f"{avoidable:,.0f}",
            f"{k.loc['sla_misses', 'mean']:,.0f}",
            f"{k.loc['overtime_hours', 'mean']:,.1f}",
            *last,
        )
    return table
