"""The live dashboard: a site on a policy server, watched (``synctwin dashboard --live``).

Run it with ``synctwin dashboard --live URL --site NAME`` (which starts ``solara run
experiments.dashboard.live_app`` with its options in the environment, see
:mod:`experiments.dashboard.live_site`). The page polls the site every ``--every``
seconds in a background thread (:class:`~experiments.dashboard.live_site.LiveSite`,
a ``mesa.Model`` whose step is one poll) and shows, on named tabs laid out by Mesa's
components view:

Now
    the headline for leadership (the clock of the site's latest event, the floor, the
    worst risk ahead, the alerts); the risk ahead per sector (chance of SLA misses,
    expected misses and overtime hours within 1 and 2 hours, with no action and, in
    brackets, under the served policy; red above the threshold); the alerts, newest
    first; the queues by due time, work in service and stations down; the staff by state.
Trend
    items waiting and the chance of SLA misses per sector over the polls
    (Mesa's ``make_plot_component`` on the model's DataCollector).

Every number comes from :mod:`experiments.dashboard.live_view`, which the tests check
against the site's own state without a browser.
"""

from __future__ import annotations

import os
import threading
from html import escape
from typing import Any

import solara
from matplotlib.ticker import FuncFormatter, MaxNLocator
from mesa.visualization import make_plot_component
from mesa.visualization.utils import force_update, update_counter

from experiments.dashboard.live_site import (
    DEFAULT_EVERY_SECONDS,
    ENV_LIVE_API_KEY,
    ENV_LIVE_EVERY,
    ENV_LIVE_SITE,
    ENV_LIVE_URL,
    LiveSite,
    queue_series,
    risk_series,
)
from experiments.dashboard.live_view import (
    OVERTIME_HOT_HOURS,
    RISK_THRESHOLD,
    SectorRisk,
    display,
    headline,
    queues,
    risks,
    staff,
)
from experiments.dashboard.session import clock
from experiments.dashboard.site_client import SiteAlert, SiteClient
from experiments.dashboard.tabs import tabbed_view
from experiments.dashboard.widgets import html_block, table

HOT = "color:#c62828;font-weight:600"
MUTED = "color:#666"
_TITLE = "font-size:18px;font-weight:500;margin-bottom:4px"

#: Tab names, and the first page's layout (12 columns; rows of 30 px): the headline
#: across the top, risk and alerts beside each other, then queues and staff.
PAGE_NAMES: dict[int, str] = {0: "Now", 1: "Trend"}
_LAYOUT_NOW = [
    {"i": 0, "x": 0, "y": 0, "w": 12, "h": 3, "moved": False},
    {"i": 1, "x": 0, "y": 3, "w": 7, "h": 9, "moved": False},
    {"i": 2, "x": 7, "y": 3, "w": 5, "h": 9, "moved": False},
    {"i": 3, "x": 0, "y": 12, "w": 6, "h": 8, "moved": False},
    {"i": 4, "x": 6, "y": 12, "w": 6, "h": 8, "moved": False},
]
LiveView = tabbed_view(PAGE_NAMES, {0: _LAYOUT_NOW})


def _error(text: str | None) -> str:
    return f'<p class="synctwin-live-error" style="{HOT}">{escape(text)}</p>' if text else ""


def _num(value: int, hot: bool = False) -> str:
    return f'<span style="{HOT}">{value:,}</span>' if hot and value else f"{value:,}"


# --------------------------------------------------------------------------- panels


@solara.component
def Headline(model: LiveSite):
    """The site's clock and the line for leadership, with the poll's status."""
    update_counter.get()
    status = (
        f"Site <b>{escape(model.client.site)}</b> on {escape(model.client.url)} · polled "
        f"{model.polled_at or 'not yet'} · every {model.every_seconds:g} s"
    )
    if model.snapshot is None:
        body = (
            '<div class="synctwin-live-clock" style="font-size:28px;font-weight:500">'
            "Waiting for the site…</div>"
        )
    else:
        line = headline(model.snapshot, model.forecast, model.alerts)
        body = (
            '<div class="synctwin-live-clock" style="font-size:28px;font-weight:500">'
            f"{clock(model.snapshot.minute)}</div>"
            f'<div class="synctwin-live-line" style="font-size:16px;margin:2px 0">'
            f"{escape(line)}</div>"
        )
    html_block(
        f'{body}<div class="synctwin-live-status" style="{MUTED}">{status}</div>'
        f"{_error(model.error)}",
        "synctwin-live-headline",
    )


def _risk_cell(r: SectorRisk) -> str:
    style = HOT if r.hot_misses else ""
    return (
        f'<span style="{style}">{r.p_miss:.0%} · {r.expected_misses:.0f}</span> '
        f'<span style="{MUTED}">[{r.policy_p_miss:.0%} · {r.policy_expected_misses:.0f}]</span>'
    )


def _overtime_cell(r: SectorRisk) -> str:
    style = HOT if r.hot_overtime else ""
    return (
        f'<span style="{style}">{r.expected_overtime_hours:.1f}</span> '
        f'<span style="{MUTED}">[{r.policy_expected_overtime_hours:.1f}]</span>'
    )


@solara.component
def Risk(model: LiveSite):
    """The forecast per sector: misses and overtime within each horizon, no action vs policy."""
    update_counter.get()
    head = (
        f'<div style="{_TITLE}">Risk ahead</div>'
        f'<div style="{MUTED};margin-bottom:6px">Chance of any SLA miss · expected misses, '
        "and expected overtime hours, if nothing changes; under the served policy in "
        f"[brackets]. Red: a chance of {RISK_THRESHOLD:.0%} or more, or "
        f"{OVERTIME_HOT_HOURS:g}+ overtime hours.</div>"
    )
    fc = model.forecast
    if fc is None:
        html_block(head + _error(model.forecast_error or "no forecast yet"), "synctwin-live-risk")
        return
    rows, attrs = [], []
    for sector, by_hours in risks(fc).items():
        name = "<b>Total</b>" if sector == "total" else escape(display(sector))
        rows.append(
            [name, *(_risk_cell(r) for r in by_hours), *(_overtime_cell(r) for r in by_hours)]
        )
        attrs.append(f'data-sector="{escape(sector)}"' + (' class="hot"' * any(
            r.hot for r in by_hours)))  # fmt: skip
    cols = [
        "Sector",
        *(f"misses, next {h:g} h" for h in fc.hours),
        *(f"overtime h, next {h:g} h" for h in fc.hours),
    ]
    note = f'<div style="{MUTED}">Forecast at {clock(fc.minute)}, {fc.samples} rollouts.</div>'
    html_block(
        head + table(cols, rows, attrs) + note + _error(model.forecast_error),
        "synctwin-live-risk",
        style="height:100%;overflow-y:auto",
    )


def _alert_item(a: SiteAlert) -> str:
    what = "SLA misses" if a.risk == "sla_misses" else "overtime"
    unit = "misses" if a.risk == "sla_misses" else "overtime h"
    facts = [f"by {clock(a.by_minute).split(' · ')[1]}"] if a.by_minute is not None else []
    if a.probability is not None:
        facts.append(f"{a.probability:.0%} likely")
    if a.expected is not None:
        facts.append(f"about {a.expected:.0f} {unit}")
    if a.expected_cost is not None:
        facts.append(f"cost about {a.expected_cost:,.0f}")
    lines = [
        f"<b>{clock(a.minute)} · {escape(display(a.sector))} · {what}</b> "
        f'<span style="{MUTED}">({escape(", ".join(facts))})</span>',
        escape(a.message),
    ]
    p = a.prevention
    if p is not None and p.headline and p.headline not in a.message:  # often worded in it
        saves = f" (saves about {p.cost_saved:,.0f})" if p.cost_saved else ""
        lines.append(f"Prevention: {escape(p.headline)}{saves}")
    if a.outcome is None:
        lines.append(f'<span style="{MUTED}">Outcome: not known yet</span>')
    else:
        seen = f" ({a.outcome.observed:g} observed)" if a.outcome.observed is not None else ""
        verdict = "it happened" if a.outcome.happened else "it did not happen"
        lines.append(f"Outcome: {verdict}{seen}")
    return '<li class="synctwin-alert" style="margin-bottom:6px">' + "<br>".join(lines) + "</li>"


@solara.component
def Alerts(model: LiveSite):
    """The site's alerts, newest first (or why there are none)."""
    update_counter.get()
    head = f'<div style="{_TITLE}">Alerts</div>'
    if model.alerts is None:
        body = f'<p style="{MUTED}">no alerts route on this server</p>'
    elif not model.alerts:
        body = f'<p style="{MUTED}">No alerts so far.</p>'
    else:
        items = "".join(_alert_item(a) for a in model.newest_alerts)
        body = f'<ol style="padding-left:18px;margin:0">{items}</ol>'
    html_block(
        head + body + _error(model.alerts_error),
        "synctwin-live-alerts",
        style="height:100%;overflow-y:auto",
    )


@solara.component
def Queues(model: LiveSite):
    """Per sector: items waiting by due time, in service, and stations down."""
    update_counter.get()
    if model.snapshot is None:
        return
    qs = queues(model.snapshot)
    cols = ["Sector", "overdue", "due ≤ 1 h", "later", "waiting", "in service", "stations down"]
    rows = [
        [
            escape(display(q.sector)),
            _num(q.overdue, hot=True),
            _num(q.due_within_1h),
            _num(q.later),
            f"<b>{q.waiting:,}</b>",
            _num(q.in_service),
            _num(q.stations_down, hot=True),
        ]
        for q in qs
    ]
    attrs = [f'data-sector="{escape(q.sector)}"' for q in qs]
    html_block(
        f'<div style="{_TITLE}">Queues by due time</div>' + table(cols, rows, attrs),
        "synctwin-live-queues",
    )


@solara.component
def Staff(model: LiveSite):
    """Per sector: the people there by state, and how many of them are agency staff."""
    update_counter.get()
    if model.snapshot is None:
        return
    st = staff(model.snapshot)
    cols = ["Sector", "working", "idle", "on break", "in transfer", "overtime", "on floor"]
    cols.append("agency")
    rows = [
        [escape(display(s.sector)), _num(s.working), _num(s.idle), _num(s.on_break),
         _num(s.in_transfer), _num(s.overtime, hot=True), f"<b>{s.on_floor}</b>", _num(s.flex)]
        for s in st
    ]  # fmt: skip
    attrs = [f'data-sector="{escape(s.sector)}"' for s in st]
    html_block(
        f'<div style="{_TITLE}">Staff by state</div>' + table(cols, rows, attrs)
        + f'<div style="{MUTED}">In transfer: walking to this sector. Agency: flex staff '
        "among those here.</div>",
        "synctwin-live-staff",
    )  # fmt: skip


# --------------------------------------------------------------------------- trend


def _trend_axis(model: LiveSite, title: str, ylabel: str) -> Any:
    """A post_process for Mesa's plot: x = DataCollector row -> the site's clock."""

    def post(ax: Any) -> None:
        collector = model.datacollector
        minutes = [] if collector is None else collector.model_vars.get("minute", [])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.xaxis.set_major_formatter(
            FuncFormatter(
                lambda x, _: (
                    clock(minutes[int(x)]).split(" · ")[1] if 0 <= int(x) < len(minutes) else ""
                )
            )
        )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("site clock (one point per new state)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)

    return post


def components(model: LiveSite) -> list[tuple[Any, int]]:
    """The page's components: (component, page)."""
    out: list[tuple[Any, int]] = [(Headline, 0), (Risk, 0), (Alerts, 0), (Queues, 0), (Staff, 0)]
    if model.sectors:  # the series exist once the first state came in
        waiting, _ = make_plot_component(
            [queue_series(s) for s in model.sectors],
            post_process=_trend_axis(model, "Items waiting per sector", "items"),
            page=1,
        )
        chance, _ = make_plot_component(
            [risk_series(s) for s in model.sectors],
            post_process=_trend_axis(
                model, f"Chance of SLA misses within {max(model.hours):g} h", "probability"
            ),
            page=1,
        )
        out += [(waiting, 1), (chance, 1)]
    return out


# --------------------------------------------------------------------------- the page


def live_site_from_env() -> LiveSite:
    """The model for the options ``synctwin dashboard --live`` put in the environment."""
    client = SiteClient(
        os.environ.get(ENV_LIVE_URL, ""),
        os.environ.get(ENV_LIVE_SITE, ""),
        api_key=os.environ.get(ENV_LIVE_API_KEY) or None,
    )
    every = float(os.environ.get(ENV_LIVE_EVERY) or DEFAULT_EVERY_SECONDS)
    return LiveSite(client, every_seconds=every)


@solara.component
def Page():
    """The app: the site polled in the background, its panels on named tabs."""
    model = solara.use_memo(live_site_from_env, [])

    def poll_forever(cancel: threading.Event) -> None:
        while True:
            model.step()
            force_update()
            if cancel.wait(model.every_seconds):  # set when the page closes
                return

    solara.use_thread(poll_forever, dependencies=[model], intrusive_cancel=False)
    update_counter.get()
    solara.AppBarTitle(f"SyncTwin live · {model.client.site}")
    with solara.Sidebar(), solara.Card("Live site", classes=["synctwin-live-site"]):
        html_block(
            f"Watching site <b>{escape(model.client.site)}</b> on "
            f"{escape(model.client.url)}, every {model.every_seconds:g} s.",
            "synctwin-hint",
        )
        solara.Button("Poll now", on_click=lambda: (model.step(), force_update()))
    parts = solara.use_memo(lambda: components(model), [model.sectors])
    LiveView(parts, model)
