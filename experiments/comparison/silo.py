"""Silo vs synchronized: does fixing one bottleneck locally move it downstream?

``synctwin experiment silo [--scenario S,..] [--seeds N] --out DIR`` runs three arms on the
same seeds (common random numbers):

- ``static`` — the plan as written;
- ``silo`` — one floor manager per sector, each seeing only its own queue
  (:mod:`agents.silo`): it calls flex and overtime for itself and lends its idle
  workers upstream to its feeder when its own queue is empty;
- ``threshold`` — the synchronized manager (:mod:`agents.threshold`): the same tuned
  thresholds, but it sees the whole flow (upstream work, forecast arrivals, every
  sector's slack) before moving anyone.

For each scenario the *bottleneck* is the sector with the most SLA misses under the
static plan; *downstream* are the sectors its work flows into. The experiment reports,
per arm and sector, SLA misses and queue length (mean and peak over the day, from the
15-minute time series) with 95% intervals and paired differences against ``static``,
and whether the silo arm cut the bottleneck's misses while a downstream sector's rose.

Outputs in ``DIR``: ``results.parquet``, ``summary.csv`` (as ``compare``), ``silo.csv``
(per scenario, arm and sector), ``silo.md`` (README-ready text) and ``silo.html``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from experiments.comparison.compare import Comparison, run_compare, summarize
from experiments.reporting.document import Document, ci
from twin.scenario import Scenario

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ARMS = ("static", "silo", "threshold")
ARM_LABELS = {"static": "plan", "silo": "silo (local)", "threshold": "synchronized"}
METRICS = ("sla_misses", "queue_mean", "queue_peak")


@dataclass
class SiloResult:
    comparison: Comparison
    table: pd.DataFrame  # scenario, arm, sector, role, metric means/CIs and paired diffs
    findings: pd.DataFrame  # one row per scenario: bottleneck, downstream, the verdict


def downstream_of(scenario: Scenario, sector: str) -> list[str]:
    """Sectors that work from ``sector`` can flow into (any class, any path), in order."""
    edges: dict[str, set[str]] = {s: set() for s in scenario.sector_names}
    for c in scenario.item_classes:
        for src, targets in c.routing.items():
            edges[src].update(t for t, p in targets.items() if t in edges and p > 0)
    seen: list[str] = []
    stack = [sector]
    while stack:
        for nxt in sorted(edges[stack.pop()]):
            if nxt not in seen and nxt != sector:
                seen.append(nxt)
                stack.append(nxt)
    return [s for s in scenario.sector_names if s in seen]


def run_silo(
    scenarios: Sequence[str],
    seeds: int,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    address: str | None = None,
) -> SiloResult:
    """Run the three arms (on the Ray cluster at ``address``, if given) and analyse them
    (see the module docstring)."""
    cmp = run_compare(
        scenarios, list(ARMS), seeds, workers=workers, progress=progress, address=address
    )
    res = cmp.results
    cols = [
        f"{s}.{m}"
        for sc in cmp.scenarios.values()
        for s in sc.sector_names
        for m in METRICS
        if f"{s}.{m}" in res.columns
    ]
    summ = summarize(res, list(ARMS), columns=list(dict.fromkeys(cols)))
    rows, findings = [], []
    for name, sc in cmp.scenarios.items():
        s = summ[summ["scenario"] == name].set_index(["strategy", "kpi"])
        static_misses = {n: s.loc[("static", f"{n}.sla_misses"), "mean"] for n in sc.sector_names}
        order = list(sc.sector_names)
        bottleneck = max(order, key=lambda n: (static_misses[n], -order.index(n)))
        down = downstream_of(sc, bottleneck)
        for arm in ARMS:
            for sector in sc.sector_names:
                role = "downstream" if sector in down else ""
                role = "bottleneck" if sector == bottleneck else role
                row = {"scenario": name, "arm": arm, "sector": sector, "role": role}
                for m in METRICS:
                    r = s.loc[(arm, f"{sector}.{m}")]
                    row[m] = r["mean"]
                    row[f"{m}_ci95_low"] = r["ci95_low"]
                    row[f"{m}_ci95_high"] = r["ci95_high"]
                    row[f"{m}_diff"] = r["diff_mean"]
                    row[f"{m}_diff_ci95_low"] = r["diff_ci95_low"]
                    row[f"{m}_diff_ci95_high"] = r["diff_ci95_high"]
                rows.append(row)
        table = pd.DataFrame(rows)
        here = table[(table["scenario"] == name)].set_index(["arm", "sector"])
        b_fixed = here.loc[("silo", bottleneck), "sla_misses_diff"] < 0
        moved = [
            d
            for d in down
            if here.loc[("silo", d), "sla_misses_diff"] > 0
            or here.loc[("silo", d), "queue_mean_diff"] > 0
        ]
        totals = cmp.summary[(cmp.summary["scenario"] == name)].set_index(["strategy", "kpi"])
        findings.append(
            {
                "scenario": name,
                "bottleneck": bottleneck,
                "downstream": ", ".join(down),
                "silo_cut_bottleneck_misses": bool(b_fixed),
                "downstream_worse_under_silo": ", ".join(moved),
                **{f"{arm}_sla_misses": totals.loc[(arm, "sla_misses"), "mean"] for arm in ARMS},
                **{f"{arm}_total_cost": totals.loc[(arm, "total_cost"), "mean"] for arm in ARMS},
                **{f"{arm}_transfers": totals.loc[(arm, "transfers"), "mean"] for arm in ARMS},
            }
        )
    table = pd.DataFrame(rows)
    return SiloResult(cmp, table, pd.DataFrame(findings))


def markdown(result: SiloResult) -> str:
    """README-ready markdown: the method, one table per scenario, the verdicts."""
    n = len(result.comparison.seeds)
    out = [
        "### Silo vs synchronized",
        "",
        f"Three arms on the same {n} seeds (common random numbers): the plan as written "
        "(`static`), sector-local managers that only see their own queue (`silo`: flex and "
        "overtime for themselves, idle workers lent upstream to their feeder while their own "
        "queue is empty) and the synchronized manager (`threshold`: same tuned thresholds, "
        "whole-flow view). The *bottleneck* is the sector with the most SLA misses under the "
        "plan; *downstream* sectors are where its work goes next. Means over seeds with "
        "95% Student-t intervals; queue = items waiting, averaged over the day (15-minute "
        "samples).",
        "",
    ]
    for _, f in result.findings.iterrows():
        name = f["scenario"]
        t = result.table[result.table["scenario"] == name]
        down = ", ".join(f"`{d}`" for d in f["downstream"].split(", ") if d) or "(none)"
        out.append(f"**{name}** — bottleneck `{f['bottleneck']}`, downstream {down}")
        out.append("")
        out.append("| sector | role | misses: plan | misses: silo | misses: synchronized "
                   "| mean queue: plan | silo | synchronized |")  # fmt: skip
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for sector in dict.fromkeys(t["sector"]):
            r = t[t["sector"] == sector].set_index("arm")
            cells = [f"`{sector}`", r.loc["static", "role"] or ""]
            cells += [
                ci(*r.loc[a, ["sla_misses", "sla_misses_ci95_low", "sla_misses_ci95_high"]])
                for a in ARMS
            ]
            cells += [f"{r.loc[a, 'queue_mean']:,.1f}" for a in ARMS]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        verdict = []
        b = t[t["sector"] == f["bottleneck"]].set_index("arm")["sla_misses"]
        if f["silo_cut_bottleneck_misses"]:
            verdict.append(
                f"the silo managers cut `{f['bottleneck']}`'s misses "
                f"({b['static']:.1f} → {b['silo']:.1f})"
            )
        else:
            verdict.append(f"the silo managers did not cut `{f['bottleneck']}`'s misses")
        if f["downstream_worse_under_silo"]:
            verdict.append(
                "while downstream "
                + ", ".join(f"`{d}`" for d in f["downstream_worse_under_silo"].split(", "))
                + " got worse (more misses or a longer queue)"
            )
        else:
            verdict.append("and no downstream sector got worse")
        out.append(
            f"Total: misses {f['static_sla_misses']:.1f} (plan) / {f['silo_sla_misses']:.1f} "
            f"(silo) / {f['threshold_sla_misses']:.1f} (synchronized); cost "
            f"{f['static_total_cost']:,.0f} / {f['silo_total_cost']:,.0f} / "
            f"{f['threshold_total_cost']:,.0f}; workers moved {f['static_transfers']:.0f} / "
            f"{f['silo_transfers']:.0f} / {f['threshold_transfers']:.0f}. In short: "
            + " ".join(verdict)
            + "."
        )
        out.append("")
    return "\n".join(out)


def _plots(result: SiloResult) -> list[Figure]:
    import matplotlib.pyplot as plt

    cmp = result.comparison
    colors = {a: plt.get_cmap("tab10")(i) for i, a in enumerate(ARMS)}
    imgs = []
    for _, f in result.findings.iterrows():
        name = f["scenario"]
        sc = cmp.scenarios[name]
        t = result.table[result.table["scenario"] == name]
        focus = [f["bottleneck"], *[d for d in f["downstream"].split(", ") if d]]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
        x = np.arange(len(sc.sector_names))
        w = 0.8 / len(ARMS)
        for i, arm in enumerate(ARMS):
            r = t[t["arm"] == arm].set_index("sector").loc[list(sc.sector_names)]
            for ax, m in zip(axes, ("sla_misses", "queue_mean"), strict=True):
                mean = r[m].to_numpy()
                lo = np.nan_to_num(mean - r[f"{m}_ci95_low"].to_numpy())
                hi = np.nan_to_num(r[f"{m}_ci95_high"].to_numpy() - mean)
                ax.bar(x + i * w, mean, w, yerr=[lo, hi], capsize=2, color=colors[arm],
                       label=ARM_LABELS[arm])  # fmt: skip
        for ax, title in zip(axes, ("SLA misses by sector", "mean queue by sector"), strict=True):
            labels = [f"{n}*" if n == f["bottleneck"] else n for n in sc.sector_names]
            ax.set_xticks(x + w, labels, fontsize=8)
            ax.set_title(f"{name}: {title} (* = bottleneck)", fontsize=10)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        imgs.append(fig)
        ts = cmp.timeseries[cmp.timeseries["scenario"] == name]
        fig, axes = plt.subplots(1, len(focus), figsize=(3.7 * len(focus), 3.0), squeeze=False)
        for ax, sector in zip(axes[0], focus, strict=True):
            for arm in ARMS:
                run = ts[ts["strategy"] == arm]
                ax.plot(run["minute"] / 60, run[f"{sector}.queue"], color=colors[arm],
                        label=ARM_LABELS[arm], lw=1.2)  # fmt: skip
            role = "bottleneck" if sector == f["bottleneck"] else "downstream"
            ax.set_title(f"{sector} ({role}) queue", fontsize=10)
            ax.set_xlabel("hour")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{name}: queues over the day, seed {cmp.seeds[0]}", fontsize=10)
        fig.tight_layout()
        imgs.append(fig)
    return imgs


def page(result: SiloResult, text: str) -> Document:
    """The HTML page: the README-ready text, then the plots."""
    doc = Document("SyncTwin: silo vs synchronized", heading="Silo vs synchronized")
    doc.lead.preformatted(text)
    for fig in _plots(result):
        doc.lead.figure(fig)
    return doc


def write(result: SiloResult, out: Path) -> list[Path]:
    """Write the experiment's files into ``out`` (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    cmp = result.comparison
    paths = [out / "results.parquet", out / "summary.csv", out / "silo.csv", out / "silo.md"]
    cmp.results.to_parquet(paths[0], index=False)
    cmp.summary.to_csv(paths[1], index=False, float_format="%.10g")
    result.table.to_csv(paths[2], index=False, float_format="%.6g")
    text = markdown(result)
    paths[3].write_text(text + "\n", encoding="utf-8")
    paths.append(page(result, text).write(out / "silo.html"))
    return paths
