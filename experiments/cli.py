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
    from policies.bundle import BundleError
    from twin.model import SnapshotError
    from twin.scenario import ScenarioError

    try:
        yield
    except (ScenarioError, StrategyError, SnapshotError, BundleError, FileNotFoundError) as err:
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
    strategy: Annotated[
        str, typer.Option(help="static, threshold, lookahead, random or policy:BUNDLE_DIR")
    ] = "static",
    seed: SeedOpt = 0,
    out: Annotated[Path | None, typer.Option(help="directory for kpis.json + timeseries")] = None,
    days: Annotated[int | None, typer.Option(help="override the scenario's horizon")] = None,
    log_events: Annotated[
        Path | None, typer.Option(help="write the twin's event log (CSV) into this directory")
    ] = None,
) -> None:
    """Run the twin of SCENARIO under STRATEGY and print its KPIs."""
    from rich.progress import Progress

    from experiments.strategies import controller_for
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
        controller = controller_for(strategy, sc, seed)
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

    from experiments.strategies import controller_for
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


# --------------------------------------------------------------------------- baselines

WorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="processes in parallel (default: all cores)")
]


@app.command("tune-baseline")
def tune_baseline(
    scenario: ScenarioOpt = "default",
    seeds: Annotated[int, typer.Option(min=1, help="training seeds per candidate")] = 8,
    budget: Annotated[int, typer.Option(min=1, help="parameter sets evaluated")] = 60,
    search_seed: Annotated[int, typer.Option(help="seed of the search itself")] = 0,
    workers: WorkersOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="tuned JSON (default: agents/tuned/<name>.json for built-ins)"),
    ] = None,
) -> None:
    """Tune the threshold manager for SCENARIO on training seeds (method: agents/tuning.py)."""
    from rich.progress import Progress

    from agents.tuning import default_output, tune_threshold, write_tuned
    from twin.scenario import load_scenario

    with user_errors():
        sc = load_scenario(scenario)
    total = (budget + 4) * seeds
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task(f"tuning threshold on {sc.name}", total=total)
        result = tune_threshold(
            sc,
            seeds=seeds,
            budget=budget,
            search_seed=search_seed,
            workers=workers,
            progress=lambda k: bar.advance(task, k),
        )
    path = out or default_output(sc)
    write_tuned(result, path)
    obj = result["objective"]
    console.print_json(json.dumps(result["params"]))
    console.print(
        f"mean total cost on {len(obj['seeds'])} training seeds: tuned {obj['tuned']:,.1f} "
        f"vs defaults {obj['defaults']:,.1f}"
    )
    console.print(f"wrote {path}")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def comparison_table(summary, scenario: str) -> Table:
    """The comparison summary of one scenario: one row per strategy."""
    import math

    rows = summary[summary["scenario"] == scenario]
    ref = rows["diff_vs"].iloc[0]

    def ci(r, digits: int = 1, prefix: str = "") -> str:
        lo, hi = r[f"{prefix}ci95_low"], r[f"{prefix}ci95_high"]
        mean = f"{r[f'{prefix}mean']:,.{digits}f}"
        return mean if math.isnan(lo) else f"{mean} [{lo:,.{digits}f}, {hi:,.{digits}f}]"

    table = Table(title=f"{scenario}: mean [95% CI] over seeds", show_lines=False)
    for col in ("strategy", "total cost", "vs static", f"Δ cost vs {ref} (paired)", "SLA misses"):
        table.add_column(col, justify="right" if col != "strategy" else "left")
    for col in ("overtime h", "flex h", "transfers"):
        table.add_column(col, justify="right")
    for strategy in dict.fromkeys(rows["strategy"]):
        k = rows[rows["strategy"] == strategy].set_index("kpi")
        cost = k.loc["total_cost"]
        norm = cost["normalized"]
        table.add_row(
            strategy,
            ci(cost, 0),
            "–" if math.isnan(norm) else f"{norm:.3f}",
            "–" if strategy == ref else ci(cost, 0, "diff_"),
            ci(k.loc["sla_misses"]),
            f"{k.loc['overtime_hours', 'mean']:,.1f}",
            f"{k.loc['flex_hours', 'mean']:,.1f}",
            f"{k.loc['transfers', 'mean']:,.1f}",
        )
    return table


@app.command()
def compare(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="scenario(s), comma-separated")
    ] = "default",
    strategies: Annotated[
        str, typer.Option(help="comma-separated; the first is the reference of the differences")
    ] = "static,threshold,lookahead",
    seeds: Annotated[int, typer.Option(min=1, help="seeds 0..N-1 per strategy")] = 10,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("compare-out"),
    workers: WorkersOpt = None,
    report: Annotated[bool, typer.Option(help="write report.html")] = True,
) -> None:
    """Compare strategies over seeds (common random numbers) and write results + a report."""
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from experiments.compare import run_compare, validate, write_comparison

    scenario_list, strategy_list = _split(scenario), _split(strategies)
    with user_errors():
        validate(scenario_list, strategy_list)
    total = len(scenario_list) * len(strategy_list) * seeds
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("runs", total=total)
        with user_errors():
            cmp = run_compare(
                scenario_list,
                strategy_list,
                seeds,
                workers=workers,
                progress=lambda k: bar.advance(task, k),
            )
    paths = write_comparison(cmp, out, report=report)
    for name in cmp.scenarios:
        console.print(comparison_table(cmp.summary, name))
    console.print("wrote " + ", ".join(str(p) for p in paths))


# --------------------------------------------------------------------------- bench


@bench_app.command("twin")
def bench_twin(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON")] = Path(
        "reports/bench-twin.json"
    ),
    repeats: Annotated[int, typer.Option(min=1)] = 3,
    env_steps: Annotated[int, typer.Option(min=1, help="steps per env for env speed")] = 2000,
) -> None:
    """Simulation speed of default at 1x, 2x and 10x size, and env steps/s (random actions)."""
    from experiments.bench import bench_twin as run_bench
    from experiments.bench_envs import bench_envs

    result = run_bench(repeats=repeats)
    result["envs"] = bench_envs(steps=env_steps)["envs"]
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
    envs = Table(title="env speed on default (random actions, one core)")
    for col in ("env", "agents", "env steps/s", "agent steps/s", "ms/step"):
        envs.add_column(col, justify="right")
    for r in result["envs"]:
        envs.add_row(
            r["env"],
            str(r["agents"]),
            f"{r['env_steps_per_second']:,.0f}",
            f"{r['agent_steps_per_second']:,.0f}",
            f"{r['ms_per_step']:.2f}",
        )
    console.print(envs)
    console.print(f"wrote {out}")


# --------------------------------------------------------------------------- export


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory (has run.json)")],
    out: Annotated[Path, typer.Option(help="bundle directory to write")],
    name: Annotated[str | None, typer.Option(help="bundle name (default: the run's)")] = None,
    version: Annotated[str | None, typer.Option(help="bundle version (default: timestamp)")] = None,
) -> None:
    """Export a training run's policies to an ONNX bundle (manifest + one file per sector)."""
    from training.export import ExportError, export_run

    try:
        manifest = export_run(run_dir, out, name=name, version=version)
    except ExportError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    checks = manifest.training.get("export_checks", {})
    for file, check in checks.items():
        console.print(
            f"{file}: onnxruntime = torch on {check['action_agreement']:.0%} of 1,000 observations "
            f"(max logit difference {check['max_abs_logit_diff']:.1e})"
        )
    console.print(f"wrote bundle {manifest.name} {manifest.version} to {out}")


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
