"""``synctwin train`` and ``synctwin bench train``: registered on the CLI's apps on import.

Ray, torch and SB3 are imported inside the commands, so ``synctwin --help`` stays fast.
User errors (unknown scenario, a run dir that exists without ``--resume``, nothing to
resume, an unreachable ``--address``, a bad sweep file) end with one line and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from experiments.cli.app import app, bench_app, experiment_app, write_bench_json
from experiments.cli.console import console, err_console, fail, say, user_errors
from experiments.paths import (
    check_output_dir,
    check_output_file,
    scenario_arg,
    shell_path,
    user_path,
)

BACKENDS = ("rllib", "sb3")


@contextmanager
def training_errors() -> Iterator[None]:
    """The project's user errors plus training's own: one line, exit code 2."""
    from training.runs import TrainingError
    from training.scenarios import IncompatibleScenarios

    with user_errors():
        try:
            yield
        except (TrainingError, IncompatibleScenarios) as err:
            fail(str(err))


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{what}: expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise typer.BadParameter(f"{what}: give at least one value")
    return values


class _Bar:
    """A rich progress bar over env steps with the latest return and evaluation cost."""

    def __init__(self, total: int, label: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=err_console,
        )
        self.task = self.progress.add_task(label, total=total, status="starting Ray...")
        self.status = {"return": "-", "eval": "-"}

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, row: dict[str, Any]) -> None:
        if row.get("episode_return_mean") is not None:
            self.status["return"] = f"{float(row['episode_return_mean']):.1f}"
        if row.get("eval_cost") is not None:
            rel = row.get("eval_vs_threshold")
            vs = f" ({float(rel):+.1%} vs threshold)" if rel is not None else ""
            self.status["eval"] = f"{float(row['eval_cost']):,.0f}{vs}"
        status = (
            f"iter {row.get('iteration')}  return {self.status['return']}  "
            f"eval cost {self.status['eval']}"
        )
        self.progress.update(self.task, completed=int(row.get("trained", 0)), status=status)

    def imitation(self, report: dict[str, Any]) -> None:
        """An imitation or DAgger round finished (before any PPO iteration)."""
        say(_round_line(report))
        self.progress.update(self.task, status="imitating the teacher...")


def _round_line(r: dict[str, Any]) -> str:
    kind = "imitation" if r["round"] == 0 else f"DAgger round {r['round']}"
    return (
        f"{kind}: {r['labels']:,} labelled decisions, held-out cost "
        f"{r['mean_total_cost']:,.0f} ({r['vs_threshold']:+.1%} vs threshold), "
        f"{r['seconds']:.0f} s"
    )


@app.command()
def train(
    out: Annotated[
        Path, typer.Option("--out", help="run directory (new, or --resume)", callback=user_path)
    ],
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="training scenario(s), comma-separated")
    ] = "default",
    backend: Annotated[str, typer.Option(help="rllib (Ray) or sb3 (one machine)")] = "rllib",
    timesteps: Annotated[
        int,
        typer.Option(min=0, help="PPO env steps to train in this invocation (0: imitation only)"),
    ] = 100_000,
    address: Annotated[
        str | None, typer.Option(help="join this Ray cluster (HOST:PORT) instead of a local Ray")
    ] = None,
    num_env_runners: Annotated[
        int, typer.Option(min=0, help="remote env runners (0: sample in the trainer)")
    ] = 0,
    envs_per_runner: Annotated[int, typer.Option(min=1, help="vectorised envs per runner")] = 8,
    resume: Annotated[
        bool, typer.Option(help="continue the run in --out from its checkpoint")
    ] = False,
    sweep: Annotated[
        Path | None,
        typer.Option(help="Ray Tune sweep file (YAML); trials go under --out", callback=user_path),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of the run (env draws, network init)")] = 0,
    policy_mode: Annotated[
        str, typer.Option(help="per_sector or shared (rllib); sb3 is always centralised")
    ] = "per_sector",
    team_weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of the operation's cost in rewards")
    ] = 0.5,
    reward: Annotated[
        str,
        typer.Option(
            help="cost (every cost) or avoidable (regular pay left out: what actions change)"
        ),
    ] = "cost",
    blind: Annotated[
        str | None,
        typer.Option(
            help="ablation (rllib): features held at 0 in every observation, e.g. "
            "due_within_60,forecast_next_hour; such a run is not exported"
        ),
    ] = None,
    mask_actions: Annotated[
        bool,
        typer.Option(
            "--mask-actions",
            help="ablation (rllib, per_sector): lends a sector cannot make masked out of "
            "its policy's logits",
        ),
    ] = False,
    lr: Annotated[float, typer.Option(min=0.0, help="learning rate")] = 3e-4,
    entropy_coeff: Annotated[float, typer.Option(min=0.0, help="entropy bonus")] = 0.01,
    batch_size: Annotated[int, typer.Option(min=1, help="env steps per PPO iteration")] = 4000,
    minibatch_size: Annotated[int, typer.Option(min=1, help="PPO minibatch size")] = 500,
    epochs: Annotated[int, typer.Option(min=1, help="PPO epochs per iteration")] = 6,
    hidden: Annotated[str, typer.Option(help="hidden layer sizes, e.g. 64,64")] = "64,64",
    warm_start: Annotated[
        str | None,
        typer.Option(help="imitate a teacher before PPO (rllib): threshold, lookahead, hindsight"),
    ] = None,
    warm_start_seeds: Annotated[
        int, typer.Option(min=1, help="training episodes per scenario the teacher drives")
    ] = 40,
    warm_start_epochs: Annotated[int, typer.Option(min=1, help="epochs of each fit")] = 30,
    dagger_rounds: Annotated[
        int, typer.Option(min=0, help="DAgger rounds: the policies drive, the teacher labels")
    ] = 0,
    dagger_seeds: Annotated[
        int, typer.Option(min=1, help="training episodes per scenario per DAgger round")
    ] = 20,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="iterations")] = 5,
    eval_every: Annotated[int, typer.Option(min=1, help="iterations")] = 5,
    eval_seeds: Annotated[int, typer.Option(min=1, help="held-out seeds per evaluation")] = 4,
) -> None:
    """Train policies on SCENARIO(s) into a run directory (export it with `synctwin export`)."""
    scenarios = [scenario_arg(s.strip()) for s in scenario.split(",") if s.strip()]
    with training_errors():
        from training.runs import TrainingError, check_run_dir
        from training.scenarios import load_training_scenarios
        from twin.env_core import check_feature_names
        from twin.rewards import REWARD_KINDS

        if backend not in BACKENDS:
            raise TrainingError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
        if reward not in REWARD_KINDS:
            raise TrainingError(f"--reward {reward!r}: valid are {', '.join(REWARD_KINDS)}")
        blinded = [] if blind is None else [n.strip() for n in blind.split(",") if n.strip()]
        try:
            check_feature_names(blinded)
        except ValueError as err:
            raise TrainingError(f"--blind: {err}") from None
        # unknown scenarios, and scenarios that cannot share policies, fail before Ray starts
        load_training_scenarios(scenarios)
        check_output_dir(out)
        if sweep is None:
            check_run_dir(out, resume, backend)
        if backend == "sb3":
            if address or sweep:
                raise TrainingError("--backend sb3 runs on one machine: no --address or --sweep")
            rllib_only = warm_start or dagger_rounds or reward != "cost" or blinded or mask_actions
            if timesteps == 0 or rllib_only:
                raise TrainingError(
                    "--warm-start, --dagger-rounds, --reward, --blind, --mask-actions and "
                    "--timesteps 0 are rllib's"
                )
            _train_sb3(out, scenarios, timesteps, resume, seed, lr, entropy_coeff, hidden, epochs)
            return
        from training.rllib import RLlibSettings, check_address, train_rllib

        settings = RLlibSettings(
            scenarios=scenarios,
            timesteps=timesteps,
            policy_mode=policy_mode,
            seed=seed,
            num_env_runners=num_env_runners,
            envs_per_runner=envs_per_runner,
            team_weight=team_weight,
            reward=reward,
            blind=blinded,
            mask_actions=mask_actions,
            lr=lr,
            entropy_coeff=entropy_coeff,
            train_batch_size=batch_size,
            minibatch_size=min(minibatch_size, batch_size),
            num_epochs=epochs,
            hidden=_ints(hidden, "--hidden"),
            warm_start=warm_start,
            warm_start_seeds=warm_start_seeds,
            warm_start_epochs=warm_start_epochs,
            dagger_rounds=dagger_rounds,
            dagger_seeds=dagger_seeds,
            checkpoint_every=checkpoint_every,
            eval_every=eval_every,
            eval_seeds=eval_seeds,
        )
        settings.check()
        if address:
            check_address(address)
        if sweep is not None:
            from training.sweep import load_sweep, run_sweep

            if resume:
                raise TrainingError("--sweep starts new trials: it takes no --resume")
            spec = load_sweep(sweep)
            summary = run_sweep(spec, settings, out, address=address)
            best = summary["best"]
            say(f"sweep: {summary['trials']} trials, results in {out}/sweep.csv")
            if best:
                trial = out / "trials" / str(best["trial"])
                say(
                    f"best trial {best['trial']}: eval cost {best['eval_cost']:,.0f} "
                    f"({best['eval_vs_threshold']:+.1%} vs threshold); "
                    f"export: synctwin export {shell_path(trial)} --out BUNDLE"
                )
            return
        with _Bar(timesteps, f"rllib {'+'.join(scenarios)}") as bar:
            manifest = train_rllib(
                settings,
                out,
                resume=resume,
                address=address,
                on_iteration=bar.update,
                on_round=bar.imitation,
            )
    ev = manifest.get("evaluation") or {}
    say(
        f"trained {manifest.get('iterations', 0)} iterations, "
        f"{manifest.get('env_steps', 0):,} env steps in total; run in {out}"
    )
    if ev:
        say(
            f"held-out evaluation ({len(ev['seeds'])} seeds): mean total cost "
            f"{ev['mean_total_cost']:,.0f} vs threshold {ev['threshold_mean_total_cost']:,.0f} "
            f"({ev['vs_threshold']:+.1%})"
        )
    blind = (manifest.get("env_config") or {}).get("blind")
    if blind:
        say(f"an ablation blind to {', '.join(blind)}: not exportable")
    else:
        say(f"export: synctwin export {shell_path(out)} --out BUNDLE_DIR")


def _train_sb3(
    out: Path,
    scenarios: list[str],
    timesteps: int,
    resume: bool,
    seed: int,
    lr: float,
    entropy_coeff: float,
    hidden: str,
    epochs: int,
) -> None:
    from training.sb3 import SB3Settings, train_sb3

    settings = SB3Settings(
        scenarios=scenarios,
        timesteps=timesteps,
        seed=seed,
        lr=lr,
        entropy_coeff=entropy_coeff,
        hidden=_ints(hidden, "--hidden"),
        n_epochs=epochs,
    )
    with _Bar(timesteps, f"sb3 {'+'.join(scenarios)}") as bar:
        manifest = train_sb3(settings, out, resume=resume, on_iteration=bar.update)
    ev = manifest["evaluation"]
    say(
        f"trained {manifest['timesteps']:,} env steps; held-out mean total cost "
        f"{ev['mean_total_cost']:,.0f} vs threshold {ev['threshold_mean_total_cost']:,.0f} "
        f"({ev['vs_threshold']:+.1%}); export: synctwin export {shell_path(out)} --out BUNDLE_DIR"
    )


@bench_app.command("train")
def bench_train_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    out: Annotated[Path, typer.Option(help="where to write the JSON")] = Path(
        "reports/bench-train.json"
    ),
    runners: Annotated[str, typer.Option(help="env runner counts, comma-separated")] = "0,1",
    envs: Annotated[str, typer.Option(help="envs per runner, comma-separated")] = "1,8",
    iterations: Annotated[int, typer.Option(min=1, help="timed iterations per setting")] = 2,
    batch_size: Annotated[int, typer.Option(min=48, help="env steps per iteration")] = 1000,
    run: Annotated[
        Path | None,
        typer.Option(help="a run dir: report its time to beat threshold", callback=user_path),
    ] = None,
) -> None:
    """PPO env steps/s and seconds per iteration for env runners x envs per runner.

    The full grid of the issue is `--runners 0,1,2 --envs 1,4,8`.
    """
    from experiments.bench.train import bench_train, time_to_beat

    grid_runners, grid_envs = _ints(runners, "--runners"), _ints(envs, "--envs")
    with user_errors():
        check_output_file(user_path(out))
    result = bench_train(grid_runners, grid_envs, iterations=iterations, batch_size=batch_size)
    if run is not None:
        with training_errors():
            result["time_to_beat_threshold"] = time_to_beat(run)
    if write_bench_json(result, out, as_json):
        return
    from rich.table import Table

    table = Table(title=f"PPO training speed on default (batch {batch_size} env steps)")
    for col in ("env runners", "envs/runner", "env steps/s", "s/iteration"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(
            str(r["num_env_runners"]),
            str(r["envs_per_runner"]),
            f"{r['env_steps_per_s']:,.0f}",
            f"{r['seconds_per_iteration']:.2f}",
        )
    console.print(table)
    ttb = result.get("time_to_beat_threshold")
    if ttb:
        say(f"time to beat threshold: {json.dumps(ttb)}")
    say(f"wrote {out}")


@experiment_app.command("curves")
def experiment_curves(
    runs: Annotated[
        list[Path], typer.Argument(help="training run directories", callback=user_path)
    ],
    out: Annotated[
        Path, typer.Option("--out", help="the picture (PNG)", callback=user_path)
    ] = Path("reports/learning-curves.png"),
) -> None:
    """Learning curves: held-out cost of each run against minutes and decisions learnt from."""
    from experiments.reporting.learning_curves import CurveError, plot_curves, read_curve

    with user_errors():
        try:
            curves = [read_curve(r) for r in runs]
        except CurveError as err:
            fail(str(err))
        plot_curves(curves, out)
    for c in curves:
        say(
            f"{c.label}: {len(c.cost)} evaluations, last {c.cost[-1]:,.0f} after "
            f"{c.minutes[-1]:.1f} min" + (f" (threshold {c.threshold:,.0f})" if c.threshold else "")
        )
    say(f"wrote {shell_path(out)}")
