"""``synctwin experiment alerts``: how long before the misses do alerts come, and how
many are false (method: :mod:`experiments.comparison.alert_lead`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from experiments.cli.app import experiment_app
from experiments.cli.console import console, fail, say, user_errors
from experiments.cli.options import WorkersOpt, split_list
from experiments.paths import check_output_dir, user_path


def _seed_job(job: tuple[str, str, int, Any]) -> Any:
    """One seed's replay (module level: process pools pickle it by name)."""
    from experiments.comparison.alert_lead import replay_seed
    from experiments.comparison.strategies import controller_for
    from twin.scenario import load_scenario

    scenario_name, strategy, seed, rules = job
    sc = load_scenario(scenario_name)
    return replay_seed(sc, controller_for(strategy, sc, seed), seed, rules)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


@experiment_app.command("alerts")
def experiment_alerts(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="scenario(s), comma-separated")
    ] = "peak-surge,volatile-peak",
    seeds: Annotated[int, typer.Option(min=1, help="seeds FIRST_SEED..FIRST_SEED+N-1")] = 20,
    first_seed: Annotated[int, typer.Option(min=0, help="first seed")] = 0,
    strategy: Annotated[
        str, typer.Option(help="how the floor is run while the alerts watch it")
    ] = "static",
    probability: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="alert at this forecast probability")
    ] = 0.6,
    min_misses: Annotated[int, typer.Option(min=1, help="SLA misses that count as a risk")] = 2,
    samples: Annotated[int, typer.Option(min=1, help="rollouts per assessment")] = 8,
    horizon_hours: Annotated[float, typer.Option(min=0.25, help="how far ahead to look")] = 3.0,
    out: Annotated[Path, typer.Option(help="output directory", callback=user_path)] = Path(
        "runs/alerts"
    ),
    workers: WorkersOpt = None,
) -> None:
    """Replay each seed's floor log into a live twin, raise alerts on the decision grid,
    and measure their lead over each sector's first SLA miss and the false-alert rate."""
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from agents.evaluation import process_pool
    from experiments.comparison.alert_lead import LEAD_GOAL_MINUTES, result_json, summarize
    from experiments.comparison.strategies import controller_for
    from policies.alerts import AlertRules
    from twin.scenario import load_scenario

    names = split_list(scenario)
    if not names:
        fail("--scenario names no scenario")
    with user_errors():
        for name in names:
            controller_for(strategy, load_scenario(name), 0)  # unknown names: one line, now
        check_output_dir(out)
        rules = AlertRules(
            probability=probability,
            min_misses=min_misses,
            samples=samples,
            horizon_hours=horizon_hours,
        )
    seed_list = list(range(first_seed, first_seed + seeds))
    jobs = [(name, strategy, s, rules) for name in names for s in seed_list]
    pool = process_pool(workers, len(jobs))
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    done: list[Any] = []
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("seeds replayed", total=len(jobs))
        results = pool.map(_seed_job, jobs) if pool is not None else map(_seed_job, jobs)
        for r in results:
            done.append(r)
            bar.advance(task)
    if pool is not None:
        pool.shutdown()
    report: dict[str, Any] = {"rules": rules.__dict__, "strategy": strategy, "scenarios": {}}
    table = Table(
        "scenario",
        "sectors that missed",
        f"led by >= {LEAD_GOAL_MINUTES:.0f} min",
        "seeds: first miss led",
        "median lead (min)",
        "alerts",
        "false alerts",
        title=f"Alerts on replays (floor: {strategy}; seeds {seed_list[0]}..{seed_list[-1]})",
    )
    for k, name in enumerate(names):
        mine = done[k * len(seed_list) : (k + 1) * len(seed_list)]
        s = summarize(mine)
        report["scenarios"][name] = {"summary": s, "seeds": result_json(mine)}
        lead = s["median_lead_minutes"]
        table.add_row(
            name,
            str(s["sectors_with_misses"]),
            f"{s['sectors_led']} ({_pct(s['share_sectors_led'])})",
            f"{s['seeds_first_miss_led']}/{s['seeds_with_misses']} "
            f"({_pct(s['share_seeds_first_miss_led'])})",
            "-" if lead is None else f"{lead:.0f}",
            str(s["alerts"]),
            f"{s['false_alerts']}/{s['alerts_closed']} ({_pct(s['false_alert_rate'])})",
        )
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "alerts.json"
    path.write_text(json.dumps(report, indent=1))
    say(f"wrote {path}")
