"""``synctwin scenarios``, ``simulate``, ``snapshot`` and ``demo``: running the twin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from experiments.cli.app import app
from experiments.cli.console import console, err_console, say, user_errors, warn_untuned
from experiments.cli.options import ScenarioOpt, SeedOpt
from experiments.cli.tables import comparison_table, kpi_table
from experiments.paths import check_output_dir, user_path
from twin.wallclock import clock

if TYPE_CHECKING:
    from twin.reality import Reality
    from twin.scenario import Scenario

# --------------------------------------------------------------------------- scenarios


@app.command()
def scenarios() -> None:
    """List the built-in scenarios."""
    from twin.scenario import builtin_names, load_scenario

    table = Table("name", "domain", "sectors", "workers", "days")
    for name in builtin_names():
        sc = load_scenario(name)
        sectors = ", ".join(sc.sector_names)
        table.add_row(name, sc.domain, sectors, str(sc.total_headcount), str(sc.horizon_days))
    console.print(table)


# --------------------------------------------------------------------------- simulate


def reality_lines(reality: Reality, scenario: Scenario) -> list[str]:
    """What a seed realized beyond the plan, in a floor manager's words (one line each)."""
    lines: list[str] = []
    summary = reality.summary(scenario)
    for cls, factors in summary.get("demand_factor_by_day", {}).items():
        if any(abs(f - 1) > 1e-9 for f in factors):
            days = ", ".join(f"{f:.2f}" for f in factors)
            lines.append(f"{cls} demand x{days} of the forecast (by day)")
    seen: dict[tuple[int, int, float], list[str]] = {}
    for sg in reality.surges:
        seen.setdefault((sg.start_minute, sg.end_minute, sg.multiplier), []).append(
            sg.item_class or "all classes"
        )
    for (a, b, mult), classes in seen.items():
        lines.append(f"unplanned surge {clock(a)}-{clock(b)}: x{mult:.2f} {', '.join(classes)}")
    for ab in reality.absences:
        lines.append(f"unplanned absence, day {ab.day}: {ab.sector} +{ab.rate:.0%}")
    for o in reality.outages:
        end = o.start_minute + o.duration_minutes
        lines.append(
            f"unplanned outage: {o.sector} {o.stations} stations "
            f"{clock(o.start_minute)}-{clock(end)}"
        )
    return lines or ["nothing: reality followed the plan"]


@app.command()
def simulate(
    scenario: ScenarioOpt = "default",
    strategy: Annotated[
        str, typer.Option(help="static, threshold, lookahead, random or policy:BUNDLE_DIR")
    ] = "static",
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="directory for kpis.json + timeseries", callback=user_path),
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="override the scenario's horizon")] = None,
    log_events: Annotated[
        Path | None,
        typer.Option(
            help="write the twin's event log into this directory: the calibration CSVs "
            "and floor_events.jsonl, the stream a live twin replays",
            callback=user_path,
        ),
    ] = None,
) -> None:
    """Run the twin of SCENARIO under STRATEGY and print its KPIs."""
    from rich.progress import Progress

    from agents import tuning_of
    from experiments.comparison.strategies import controller_for
    from twin.eventlog import EventLog
    from twin.runner import simulate as run_sim
    from twin.scenario import load_scenario, scenario_from_dict

    log = EventLog() if log_events is not None else None
    with user_errors():
        for path, what in ((out, "--out"), (log_events, "--log-events")):
            if path is not None:
                check_output_dir(path, what)
        sc = load_scenario(scenario)
        if days is not None:
            sc = scenario_from_dict(
                sc.model_dump(mode="json") | {"horizon_days": days}, f"{sc.name} with --days"
            )
        controller = controller_for(strategy, sc, seed)
        label = tuning_of(controller)
        warn_untuned({(sc.name, strategy): label} if label else {})
        with Progress(console=err_console, transient=True, disable=sc.horizon_days < 2) as bar:
            task = bar.add_task(f"{sc.name} / {strategy}", total=sc.horizon_minutes)

            def tick(m) -> None:
                if m.minute % 60 == 0:
                    bar.update(task, completed=m.minute)

            model = run_sim(sc, controller, seed, on_tick=tick, event_log=log)
    k = model.kpis()
    cols = {"total": k.total.model_dump()} | {n: r.model_dump() for n, r in k.sectors.items()}
    console.print(kpi_table(f"{sc.name} / {strategy} / seed {seed}", cols))
    if sc.uncertainty is not None:
        say("beyond the plan, this seed realized:")
        for line in reality_lines(model.reality, sc):
            say(f"  {line}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "kpis.json").write_text(json.dumps(k.flat(), indent=2) + "\n")
        (out / "run.json").write_text(
            json.dumps(
                {
                    "scenario": sc.name,
                    "scenario_digest": sc.digest,
                    "strategy": strategy,
                    "seed": seed,
                    "horizon_days": sc.horizon_days,
                },
                indent=2,
            )
            + "\n"
        )
        model.timeseries().to_parquet(out / "timeseries.parquet", index=False)
        names = ["kpis.json", "timeseries.parquet", "run.json"]
        if sc.uncertainty is not None:
            realized = model.reality.summary(sc)
            (out / "realized.json").write_text(json.dumps(realized, indent=2) + "\n")
            names.append("realized.json")
        written = (out / f for f in names)
        say("wrote " + ", ".join(map(str, written)))
    if log is not None and log_events is not None:
        files = log.write(log_events, sc)
        say(f"wrote event log: {', '.join(str(f) for f in files)}")


# --------------------------------------------------------------------------- snapshot


@app.command()
def snapshot(
    scenario: ScenarioOpt = "default",
    seed: SeedOpt = 0,
    at: Annotated[int, typer.Option("--at", help="minute since the start of day 0")] = 600,
    strategy: Annotated[str, typer.Option(help="strategy that runs until then")] = "static",
) -> None:
    """Run to minute AT and print the live-state snapshot as JSON."""
    import numpy as np

    from experiments.comparison.strategies import controller_for
    from twin.model import OperationModel
    from twin.runner import run
    from twin.scenario import load_scenario

    with user_errors():
        sc = load_scenario(scenario)
        if not 0 <= at <= sc.horizon_minutes:
            raise typer.BadParameter(f"--at must be within 0..{sc.horizon_minutes} minutes")
        model = OperationModel(sc, rng=np.random.default_rng(seed))
        run(model, controller_for(strategy, sc, seed), minutes=at)
    sys.stdout.write(model.snapshot().model_dump_json(indent=2) + "\n")


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    seeds: Annotated[int, typer.Option(min=2, help="seeds 0..N-1 per strategy")] = 3,
    timesteps: Annotated[int, typer.Option(min=100, help="env steps of brief training")] = 8000,
    out: Annotated[
        Path, typer.Option(help="output directory (replaced on every run)", callback=user_path)
    ] = Path("runs/demo"),
) -> None:
    """The main job on the default scenario: baselines, brief training, export, comparison."""
    from experiments.cli.demo import run_demo

    with user_errors():
        check_output_dir(out)
        run_demo(out, seeds, timesteps, console, err_console, comparison_table)
