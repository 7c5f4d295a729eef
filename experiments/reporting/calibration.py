"""The calibration fit report: what was read, what was fitted, how well it fits.

One report, two formats, chosen by the file's suffix: ``.html`` (one self-contained
file, plots embedded as PNG) or ``.md`` (Markdown, plots written as PNG files into
``<name>_files/`` next to it). Sections:

1. the data: rows read, used and rejected, rejections by reason, the first rejected rows;
2. arrivals: fitted vs observed arrivals per hour of the day and per day, per class;
3. service times: candidates with log-likelihood, AIC and KS statistic per sector,
   histograms with the fitted density and QQ plots;
4. routing, due rules, workforce (absence, headcount) and breakdowns;
5. notes: everything kept from the base scenario and why;
6. with ``--validate``: the twin vs the held-out days.

Matplotlib draws with the Agg backend; nothing is fetched from outside the file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from experiments.calibration.data import EventTable
from experiments.calibration.fit import (
    WEEKDAYS,
    ArrivalFit,
    Calibration,
    FamilyFit,
    ServiceFit,
    weighted_quantiles,
)
from experiments.calibration.validation import Validation
from experiments.reporting.comparison import CSS

MAX_REJECTED_SHOWN = 20


# --------------------------------------------------------------------------- blocks


@dataclass
class Block:
    """One piece of the report: a heading, a paragraph, a list, a table or a figure."""

    kind: str  # "h1" | "h2" | "p" | "ul" | "table" | "fig"
    content: object
    name: str = ""  # figure file name (Markdown)


def _fmt(x: object, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        if not math.isfinite(float(x)):
            return "–"
        return f"{float(x):,.{digits}g}" if abs(float(x)) < 1e-3 else f"{float(x):,.{digits}f}"
    return str(x)


def _table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _table_md(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return _fmt(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _png_bytes(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render_html(blocks: list[Block], title: str) -> str:
    """The blocks as one self-contained HTML page."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{html.escape(str(b.content))}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{html.escape(str(b.content))}</p>")
        elif b.kind == "ul":
            items = "".join(f"<li>{html.escape(str(x))}</li>" for x in b.content)  # type: ignore[attr-defined]
            parts.append(f"<ul class='note'>{items}</ul>")
        elif b.kind == "table":
            parts.append(_table_html(b.content))  # type: ignore[arg-type]
        elif b.kind == "fig":
            data = base64.b64encode(_png_bytes(b.content)).decode("ascii")  # type: ignore[arg-type]
            parts.append(f'<img alt="{html.escape(b.name)}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(blocks: list[Block], figure_dir: Path) -> str:
    """The blocks as Markdown; figures are written into ``figure_dir``."""
    parts = []
    for b in blocks:
        if b.kind == "h1":
            parts.append(f"# {b.content}")
        elif b.kind == "h2":
            parts.append(f"## {b.content}")
        elif b.kind == "p":
            parts.append(str(b.content))
        elif b.kind == "ul":
            parts.append("\n".join(f"- {x}" for x in b.content))  # type: ignore[attr-defined]
        elif b.kind == "table":
            parts.append(_table_md(b.content))  # type: ignore[arg-type]
        elif b.kind == "fig":
            figure_dir.mkdir(parents=True, exist_ok=True)
            path = figure_dir / f"{b.name}.png"
            path.write_bytes(_png_bytes(b.content))  # type: ignore[arg-type]
            parts.append(f"![{b.name}]({figure_dir.name}/{path.name})")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- sections


def rejection_blocks(table: EventTable, limit: int = MAX_REJECTED_SHOWN) -> list[Block]:
    """Rows read, used and rejected; rejections by reason; the first rejected rows."""
    blocks = [
        Block(
            "p",
            f"{table.source}: {table.rows_read:,} rows read, {table.rows_used:,} used, "
            f"{table.rows_rejected:,} rejected.",
        )
    ]
    if table.rows_rejected:
        counts = table.reason_counts()
        blocks.append(Block("table", pd.DataFrame({"reason": counts.index, "rows": counts.values})))
        first = table.first_rejected(limit)
        blocks.append(
            Block("p", f"First {len(first)} rejected rows ({table.row_label} numbers in the file):")
        )
        blocks.append(
            Block(
                "table",
                pd.DataFrame(
                    {
                        table.row_label: first["row"].astype(int).astype(str).to_numpy(),
                        "reason": first["reason"].to_numpy(),
                        "detail": first["detail"].to_numpy(),
                    }
                ),
            )
        )
    return blocks


def _arrival_blocks(cal: Calibration) -> list[Block]:
    rows = []
    for name, a in cal.arrivals.items():
        observed = list(a.observed_weekdays)
        rows.append(
            {
                "class": name,
                "entry": a.entry,
                "entry share": a.entry_share,
                "arrivals": a.arrivals,
                "fitted per day (avg observed day)": sum(a.hourly_rates),
                "weekday factors": "fitted" if a.weekday_fitted else "flat (no effect)",
                "LR test p": a.weekday_p,
                "factors": ", ".join(
                    f"{WEEKDAYS[w]} {a.weekday_factors[w]:.3f}" for w in range(7) if w in observed
                ),
            }
        )
    blocks = [
        Block("h2", "Arrivals"),
        Block(
            "p",
            "Poisson maximum likelihood per hour of the day (and weekday, when a likelihood-ratio "
            "test finds a weekday effect at the 1% level). Hourly rates describe an average "
            "observed day; factors scale it per weekday.",
        ),
        Block("table", pd.DataFrame(rows)),
    ]
    if cal.arrivals:
        blocks.append(Block("fig", _arrivals_by_hour(cal), "arrivals_by_hour"))
        blocks.append(Block("fig", _arrivals_by_day(cal), "arrivals_by_day"))
    return blocks


def _expected(a: ArrivalFit, counts: pd.DataFrame) -> np.ndarray:
    """Fitted mean arrivals in each (day, hour) row of ``counts``."""
    rate = np.asarray(a.hourly_rates)[counts["hour"].to_numpy()]
    factor = np.asarray(a.weekday_factors)[counts["weekday"].to_numpy()]
    return rate * factor * counts["exposure"].to_numpy()


def _arrivals_by_hour(cal: Calibration) -> plt.Figure:
    fits = list(cal.arrivals.values())
    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 3.2), squeeze=False)
    for ax, a in zip(axes[0], fits, strict=True):
        c = a.counts[a.counts["exposure"] > 0]
        per_hour = c.groupby("hour").agg(n=("count", "sum"), e=("exposure", "sum"))
        per_hour = per_hour.reindex(range(24), fill_value=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = per_hour["n"] / per_hour["e"]
            se = np.sqrt(per_hour["n"]) / per_hour["e"]
        fitted = c.assign(mu=_expected(a, c) / c["exposure"]).groupby("hour")["mu"].mean()
        ax.bar(range(24), mean, yerr=1.96 * se, color="#9ecae1", label="observed (95% CI)")
        ax.step(np.arange(25) - 0.5, [*fitted.reindex(range(24)).to_numpy(), np.nan], where="post",
                color="#d62728", label="fitted")  # fmt: skip
        ax.set_title(f"{a.item_class}: arrivals per hour of day")
        ax.set_xlabel("hour of day")
        ax.set_ylabel("items / hour (mean over days)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _arrivals_by_day(cal: Calibration) -> plt.Figure:
    fits = list(cal.arrivals.values())
    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 3.0), squeeze=False)
    for ax, a in zip(axes[0], fits, strict=True):
        c = a.counts.assign(mu=_expected(a, a.counts))
        day = c.groupby("day").agg(n=("count", "sum"), mu=("mu", "sum"), w=("weekday", "first"))
        x = np.arange(len(day))
        ax.bar(x, day["n"], color="#9ecae1", label="observed")
        ax.plot(x, day["mu"], "o-", color="#d62728", label="fitted")
        dates = [cal.table.origin + pd.Timedelta(days=int(d)) for d in day.index]
        labels = [f"{WEEKDAYS[d.weekday()]}\n{d:%m-%d}" for d in dates]
        ax.set_xticks(x, labels)
        ax.set_title(f"{a.item_class}: arrivals per day")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _family_text(f: FamilyFit | None) -> str:
    if f is None:
        return "–"
    if f.family == "empirical":
        return f"empirical ({len(f.params['samples'])} quantiles, mean {f.mean:.3f})"
    return f.family + " " + ", ".join(f"{k}={v:g}" for k, v in f.params.items())


def _service_blocks(cal: Calibration) -> list[Block]:
    rows, cands = [], []
    for name, s in cal.service.items():
        base_mean = cal.base.sectors[cal.base.sector_names.index(name)].service.mean_minutes
        rows.append(
            {
                "sector": name,
                "services used": s.n,
                "interrupted": s.interrupted,
                "by other sectors' staff": s.excluded_other,
                "observed mean (corrected)": s.observed_mean,
                "chosen": _family_text(s.chosen),
                "KS D": s.chosen.ks_d if s.chosen else float("nan"),
                "base mean": base_mean,
                "rule": s.rule,
            }
        )
        for f in s.candidates:
            cands.append(
                {
                    "sector": name,
                    "family": f.family,
                    "mean": f.mean,
                    "log-likelihood": f.loglik,
                    "AIC": f.aic,
                    "KS D": f.ks_d,
                    "KS p": f.ks_p,
                }
            )
    blocks = [
        Block("h2", "Service times"),
        Block(
            "p",
            "Start-to-finish durations of completed services by the sector's own staff, weighted "
            "to undo the length bias of services cut short by breaks, shift ends and the log's "
            "edges. Exponential and lognormal are fitted by maximum likelihood and compared by "
            "AIC; a CV under 1% means deterministic; if the best family fails a KS test at 1% "
            "with 200+ durations, the empirical distribution is used. KS p-values are "
            "approximate (parameters estimated from the same data).",
        ),
        Block("table", pd.DataFrame(rows)),
        Block("table", pd.DataFrame(cands)),
    ]
    fitted = [s for s in cal.service.values() if s.chosen is not None]
    if fitted:
        blocks.append(Block("fig", _service_plots(fitted), "service_times"))
    return blocks


def _quantile_fn(f: FamilyFit):
    """The inverse CDF of a fitted family."""
    p = f.params
    if f.family == "exponential":
        return lambda q: stats.expon.ppf(q, scale=p["mean"])
    if f.family == "lognormal":
        s2 = math.log1p(p["cv"] ** 2)
        mu = math.log(p["mean"]) - s2 / 2
        return lambda q: stats.lognorm.ppf(q, math.sqrt(s2), scale=math.exp(mu))
    if f.family == "empirical":
        xs = np.sort(np.asarray(p["samples"]))
        return lambda q: np.quantile(xs, q)
    return lambda q: np.full_like(np.asarray(q, dtype=float), p["value"])


def _pdf_fn(f: FamilyFit):
    p = f.params
    if f.family == "exponential":
        return lambda x: stats.expon.pdf(x, scale=p["mean"])
    if f.family == "lognormal":
        s2 = math.log1p(p["cv"] ** 2)
        mu = math.log(p["mean"]) - s2 / 2
        return lambda x: stats.lognorm.pdf(x, math.sqrt(s2), scale=math.exp(mu))
    return None


def _service_plots(fits: list[ServiceFit]) -> plt.Figure:
    n = len(fits)
    fig, axes = plt.subplots(2, n, figsize=(3.3 * n, 5.8), squeeze=False)
    for i, s in enumerate(fits):
        f = s.chosen
        assert f is not None
        x, w = s.durations, s.weights
        top = float(np.quantile(x, 0.995))
        ax = axes[0][i]
        ax.hist(x[x <= top], bins=50, weights=w[x <= top], density=True, color="#9ecae1")
        pdf = _pdf_fn(f)
        if pdf is not None:
            grid = np.linspace(max(top / 500, 1e-6), top, 200)
            ax.plot(grid, pdf(grid), color="#d62728", lw=1.5, label=f.family)
            ax.legend(fontsize=8)
        ax.set_title(f"{s.sector}: n={s.n:,}", fontsize=10)
        ax.set_xlabel("minutes")
        ax = axes[1][i]
        q = (np.arange(1, 200) - 0.5) / 199
        obs = weighted_quantiles(x, w, q)
        fit_q = _quantile_fn(f)(q)
        ax.plot(fit_q, obs, ".", ms=3, color="#1f77b4")
        lim = float(max(np.nanmax(obs), np.nanmax(fit_q)))
        ax.plot([0, lim], [0, lim], color="#444", lw=1, ls="--")
        ax.set_xlabel(f"{f.family} quantile (min)")
        ax.set_ylabel("observed quantile (min)")
        ax.set_title("QQ plot", fontsize=10)
    fig.tight_layout()
    return fig


def _routing_blocks(cal: Calibration) -> list[Block]:
    rows = []
    for name, r in cal.routing.items():
        for src, dsts in r.counts.items():
            total = sum(dsts.values())
            for dst, c in dsts.items():
                rows.append(
                    {
                        "class": name,
                        "from": src,
                        "to": dst,
                        "items": c,
                        "probability": r.probabilities.get(src, {}).get(dst),
                        "from total": total,
                    }
                )
    unfinished = {n: r.unfinished for n, r in cal.routing.items() if r.unfinished}
    blocks = [
        Block("h2", "Routing"),
        Block(
            "p",
            "Share of each next sector (or exit) after a finished stay: the multinomial maximum "
            "likelihood estimate.",
        ),
        Block("table", pd.DataFrame(rows)),
    ]
    if unfinished:
        blocks.append(
            Block(
                "p",
                "Stays whose next step is not in the log (still in progress at its end): "
                + ", ".join(f"{k} {v:,}" for k, v in unfinished.items())
                + ".",
            )
        )
    return blocks


def _due_blocks(cal: Calibration) -> list[Block]:
    if not cal.due:
        return []
    rows = [
        {"class": n, "rule": str(d.rule), "items": d.items, "reproduced": d.match, "how": d.how}
        for n, d in cal.due.items()
    ]
    return [Block("h2", "Due rules (from the 'due' column)"), Block("table", pd.DataFrame(rows))]


def _workforce_blocks(cal: Calibration) -> list[Block]:
    wf = cal.workforce
    blocks = [Block("h2", "Workforce")]
    if wf.absence_rate is not None and wf.absence_ci is not None:
        lo, hi = wf.absence_ci
        blocks.append(
            Block(
                "p",
                f"Absence rate {wf.absence_rate:.4f} (95% Wilson interval {lo:.4f}–{hi:.4f}) "
                f"from {wf.shifts_rostered:,} rostered worker-shifts (absent / rostered).",
            )
        )
        blocks.append(
            Block(
                "table",
                pd.DataFrame(
                    {
                        "sector": list(wf.absence_by_sector),
                        "absence rate": list(wf.absence_by_sector.values()),
                    }
                ),
            )
        )
    else:
        blocks.append(Block("p", "No attendance file: absence rate kept from the base scenario."))
    if wf.headcount is not None:
        blocks.append(Block("p", f"Headcount from {wf.headcount_source}:"))
        rows = [
            {"sector": s, "shift": sh, "workers": n}
            for s, per in wf.headcount.items()
            for sh, n in per.items()
        ]
        blocks.append(Block("table", pd.DataFrame(rows)))
    else:
        blocks.append(Block("p", "Shifts and headcount kept from the base scenario."))
    return blocks


def _breakdown_blocks(cal: Calibration) -> list[Block]:
    if not cal.breakdowns:
        return []
    rows = [
        {
            "sector": b.sector,
            "stations": b.stations,
            "failures": b.failures,
            "repairs": b.repairs,
            "station-hours up": b.up_station_minutes / 60,
            "MTTF per station (min)": b.mttf_minutes,
            "repair": _family_text(b.repair.chosen) if b.repair else "–",
            "repairs matched": b.repair.n if b.repair else 0,
        }
        for b in cal.breakdowns.values()
    ]
    return [
        Block("h2", "Breakdowns"),
        Block(
            "p",
            "Time to failure: exponential, rate = failures / station-minutes up. The log does "
            "not say which station failed, so the per-station rate assumes the base scenario's "
            "station count. Repairs: failures and repairs matched first in, first out (the mean "
            "is exact; the spread is approximate when repairs overlap).",
        ),
        Block("table", pd.DataFrame(rows)),
    ]


def validation_blocks(v: Validation) -> list[Block]:
    """The held-out comparison: table and throughput plot."""
    t = v.table.rename(
        columns={"twin_mean": "twin mean", "twin_low": "twin 95% PI low", "twin_high": "high"}
    )
    fit_days = v.fit_window.minutes / 1440
    test_days = v.test_window.minutes / 1440
    blocks = [
        Block("h2", "Validation on held-out days"),
        Block(
            "p",
            f"Fitted on the first {fit_days:g} day(s), compared on the last {test_days:g} "
            f"held-out day(s); the twin ran {len(v.seeds)} seeds, starting empty at the beginning "
            "of the fitting days (at most a week earlier). 'within' = the data lie inside the "
            "twin's 95% prediction interval for one run. "
            f"{v.share_within:.0%} of metrics are within.",
        ),
        Block("table", t),
    ]
    thr = v.table[v.table["metric"].str.startswith("throughput.")]
    if len(thr):
        fig, ax = plt.subplots(figsize=(6, 3))
        x = np.arange(len(thr))
        ax.errorbar(
            x,
            thr["twin_mean"],
            yerr=[thr["twin_mean"] - thr["twin_low"], thr["twin_high"] - thr["twin_mean"]],
            fmt="o",
            capsize=4,
            color="#d62728",
            label="twin (95% PI)",
        )
        ax.plot(x, thr["data"], "s", color="#1f77b4", label="data")
        ax.set_xticks(x, [m.removeprefix("throughput.") for m in thr["metric"]])
        ax.set_ylabel("items leaving per day")
        ax.set_title("Throughput on held-out days")
        ax.legend(fontsize=8)
        blocks.append(Block("fig", fig, "validation_throughput"))
    return blocks


def report_blocks(cal: Calibration, validation: Validation | None = None) -> list[Block]:
    """Every section of the report, in order."""
    s = cal.stats
    w = cal.window
    first = cal.table.origin + pd.Timedelta(minutes=w.start)
    last = cal.table.origin + pd.Timedelta(minutes=w.end)
    blocks = [
        Block("h1", f"Calibration of '{cal.scenario.name}' from {Path(cal.table.source).name}"),
        Block(
            "p",
            f"Base scenario '{cal.base.name}'. Fitted period {first:%Y-%m-%d %H:%M} to "
            f"{last:%Y-%m-%d %H:%M} ({w.minutes / 1440:g} days); {s['items']:,} items, "
            f"{s['arrivals']:,} arrivals, {s['in_progress_at_start']:,} items already in progress "
            f"when the log begins, {s['service_pairs']:,} completed and "
            f"{s['interrupted_services']:,} interrupted services.",
        ),
        Block("h2", "Data"),
        *rejection_blocks(cal.table),
    ]
    blocks += _arrival_blocks(cal)
    blocks += _service_blocks(cal)
    blocks += _routing_blocks(cal)
    blocks += _due_blocks(cal)
    blocks += _workforce_blocks(cal)
    blocks += _breakdown_blocks(cal)
    blocks += [
        Block("h2", "Kept from the base scenario, and other notes"),
        Block(
            "ul",
            [
                *cal.notes,
                *cal.workforce.notes,
                "costs, cross-training, transfer and overtime limits, flex pool, plan, tick and "
                "decision interval: from the base",
            ],
        ),
    ]
    if validation is not None:
        blocks += validation_blocks(validation)
    return blocks


def write_report(cal: Calibration, path: Path, validation: Validation | None = None) -> Path:
    """Write the report as HTML (``.html``/``.htm``) or Markdown (anything else, e.g. ``.md``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = report_blocks(cal, validation)
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(render_html(blocks, f"Calibration: {cal.scenario.name}"), "utf-8")
    else:
        path.write_text(render_markdown(blocks, path.with_name(f"{path.stem}_files")), "utf-8")
    return path


# --------------------------------------------------------------------------- console


def console_summary(cal: Calibration, validation: Validation | None = None) -> list[object]:
    """What ``synctwin calibrate`` prints: counts, rejections, the fit at a glance (rich)."""
    from rich.table import Table

    t = cal.table
    out: list[object] = [
        f"read {t.rows_read:,} rows from {t.source}: {t.rows_used:,} used, "
        f"{t.rows_rejected:,} rejected"
    ]
    if t.rows_rejected:
        reasons = Table("reason", "rows", title="rejected rows by reason", title_justify="left")
        for reason, n in t.reason_counts().items():
            reasons.add_row(str(reason), f"{n:,}")
        out.append(reasons)
        first = t.first_rejected(MAX_REJECTED_SHOWN)
        rows = Table(t.row_label, "reason", "detail", title=f"first {len(first)} rejected rows",
                     title_justify="left")  # fmt: skip
        for r in first.itertuples(index=False):
            rows.add_row(str(r.row), str(r.reason), str(r.detail))
        out.append(rows)
    for what, (source, n, rejected) in cal.side_files.items():
        line = f"{what}: {n:,} rows read from {source}, {n - len(rejected):,} used, "
        line += f"{len(rejected):,} rejected"
        if len(rejected):
            counts = rejected["reason"].value_counts()
            first_rows = ", ".join(str(r) for r in rejected["row"].head(5))
            line += f" ({'; '.join(f'{k}: {v}' for k, v in counts.items())}; first: {first_rows})"
        out.append(line)
    arr = Table("class", "entry", "arrivals", "per day (avg)", "weekday factors",
                title="arrivals", title_justify="left")  # fmt: skip
    for name, a in cal.arrivals.items():
        arr.add_row(
            name,
            a.entry,
            f"{a.arrivals:,}",
            f"{sum(a.hourly_rates):,.1f}",
            "fitted" if a.weekday_fitted else "flat",
        )
    out.append(arr)
    svc = Table("sector", "services", "family", "mean (min)", "KS D", title="service times",
                title_justify="left")  # fmt: skip
    for name, s in cal.service.items():
        f = s.chosen
        svc.add_row(
            name,
            f"{s.n:,}",
            f.family if f else "kept from base",
            f"{f.mean:.3f}" if f else "–",
            f"{f.ks_d:.4f}" if f else "–",
        )
    out.append(svc)
    wf = cal.workforce
    if wf.absence_rate is not None:
        out.append(f"absence rate {wf.absence_rate:.4f} from {wf.shifts_rostered:,} worker-shifts")
    for b in cal.breakdowns.values():
        if b.failures:
            out.append(
                f"{b.sector}: {b.failures} failures, MTTF {b.mttf_minutes:,.0f} min per station"
            )
    for note in cal.notes:
        out.append(f"note: {note}")
    if validation is not None:
        out.append(
            f"validation: {validation.share_within:.0%} of {len(validation.table)} metrics on "
            f"{validation.test_window.minutes / 1440:g} held-out day(s) within the twin's 95% "
            "prediction interval"
        )
    return out
