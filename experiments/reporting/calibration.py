"""The calibration fit report: what was read, what was fitted, how well it fits.

One report, two formats, chosen by the file's suffix: ``.html`` (one self-contained
file, plots embedded as PNG) or ``.md`` (Markdown, plots written as PNG files into
``<name>_files/`` next to it); both built as one
:class:`~experiments.reporting.document.Document`. Sections:

1. the data: rows read, used and rejected, rejections by reason, the first rejected rows;
2. arrivals: fitted vs observed arrivals per hour of the day and per day, per class;
3. service times: candidates with log-likelihood, AIC and KS statistic per sector,
   histograms with the fitted density and QQ plots;
4. routing, due rules, workforce (absence, headcount) and breakdowns;
5. notes: everything kept from the base scenario and why;
6. with ``--validate``: the twin vs the held-out days.

The figures are drawn in :mod:`experiments.reporting.calibration_figures`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.calibration.data import EventTable
from experiments.calibration.fit import WEEKDAYS, Calibration, FamilyFit
from experiments.calibration.validation import Validation
from experiments.reporting import calibration_figures as figures
from experiments.reporting.document import Document, Section

MAX_REJECTED_SHOWN = 20
# cells: 3 decimals, or 3 significant digits under 0.001
DIGITS = 3
GENERAL_BELOW = 1e-3


def _table(section: Section, data: pd.DataFrame | list[dict[str, object]]) -> None:
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    section.table(frame, digits=DIGITS, general_below=GENERAL_BELOW)


# --------------------------------------------------------------------------- sections


def rejection_section(section: Section, table: EventTable, limit: int = MAX_REJECTED_SHOWN) -> None:
    """Rows read, used and rejected; rejections by reason; the first rejected rows."""
    section.paragraph(
        f"{table.source}: {table.rows_read:,} rows read, {table.rows_used:,} used, "
        f"{table.rows_rejected:,} rejected."
    )
    if table.rows_rejected:
        counts = table.reason_counts()
        _table(section, pd.DataFrame({"reason": counts.index, "rows": counts.values}))
        first = table.first_rejected(limit)
        section.paragraph(
            f"First {len(first)} rejected rows ({table.row_label} numbers in the file):"
        )
        _table(
            section,
            pd.DataFrame(
                {
                    table.row_label: first["row"].astype(int).astype(str).to_numpy(),
                    "reason": first["reason"].to_numpy(),
                    "detail": first["detail"].to_numpy(),
                }
            ),
        )


def _arrival_section(doc: Document, cal: Calibration) -> None:
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
    section = doc.section("Arrivals")
    section.paragraph(
        "Poisson maximum likelihood per hour of the day (and weekday, when a likelihood-ratio "
        "test finds a weekday effect at the 1% level). Hourly rates describe an average "
        "observed day; factors scale it per weekday."
    )
    _table(section, rows)
    if cal.arrivals:
        section.figure(figures.arrivals_by_hour(cal), "arrivals_by_hour")
        section.figure(figures.arrivals_by_day(cal), "arrivals_by_day")


def _family_text(f: FamilyFit | None) -> str:
    if f is None:
        return "–"
    if f.family == "empirical":
        return f"empirical ({len(f.params['samples'])} quantiles, mean {f.mean:.3f})"
    return f.family + " " + ", ".join(f"{k}={v:g}" for k, v in f.params.items())


def _service_section(doc: Document, cal: Calibration) -> None:
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
    section = doc.section("Service times")
    section.paragraph(
        "Start-to-finish durations of completed services by the sector's own staff, weighted "
        "to undo the length bias of services cut short by breaks, shift ends and the log's "
        "edges. Exponential and lognormal are fitted by maximum likelihood and compared by "
        "AIC; a CV under 1% means deterministic; if the best family fails a KS test at 1% "
        "with 200+ durations, the empirical distribution is used. KS p-values are "
        "approximate (parameters estimated from the same data)."
    )
    _table(section, rows)
    _table(section, cands)
    fitted = [s for s in cal.service.values() if s.chosen is not None]
    if fitted:
        section.figure(figures.service_plots(fitted), "service_times")


def _routing_section(doc: Document, cal: Calibration) -> None:
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
    section = doc.section("Routing")
    section.paragraph(
        "Share of each next sector (or exit) after a finished stay: the multinomial maximum "
        "likelihood estimate."
    )
    _table(section, rows)
    if unfinished:
        section.paragraph(
            "Stays whose next step is not in the log (still in progress at its end): "
            + ", ".join(f"{k} {v:,}" for k, v in unfinished.items())
            + "."
        )


def _due_section(doc: Document, cal: Calibration) -> None:
    if not cal.due:
        return
    rows = [
        {"class": n, "rule": str(d.rule), "items": d.items, "reproduced": d.match, "how": d.how}
        for n, d in cal.due.items()
    ]
    _table(doc.section("Due rules (from the 'due' column)"), rows)


def _workforce_section(doc: Document, cal: Calibration) -> None:
    wf = cal.workforce
    section = doc.section("Workforce")
    if wf.absence_rate is not None and wf.absence_ci is not None:
        lo, hi = wf.absence_ci
        section.paragraph(
            f"Absence rate {wf.absence_rate:.4f} (95% Wilson interval {lo:.4f}–{hi:.4f}) "
            f"from {wf.shifts_rostered:,} rostered worker-shifts (absent / rostered)."
        )
        _table(
            section,
            pd.DataFrame(
                {
                    "sector": list(wf.absence_by_sector),
                    "absence rate": list(wf.absence_by_sector.values()),
                }
            ),
        )
    else:
        section.paragraph("No attendance file: absence rate kept from the base scenario.")
    if wf.headcount is not None:
        section.paragraph(f"Headcount from {wf.headcount_source}:")
        rows = [
            {"sector": s, "shift": sh, "workers": n}
            for s, per in wf.headcount.items()
            for sh, n in per.items()
        ]
        _table(section, rows)
    else:
        section.paragraph("Shifts and headcount kept from the base scenario.")


def _breakdown_section(doc: Document, cal: Calibration) -> None:
    if not cal.breakdowns:
        return
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
    section = doc.section("Breakdowns")
    section.paragraph(
        "Time to failure: exponential, rate = failures / station-minutes up. The log does "
        "not say which station failed, so the per-station rate assumes the base scenario's "
        "station count. Repairs: failures and repairs matched first in, first out (the mean "
        "is exact; the spread is approximate when repairs overlap)."
    )
    _table(section, rows)


def validation_section(doc: Document, v: Validation) -> None:
    """The held-out comparison: table and throughput plot."""
    t = v.table.rename(
        columns={"twin_mean": "twin mean", "twin_low": "twin 95% PI low", "twin_high": "high"}
    )
    fit_days = v.fit_window.minutes / 1440
    test_days = v.test_window.minutes / 1440
    section = doc.section("Validation on held-out days")
    section.paragraph(
        f"Fitted on the first {fit_days:g} day(s), compared on the last {test_days:g} "
        f"held-out day(s); the twin ran {len(v.seeds)} seeds, starting empty at the beginning "
        "of the fitting days (at most a week earlier). 'within' = the data lie inside the "
        "twin's 95% prediction interval for one run. "
        f"{v.share_within:.0%} of metrics are within."
    )
    _table(section, t)
    fig = figures.validation_throughput(v)
    if fig is not None:
        section.figure(fig, "validation_throughput")


def build_report(cal: Calibration, validation: Validation | None = None) -> Document:
    """Every section of the report, in order."""
    s = cal.stats
    w = cal.window
    first = cal.table.origin + pd.Timedelta(minutes=w.start)
    last = cal.table.origin + pd.Timedelta(minutes=w.end)
    doc = Document(
        f"Calibration: {cal.scenario.name}",
        heading=f"Calibration of '{cal.scenario.name}' from {Path(cal.table.source).name}",
        subtitle=(
            f"Base scenario '{cal.base.name}'. Fitted period {first:%Y-%m-%d %H:%M} to "
            f"{last:%Y-%m-%d %H:%M} ({w.minutes / 1440:g} days); {s['items']:,} items, "
            f"{s['arrivals']:,} arrivals, {s['in_progress_at_start']:,} items already in "
            f"progress when the log begins, {s['service_pairs']:,} completed and "
            f"{s['interrupted_services']:,} interrupted services."
        ),
    )
    rejection_section(doc.section("Data"), cal.table)
    _arrival_section(doc, cal)
    _service_section(doc, cal)
    _routing_section(doc, cal)
    _due_section(doc, cal)
    _workforce_section(doc, cal)
    _breakdown_section(doc, cal)
    doc.section("Kept from the base scenario, and other notes").bullets(
        [
            *cal.notes,
            *cal.workforce.notes,
            "costs, cross-training, transfer and overtime limits, flex pool, plan, tick and "
            "decision interval: from the base",
        ]
    )
    if validation is not None:
        validation_section(doc, validation)
    return doc


def write_report(cal: Calibration, path: Path, validation: Validation | None = None) -> Path:
    """Write the report as HTML (``.html``/``.htm``) or Markdown (anything else, e.g. ``.md``)."""
    return build_report(cal, validation).write(Path(path))


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
