"""The ``synctwin`` command line.

User errors (an unknown scenario, a bad YAML field, an unknown strategy, a
malformed snapshot) end with a one-paragraph message and exit code 2, never a
traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="synctwin",
    help="SyncTwin: a multi-agent RL digital twin of an operation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: print numbers and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

ScenarioOpt = Annotated[
    str, typer.Option("--scenario", "-s", help="built-in scenario name or a YAML file")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="random seed (same seed, same run)")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's user-facing errors into a clear message and exit code 2."""
    from pydantic import ValidationError

    from agents import StrategyError
    from twin.model import SnapshotError
    from twin.scenario import ScenarioError

    try:
        yield
    except (ScenarioError, StrategyError, SnapshotError, FileNotFoundError) as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as err:
        lines = [f"  - {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        err_console.print(
            "[bold red]error:[/] invalid input:\n" + "\n".join(lines), highlight=False
        )
        raise typer.Exit(2) from None


def guarded(fn: Callable[[], T]) -> T:
    with user_errors():
        return fn()


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


@app.command()
def simulate(
    scenario: ScenarioOpt = "default",
    strategy: Annotated[str, typer.Option(help="static, threshold, ... (see docs)")] = "static",
    seed: SeedOpt = 0,
    out: Annotated[Path | None, typer.Option(help="directory for kpis.json + timeseries")] = None,
    days: Annotated[int | None, typer.Option(help="override the scenario's horizon")] = None,
    log_events: Annotated[
        Path | None, typer.Option(help="write the twin's event log (CSV) into this directory")
    ] = None,
) -> None:
    """Run the twin of SCENARIO under STRATEGY and print its KPIs."""
    from rich.progress import Progress

    from agents import make_controller
    from twin.eventlog import EventLog
    from twin.runner import simulate as run_sim
    from twin.scenario import load_scenario, scenario_from_dict

    log = EventLog() if log_events is not None else None
    with user_errors():
        sc = load_scenario(scenario)
        if days is not None:
            sc = scenario_from_dict(
                sc.model_dump(mode="json") | {"horizon_days": days}, f"{sc.name} with --days"
            )
        controller = make_controller(strategy, sc, seed)
        with Progress(console=err_console, transient=True, disable=sc.horizon_days < 2) as bar:
            task = bar.add_task(f"{sc.name} / {strategy}", total=sc.horizon_minutes)

            def tick(m) -> None:
                if m.minute % 60 == 0:
                    bar.update(task, completed=m.minute)

            model = run_sim(sc, controller, seed, on_tick=tick, event_log=log)
    k = model.kpis()
    cols = {"total": k.total.model_dump()} | {n: r.model_dump() for n, r in k.sectors.items()}
    console.print(kpi_table(f"{sc.name} / {strategy} / seed {seed}", cols))
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
        console.print(f"wrote {out}/kpis.json, {out}/timeseries.parquet, {out}/run.json")
    if log is not None and log_events is not None:
        files = log.write(log_events, sc)
        console.print(f"wrote event log: {', '.join(str(f) for f in files)}")


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

    from agents import make_controller
    from twin.model import OperationModel
    from twin.runner import run
    from twin.scenario import load_scenario

    with user_errors():
        sc = load_scenario(scenario)
        if not 0 <= at <= sc.horizon_minutes:
            raise typer.BadParameter(f"--at must be within 0..{sc.horizon_minutes} minutes")
        model = OperationModel(sc, rng=np.random.default_rng(seed))
        run(model, make_controller(strategy, sc, seed), minutes=at)
    sys.stdout.write(model.snapshot().model_dump_json(indent=2) + "\n")


# --------------------------------------------------------------------------- bench


@bench_app.command("twin")
def bench_twin(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON")] = Path(
        "reports/bench-twin.json"
    ),
    repeats: Annotated[int, typer.Option(min=1)] = 3,
) -> None:
    """Simulation speed of the default scenario at 1x, 2x and 10x size."""
    from experiments.bench import bench_twin as run_bench

    result = run_bench(repeats=repeats)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title="twin speed (static plan, one core)")
    for col in (
        "scale",
        "workers",
        "items/day",
        "sim min / wall s",
        "wall s / sim day",
        "time vs 1x",
    ):
        table.add_column(col, justify="right")
    for r in result["twin"]:
        table.add_row(
            f"{r['scale']}x",
            str(r["workers"]),
            f"{r['items_per_day']:,}",
            f"{r['sim_minutes_per_wall_second']:,.0f}",
            f"{r['wall_seconds_per_sim_day']:.3f}",
            f"{r['cost_ratio_vs_1x']:.2f}x",
        )
    console.print(table)
    console.print(f"wrote {out}")


# --------------------------------------------------------------------------- demo


@app.command()
def demo(seeds: Annotated[int, typer.Option(min=1)] = 3) -> None:
    """The main job on the built-in default scenario: every built-in strategy, a KPI table."""
    from agents import make_controller, strategy_names
    from twin.kpis import KPI_NAMES
    from twin.runner import simulate as run_sim
    from twin.scenario import load_scenario

    sc = load_scenario("default")
    console.print(
        f"[bold]SyncTwin demo[/]: scenario [cyan]{sc.name}[/] ({sc.description}), "
        f"{sc.total_headcount} workers, seeds 0..{seeds - 1}"
    )
    cols: dict[str, dict[str, float]] = {}
    for name in strategy_names():
        runs = [run_sim(sc, make_controller(name, sc, s), s).kpis().total for s in range(seeds)]
        cols[name] = {k: sum(getattr(r, k) for r in runs) / len(runs) for k in KPI_NAMES}
    console.print(kpi_table(f"default, mean over {seeds} seeds", cols))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
