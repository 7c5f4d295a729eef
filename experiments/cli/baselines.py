"""``synctwin tune-baseline``, ``compare``, ``experiment headroom`` and ``experiment silo``:
strategies side by side."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.text import Text

from experiments.cli.app import app, experiment_app
from experiments.cli.console import console, err_console, fail, say, user_errors, warn_untuned
from experiments.cli.options import (
    AddressOpt,
    OverwriteOpt,
    ResumeOpt,
    RunsPerTaskOpt,
    ScenarioOpt,
    WorkersOpt,
    split_list,
)
from experiments.cli.tables import comparison_table
from experiments.paths import check_output_dir, check_output_file, shell_path, user_path

T = TypeVar("T")

# --------------------------------------------------------------------------- baselines


@app.command("tune-baseline")
def tune_baseline(
    scenario: ScenarioOpt = "default",
    seeds: Annotated[int, typer.Option(min=1, help="training seeds per candidate")] = 8,
    budget: Annotated[int, typer.Option(min=1, help="parameter sets evaluated")] = 60,
    search_seed: Annotated[int, typer.Option(help="seed of the search itself")] = 0,
    workers: WorkersOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="tuned JSON to write (default: ./<name>.threshold.json; for a built-in, "
            "the file shipped in the package)",
            callback=user_path,
        ),
    ] = None,
) -> None:
    """Tune the threshold manager for SCENARIO on training seeds (method: agents/tuning.py)."""
    from rich.progress import Progress

    from agents.tuning import default_output, tune_threshold, write_tuned
    from twin.scenario import load_scenario

    with user_errors():
        sc = load_scenario(scenario)
        path = check_output_file(out or default_output(sc))
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
    write_tuned(result, path)
    obj = result["objective"]
    console.print_json(json.dumps(result["params"]))
    say(
        f"mean total cost on {len(obj['seeds'])} training seeds: tuned {obj['tuned']:,.1f} "
        f"vs defaults {obj['defaults']:,.1f}"
    )
    say(f"wrote {path}")
    if out is not None:
        say(
            "use it: synctwin compare --scenario "
            f"{shell_path(scenario)} --strategies {shell_path(f'static,threshold:{path}')}"
        )


@app.command()
def compare(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="scenario(s), comma-separated")
    ] = "default",
    strategies: Annotated[
        str, typer.Option(help="comma-separated; the first is the reference of the differences")
    ] = "static,threshold,lookahead",
    seeds: Annotated[int, typer.Option(min=1, help="seeds 0..N-1 per strategy")] = 10,
    out: Annotated[Path, typer.Option(help="output directory", callback=user_path)] = Path(
        "runs/compare"
    ),
    workers: WorkersOpt = None,
    report: Annotated[bool, typer.Option(help="write report.html")] = True,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    address: AddressOpt = None,
    runs_per_task: RunsPerTaskOpt = None,
) -> None:
    """Compare strategies over seeds (common random numbers) and write results + a report.

    Every run is kept in --out as it finishes: an interrupted comparison continues with
    the same command and --resume. With --address the runs go out, in batches, to the
    Ray cluster there.
    """
    from experiments.comparison.compare import check_plan, run_plan, write_comparison
    from experiments.comparison.store import RunStore

    scenario_list, strategy_list = split_list(scenario), split_list(strategies)
    if overwrite and resume:
        fail("--overwrite and --resume exclude each other")
    with user_errors():
        plan = check_plan(scenario_list, strategy_list, seeds)  # the only check of the plan
        RunStore(out, plan.record()).check(resume=resume, overwrite=overwrite)
        warn_untuned(plan.tuning)
    total = len(scenario_list) * len(strategy_list) * seeds
    cmp = _with_progress(
        total,
        out,
        lambda progress: run_plan(
            plan,
            workers=workers,
            progress=progress,
            out=out,
            resume=resume,
            overwrite=overwrite,
            address=address,
            runs_per_task=runs_per_task,
        ),
        where=address,
    )
    paths = write_comparison(cmp, out, report=report)
    for name in cmp.scenarios:
        console.print(comparison_table(cmp.summary, name))
    say("wrote " + ", ".join(str(p) for p in paths))


def _with_progress(
    total: int,
    out: Path,
    work: Callable[[Callable[[int], None]], T],
    where: str | None = None,
) -> T:
    """Run ``work(progress)`` under a progress bar of ``total`` runs (on the Ray cluster at
    ``where``, if given); a cluster that cannot be used is one line and exit 2; on Ctrl-C
    say that the finished runs are kept in ``out`` and how to continue, and exit 130."""
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from experiments.comparison.cluster import ClusterError

    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    label = f"runs on {where}" if where else "runs"
    try:
        with Progress(*columns, console=err_console) as bar, user_errors():
            task = bar.add_task(label, total=total)
            return work(lambda k: bar.advance(task, k))
    except ClusterError as err:
        fail(str(err))
    except KeyboardInterrupt:
        err_console.print(
            Text(
                f"interrupted: the runs that finished are kept in {out}; continue with the "
                "same command and --resume"
            )
        )
        raise typer.Exit(130) from None


@experiment_app.command("headroom")
def experiment_headroom(
    scenario: Annotated[
        str | None,
        typer.Option("--scenario", "-s", help="scenario(s), comma-separated (default: built-ins)"),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="seeds 0..N-1 per arm")] = 10,
    out: Annotated[Path, typer.Option(help="output directory", callback=user_path)] = Path(
        "runs/headroom"
    ),
    workers: WorkersOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    address: AddressOpt = None,
) -> None:
    """Headroom per scenario: static, threshold, lookahead and the hindsight bound, the
    regular payroll, the avoidable cost, and which scenarios form the headroom suite."""
    from experiments.comparison.headroom import (
        ARMS,
        default_scenarios,
        headroom_plan,
        run_headroom,
        write,
    )
    from experiments.comparison.store import RunStore

    scenario_list = split_list(scenario) if scenario else default_scenarios()
    if overwrite and resume:
        fail("--overwrite and --resume exclude each other")
    with user_errors():
        plan = headroom_plan(scenario_list, seeds)  # the only check of the plan
        RunStore(out, plan.record()).check(resume=resume, overwrite=overwrite)
        warn_untuned(plan.tuning)
    result = _with_progress(
        len(scenario_list) * len(ARMS) * seeds,
        out,
        lambda progress: run_headroom(
            plan,
            out=out,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            address=address,
        ),
        where=address,
    )
    paths = write(result, out)
    sys.stdout.write((out / "headroom.md").read_text())
    say("wrote " + ", ".join(str(p) for p in paths))


@experiment_app.command("silo")
def experiment_silo(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="scenario(s), comma-separated")
    ] = "default,absenteeism,breakdowns,claims,peak-surge",
    seeds: Annotated[int, typer.Option(min=1, help="seeds 0..N-1 per arm")] = 10,
    out: Annotated[Path, typer.Option(help="output directory", callback=user_path)] = Path(
        "runs/silo"
    ),
    workers: WorkersOpt = None,
    address: AddressOpt = None,
) -> None:
    """Silo vs synchronized: sector-local managers vs one that sees the whole flow."""
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from experiments.comparison.cluster import ClusterError
    from experiments.comparison.compare import check_plan
    from experiments.comparison.silo import ARMS, run_silo, write

    scenario_list = split_list(scenario)
    with user_errors():
        check_output_dir(out)
        warn_untuned(check_plan(scenario_list, list(ARMS), seeds).tuning)
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console) as bar:
            label = f"runs on {address}" if address else "runs"
            task = bar.add_task(label, total=len(scenario_list) * len(ARMS) * seeds)
            result = run_silo(
                scenario_list,
                seeds,
                workers=workers,
                progress=lambda k: bar.advance(task, k),
                address=address,
            )
    except ClusterError as err:
        fail(str(err))
    paths = write(result, out)
    sys.stdout.write((out / "silo.md").read_text())
    say("wrote " + ", ".join(str(p) for p in paths))


@experiment_app.command("adaptive")
def experiment_adaptive(
    scenario: Annotated[
        str | None,
        typer.Option(
            "--scenario", "-s", help="scenario(s), comma-separated (default: plan-vs-reality)"
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(min=2, help="held-out seeds per scenario")] = 20,
    first_seed: Annotated[int, typer.Option(min=0, help="the first of them")] = 0,
    horizon_hours: Annotated[
        float, typer.Option(min=0.25, max=12, help="how far ahead arrivals are predicted")
    ] = 2.0,
    tune: Annotated[
        bool, typer.Option("--tune", help="instead: score the estimator's grid on tuning seeds")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON", callback=user_path)] = Path(
        "reports/experiment-adaptive.json"
    ),
) -> None:
    """Adaptive planning: the next hours' arrivals predicted by the plan and by the demand
    observed so far (twin.adaptive), against what the twin realized, on held-out seeds."""
    from rich import box
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from experiments.cli.app import write_bench_json
    from experiments.comparison import adaptive as exp
    from twin.adaptive import DemandEstimator

    names = split_list(scenario) if scenario else exp.plan_vs_reality()
    seed_list = list(exp.TUNING_SEEDS) if tune else list(range(first_seed, first_seed + seeds))
    overlap = sorted(set(seed_list) & set(exp.TUNING_SEEDS))
    if overlap and not tune:
        t = exp.TUNING_SEEDS
        fail(
            f"seeds {seed_list[0]}..{seed_list[-1]} overlap the tuning seeds "
            f"{t.start}..{t.stop - 1}; evaluate on others (--first-seed)"
        )
    with user_errors():
        check_output_file(out)
        try:
            scenarios = exp.check_scenarios(names)
        except exp.AdaptiveError as err:
            fail(str(err))
    horizon = horizon_hours * 60.0
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("seeds", total=len(scenarios) * len(seed_list))
        advance = lambda k: bar.advance(task, k)  # noqa: E731
        if tune:
            cands = exp.tune(scenarios, seed_list, horizon, progress=advance)
        else:
            est = DemandEstimator()
            rows = exp.run_adaptive(scenarios, seed_list, est, horizon, progress=advance)
    if tune:
        result: dict = {
            "experiment": "adaptive --tune",
            "tuning_seeds": seed_list,
            "horizon_minutes": horizon,
            "candidates": [
                {
                    "prior_arrivals": c.prior_arrivals,
                    "half_life_minutes": exp._finite(c.half_life_minutes),
                    "relative_error": c.relative_error,
                    "per_scenario": c.per_scenario,
                }
                for c in cands
            ],
        }
        if write_bench_json(result, out, as_json):
            return
        grid = Table(title=f"tuning: relative error of the total, next {horizon_hours:g} h")
        for col in ("prior arrivals", "half-life min", "mean", *(s.name for s in scenarios)):
            grid.add_column(col, justify="right")
        for c in cands[:10]:
            grid.add_row(
                f"{c.prior_arrivals:g}",
                f"{c.half_life_minutes:g}",
                f"{c.relative_error:.2%}",
                *(f"{c.per_scenario[s.name]:.2%}" for s in scenarios),
            )
        console.print(grid)
        say(f"wrote {out}")
        return
    result = exp.report(rows, est, seed_list, horizon)
    if write_bench_json(result, out, as_json):
        return
    say(
        f"arrivals in the next {horizon_hours:g} h, per decision of the working day: mean "
        f"absolute error (and relative error) of the plan and of the adaptive forecast, "
        f"{len(seed_list)} held-out seeds (from {seed_list[0]})"
    )
    for sc in scenarios:
        table = Table(title=sc.name, box=box.SIMPLE)
        for col in ("class", "realized", "plan", "rel", "adaptive", "rel", "adaptive - plan"):
            table.add_column(col, justify="left" if col == "class" else "right", no_wrap=True)
        for r in (r for r in rows if r.scenario == sc.name):
            d = r.difference
            table.add_row(
                r.item_class,
                f"{r.realized_mean:,.1f}",
                f"{r.plan.mae.mean:,.1f}",
                f"{r.plan.relative:.1%}",
                f"{r.adaptive.mae.mean:,.1f}",
                f"{r.adaptive.relative:.1%}",
                f"{d.mean:+,.1f} [{d.low:+,.1f}, {d.high:+,.1f}]",
                style="bold" if r.item_class == "total" else None,
            )
        console.print(table)
    say(f"wrote {out}")
