"""``synctwin demo``: the main job on the built-in ``default`` scenario, end to end.

1. **Baselines.** Every built-in strategy on seeds ``0..N-1`` (common random numbers).
2. **Train briefly.** PPO with one policy per sector on RLlib (a local Ray), a few
   iterations: enough to see the loop run, not to beat the baselines.
3. **Export** the run to an ONNX policy bundle (checked against the trained modules).
4. **Compare** ``static``, the tuned ``threshold`` manager, the freshly trained bundle and
   the shipped ``policies/default`` bundle on the same seeds, and print the table.

Everything is written under ``--out`` (``runs/demo`` by default, git-ignored):
``baselines/``, ``run/``, ``bundle/`` and ``compare/`` with ``report.html``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

from experiments.cli.console import say
from experiments.paths import shell_path

SCENARIO = "default"
BASELINES = ["static", "threshold", "silo", "lookahead", "random"]
SHIPPED_BUNDLE = Path(__file__).resolve().parent.parent / "policies" / "default"


def _compare(
    strategies: list[str], seeds: int, out: Path, err_console: Console
) -> tuple[object, list[Path]]:
    from experiments.comparison.compare import run_compare, write_comparison

    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("runs", total=len(strategies) * seeds)
        cmp = run_compare(
            [SCENARIO],
            strategies,
            seeds,
            progress=lambda k: bar.advance(task, k),
            out=out,
            overwrite=True,  # the demo's own outputs, made anew on every run
        )
    return cmp, write_comparison(cmp, out)


def _train(run_dir: Path, timesteps: int, err_console: Console) -> dict:
    from training.rllib import RLlibSettings, train_rllib

    settings = RLlibSettings(
        scenarios=[SCENARIO],
        timesteps=timesteps,
        train_batch_size=min(4000, timesteps),
        minibatch_size=min(500, timesteps),
        checkpoint_every=1,
        eval_every=10**6,  # the comparison below is the evaluation
    )
    settings.check()
    columns = (*Progress.get_default_columns()[:3], TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("training (RLlib PPO, one policy per sector)", total=timesteps)

        def step(row: dict) -> None:
            bar.update(task, completed=min(timesteps, int(row.get("env_steps") or 0)))

        return train_rllib(settings, run_dir, on_iteration=step)


def run_demo(
    out: Path,
    seeds: int,
    timesteps: int,
    console: Console,
    err_console: Console,
    table: Callable[[object, str], object],
) -> None:
    """Run the four steps above, printing as it goes; ``table`` renders a summary."""
    from training.export import export_run
    from twin.scenario import load_scenario

    sc = load_scenario(SCENARIO)
    console.print(
        f"[bold]SyncTwin demo[/]: scenario [cyan]{sc.name}[/] ({sc.description}), "
        f"{sc.total_headcount} workers, seeds 0..{seeds - 1}"
    )
    console.rule("1. baselines")
    cmp, _ = _compare(BASELINES, seeds, out / "baselines", err_console)
    console.print(table(cmp.summary, SCENARIO))

    console.rule("2. train briefly")
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own scratch run
    manifest = _train(run_dir, timesteps, err_console)
    console.print(
        f"trained {manifest.get('iterations')} PPO iterations, "
        f"{manifest.get('env_steps'):,} env steps, in {run_dir}"
    )

    console.rule("3. export")
    bundle = out / "bundle"
    exported = export_run(run_dir, bundle, name="demo", version="1")
    say(
        f"bundle {exported.name} {exported.version}: {len(exported.policy_files)} ONNX policies "
        f"in {bundle}"
    )

    console.rule("4. compare")
    strategies = ["static", "threshold", f"policy:{bundle}"]
    if (SHIPPED_BUNDLE / "manifest.json").is_file():
        strategies.append(f"policy:{os.path.relpath(SHIPPED_BUNDLE)}")
    cmp, paths = _compare(strategies, seeds, out / "compare", err_console)
    console.print(table(cmp.summary, SCENARIO))
    console.print(
        "The briefly trained bundle shows the loop end to end; the shipped bundle is the "
        "one trained to its budget (README: Training)."
    )
    say("wrote " + ", ".join(str(p) for p in paths))

    console.rule("done")
    for line in next_steps(out, bundle):
        say(line)


def synctwin_command() -> str:
    """How the user can call ``synctwin`` from their shell: the bare name when it is on
    ``PATH`` (an activated venv), else the path to this one (``.venv/bin/synctwin``)."""
    here = Path(sys.executable).with_name("synctwin")
    found = shutil.which("synctwin")
    if found is not None and Path(found).resolve() == here.resolve():
        return "synctwin"
    return shell_path(os.path.relpath(here) if here.is_relative_to(Path.cwd()) else here)


def next_steps(out: Path, bundle: Path) -> list[str]:
    """Where the demo's outputs are and what to try next, as commands that work when pasted."""
    q, st = shell_path, synctwin_command()
    report = (out / "compare" / "report.html").resolve().as_uri()
    return [
        f"outputs in {out}: baselines/, run/ (training), bundle/ (ONNX policies), compare/",
        "",
        "Next:",
        f"  open the comparison report:   python3 -m webbrowser {q(report)}",
        f"  serve the bundle it made:     {st} serve --policy {q(bundle)}",
        f"  ...and in another terminal:   {st} snapshot --at 600 > state.json",
        "                                curl -s localhost:8000/v1/recommend "
        "-H 'content-type: application/json' -d @state.json",
        f"  plan in the dashboard:        {st} dashboard --policy {q(bundle)}",
        f"  train to a real budget:       {st} train --out runs/default   (README: Training)",
    ]
