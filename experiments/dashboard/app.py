"""The planner dashboard: Mesa's SolaraViz page over :class:`PlannerTwin`.

Run it with ``synctwin dashboard`` (which starts ``solara run experiments.dashboard.app``).
The page is Mesa's own: SolaraViz's sidebar holds *Reset / Play / Step* and the
model parameters (Mesa applies changed parameters on *Reset*, which rebuilds the
model from them); the main area holds the components below, on two named tabs
(:data:`PAGE_NAMES`; Mesa's own view numbers them "Page 0", "Page 1"):

Live
    the clock and KPIs of both strategies; queue by due time and staffing per sector
    (strategy A); the advisor's answer at the current state as the policy server gives
    it (headline or hold, ranked actions with their reasons); the risk ahead (the
    forecast of new SLA misses per sector); queues over time (Mesa's
    ``make_plot_component`` on the session's DataCollector); SLA misses, overtime,
    backlog and cost accumulating, A against B.
Side by side
    every KPI of A and B on the same seed and what-if, and per-sector misses and overtime.

The scenario is chosen above Mesa's controls: its sectors decide which what-if
parameters exist (headcount per sector, which sectors can break down), so a new
scenario rebuilds the whole SolaraViz with its own parameters.

``synctwin dashboard`` passes its options in the environment: ``SYNCTWIN_DASHBOARD_SCENARIO``
(a built-in name or a YAML path) and ``SYNCTWIN_DASHBOARD_POLICIES`` (bundle directories
separated by ``os.pathsep``, offered as ``policy:DIR`` strategies and advisors).
"""

from __future__ import annotations

import os
from html import escape
from typing import Any

import solara
from matplotlib.ticker import FuncFormatter, MaxNLocator
from mesa.visualization import Slider, SolaraViz, make_plot_component, solara_viz
from mesa.visualization.utils import update_counter

from agents import strategy_names
from experiments.comparison.strategies import POLICY_PREFIX
from experiments.dashboard.session import (
    ENV_POLICIES,
    ENV_SCENARIO,
    NO_COMPARE,
    RISK_EVERY_MINUTES,
    STEP_MINUTES,
    PlannerTwin,
    clock,
    staffing,
)
from experiments.dashboard.tabs import tabbed_view
from experiments.dashboard.whatif import NO_BREAKDOWN, breakdown_sectors
from experiments.dashboard.widgets import figure, html_block, table
from policies.advice import Advice as AdviceAnswer
from policies.impact import Forecast
from twin.scenario import Scenario, ScenarioError, builtin_names, load_scenario
from twin.snapshot import N_BUCKETS

COLOR_A, COLOR_B = "#1565c0", "#ef6c00"
OVERDUE, DUE_SOON, LATER = "#c62828", "#f9a825", "#90a4ae"
OWN, BORROWED, FLEX = "#1565c0", "#2e7d32", "#8e24aa"


# --------------------------------------------------------------------------- configuration


def policy_strategies() -> list[str]:
    """``policy:DIR`` for every bundle directory the command line passed."""
    dirs = [d for d in os.environ.get(ENV_POLICIES, "").split(os.pathsep) if d]
    return [f"{POLICY_PREFIX}{d}" for d in dirs]


def scenario_choices() -> list[str]:
    """The built-in scenarios, and the command line's scenario if it is a file."""
    names = builtin_names()
    given = os.environ.get(ENV_SCENARIO)
    return names if not given or given in names else [given, *names]


def model_params(scenario_name: str, scenario: Scenario) -> dict[str, Any]:
    """SolaraViz ``model_params`` for ``scenario``: the fixed scenario name and every what-if.

    Strategy B defaults to the first policy bundle given, else ``threshold``; the
    advisor likewise. Strategy A defaults to ``static``: the plan as written, which
    is what a planner watches and the advisor comments on.
    """
    policies = policy_strategies()
    strategies = [*strategy_names(), *policies]
    smart = policies[0] if policies else "threshold"
    hours = scenario.horizon_minutes / 60
    params: dict[str, Any] = {
        "scenario": scenario_name,
        "strategy": _select("Strategy A", "static", strategies),
        "compare": _select("Strategy B (side by side)", smart, [NO_COMPARE, *strategies]),
        "advisor": _select("Advice from", smart, strategies),
        "seed": Slider("Seed", 0, 0, 99, 1),
        "demand": Slider("Demand multiplier", 1.0, 0.5, 2.0, 0.05),
        "absenteeism": Slider("Extra absence (share of staff)", 0.0, 0.0, 0.5, 0.01),
        "breakdown_sector": _select(
            "Breakdown in", NO_BREAKDOWN, [NO_BREAKDOWN, *breakdown_sectors(scenario)]
        ),
        "breakdown_hour": Slider("Breakdown starts (hour)", 10.0, 0.0, hours - 0.5, 0.5),
        "breakdown_minutes": Slider("Breakdown lasts (minutes)", 120, 15, 480, 15),
        "breakdown_share": Slider("Stations down (share)", 0.5, 0.1, 1.0, 0.1),
    }
    for s in scenario.sectors:
        params[f"headcount_{s.name}"] = Slider(f"{s.display} staff (% of roster)", 100, 50, 150, 5)
    params["predict_impact"] = {"type": "Checkbox", "value": True, "label": "Predict impact"}
    return params


def _select(label: str, value: str, values: list[str]) -> dict[str, Any]:
    return {"type": "Select", "label": label, "value": value, "values": values}


def initial_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments Mesa's *Reset* would pass with every parameter at its default."""
    out = {}
    for k, v in params.items():
        if isinstance(v, Slider):
            out[k] = v.value
        elif isinstance(v, dict) and "type" in v:
            out[k] = v["value"]
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- components


def _hours_axis(ax: Any) -> None:
    """x = DataCollector row (one per step) -> clock time."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: clock(x * STEP_MINUTES).split(" · ")[1])
    )
    ax.grid(alpha=0.3)


def _queue_post_process(ax: Any) -> None:
    ax.set_title("Items waiting per sector (strategy A)", fontsize=10)
    ax.set_ylabel("items waiting")
    _hours_axis(ax)
    ax.set_xlabel("time")


@solara.component
def Status(model: PlannerTwin):
    """Clock, step, settings in force, and the headline KPIs of A and B."""
    update_counter.get()
    if model.error is not None:
        solara.Error(f"Cannot run this what-if: {model.error}", classes=["synctwin-error"])
        return
    rows = []
    for role, arm in (("A", model.a), ("B", model.b)):
        if arm is None:
            continue
        k = arm.kpis().total
        rows.append(
            [
                f"<b>{role}: {escape(arm.strategy)}</b>",
                f"{k.sla_misses:,}",
                f"{k.sla_attainment:.1%}",
                f"{k.overtime_hours:.1f}",
                f"{k.backlog_end:,}",
                f"{k.transfers}",
                f"{k.total_cost:,.0f}",
            ]
        )
    head = ["", "SLA misses", "on time", "overtime h", "backlog", "transfers", "total cost"]
    done = (
        "" if model.running else "<p><b>The horizon is reached:</b> press Reset to run again.</p>"
    )
    html_block(
        f'<div class="synctwin-clock" style="font-size:30px;font-weight:500">'
        f"{clock(model.minute)}</div>"
        f'<div class="synctwin-step" style="color:#555;margin-bottom:8px">Step {model.steps} '
        f"({STEP_MINUTES} min each) · {escape(model.describe())}</div>"
        f"{table(head, rows)}{done}",
        "synctwin-status",
    )


@solara.component
def SectorBoard(model: PlannerTwin):
    """Strategy A now: queue by due time, and who is working where, per sector."""
    update_counter.get()
    if model.a is None or model.scenario is None:
        return
    snap = model.a.model.snapshot()
    names = [s.display for s in model.scenario.sectors]
    overdue, soon, later = [], [], []
    for st in snap.sectors:
        buckets = [sum(c[b] for c in st.queue.values()) for b in range(N_BUCKETS)]
        overdue.append(buckets[0])
        soon.append(buckets[1] + buckets[2])
        later.append(sum(buckets[3:]))
    staff = staffing(snap)
    kpis = model.a.kpis().sectors
    fig = figure(6.4, 3.8)
    ax_q, ax_s = fig.subplots(1, 2, sharey=True)
    y = range(len(names))
    ax_q.barh(y, overdue, color=OVERDUE, label="overdue")
    ax_q.barh(y, soon, left=overdue, color=DUE_SOON, label="due within 60 min")
    ax_q.barh(y, later, left=[a + b for a, b in zip(overdue, soon, strict=True)], color=LATER,
              label="due later")  # fmt: skip
    ax_q.set_yticks(list(y), names)
    ax_q.invert_yaxis()
    ax_q.set_title("Queue by due time", fontsize=10)
    ax_q.set_xlabel("items waiting")
    ax_q.legend(fontsize=7, loc="lower right")
    st = [staff[s] for s in model.scenario.sector_names]
    own = [s.own for s in st]
    borrowed = [s.borrowed_in for s in st]
    flex = [s.flex for s in st]
    ax_s.barh(y, own, color=OWN, label="own staff")
    ax_s.barh(y, borrowed, left=own, color=BORROWED, label="borrowed in")
    ax_s.barh(y, flex, left=[a + b for a, b in zip(own, borrowed, strict=True)], color=FLEX,
              label="agency")  # fmt: skip
    for i, name in enumerate(model.scenario.sector_names):
        notes = []
        if st[i].lent_out:
            notes.append(f"{st[i].lent_out} lent out")
        if st[i].absent:
            notes.append(f"{st[i].absent} absent")
        if kpis[name].overtime_hours >= 0.05:
            notes.append(f"{kpis[name].overtime_hours:.1f} OT h")
        if notes:
            ax_s.text(own[i] + borrowed[i] + flex[i] + 0.5, i, ", ".join(notes), va="center",
                      fontsize=7)  # fmt: skip
    total = model.a.kpis().total
    ax_s.set_title(f"Staff on the floor ({total.transfers} transfers so far)", fontsize=10)
    ax_s.set_xlabel("workers")
    widest = max([a + b + c for a, b, c in zip(own, borrowed, flex, strict=True)] + [1])
    ax_s.set_xlim(0, widest * 1.8)  # room for the notes
    ax_s.legend(fontsize=7, loc="lower right")
    solara.FigureMatplotlib(fig, format="png")


@solara.component
def Advice(model: PlannerTwin):
    """The advisor's answer now, as ``POST /v1/recommend`` gives it: the headline (or the
    hold), the ranked actions with their reasons, and what it proposed but does not
    recommend."""
    update_counter.get()
    key = (id(model), model.steps)
    answer, error = solara.use_memo(lambda: _advice(model), dependencies=[key])
    if model.a is None:
        return
    head = (
        f'<div style="font-size:18px;font-weight:500">Advice from {escape(model.advisor_name)} '
        f"at {clock(model.minute)}</div>"
    )
    if error is not None or answer is None:
        html_block(head + f'<p style="color:#c62828">{escape(error or "")}</p>', "synctwin-advice")
        return
    color = {"act": "#e65100", "hold": "#2e7d32", "unranked": "#555"}[answer.status]
    body = [
        f'<div class="synctwin-headline" style="color:{color};font-size:16px;'
        f'font-weight:500;margin:4px 0 6px">{escape(answer.headline)}</div>'
    ]
    if answer.actions:
        items = []
        for a in answer.actions:
            why = "; ".join(r.text for r in a.reasons)
            why_html = f'<div style="color:#555">Why: {escape(why)}</div>' if why else ""
            plan = (
                f'<div style="color:#c62828">Against the plan: '
                f"{escape('; '.join(a.against_plan))}</div>"
                if a.against_plan
                else ""
            )
            items.append(f'<li style="margin-bottom:4px">{escape(a.text)}{plan}{why_html}</li>')
        body.append(
            f'<ol class="synctwin-actions" style="padding-left:18px;margin:0">{"".join(items)}</ol>'
        )
    if answer.declined:
        rows = "".join(f"<li>{escape(d.text)}</li>" for d in answer.declined)
        body.append(
            '<details style="color:#777;margin-top:6px"><summary>'
            f"Not recommended ({len(answer.declined)})</summary>"
            f'<ul style="padding-left:18px;margin:0">{rows}</ul></details>'
        )
    html_block(head + "".join(body), "synctwin-advice", style="height:100%;overflow-y:auto")


def _advice(model: PlannerTwin) -> tuple[AdviceAnswer | None, str | None]:
    if model.a is None:
        return None, None
    try:
        return model.advice_answer(), None
    except (ValueError, OSError) as err:  # a bundle that does not fit this what-if
        return None, f"No advice from {model.advisor_name}: {err}"


@solara.component
def Risk(model: PlannerTwin):
    """The risk forecast: expected new SLA misses per sector over the next hours, under
    the actions in force and under the advisor (``POST /v1/forecast``)."""
    update_counter.get()
    key = (id(model), model.risk_key)  # once per simulated hour: it is the costly part
    fc, error = solara.use_memo(lambda: _risk(model), dependencies=[key])
    if model.a is None or model.scenario is None:
        return
    head = (
        '<div style="font-size:18px;font-weight:500">Risk ahead</div>'
        '<div style="color:#555;margin-bottom:6px">Expected new SLA misses (chance of any) '
        f"if nothing changes; with {escape(model.advisor_name)} in brackets. "
        f"Forecast from {clock(model.risk_key * RISK_EVERY_MINUTES)}.</div>"
    )
    if fc is None:
        html_block(head + f'<p style="color:#c62828">{escape(error or "")}</p>', "synctwin-risk")
        return
    hours = [h.hours for h in fc.no_action]
    cols = ["Sector", *(f"next {h:g} h" for h in hours)]
    rows = []
    names = {s.name: s.display for s in model.scenario.sectors}
    for sector in [*model.scenario.sector_names, None]:
        cells = [names[sector] if sector else "<b>Total</b>"]
        for none, pol in zip(fc.no_action, fc.policy, strict=True):
            r = none.total if sector is None else none.sectors[sector]
            p = pol.total if sector is None else pol.sectors[sector]
            hot = r.p_any_miss.mean >= 0.5 and r.expected_misses.mean >= 1
            style = ' style="color:#c62828;font-weight:500"' if hot else ""
            cells.append(
                f"<span{style}>{r.expected_misses.mean:.0f} ({r.p_any_miss.mean:.0%})</span> "
                f'<span style="color:#555">[{p.expected_misses.mean:.0f}]</span>'
            )
        rows.append(cells)
    html_block(head + table(cols, rows), "synctwin-risk", style="height:100%;overflow-y:auto")


def _risk(model: PlannerTwin) -> tuple[Forecast | None, str | None]:
    if model.a is None:
        return None, None
    try:
        return model.risk(), None
    except (ValueError, OSError) as err:
        return None, f"No forecast from {model.advisor_name}: {err}"


@solara.component
def Accumulating(model: PlannerTwin):
    """SLA misses, overtime, backlog and cost over the day: A against B."""
    update_counter.get()
    if model.a is None:
        return
    df = model.datacollector.get_model_vars_dataframe()
    fig = figure(6.4, 4.0)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    panels = [
        ("sla_misses", "SLA misses (cumulative)"),
        ("overtime_hours", "Overtime hours (cumulative)"),
        ("backlog_end", "Backlog (items)"),
        ("total_cost", "Total cost (cumulative)"),
    ]
    for ax, (kpi, title) in zip(axes, panels, strict=True):
        for role, arm, color in (("A", model.a, COLOR_A), ("B", model.b, COLOR_B)):
            if arm is not None:
                ax.plot(df.index, df[f"{role}.{kpi}"], color=color, label=f"{role}: {arm.strategy}")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        _hours_axis(ax)
    axes[0].legend(fontsize=7, loc="upper left")
    solara.FigureMatplotlib(fig, format="png")


@solara.component
def SideBySide(model: PlannerTwin):
    """Every KPI of A and B on the same seed and what-if."""
    update_counter.get()
    if model.a is None:
        return
    if model.b is None:
        solara.Info("Choose a strategy B and press Reset to compare two strategies.")
        return
    rows = []
    for label, a, b in model.side_by_side():
        assert b is not None
        fmt = "{:.1%}" if label in ("SLA attainment", "Utilisation") else "{:,.1f}"
        rows.append([f"<b>{label}</b>", fmt.format(a), fmt.format(b), fmt.format(b - a)])
    head = ["KPI", f"A: {model.a.strategy}", f"B: {model.b.strategy}", "B − A"]
    html_block(
        f'<div style="font-size:18px;font-weight:500">Side by side at {clock(model.minute)}</div>'
        f'<div style="color:#555;margin-bottom:6px">Same seed, same what-if: '
        f"{escape(model.describe())}</div>{table(head, rows)}",
        "synctwin-side-by-side",
    )


@solara.component
def SectorComparison(model: PlannerTwin):
    """Per sector: SLA misses and overtime hours under A and B."""
    update_counter.get()
    if model.a is None or model.b is None or model.scenario is None:
        return
    ka, kb = model.a.kpis().sectors, model.b.kpis().sectors
    names = [s.display for s in model.scenario.sectors]
    fig = figure(6.4, 3.4)
    ax_m, ax_o = fig.subplots(1, 2)
    x = list(range(len(names)))
    w = 0.4
    for ax, kpi, title in (
        (ax_m, "sla_misses", "SLA misses"),
        (ax_o, "overtime_hours", "Overtime h"),
    ):
        va = [getattr(ka[s], kpi) for s in model.scenario.sector_names]
        vb = [getattr(kb[s], kpi) for s in model.scenario.sector_names]
        ax.bar([i - w / 2 for i in x], va, w, color=COLOR_A, label=f"A: {model.a.strategy}")
        ax.bar([i + w / 2 for i in x], vb, w, color=COLOR_B, label=f"B: {model.b.strategy}")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{title} per sector", fontsize=10)
    ax_m.legend(fontsize=7)
    solara.FigureMatplotlib(fig, format="png")


def components(scenario: Scenario) -> list[tuple[Any, int]]:
    """SolaraViz components: (component, page)."""
    queue_plot, _ = make_plot_component(
        [s.display for s in scenario.sectors], post_process=_queue_post_process, page=0
    )
    return [
        (Status, 0),
        (Advice, 0),
        (Risk, 0),
        (SectorBoard, 0),
        (Accumulating, 0),
        (queue_plot, 0),
        (SideBySide, 1),
        (SectorComparison, 1),
    ]


# --------------------------------------------------------------------------- the page

#: Tab names of the pages of :func:`components`.
PAGE_NAMES: dict[int, str] = {0: "Live", 1: "Side by side"}


#: Mesa's ComponentsView with these tab names (SolaraViz looks it up at render time, so
#: :func:`Page` installs it in Mesa's module).
NamedComponentsView = tabbed_view(PAGE_NAMES)


def _load(name: str) -> tuple[Scenario | None, str | None]:
    try:
        return load_scenario(name), None
    except ScenarioError as err:
        return None, str(err)


@solara.component
def Page():
    """The app: a scenario picker, and Mesa's SolaraViz for that scenario."""
    choices = scenario_choices()
    scenario_name = solara.use_reactive(os.environ.get(ENV_SCENARIO) or "default")
    scenario, error = solara.use_memo(lambda: _load(scenario_name.value), [scenario_name.value])
    params = solara.use_memo(
        lambda: model_params(scenario_name.value, scenario) if scenario else {},
        [scenario_name.value],
    )
    model = solara.use_memo(
        lambda: PlannerTwin(**initial_kwargs(params)) if scenario else None,
        [scenario_name.value],
    )
    with solara.Sidebar(), solara.Card("Operation", classes=["synctwin-operation"]):
        solara.Select("Scenario", values=choices, value=scenario_name)
        html_block(
            "Choose strategies and what-ifs below, then press <b>Reset</b> to apply them.",
            "synctwin-hint",
        )
    if scenario is None or model is None:
        solara.Error(error or "no scenario")
        return
    solara_viz.ComponentsView = NamedComponentsView  # named tabs (see NamedComponentsView)
    SolaraViz(
        model,
        components=components(scenario),
        model_params=params,
        name=f"SyncTwin planner · {scenario.name}",
        play_interval=150,
    ).key(f"viz-{scenario_name.value}")
