"""``synctwin dashboard``: registered on the CLI's app on import.

The page itself is a Solara app (:mod:`experiments.dashboard.app`); this command checks
the options first (a wrong scenario or bundle fails here, with the CLI's usual
message and exit code 2, rather than as an error inside the page), then runs
Solara's server in a child process and prints the address to open.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from experiments.cli.app import app
from experiments.cli.console import fail, say, user_errors
from experiments.paths import user_path

DASHBOARD_APP = "experiments.dashboard.app"


def solara_command(host: str, port: int) -> list[str]:
    """The command that serves the dashboard (production mode: no reloader, no browser)."""
    return [
        sys.executable,
        "-m",
        "solara",
        "run",
        DASHBOARD_APP,
        "--host",
        host,
        "--port",
        str(port),
        "--production",
        "--no-open",
        "--log-level",
        "warning",
    ]


def dashboard_env(scenario: str, policies: list[Path]) -> dict[str, str]:
    """The environment that tells the page its scenario and policy bundles."""
    from experiments.dashboard.session import ENV_POLICIES, ENV_SCENARIO

    given = Path(scenario).expanduser()
    if given.suffix in {".yaml", ".yml"} or given.is_file():
        scenario = str(given.resolve())  # the server may resolve paths from elsewhere
    return {
        **os.environ,
        ENV_SCENARIO: scenario,
        ENV_POLICIES: os.pathsep.join(str(p.resolve()) for p in policies),
    }


@app.command()
def dashboard(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="built-in scenario name or a YAML file")
    ] = "default",
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8765,
    policy: Annotated[
        list[Path] | None,
        typer.Option(
            help="a policy bundle to offer as strategy and advisor (repeatable)",
            callback=user_path,
        ),
    ] = None,
) -> None:
    """The planner dashboard in the browser: steer a what-if twin live, compare two strategies."""
    from twin.scenario import load_scenario

    policies = list(policy or [])
    with user_errors():
        load_scenario(scenario)
        if policies:
            from policies.bundle import read_manifest

            for p in policies:
                read_manifest(p)
    if importlib.util.find_spec("solara") is None:
        fail("the dashboard needs the viz extra: pip install -c constraints.txt -e '.[viz]'")
    say(f"SyncTwin planner dashboard on http://{host}:{port}/ (Ctrl+C stops it)")
    raise typer.Exit(
        serve_until_stopped(solara_command(host, port), dashboard_env(scenario, policies))
    )


def serve_until_stopped(cmd: list[str], env: dict[str, str]) -> int:
    """Run the server; Ctrl+C or SIGTERM to this process stops it too (no orphan server)."""
    proc = subprocess.Popen(cmd, env=env)

    def stop(signum: int, frame: object) -> None:
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
