"""``synctwin dashboard``: registered on the CLI's app on import.

The page itself is a Solara app: the planner's (:mod:`experiments.dashboard.app`), or
with ``--live URL --site NAME`` the live view of a site on a running server
(:mod:`experiments.dashboard.live_app`). This command checks the options first (a
wrong scenario or bundle, an unreachable server or an unknown site fails here, with the
CLI's usual message and exit code 2, rather than as an error inside the page), then
runs Solara's server in a child process and prints the address to open.
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
LIVE_APP = "experiments.dashboard.live_app"
#: Solara keeps a closed page's session this long (its own default is 24 hours, and a live
#: page's session polls the server until it ends).
CULL_TIMEOUT_ENV = "SOLARA_KERNEL_CULL_TIMEOUT"
LIVE_CULL_TIMEOUT = "1m"


def solara_command(host: str, port: int, page: str = DASHBOARD_APP) -> list[str]:
    """The command that serves the dashboard (production mode: no reloader, no browser)."""
    return [
        sys.executable,
        "-m",
        "solara",
        "run",
        page,
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
    live: Annotated[
        str | None,
        typer.Option(help="watch a live site on this running server (http://HOST:PORT)"),
    ] = None,
    site: Annotated[str | None, typer.Option(help="the site to watch (with --live)")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="the server's X-API-Key (with --live)")
    ] = None,
    every: Annotated[
        float | None,
        typer.Option(min=1.0, max=3600.0, help="seconds between polls (with --live; default 10)"),
    ] = None,
) -> None:
    """The planner dashboard in the browser: steer a what-if twin live, compare two strategies.

    With --live URL --site NAME: watch a live site instead (queues, staff, risks, alerts).
    """
    from twin.scenario import load_scenario

    policies = list(policy or [])
    if live is not None or site is not None:
        if policies:
            fail("--policy is for the planner dashboard; --live shows the server's own policy")
        raise typer.Exit(_live(live, site, api_key, every, host, port))
    if api_key is not None or every is not None:
        fail("--api-key and --every need --live URL --site NAME")
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


def _live(
    url: str | None, site: str | None, api_key: str | None, every: float | None, host: str,
    port: int,
) -> int:  # fmt: skip
    """Check the server and the site (one poll of its state), then serve the live page."""
    from experiments.dashboard.live_site import (
        DEFAULT_EVERY_SECONDS,
        ENV_LIVE_API_KEY,
        ENV_LIVE_EVERY,
        ENV_LIVE_SITE,
        ENV_LIVE_URL,
    )
    from experiments.dashboard.site_client import SiteClient, SiteClientError

    if url is None:
        fail("--site needs --live URL (the server the site runs on)")
    if site is None:
        fail("--live needs --site NAME (the site's name on that server)")
    try:
        with SiteClient(url, site, api_key=api_key, timeout=10.0) as client:
            snapshot = client.state()
            base = client.url
    except SiteClientError as err:
        fail(str(err))
    if importlib.util.find_spec("solara") is None:
        fail("the dashboard needs the viz extra: pip install -c constraints.txt -e '.[viz]'")
    env = {
        **os.environ,
        ENV_LIVE_URL: base,
        ENV_LIVE_SITE: site,
        ENV_LIVE_API_KEY: api_key or "",
        ENV_LIVE_EVERY: str(every or DEFAULT_EVERY_SECONDS),
        # a closed page's session (and its poller) ends a minute later, not Solara's 24 h
        CULL_TIMEOUT_ENV: os.environ.get(CULL_TIMEOUT_ENV, LIVE_CULL_TIMEOUT),
    }
    say(
        f"SyncTwin live dashboard of site {site} ({snapshot.scenario}) on http://{host}:{port}/ "
        "(Ctrl+C stops it)"
    )
    return serve_until_stopped(solara_command(host, port, LIVE_APP), env)


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
