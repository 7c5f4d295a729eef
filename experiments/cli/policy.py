"""``synctwin export`` and ``serve``: from a training run to a served policy bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from experiments.cli.app import app
from experiments.cli.console import console, fail, say, user_errors
from experiments.paths import check_output_dir, shell_path, user_path

if TYPE_CHECKING:
    from policies.server import Settings

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
        Path | None,
        typer.Option(
            help="JSONL copy of the decision log, appended as records are stored",
            callback=user_path,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="where recommendations and feedback are stored: sqlite:///PATH (or a path), "
            "postgresql://... [default: a SQLite file beside --log (X.jsonl -> X.sqlite), "
            "else memory]"
        ),
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option(help="a live site NAME=SCENARIO (a built-in name or a YAML path); repeatable"),
    ] = None,
    sites: Annotated[
        Path | None,
        typer.Option(
            help="YAML/JSON file of live sites: NAME: SCENARIO, or NAME: {scenario, start}",
            callback=user_path,
        ),
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option(help="URL that each site's alerts and their outcomes are POSTed to"),
    ] = None,
    alert_probability: Annotated[
        float | None,
        typer.Option(help="alert when a risk's forecast probability reaches this [default: 0.6]"),
    ] = None,
    ray: Annotated[bool, typer.Option("--ray", help="serve with Ray Serve (scale-out)")] = False,
    replicas: Annotated[int, typer.Option(min=1, help="Ray Serve replicas")] = 1,
) -> None:
    """Serve a policy bundle over HTTP: recommendations, impact, forecasts (see policies/server/).

    Options override SYNCTWIN_* environment variables; the bundle is verified before
    the server starts (a bad one exits with code 2).
    """
    from policies.server import Settings, create_app, run_server
    from policies.server.sites import SiteError
    from policies.store import StoreError

    given: dict[str, object] = {"policy": policy, "host": host, "port": port, "workers": workers}
    given |= {"api_key": api_key, "admin_key": admin_key, "log": log, "store": store}
    given |= {"webhook": webhook, "alert_probability": alert_probability}
    with user_errors():
        given["sites"] = _site_specs(site or [], sites) or None
        settings = Settings(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
        if ray:
            from policies.ray_serve import run as run_ray

            run_ray(settings, replicas=replicas)
            return
        try:
            if settings.workers == 1:
                app_ = create_app(settings)
            else:  # each worker opens the store itself: check it opens before they start
                app_ = None
                _check_store(settings.log, settings.store)
                _check_sites(settings)
        except (StoreError, SiteError) as err:
            fail(str(err))
    run_server(settings, app_)


def _check_store(log: Path | None, store: str | None) -> None:
    """Open (creating its tables) and close the store of ``synctwin serve``."""
    from policies.decision_log import DecisionLog

    DecisionLog(log, store=store).close()


def _site_specs(given: list[str], path: Path | None) -> list[dict[str, object]]:
    """The sites of ``--site NAME=SCENARIO`` options and a ``--sites`` file, as settings."""
    import yaml

    out: list[dict[str, object]] = []
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text())  # JSON is YAML too
        except (OSError, yaml.YAMLError) as err:
            fail(f"--sites {path}: cannot be read: {err}")
        if not isinstance(data, dict):
            fail(f"--sites {path}: expected a mapping of site name to scenario")
        for name, value in data.items():
            entry = value if isinstance(value, dict) else {"scenario": value}
            out.append({"name": str(name), **entry})
    for spec in given:
        name, sep, scenario = spec.partition("=")
        if not sep or not name or not scenario:
            fail(f"--site {spec!r}: expected NAME=SCENARIO (a built-in name or a YAML path)")
        out.append({"name": name, "scenario": scenario})
    return out


def _check_sites(settings: Settings) -> None:
    """Load each site's scenario and check it fits the bundle, before workers start."""
    from policies.runtime import BundlePolicy
    from policies.server.sites import load_site_scenario

    if settings.sites:
        served = BundlePolicy(settings.policy).scenario
        for spec in settings.sites:
            load_site_scenario(spec, served)
