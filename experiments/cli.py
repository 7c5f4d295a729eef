"""The ``synctwin`` command line.

User errors (an unknown scenario, a bad YAML field, an unknown strategy, a
malformed snapshot) end with a one-paragraph message and exit code 2, never a
traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from experiments.app import app, bench_app, experiment_app, write_bench_json
from experiments.console import console, err_console, fail, say, user_errors, warn
from experiments.paths import check_output_dir, check_output_file, shell_path, user_path

ScenarioOpt = Annotated[
    str, typer.Option("--scenario", "-s", help="built-in scenario name or a YAML file")
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="random seed (same seed, same run)")]


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
    out: Annotated[
        Path | None,
        typer.Option(help="directory for kpis.json + timeseries", callback=user_path),
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="override the scenario's horizon")] = None,
    log_events: Annotated[
        Path | None,
        typer.Option(
            help="write the twin's event log (CSV) into this directory", callback=user_path
        ),
    ] = None,
) -> None:
    """Run the twin of SCENARIO under STRATEGY and print its KPIs."""
    from rich.progress import Progress

    from agents import tuning_of
    from experiments.strategies import controller_for
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
        written = (out / f for f in ("kpis.json", "timeseries.parquet", "run.json"))
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


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def comparison_table(summary, scenario: str) -> Table:
    """One scenario's comparison, one row per strategy; fits an 80-column terminal.

    Total cost is mean ± the 95% interval's half-width; the paired difference against the
    first strategy is starred when its 95% interval excludes zero (summary.csv has all).
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
    heads = ("strategy", "cost ± 95%", "/static", "Δ cost", "misses", "OT h")
    for col in (*heads, "flex h", "moves"):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for strategy in dict.fromkeys(rows["strategy"]):
        k = rows[rows["strategy"] == strategy].set_index("kpi")
        cost = k.loc["total_cost"]
        half = (cost["ci95_high"] - cost["ci95_low"]) / 2
        norm = cost["normalized"]
        star = not (cost["diff_ci95_low"] <= 0 <= cost["diff_ci95_high"])
        table.add_row(
            label(strategy),
            f"{cost['mean']:,.0f}" + ("" if math.isnan(half) else f" ± {half:,.0f}"),
            "–" if math.isnan(norm) else f"{norm:.3f}",
            "–" if strategy == ref else f"{cost['diff_mean']:+,.0f}{' *' if star else ''}",
            f"{k.loc['sla_misses', 'mean']:,.0f}",
            f"{k.loc['overtime_hours', 'mean']:,.1f}",
            f"{k.loc['flex_hours', 'mean']:,.1f}",
            f"{k.loc['transfers', 'mean']:,.0f}",
        )
    return table


def warn_untuned(tuning: dict[tuple[str, str], str]) -> None:
    """Tell the user, on stderr, of every baseline whose thresholds are not tuned for its
    scenario (an untuned ``threshold`` can be far from its best: an unfair yardstick)."""
    for (scenario, strategy), label in tuning.items():
        if label == "untuned":
            warn(
                f"{strategy} on {scenario!r} runs with untuned default thresholds (no tuned "
                f"file for this scenario); tune them with `synctwin tune-baseline --scenario "
                f"FILE --out TUNED.json` and use {strategy.split(':')[0]}:TUNED.json"
            )
        elif label == "stale":
            warn(
                f"{strategy} on {scenario!r} uses thresholds tuned for an earlier version of "
                "the scenario; re-run `synctwin tune-baseline`"
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
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace a comparison already in --out")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the comparison in --out (same options)")
    ] = False,
) -> None:
    """Compare strategies over seeds (common random numbers) and write results + a report.

    Every run is kept in --out as it finishes: an interrupted comparison continues with
    the same command and --resume.
    """
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from experiments.compare import (
        baseline_tuning,
        comparison_plan,
        run_compare,
        validate,
        write_comparison,
    )
    from experiments.compare_store import RunStore

    scenario_list, strategy_list = _split(scenario), _split(strategies)
    if overwrite and resume:
        fail("--overwrite and --resume exclude each other")
    with user_errors():
        loaded = validate(scenario_list, strategy_list)
        plan = comparison_plan(loaded, strategy_list, list(range(seeds)))
        RunStore(out, plan).check(resume=resume, overwrite=overwrite)
        warn_untuned(baseline_tuning(loaded, strategy_list))
    total = len(scenario_list) * len(strategy_list) * seeds
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console) as bar, user_errors():
            task = bar.add_task("runs", total=total)
            cmp = run_compare(
                scenario_list,
                strategy_list,
                seeds,
                workers=workers,
                progress=lambda k: bar.advance(task, k),
                out=out,
                resume=resume,
                overwrite=overwrite,
            )
    except KeyboardInterrupt:
        err_console.print(
            Text(
                f"interrupted: the runs that finished are kept in {out}; continue with the "
                "same command and --resume"
            )
        )
        raise typer.Exit(130) from None
    paths = write_comparison(cmp, out, report=report)
    for name in cmp.scenarios:
        console.print(comparison_table(cmp.summary, name))
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
) -> None:
    """Silo vs synchronized: sector-local managers vs one that sees the whole flow."""
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from experiments.compare import baseline_tuning, validate
    from experiments.silo import ARMS, run_silo, write

    scenario_list = _split(scenario)
    with user_errors():
        check_output_dir(out)
        warn_untuned(baseline_tuning(validate(scenario_list, list(ARMS)), list(ARMS)))
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("runs", total=len(scenario_list) * len(ARMS) * seeds)
        result = run_silo(
            scenario_list, seeds, workers=workers, progress=lambda k: bar.advance(task, k)
        )
    paths = write(result, out)
    sys.stdout.write((out / "silo.md").read_text())
    say("wrote " + ", ".join(str(p) for p in paths))


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

    with user_errors():
        check_output_file(user_path(out))
    result = run_bench(repeats=repeats)
    result["envs"] = bench_envs(steps=env_steps)["envs"]
    if write_bench_json(result, out, as_json):
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
    say(f"wrote {out}")


@bench_app.command("serve")
def bench_serve_cmd(
    policy: Annotated[Path, typer.Option(help="policy bundle to serve", callback=user_path)] = Path(
        "policies/default"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON")] = Path(
        "reports/bench-serve.json"
    ),
    requests: Annotated[int, typer.Option(min=10, help="sequential requests, no impact")] = 2000,
    impact_requests: Annotated[int, typer.Option(min=1, help="requests with impact")] = 30,
    clients: Annotated[int, typer.Option(min=1, help="concurrent clients")] = 4,
    seconds: Annotated[float, typer.Option(min=0.5, help="length of each concurrent run")] = 5.0,
) -> None:
    """Policy server on loopback: latency, req/s, RSS, cold start (experiments/bench_serve.py)."""
    from experiments.bench_serve import IMPACT_MODES, bench_serve
    from policies.bundle import BundleError, read_manifest

    with user_errors():
        check_output_file(user_path(out))
    try:
        read_manifest(policy)
    except BundleError as err:
        fail(str(err), "pass --policy BUNDLE_DIR (`synctwin export RUN_DIR --out DIR` makes one)")
    result = bench_serve(
        policy,
        requests=requests,
        impact_requests=impact_requests,
        clients=clients,
        seconds=seconds,
    )
    if write_bench_json(result, out, as_json):
        return
    table = Table(title=f"policy server on loopback ({result['policy']['name']})")
    for col in ("request", "p50 ms", "p99 ms", "req/s (clients)", "goal"):
        table.add_column(col, justify="right" if col != "request" else "left")
    rows = [("no_impact", "recommend, no impact", "p99 <= 3 ms, >= 1,000 req/s")]
    rows += [(key, f"impact: {label}", "p99 <= 100 ms") for key, label, _ in IMPACT_MODES]
    for key, label, goal in rows:
        seq, conc = result[key]["sequential"], result[key]["concurrent"]
        table.add_row(
            label,
            f"{seq['p50_ms']:.2f}",
            f"{seq['p99_ms']:.2f}",
            f"{conc['requests_per_second']:,.0f} ({conc['clients']})",
            goal,
        )
    console.print(table)
    two = result["no_impact_two_workers"]
    console.print(
        f"no impact with --workers 2: {two['concurrent']['requests_per_second']:,.0f} req/s "
        f"({two['concurrent']['clients']} clients), RSS {two['rss_mb_all_processes']:.0f} MB "
        "in all processes"
    )
    console.print(
        f"cold start {result['cold_start_seconds']:.2f} s (goal <= 3 s); RSS "
        f"{result['rss_mb']:.0f} MB, peak {result['peak_rss_mb']:.0f} MB (goal <= 300 MB)"
    )
    say(f"wrote {out}")


# --------------------------------------------------------------------------- export


@app.command()
def export(
    run_dir: Annotated[
        Path, typer.Argument(help="a training run directory (has run.json)", callback=user_path)
    ],
    out: Annotated[Path, typer.Option(help="bundle directory to write", callback=user_path)],
    name: Annotated[str | None, typer.Option(help="bundle name (default: the run's)")] = None,
    version: Annotated[str | None, typer.Option(help="bundle version (default: timestamp)")] = None,
) -> None:
    """Export a training run's policies to an ONNX bundle (manifest + one file per sector)."""
    from training.export import ExportError, export_run

    with user_errors():
        check_output_dir(out)
        try:
            manifest = export_run(run_dir, out, name=name, version=version)
        except ExportError as err:
            fail(str(err))
    checks = manifest.training.get("export_checks", {})
    for file, check in checks.items():
        console.print(
            f"{file}: onnxruntime = torch on {check['action_agreement']:.0%} of 1,000 observations "
            f"(max logit difference {check['max_abs_logit_diff']:.1e})"
        )
    say(f"wrote bundle {manifest.name} {manifest.version} to {out}")
    say(f"serve it: synctwin serve --policy {shell_path(out)}")


# --------------------------------------------------------------------------- calibrate


class _PlainUsage(TyperCommand):
    """Usage ``calibrate [OPTIONS] EVENTS`` (Typer would write a required argument ``{EVENTS}``)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


@app.command("calibrate", cls=_PlainUsage)
def calibrate_cmd(
    events: Annotated[
        Path,
        typer.Argument(
            metavar="EVENTS",
            help="event log: CSV, CSV.gz or Parquet (columns: README, section Calibration)",
            show_default=False,
            callback=user_path,
        ),
    ],
    out: Annotated[Path, typer.Option(help="scenario YAML to write", callback=user_path)],
    base: Annotated[str, typer.Option(help="scenario for what the log does not fit")] = "default",
    roster: Annotated[
        Path | None, typer.Option(help="roster CSV: shifts, headcount", callback=user_path)
    ] = None,
    attendance: Annotated[
        Path | None, typer.Option(help="attendance CSV: absences", callback=user_path)
    ] = None,
    equipment: Annotated[
        Path | None, typer.Option(help="equipment CSV: breakdowns", callback=user_path)
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="fit report: .html or .md", callback=user_path)
    ] = None,
    validate: Annotated[
        bool, typer.Option(help="fit on the first days, compare the twin with the last ones")
    ] = False,
    holdout_days: Annotated[
        int | None, typer.Option(min=1, help="days held out (default: a quarter)")
    ] = None,
    validate_seeds: Annotated[int, typer.Option(min=2, help="twin runs for --validate")] = 8,
) -> None:
    """Fit a scenario to an operation's event log (method: experiments/calibrate.py)."""
    from experiments import calibrate as cal_mod
    from experiments.calibration_report import console_summary, write_report
    from experiments.calibration_validation import holdout_split
    from experiments.calibration_validation import validate as run_validation
    from twin.scenario import load_scenario

    with user_errors():
        sc = load_scenario(base)
        check_output_file(out)
        if report is not None:
            check_output_file(report, "--report")
    try:
        inputs = cal_mod.load_inputs(events, sc, roster, attendance, equipment)
        windows = holdout_split(inputs.table, holdout_days) if validate else (None, None)
        cal = cal_mod.calibrate_inputs(inputs, sc, cal_mod.scenario_name(out), windows[0])
        cal_mod.write_scenario(cal, out)
    except cal_mod.CalibrationError as err:
        fail(str(err))
    checked = None
    if validate and windows[0] is not None and windows[1] is not None:
        checked = run_validation(cal.scenario, inputs.table, *windows, seeds=validate_seeds)
    for part in console_summary(cal, checked):
        console.print(part, highlight=False)
    say(f"wrote {out} (loads back as a valid scenario)")
    if report is not None:
        say(f"wrote {write_report(cal, report, checked)}")


# --------------------------------------------------------------------------- serve


@app.command()
def serve(
    policy: Annotated[
        Path | None,
        typer.Option(help="policy bundle directory (or SYNCTWIN_POLICY)", callback=user_path),
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: 8000]")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes [default: 1]")] = None,
    api_key: Annotated[str | None, typer.Option(help="require this X-API-Key")] = None,
    admin_key: Annotated[str | None, typer.Option(help="X-API-Key of admin routes")] = None,
    log: Annotated[
        Path | None, typer.Option(help="decision log (JSONL)", callback=user_path)
    ] = None,
    ray: Annotated[bool, typer.Option("--ray", help="serve with Ray Serve (scale-out)")] = False,
    replicas: Annotated[int, typer.Option(min=1, help="Ray Serve replicas")] = 1,
) -> None:
    """Serve a policy bundle over HTTP: recommendations, impact, forecasts (see policies/server.py).

    Options override SYNCTWIN_* environment variables; the bundle is verified before
    the server starts (a bad one exits with code 2).
    """
    from policies.server import Settings, create_app, run_server

    given = {"policy": policy, "host": host, "port": port, "workers": workers}
    given |= {"api_key": api_key, "admin_key": admin_key, "log": log}
    with user_errors():
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
        if ray:
            from policies.ray_serve import run as run_ray

            run_ray(settings, replicas=replicas)
            return
        app_ = create_app(settings) if settings.workers == 1 else None
    run_server(settings, app_)


@bench_app.command("strategies")
def bench_strategies(
    scenario: ScenarioOpt = "default",
    seeds: Annotated[int, typer.Option(min=1, help="runs per strategy")] = 1,
    strategies: Annotated[str | None, typer.Option(help="comma-separated (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON")] = Path(
        "reports/bench-strategies.json"
    ),
) -> None:
    """Compute cost per decision of each strategy (one core, the scenario's horizon)."""
    from agents import check_strategy
    from experiments.bench_strategies import bench_strategies as run_bench

    names = _split(strategies) if strategies else None
    with user_errors():
        check_output_file(user_path(out))
        for name in names or []:
            check_strategy(name)
        result = run_bench(scenario, seeds=seeds, strategies=names)
    if write_bench_json(result, out, as_json):
        return
    table = Table(title=f"time per decision ({result['scenario']}, {seeds} run(s) each)")
    for col in ("strategy", "decisions/run", "ms mean", "ms median", "ms p95", "ms max", "s/run"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in result["strategies"]:
        table.add_row(
            r["strategy"],
            f"{r['decisions_per_run']:.0f}",
            f"{r['ms_per_decision_mean']:.2f}",
            f"{r['ms_per_decision_median']:.2f}",
            f"{r['ms_per_decision_p95']:.2f}",
            f"{r['ms_per_decision_max']:.2f}",
            f"{r['run_seconds_mean']:.2f}",
        )
    console.print(table)
    say(f"wrote {out}")


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
    from experiments.demo import run_demo

    with user_errors():
        check_output_dir(out)
        run_demo(out, seeds, timesteps, console, err_console, comparison_table)


# Commands that live in their own modules register themselves on `app` / `bench_app`.
from experiments import dashboard_cli, train_cli  # noqa: E402, F401


def main() -> None:
    """The console entry point: usage mistakes (a bad flag or value) are one line too."""
    try:  # typer vendors its own click since 0.22; older ones use click itself
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover
        import click.exceptions as click_errors  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as err:
        sys.stdout.write(err.format_message() + "\n")
        raise SystemExit(2) from None
    except click_errors.UsageError as err:
        where = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        err_console.print(
            Text("error: ", style="bold red") + Text(err.format_message() + where),
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(2) from None
    except click_errors.ClickException as err:
        err.show()
        raise SystemExit(err.exit_code) from None
    except typer.Abort:
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
