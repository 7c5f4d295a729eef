"""The policy server app (:func:`create_app`) and how it runs (:func:`run_server`)."""

from __future__ import annotations

import gc
import json
import logging
import os
import tempfile
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypedDict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from policies.decision_log import DecisionLog
from policies.server.alerting import SiteAlerts
from policies.server.config import Settings
from policies.server.deps import API_KEY_HEADER
from policies.server.errors import add_exception_handlers
from policies.server.metrics import Metrics
from policies.server.middleware import ServingMiddleware
from policies.server.openapi import add_examples
from policies.server.routes import alerts as alert_routes
from policies.server.routes import feedback, forecast, health, policy, recommend, sites
from policies.server.sites import Sites
from policies.server.state import PolicyHolder, ReloadWatcher, Served, ServerState, load_served
from policies.store import StoreError

log = logging.getLogger("synctwin.server")


def create_app(settings: Settings, served: Served | None = None) -> FastAPI:
    """The policy server app for ``settings``.

    Args:
        settings: the validated settings.
        served: an already loaded policy (default: load ``settings.policy``).

    Raises:
        BundleError: the bundle is missing, corrupt or incompatible.
        SiteError: a site's scenario does not load or does not fit the bundle.
        StoreError: the store cannot be opened or read (the sites replay it).
    """
    served = served if served is not None else load_served(settings.policy)
    state = ServerState(
        settings=settings,
        holder=PolicyHolder(served),
        decisions=DecisionLog(settings.log, store=settings.store),
        metrics=Metrics(),
        rollouts=threading.BoundedSemaphore(settings.rollout_concurrency),
    )
    state.metrics.set_policy(served)
    # each site's twin is rebuilt from its stored events before the server is ready
    live_sites = Sites(settings.sites, served.scenario, state.decisions.store)
    alerts = SiteAlerts(state, live_sites) if settings.sites and settings.alerts else None
    if settings.reload_state_file is not None:
        state.watcher = ReloadWatcher(state, settings.reload_state_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.watcher is not None:
            state.watcher.start()
        # everything loaded so far lives as long as the server: keep it out of the
        # cyclic collector's full passes (they would otherwise add 100 ms pauses)
        gc.collect()
        gc.freeze()
        host = state.rollout_host()
        if host is not None:  # start the rollout processes now, not on the first request
            threading.Thread(target=host.warm, name="synctwin-rollout-warm", daemon=True).start()
        state.ready = True
        yield
        state.ready = False
        if alerts is not None:
            alerts.close()
        state.close_host()
        if state.watcher is not None:
            state.watcher.stop_event.set()
        state.decisions.close()

    sc = served.scenario
    app = FastAPI(
        title="SyncTwin policy server",
        version="1",
        summary="Live recommendations, predicted impact and risk forecasts from a policy bundle.",
        description=(
            f"Serving policies for scenario `{sc.name}`. Send the live state of the operation "
            "(an `OperationSnapshot`); get back per sector what to do now, why, and what it "
            f"is predicted to save. Authenticate with the `{API_KEY_HEADER}` header when the "
            "server has a key; admin routes need the admin key."
        ),
        lifespan=lifespan,
    )
    app.state.synctwin = state
    app.state.sites = live_sites
    app.state.alerts = alerts
    app.add_middleware(ServingMiddleware, state=state)
    add_exception_handlers(app)
    app.add_exception_handler(StoreError, store_unavailable)  # type: ignore[arg-type]
    add_examples(app, served)
    app.include_router(health.router)
    app.include_router(policy.router)
    app.include_router(recommend.router)
    app.include_router(forecast.router)
    app.include_router(feedback.router)
    if settings.sites:  # a server without sites documents no site routes
        app.include_router(sites.router)
        app.include_router(alert_routes.router)
    return app


async def store_unavailable(request: Request, err: StoreError) -> JSONResponse:
    """A record that could not be committed: a 503 (retry later), never a 200 or a 500."""
    log.error("store error on %s: %s", request.url.path, err)
    return JSONResponse(status_code=503, content={"detail": str(err)}, headers={"Retry-After": "1"})


def app_from_env() -> FastAPI:
    """An app from ``SYNCTWIN_*`` variables: the uvicorn factory of worker processes."""
    return create_app(Settings())


def _env(settings: Settings) -> dict[str, str]:
    out = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, tuple | list):
            value = json.dumps(list(value))
        out[f"SYNCTWIN_{name.upper()}"] = str(value)
    return out


class _UvicornOptions(TypedDict):
    """The ``uvicorn.run`` options shared by one process and several workers."""

    log_config: dict[str, Any]
    host: str
    port: int
    log_level: str
    access_log: bool
    timeout_graceful_shutdown: int


def run_server(settings: Settings, app: FastAPI | None = None) -> None:
    """Serve with uvicorn: one process (``app``, already validated) or ``settings.workers``.

    With several workers each loads the bundle itself (uvicorn's factory), and reloads
    reach all of them through ``reload_state_file`` (a temporary file if not set).
    """
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)  # uvicorn's, plus this server's own logger
    log_config["loggers"]["synctwin"] = {"handlers": ["default"], "level": "INFO"}
    common: _UvicornOptions = {
        "log_config": log_config,
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1:
        uvicorn.run(app if app is not None else create_app(settings), **common)
        return
    with tempfile.TemporaryDirectory(prefix="synctwin-serve-") as tmp:
        if settings.reload_state_file is None:
            settings = settings.model_copy(update={"reload_state_file": Path(tmp) / "reload.json"})
        os.environ.update(_env(settings))
        uvicorn.run(
            "policies.server:app_from_env", factory=True, workers=settings.workers, **common
        )
