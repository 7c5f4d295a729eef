"""``synctwin bench twin|serve|strategies`` (``bench train`` lives with training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from experiments.cli.app import bench_app, write_bench_json
from experiments.cli.console import console, fail, say, user_errors, warn
from experiments.cli.options import ScenarioOpt, split_list
from experiments.paths import check_output_file, user_path

# --------------------------------------------------------------------------- bench


@bench_app.command("twin")
def bench_twin(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="where to write the JSON (default: reports/bench-twin.json; "
            "with --vs-simpy, reports/bench-twin-vs-simpy.json)"
        ),
    ] = None,
    repeats: Annotated[int, typer.Option(min=1)] = 3,
    env_steps: Annotated[int, typer.Option(min=1, help="steps per env for env speed")] = 2000,
    vs_simpy: Annotated[
        bool,
        typer.Option(
            "--vs-simpy",
            help="instead: the twin against a SimPy model of a Jackson tandem line "
            "(speed, and mean waits checked against each other and theory)",
        ),
    ] = False,
    replications: Annotated[int, typer.Option(min=2, help="--vs-simpy: runs per model")] = 10,
    days: Annotated[int, typer.Option(min=1, max=366, help="--vs-simpy: days per run")] = 5,
    warmup_minutes: Annotated[
        float, typer.Option(min=0, help="--vs-simpy: minutes discarded at the start of each run")
    ] = 360.0,
) -> None:
    """Simulation speed of default at 1x, 2x and 10x size, and env steps/s (random actions).

    With --vs-simpy instead: the twin and a SimPy model, both of one Jackson tandem line.
    """
    from experiments.bench.envs import bench_envs
    from experiments.bench.twin import bench_twin as run_bench

    if vs_simpy:
        _bench_twin_vs_simpy(
            out or Path("reports/bench-twin-vs-simpy.json"),
            as_json,
            replications,
            days,
            warmup_minutes,
        )
        return
    out = out or Path("reports/bench-twin.json")
    with user_errors():
        check_output_file(user_path(out))
    result = run_bench(repeats=repeats)
    env_speed = bench_envs(steps=env_steps)
    result["envs"], result["observation"] = env_speed["envs"], env_speed["observation"]
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
    obs = result["observation"]
    say(
        f"an observation: snapshot {obs['snapshot_ms']:.3f} ms + features "
        f"{obs['features_ms']:.3f} ms = {obs['ms_per_sector']:.3f} ms per sector "
        "(goal <= 0.1 ms)"
    )
    say(f"wrote {out}")


def _bench_twin_vs_simpy(
    out: Path, as_json: bool, replications: int, days: int, warmup_minutes: float
) -> None:
    """``bench twin --vs-simpy``: see :func:`experiments.bench.twin.bench_vs_simpy`."""
    from experiments.bench.tandem import Design
    from experiments.bench.twin import bench_vs_simpy

    with user_errors():
        check_output_file(user_path(out))
    if warmup_minutes >= days * 24 * 60:
        fail(f"--warmup-minutes {warmup_minutes:g} leaves nothing of {days} day(s) to measure")
    try:
        import simpy  # noqa: F401  (the peer model's one optional dependency)
    except ImportError:
        fail(
            "--vs-simpy needs simpy, which is not installed",
            'install it with: pip install -c constraints.txt -e ".[dev]"',
        )
    result = bench_vs_simpy(Design(replications, days, warmup_minutes))
    if write_bench_json(result, out, as_json):
        return
    net, twin, peer = result["network"], result["twin"], result["simpy"]
    speed = Table(
        title=f"twin vs SimPy {peer['version']}: {net['stations']}-station Jackson tandem line, "
        f"rho {net['rho']:g} ({replications} runs x {days} day(s) each, one core)"
    )
    for col in ("model", "sim days / wall s", "/ CPU s", "us / event", "events", "wall s"):
        speed.add_column(col, justify="left" if col == "model" else "right")
    for name, r in (("twin", twin), ("SimPy", peer)):
        speed.add_row(
            name,
            f"{r['sim_days_per_wall_second']:,.1f}",
            f"{r['sim_days_per_cpu_second']:,.1f}",
            f"{r['us_per_event']:.2f}",
            f"{r['events']:,}",
            f"{r['wall_seconds']:.2f}",
        )
    console.print(speed)
    say(
        f"twin / SimPy speed: {result['speed_ratio_twin_over_simpy']:.2f}x "
        f"(median of paired runs {result['speed_ratio_median_of_pairs']:.2f}x)"
    )
    waits = Table(
        title=f"mean wait per station, minutes, and standard errors over runs "
        f"(first {warmup_minutes:g} min of each run discarded)"
    )
    for col in ("station", "theory", "twin", "SE", "SimPy", "SE", "diff", "2 SE", "agree"):
        waits.add_column(col, justify="left" if col == "station" else "right")
    for s, a, b in zip(result["stations"], twin["stations"], peer["stations"], strict=True):
        waits.add_row(
            s["station"],
            f"{s['theory_wait_minutes']:.3f}",
            f"{a['mean_wait_minutes']:.3f}",
            f"{a['wait_se_minutes']:.3f}",
            f"{b['mean_wait_minutes']:.3f}",
            f"{b['wait_se_minutes']:.3f}",
            f"{s['wait_difference_minutes']:+.3f}",
            f"{result['criteria']['agree_within_se'] * s['combined_se_minutes']:.3f}",
            "yes" if s["agree"] else "NO",
        )
    console.print(waits)
    crit = result["criteria"]
    say(
        f"theory: Wq = rho / (mu - lambda); agree: |diff| <= {crit['agree_within_se']:g} "
        "combined SE"
    )
    if not result["all_agree"]:
        warn("the two models' mean waits differ by more than their standard errors allow")
    if not result["all_close_to_theory"]:
        warn(f"a mean wait lies more than {crit['theory_within_se']:g} SE from theory")
    say(f"wrote {out}")


def _check_bundle_and_output(policy: Path, out: Path) -> None:
    """Refuse, before any work, an output path that cannot be written or a bad bundle."""
    from policies.bundle import BundleError, read_manifest

    with user_errors():
        check_output_file(user_path(out))
    try:
        read_manifest(policy)
    except BundleError as err:
        fail(str(err), "pass --policy BUNDLE_DIR (`synctwin export RUN_DIR --out DIR` makes one)")


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
    """Policy server on loopback: latency, req/s, RSS, cold start (experiments/bench/serve.py)."""
    from experiments.bench.serve import IMPACT_MODES, bench_serve

    _check_bundle_and_output(policy, out)
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
    burst = result["policy_during_impact"]
    console.print(
        f"/v1/policy p99 {burst['idle']['p99_ms']:.2f} ms idle, "
        f"{burst['during_impact']['p99_ms']:.2f} ms while {burst['impact_clients']} clients "
        f"run impact requests ({burst['p99_ratio']:.2f}x; goal <= 2x)"
    )
    pinned = result.get("rollouts_on_one_cpu")
    if pinned is not None:
        pb, pi = pinned["policy_during_impact"], pinned["impact_default"]
        console.print(
            f"rollouts on CPU {pinned['cpu']} only (SYNCTWIN_ROLLOUT_CPUS): /v1/policy "
            f"{pb['p99_ratio']:.2f}x idle during the burst; impact at the defaults p50 "
            f"{pi['p50_ms']:.0f} ms, p99 {pi['p99_ms']:.0f} ms"
        )
    workers = result["rollout_workers"]
    console.print(
        f"cold start {result['cold_start_seconds']:.2f} s (goal <= 3 s); server RSS "
        f"{result['rss_mb']:.0f} MB, peak {result['peak_rss_mb']:.0f} MB (goal <= 300 MB); "
        f"rollout host peak {result['rollout_host']['peak_rss_mb']:.0f} MB; "
        f"{workers['processes']} rollout workers, peak "
        + ", ".join(f"{m:.0f}" for m in workers["peak_rss_mb_each"])
        + " MB"
    )
    say(f"wrote {out}")


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
    from experiments.bench.strategies import bench_strategies as run_bench

    names = split_list(strategies) if strategies else None
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


@bench_app.command("compare")
def bench_compare_cmd(
    runs: Annotated[int, typer.Option(min=1, help="runs (seeds 0..N-1)")] = 2000,
    scenario: ScenarioOpt = "claims",
    strategy: Annotated[str, typer.Option(help="the one strategy run on every seed")] = "static",
    address: Annotated[
        str | None,
        typer.Option(help="HOST:PORT of a running Ray cluster (default: local processes)"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="local processes (default: all cores)")
    ] = None,
    runs_per_task: Annotated[
        int | None, typer.Option(min=1, help="runs per task (default: sized automatically)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON")] = Path(
        "reports/bench-compare.json"
    ),
) -> None:
    """Comparison throughput: runs/s and peak RSS, local processes or a Ray cluster."""
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from experiments.bench.compare import bench_compare
    from experiments.cli.console import err_console
    from experiments.comparison.cluster import ClusterError

    with user_errors():
        check_output_file(user_path(out))
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console, transient=True) as bar, user_errors():
            task = bar.add_task(f"runs on {address}" if address else "runs", total=runs)
            result = bench_compare(
                runs,
                scenario=scenario,
                strategy=strategy,
                address=address,
                workers=workers,
                runs_per_task=runs_per_task,
                progress=lambda k: bar.advance(task, k),
            )
    except ClusterError as err:
        fail(str(err))
    if write_bench_json(result, out, as_json):
        return
    table = Table(title=f"compare throughput ({result['scenario']}, {result['strategy']})")
    for col in ("mode", "runs", "wall s", "runs/s", "runs/part", "driver peak MB", "worker MB"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    worker = result["peak_rss_mb_largest_local_worker"]
    table.add_row(
        result["mode"] + (f" {address}" if address else f" x{result['workers']}"),
        f"{result['runs']:,}",
        f"{result['wall_seconds']:.1f}",
        f"{result['runs_per_second']:.1f}",
        f"{result['runs_per_part_mean']:.1f}",
        f"{result['peak_rss_mb_driver']:.0f}",
        "–" if worker is None else f"{worker:.0f}",
    )
    console.print(table)
    say(f"wrote {out}")


@bench_app.command("live")
def bench_live_cmd(
    policy: Annotated[Path, typer.Option(help="policy bundle to serve", callback=user_path)] = Path(
        "policies/default"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON")] = Path(
        "reports/bench-live.json"
    ),
    repeats: Annotated[int, typer.Option(min=1, help="in-process runs (best kept)")] = 3,
    state_requests: Annotated[int, typer.Option(min=10, help="GET state per time of day")] = 500,
) -> None:
    """Live sites: events/s taken in (in process and through the server), state latency."""
    from experiments.bench.live import GOALS, bench_live

    _check_bundle_and_output(policy, out)
    result = bench_live(policy, repeats=repeats, state_requests=state_requests)
    if write_bench_json(result, out, as_json):
        return
    goal = f">= {GOALS['events_per_second']:,.0f}"
    proc, server = result["in_process"], result["server"]
    table = Table(
        title=f"live sites: a day of {result['scenario']} ({proc['events']:,} events), "
        "one core, alerts off"
    )
    for col in ("ingestion", "events/s", "per CPU s", "goal"):
        table.add_column(col, justify="left" if col == "ingestion" else "right")
    for label, key in (
        ("LiveTwin.ingest, whole day", "ingest_whole_day"),
        ("LiveTwin.ingest, batches of 1,000", "ingest_batches_of_1000"),
        ("  of which: JSON decode only", "json_decode_only"),
        ("  of which: schema validation only", "schema_validation_only"),
    ):
        r = proc[key]
        table.add_row(
            label,
            f"{r['events_per_second']:,.0f}",
            f"{r['events_per_cpu_second']:,.0f}",
            goal if key.startswith("ingest") else "",
        )
    for r in server["ingest"]:
        table.add_row(
            f"server, POST batches of {r['batch']:,}",
            f"{r['events_per_second']:,.0f}",
            f"{r['events_per_server_cpu_second']:,.0f}",
            goal,
        )
    resend = server["resend"]
    table.add_row(
        f"server, the day resent (all duplicates, batches of {resend['batch']:,})",
        f"{resend['events_per_second']:,.0f}",
        f"{resend['events_per_server_cpu_second']:,.0f}",
        "",
    )
    console.print(table)
    state = Table(title="GET /v1/sites/{site}/state (the latest state, one keep-alive client)")
    for col in (
        "time of day",
        "events before",
        "items waiting",
        "p50 ms",
        "p99 ms",
        "server CPU ms",
        "goal",
    ):
        state.add_column(col, justify="right")
    for r in server["state"]:
        state.add_row(
            r["time"],
            f"{r['events_before']:,}",
            f"{r['items_waiting']:,}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['server_cpu_ms_per_request']:.2f}",
            f"p99 <= {GOALS['state_p99_ms']:g} ms",
        )
    console.print(state)
    live = server["with_alerts"]
    alerts = live["alerts_raised"]
    say(
        f"with alerts on: {live['events_per_second']:,.0f} events/s in batches of "
        f"{live['batch']:,}; the day assessed {live['seconds_until_assessed']:.1f} s after the "
        f"first batch, {live['cpu_seconds_with_assessments']:.1f} CPU s in the server and its "
        "rollout workers; " + ("no alerts route" if alerts is None else f"{alerts} alert(s) raised")
    )
    say(f"server RSS {server['server_rss_mb']:.0f} MB (peak {server['server_peak_rss_mb']:.0f})")
    missed = [k for k, ok in result["met"].items() if not ok]
    if missed:
        warn("goal missed: " + ", ".join(missed))
    say(f"wrote {out}")
