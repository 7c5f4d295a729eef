"""The policy server: live recommendations, predicted impact and risk forecasts over HTTP.

A FastAPI app (:func:`create_app`) served by uvicorn (``synctwin serve``). It runs
on onnxruntime alone: it imports neither torch nor ray (Ray Serve lives in
:mod:`policies.ray_serve`).

=======================  =====  ===========================================================
route                    auth   what
=======================  =====  ===========================================================
POST /v1/recommend       key    snapshot -> per sector: action, message, confidence,
                                drivers, predicted impact (twin rollouts with and without)
POST /v1/forecast        key    snapshot -> per sector: risk of SLA misses and overtime
                                over the next hours, under the policy and under no action
POST /v1/feedback        key    was a recommendation accepted? (stored in the decision log)
GET  /v1/policy          key    the served bundle's manifest
POST /v1/policy/reload   admin  load, verify and swap in another bundle
GET  /healthz                   the process is up
GET  /readyz                    a policy is loaded and the server is not shutting down
GET  /metrics                   Prometheus metrics
GET  /docs, /openapi.json       the API, with a real example snapshot
=======================  =====  ===========================================================

Every response carries the ``X-Policy-Version`` header; recommendations and
forecasts also name the version in their body. A request is answered entirely by
the policy that was current when it started: a reload swaps one reference, under a
lock, after the new bundle has been loaded, verified and tried on example states.

Configuration is one :class:`Settings` object (environment variables prefixed
``SYNCTWIN_``, or ``synctwin serve`` options), validated at start.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool

from policies.advice import (
    IMPACT_HORIZON_MINUTES,
    IMPACT_SAMPLES,
    MAX_HORIZON_MINUTES,
    MAX_SAMPLES,
    Advice,
    AdviceError,
    AdviceOptions,
    OptionError,
    action_labels,
    advise,
)
from policies.bundle import BundleError
from policies.decision_log import DecisionLog
from policies.explain import ReferenceDay, decide_and_explain, reference_day
from policies.impact import forecast as run_forecast
from policies.messages import KINDS
from policies.runtime import BundlePolicy
from policies.schemas import (
    DriverOut,
    ErrorOut,
    FeedbackOut,
    FeedbackRequest,
    ForecastBody,
    ForecastOut,
    ForecastRequest,
    Health,
    ImpactOut,
    PolicyInfo,
    PolicyRef,
    Recommendation,
    RecommendBody,
    RecommendRequest,
    ReloadOut,
    ReloadRequest,
    RiskAt,
    SectorForecast,
    SectorRecommendation,
)
from twin.live import SnapshotError
from twin.live import check_snapshot as check_fits_scenario
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

log = logging.getLogger("synctwin.server")

VERSION_HEADER = "X-Policy-Version"
API_KEY_HEADER = "X-API-Key"


# --------------------------------------------------------------------------- settings


class Settings(BaseSettings):
    """Everything the server is configured with; from ``SYNCTWIN_*`` or the CLI.

    Rollout limits bound the CPU one request may ask for; requests beyond them get a
    422 naming the option. ``rollout_concurrency`` requests may run rollouts at
    once; more wait up to ``rollout_wait_seconds`` and then get a 503.
    """

    model_config = SettingsConfigDict(env_prefix="SYNCTWIN_", frozen=True, extra="forbid")

    policy: Path = Field(description="the policy bundle directory to serve")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    api_key: SecretStr | None = Field(None, description="required in X-API-Key if set")
    admin_key: SecretStr | None = Field(None, description="for admin routes; none: disabled")
    log: Path | None = Field(None, description="decision log (JSONL); none: in memory")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger bodies get a 413")
    impact: bool = Field(True, description="estimate impact unless a request says otherwise")
    impact_samples: int = Field(IMPACT_SAMPLES, ge=2, description="rollouts per arm for impact")
    impact_horizon_minutes: int = Field(
        IMPACT_HORIZON_MINUTES, ge=1, description="impact rollout horizon"
    )
    impact_scope: Literal["per_sector", "total"] = Field(
        "per_sector", description="default impact_scope of requests (see RecommendRequest)"
    )
    forecast_hours: tuple[float, ...] = Field((1.0, 2.0, 3.0, 4.0), min_length=1)
    forecast_samples: int = Field(8, ge=2)
    max_samples: int = Field(MAX_SAMPLES, ge=2, description="largest samples a request may ask for")
    max_horizon_minutes: int = Field(
        MAX_HORIZON_MINUTES, ge=1, description="longest rollout a request may ask"
    )
    max_snapshot_items: int = Field(100_000, ge=1, description="work items in one snapshot")
    max_snapshot_workers: int = Field(10_000, ge=1, description="workers in one snapshot")
    max_rate_per_hour: float = Field(1e6, gt=0, description="largest arrival/completion rate")
    rollout_concurrency: int = Field(2, ge=1, description="requests running rollouts at once")
    rollout_wait_seconds: float = Field(30.0, ge=0, description="wait for a slot, then 503")
    seed: int = Field(0, ge=0, description="first rollout seed (same request, same answer)")
    reload_state_file: Path | None = Field(
        None, description="shared by worker processes so a reload reaches all of them"
    )

    @model_validator(mode="after")
    def _keys_differ(self) -> Settings:
        if (
            self.api_key is not None
            and self.admin_key is not None
            and self.api_key.get_secret_value() == self.admin_key.get_secret_value()
        ):
            raise ValueError("api_key and admin_key must differ")
        if max(self.forecast_hours) * 60 > self.max_horizon_minutes:
            raise ValueError("forecast_hours must lie within max_horizon_minutes")
        if self.impact_horizon_minutes > self.max_horizon_minutes:
            raise ValueError("impact_horizon_minutes exceeds max_horizon_minutes")
        if max(self.impact_samples, self.forecast_samples) > self.max_samples:
            raise ValueError("impact_samples and forecast_samples must be <= max_samples")
        return self


# --------------------------------------------------------------------------- the served policy


class ScenarioConflict(ValueError):
    """A bundle for another scenario than the one being served."""


@dataclass(frozen=True)
class Served:
    """A loaded, verified bundle and what serving it needs."""

    policy: BundlePolicy
    reference: ReferenceDay
    labels: dict[str, tuple[tuple[str, ...], ...]]  # see action_labels
    loaded_at: str
    load_seconds: float

    @property
    def scenario(self) -> Scenario:
        return self.policy.scenario

    @property
    def version(self) -> str:
        return self.policy.manifest.version

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(name=self.policy.manifest.name, version=self.version)


def load_served(path: Path, expect: Scenario | None = None) -> Served:
    """Load ``path``, check it serves ``expect`` (if given), and try it on example states.

    Raises:
        BundleError: missing, corrupt or incompatible files, or a policy that fails on
            the example states.
        ScenarioConflict: the bundle is for another scenario than ``expect``.
    """
    t0 = time.perf_counter()
    try:
        policy = BundlePolicy(path)
    except (OSError, ValueError) as err:
        if isinstance(err, BundleError):
            raise
        # read_manifest lets the file system's own errors through (a name too long,
        # a NUL byte, no permission): they are still a bundle that cannot be used
        raise BundleError(f"policy bundle {str(path)[:200]}: cannot be read: {err}") from None
    sc = policy.scenario
    if expect is not None and (sc.name, sc.digest) != (expect.name, expect.digest):
        raise ScenarioConflict(
            f"policy bundle {path} is for scenario {sc.name!r} (digest {sc.digest}), but this "
            f"server serves {expect.name!r} (digest {expect.digest}); start another server for it"
        )
    reference = reference_day(sc)
    try:
        for snap in reference.examples.values():
            decisions = policy.decisions(snap)
            feats = np.stack([d.features for d in decisions.values()])
            explained = decide_and_explain(policy, feats, reference.features)
            if any((explained[k].vector != d.vector).any() for k, d in decisions.items()):
                raise BundleError("batched and single-state decisions differ")
    except Exception as err:  # onnxruntime raises its own types
        raise BundleError(f"policy bundle {path}: fails on an example state: {err}") from None
    return Served(
        policy=policy,
        reference=reference,
        labels=action_labels(policy),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_seconds=time.perf_counter() - t0,
    )


class PolicyHolder:
    """The current :class:`Served`: read without a lock, swapped under one."""

    def __init__(self, served: Served) -> None:
        self._current = served
        self._swap = threading.Lock()
        self.reloading = threading.Lock()  # one reload at a time

    @property
    def current(self) -> Served:
        return self._current

    def swap(self, served: Served) -> Served:
        with self._swap:
            old, self._current = self._current, served
        return old


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Prometheus metrics of one app (its own registry, so apps never share counters)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "synctwin_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "synctwin_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.recommendations = Counter(
            "synctwin_recommendations", "sector recommendations by kind", ["kind"], registry=r
        )
        for k in KINDS:
            self.recommendations.labels(k)
        self.policy_info = Gauge(
            "synctwin_policy_info",
            "the served policy (value 1)",
            ["name", "version", "scenario"],
            registry=r,
        )
        self.policy_loaded = Gauge(
            "synctwin_policy_loaded_timestamp_seconds", "when the policy was loaded", registry=r
        )
        self.reloads = Counter(
            "synctwin_policy_reloads", "policy reloads by result", ["result"], registry=r
        )
        self.feedback = Counter(
            "synctwin_feedback", "feedback on recommendations", ["accepted"], registry=r
        )
        self.rollout_seconds = Histogram(
            "synctwin_rollout_seconds",
            "time spent in twin rollouts per request",
            ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def set_policy(self, served: Served) -> None:
        self.policy_info.clear()
        m = served.policy.manifest
        self.policy_info.labels(m.name, m.version, m.scenario.name).set(1)
        self.policy_loaded.set(time.time())


# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """A request that is well-formed JSON but cannot be served; becomes a 422 naming the field."""

    def __init__(self, loc: list[str | int], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg
        self.kind = kind


def _unprocessable(loc: list[str | int], msg: str, kind: str) -> JSONResponse:
    return JSONResponse(
        status_code=422, content={"detail": [{"loc": loc, "msg": msg, "type": kind}]}
    )


# --------------------------------------------------------------------------- middleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ServingMiddleware:
    """Body-size limit (413), metrics by route and status, and the policy-version header.

    A plain ASGI middleware (cheaper than ``BaseHTTPMiddleware``). Bodies with a
    ``Content-Length`` above the limit are refused before they are read; bodies
    without one are read up to the limit and refused past it.
    """

    def __init__(self, app: Callable, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.limit = state.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                headers = message.setdefault("headers", [])
                if not any(k.lower() == b"x-policy-version" for k, _ in headers):
                    version = self.state.holder.current.version
                    headers.append((b"x-policy-version", version.encode()))
            await send(message)

        try:
            length = None
            chunked = False
            for k, v in scope.get("headers", []):
                if k == b"content-length":
                    length = v
                elif k == b"transfer-encoding" and b"chunked" in v.lower():
                    chunked = True
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                await self._too_large(send_wrapper, length.decode(errors="replace"))
                return
            if length is None and chunked:
                body = b""
                more = True
                while more:
                    message = await receive()
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.limit:
                        await self._too_large(send_wrapper, f"more than {self.limit}")
                        return
                replay = [{"type": "http.request", "body": body, "more_body": False}]

                async def receive_replay() -> Message:
                    return replay.pop() if replay else await receive()

                await self.app(scope, receive_replay, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if not started:
                status = 500
            labels = (path, scope.get("method", ""), str(status))
            self.state.metrics.requests.labels(*labels).inc()
            self.state.metrics.latency.labels(*labels).observe(time.perf_counter() - start)

    async def _too_large(self, send: Send, length: str) -> None:
        body = json.dumps(
            {"detail": f"request body of {length} bytes exceeds the limit of {self.limit} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- app state


@dataclass
class ServerState:
    """What the routes share: settings, the served policy, the log, the metrics."""

    settings: Settings
    holder: PolicyHolder
    decisions: DecisionLog
    metrics: Metrics
    rollouts: threading.BoundedSemaphore
    ready: bool = False
    watcher: ReloadWatcher | None = None

    def rollout_slot(self) -> _Slot:
        return _Slot(self.rollouts, self.settings.rollout_wait_seconds)

    @cached_property
    def advice_defaults(self) -> AdviceOptions:
        """What a recommendation request gets unless it asks otherwise."""
        return advice_defaults(self.settings)


class _Slot:
    def __init__(self, sem: threading.BoundedSemaphore, wait: float) -> None:
        self.sem, self.wait = sem, wait

    def __enter__(self) -> None:
        if not self.sem.acquire(timeout=self.wait):
            raise HTTPException(
                503, "the server is busy running rollouts; retry", headers={"Retry-After": "1"}
            )

    def __exit__(self, *exc: object) -> None:
        self.sem.release()


class ReloadWatcher(threading.Thread):
    """Worker processes share reloads through a small state file, polled every second.

    The worker that serves ``POST /v1/policy/reload`` writes ``{"path", "version"}``
    to ``reload_state_file`` (atomically); the others load that bundle in the
    background and swap it in the same way.
    """

    def __init__(self, state: ServerState, path: Path, every_seconds: float = 1.0) -> None:
        super().__init__(name="synctwin-reload-watcher", daemon=True)
        self.state, self.path, self.every = state, path, every_seconds
        self.stop_event = threading.Event()
        # not the file's current state: a worker that starts after a reload catches up
        self._seen: float | None = None

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def publish(self, served: Served) -> None:
        data = json.dumps({"path": str(served.policy.path), "version": served.version})
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".reload-")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, self.path)
        self._seen = self._mtime()

    def run(self) -> None:
        while True:
            self.check()
            if self.stop_event.wait(self.every):
                return

    def check(self) -> None:
        """Load the published bundle if the file changed and names another bundle."""
        mtime = self._mtime()
        if mtime is None or mtime == self._seen:
            return
        self._seen = mtime
        try:
            data = json.loads(self.path.read_text())
            holder = self.state.holder
            current = holder.current
            if data.get("version") == current.version and Path(data["path"]) == Path(
                current.policy.path
            ):
                return
            with holder.reloading:
                served = load_served(Path(data["path"]), expect=current.scenario)
                holder.swap(served)
            self.state.metrics.set_policy(served)
            self.state.metrics.reloads.labels("ok").inc()
            log.info("reloaded policy %s from %s (shared)", served.version, data["path"])
        except Exception as err:  # keep serving the old policy, whatever went wrong
            self.state.metrics.reloads.labels("refused").inc()
            log.error("shared reload refused: %s", err)


# --------------------------------------------------------------------------- dependencies

_api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


async def get_state(request: Request) -> ServerState:
    return request.app.state.synctwin


StateDep = Annotated[ServerState, Depends(get_state)]


async def current_policy(state: StateDep) -> Served:
    """The policy that answers this request (read once: one version per request)."""
    return state.holder.current


PolicyDep = Annotated[Served, Depends(current_policy)]


def _matches(given: str | None, expected: SecretStr | None) -> bool:
    return (
        given is not None
        and expected is not None
        and secrets.compare_digest(given.encode(), expected.get_secret_value().encode())
    )


_UNAUTHORIZED = {"WWW-Authenticate": API_KEY_HEADER}


async def require_api_key(
    state: StateDep, key: Annotated[str | None, Security(_api_key_scheme)]
) -> None:
    """The API key (or the admin key), if the server has one."""
    s = state.settings
    if s.api_key is None:
        return
    if not (_matches(key, s.api_key) or _matches(key, s.admin_key)):
        raise HTTPException(401, f"missing or invalid {API_KEY_HEADER}", headers=_UNAUTHORIZED)


async def require_admin_key(
    state: StateDep, key: Annotated[str | None, Security(_api_key_scheme)]
) -> None:
    """The admin key: 401 without a valid key, 403 with the normal API key."""
    s = state.settings
    if s.admin_key is None:
        raise HTTPException(403, "admin routes are disabled: start the server with an admin key")
    if _matches(key, s.admin_key):
        return
    if s.api_key is None or _matches(key, s.api_key):
        raise HTTPException(403, "this route needs the admin key")
    raise HTTPException(401, f"missing or invalid {API_KEY_HEADER}", headers=_UNAUTHORIZED)


ApiKey = Annotated[None, Depends(require_api_key)]
AdminKey = Annotated[None, Depends(require_admin_key)]


# --------------------------------------------------------------------------- request checks


def check_snapshot(
    served: Served, snap: OperationSnapshot, settings: Settings, prefix: list[str | int]
) -> None:
    """Refuse (:class:`ClientError`) a snapshot this policy cannot answer, naming the field."""
    sc = served.scenario
    if snap.scenario != sc.name:
        raise ClientError(
            [*prefix, "scenario"],
            f"the snapshot is for scenario {snap.scenario!r}, but this server's policy "
            f"{served.policy.manifest.name} {served.version} serves {sc.name!r}",
        )
    if snap.scenario_digest is not None and snap.scenario_digest != sc.digest:
        raise ClientError(
            [*prefix, "scenario_digest"],
            f"scenario {sc.name!r} here has digest {sc.digest}, the snapshot's is "
            f"{snap.scenario_digest}: the snapshot comes from a different version of the scenario",
        )
    if snap.minute > sc.horizon_minutes:
        raise ClientError(
            [*prefix, "minute"],
            f"must be within the scenario's horizon (0..{sc.horizon_minutes} minutes)",
        )
    items = sum(st.queued + st.serving for st in snap.sectors)
    if items > settings.max_snapshot_items:
        raise ClientError(
            [*prefix, "sectors"],
            f"{items} work items; this server takes at most {settings.max_snapshot_items}",
        )
    workers = sum(g.count for g in snap.workers)
    if workers > settings.max_snapshot_workers:
        raise ClientError(
            [*prefix, "workers"],
            f"{workers} workers; this server takes at most {settings.max_snapshot_workers}",
        )
    for i, st in enumerate(snap.sectors):
        for field in ("arrival_rate_per_hour", "completion_rate_per_hour"):
            if getattr(st, field) > settings.max_rate_per_hour:
                raise ClientError(
                    [*prefix, "sectors", i, field], f"must be <= {settings.max_rate_per_hour:g}"
                )
    try:
        check_fits_scenario(sc, snap)
    except SnapshotError as err:
        raise ClientError([*prefix, *err.loc], err.msg, "snapshot_error") from None


def _option(value: int | None, default: int, limit: int, loc: list[str | int], what: str) -> int:
    if value is None:
        return default
    if value > limit:
        raise ClientError(loc, f"{what} must be <= {limit} on this server")
    return value


def _json(model: Any, version: str, status: int = 200) -> Response:
    return Response(
        content=model.model_dump_json(),
        status_code=status,
        media_type="application/json",
        headers={VERSION_HEADER: version},
    )


def advice_defaults(settings: Settings) -> AdviceOptions:
    """The server's defaults and limits for recommendations, from its settings."""
    return AdviceOptions(
        impact=settings.impact,
        samples=settings.impact_samples,
        horizon_minutes=settings.impact_horizon_minutes,
        impact_scope=settings.impact_scope,
        seed=settings.seed,
        max_samples=settings.max_samples,
        max_horizon_minutes=settings.max_horizon_minutes,
    )


def request_options(defaults: AdviceOptions, req: RecommendRequest) -> AdviceOptions:
    """A request's options over the server's defaults; a 422 names one beyond its limit."""
    try:
        return defaults.requested(
            impact=req.impact,
            samples=req.samples,
            horizon_minutes=req.horizon_minutes,
            impact_scope=req.impact_scope,
            seed=req.seed,
            explain=req.explain,
        )
    except OptionError as err:
        raise ClientError(["body", "request", err.option], f"{err} on this server") from None


def recommendation(advice: Advice, served: Served, recommendation_id: str) -> Recommendation:
    """The response body of ``POST /v1/recommend`` for ``advice`` (numbers rounded)."""
    sectors = []
    for a in advice.sectors:
        assert a.confidence is not None and a.probabilities is not None  # a bundle's advice
        sectors.append(
            SectorRecommendation(
                sector=a.sector,
                action=a.action,
                action_in_force=a.in_force,
                kinds=list(a.kinds),  # type: ignore[arg-type]
                message=a.message,
                confidence=round(a.confidence, 6),
                probabilities={
                    field: dict(zip(p, np.round(list(p.values()), 6).tolist(), strict=True))
                    for field, p in a.probabilities.items()
                },
                drivers=[DriverOut.of(x) for x in a.drivers],
                impact=ImpactOut.of(a.impact) if a.impact is not None else None,
            )
        )
    total = advice.total_impact
    return Recommendation(
        recommendation_id=recommendation_id,
        policy_version=served.version,
        policy=served.ref,
        scenario=advice.scenario,
        minute=advice.minute,
        sectors=sectors,
        total_impact=ImpactOut.of(total) if total is not None else None,
        impact_seed=advice.impact_seed,
        impact_scope=advice.impact_scope,
    )


def _recommend(
    served: Served,
    state: ServerState,
    snap: OperationSnapshot,
    options: AdviceOptions,
    prefix: list[str | int],
) -> Response:
    """The work of ``POST /v1/recommend`` (see the route): check, advise, shape, record."""
    check_snapshot(served, snap, state.settings, prefix)
    try:
        advice = advise(
            served.policy, snap, options, rollout_gate=state.rollout_slot, checked=True
        )
    except AdviceError as err:
        raise ClientError(prefix, str(err)) from None
    if advice.estimated_impact:
        state.metrics.rollout_seconds.labels("/v1/recommend").observe(advice.rollout_seconds)
    counter = state.metrics.recommendations
    for a in advice.sectors:
        for k in a.kinds:
            counter.labels(k).inc()
    rec = recommendation(advice, served, str(uuid.uuid4()))
    body_json = rec.model_dump_json()
    state.decisions.record(
        rec.recommendation_id, served.ref.model_dump(), snap.model_dump_json(), body_json
    )
    return Response(
        content=body_json, media_type="application/json", headers={VERSION_HEADER: served.version}
    )


# --------------------------------------------------------------------------- the app


def create_app(settings: Settings, served: Served | None = None) -> FastAPI:
    """The policy server app for ``settings``.

    Args:
        settings: the validated settings.
        served: an already loaded policy (default: load ``settings.policy``).

    Raises:
        BundleError: the bundle is missing, corrupt or incompatible.
    """
    served = served if served is not None else load_served(settings.policy)
    state = ServerState(
        settings=settings,
        holder=PolicyHolder(served),
        decisions=DecisionLog(settings.log),
        metrics=Metrics(),
        rollouts=threading.BoundedSemaphore(settings.rollout_concurrency),
    )
    state.metrics.set_policy(served)
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
        state.ready = True
        yield
        state.ready = False
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
    app.add_middleware(ServingMiddleware, state=state)

    @app.exception_handler(ClientError)
    async def _client_error(request: Request, err: ClientError) -> JSONResponse:
        return _unprocessable(err.loc, err.msg, err.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each input back, which fails on NaN (a 500)
        # and can be the whole snapshot: report where and what, not the input
        detail = [
            {
                "loc": list(e["loc"]),
                "msg": e["msg"].removeprefix("Value error, "),
                "type": e["type"],
            }
            for e in err.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(SnapshotError)
    async def _snapshot_error(request: Request, err: SnapshotError) -> JSONResponse:
        return _unprocessable(["body", *err.loc], err.msg, "snapshot_error")

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(status_code=500, content={"detail": "internal server error"})

    _add_routes(app, reference_examples(served))
    return app


def reference_examples(served: Served) -> dict[str, OperationSnapshot]:
    """Real snapshots of the served scenario (static plan, seed 0) for the OpenAPI examples."""
    out = {}
    for minute, snap in sorted(served.reference.examples.items()):
        out[f"{served.scenario.name} at {int(minute) // 60:02d}:{int(minute) % 60:02d}"] = snap
    return out


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid API key"},
    413: {"model": ErrorOut, "description": "request body too large"},
}


def _with_examples(app: FastAPI, examples: dict[str, dict[str, Any]]) -> None:
    """Put request examples into the OpenAPI document after FastAPI builds it.

    FastAPI drops ``null`` values from everything in the document, examples included,
    and a snapshot needs its nulls (a flex worker's ``home``): so they go in afterwards.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, named in examples.items():
                body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
                body["examples"] = named
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _add_routes(app: FastAPI, examples: dict[str, OperationSnapshot]) -> None:
    first = next(iter(examples.values()))
    snapshot_examples = {
        name: {"summary": f"a live state of {name}", "value": snap.model_dump(mode="json")}
        for name, snap in examples.items()
    }
    recommend_examples = {
        **snapshot_examples,
        "with options": {
            "summary": "a snapshot with options: a shorter, cheaper impact estimate",
            "value": {
                "snapshot": first.model_dump(mode="json"),
                "impact": True,
                "horizon_minutes": 60,
                "samples": 4,
            },
        },
        "total impact only": {
            "summary": "the impact of all changes together only: two rollout arms, fastest",
            "value": {
                "snapshot": first.model_dump(mode="json"),
                "impact_scope": "total",
                "horizon_minutes": 60,
                "samples": 4,
            },
        },
        "no impact": {
            "summary": "decisions, messages and drivers only (about a millisecond)",
            "value": {"snapshot": first.model_dump(mode="json"), "impact": False},
        },
    }
    forecast_examples = {
        **snapshot_examples,
        "with options": {
            "summary": "risk 1, 2 and 4 hours ahead from 4 samples per arm",
            "value": {"snapshot": first.model_dump(mode="json"), "hours": [1, 2, 4], "samples": 4},
        },
    }

    _with_examples(app, {"/v1/recommend": recommend_examples, "/v1/forecast": forecast_examples})

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "not ready"}},
        tags=["operations"],
    )
    async def readyz(state: StateDep) -> Response:
        """A policy is loaded and the server is accepting work."""
        version = state.holder.current.version
        ok = state.ready
        body = Health(status="ready" if ok else "not ready", policy_version=version)
        return _json(body, version, 200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(state: StateDep) -> Response:
        """Prometheus metrics: requests and latencies by route and status, the policy
        version, recommendations by kind, reloads, feedback, rollout time."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/policy", response_model=PolicyInfo, responses=_ERRORS, tags=["policy"])
    async def policy_info(served: PolicyDep, _: ApiKey) -> Response:
        """The served bundle: name, version, scenario and its full manifest."""
        m = served.policy.manifest
        info = PolicyInfo(
            name=m.name,
            version=m.version,
            scenario=m.scenario.name,
            scenario_digest=m.scenario.digest,
            sectors=list(m.sectors),
            policy_mode=m.policy_mode,
            path=str(served.policy.path),
            loaded_at=served.loaded_at,
            manifest=m.model_dump(mode="json"),
        )
        return _json(info, served.version)

    @app.post(
        "/v1/recommend",
        response_model=Recommendation,
        responses={**_ERRORS, 503: {"model": ErrorOut, "description": "busy: retry"}},
        tags=["recommendations"],
    )
    async def recommend(
        body: RecommendBody,
        served: PolicyDep,
        state: StateDep,
        _: ApiKey,
    ) -> Response:
        """What each sector should do now, why, and what it is predicted to save.

        The body is an `OperationSnapshot`, or `{"snapshot": ..., options}`. Impact is
        estimated from twin rollouts with and without each sector's action (common random
        numbers; see the response fields); `impact: false` skips it. Rollouts run in the
        thread pool; without them the answer (about a millisecond of work) is computed
        on the event loop.
        """
        if isinstance(body, RecommendRequest):
            req, prefix = body, ["body", "request", "snapshot"]
        else:
            req, prefix = RecommendRequest(snapshot=body), ["body", "snapshot"]
        options = request_options(state.advice_defaults, req)
        if options.impact:
            return await run_in_threadpool(_recommend, served, state, req.snapshot, options, prefix)
        return _recommend(served, state, req.snapshot, options, prefix)

    @app.post(
        "/v1/forecast",
        response_model=ForecastOut,
        responses={**_ERRORS, 503: {"model": ErrorOut, "description": "busy: retry"}},
        tags=["recommendations"],
    )
    def forecast(
        body: ForecastBody,
        served: PolicyDep,
        state: StateDep,
        _: ApiKey,
    ) -> Response:
        """Per sector, the risk of SLA misses and overtime over the next hours, under the
        served policy and under no action (the actions in force, kept)."""
        s = state.settings
        if isinstance(body, ForecastRequest):
            req, prefix = body, ["body", "request", "snapshot"]
        else:
            req, prefix = ForecastRequest(snapshot=body), ["body", "snapshot"]
        opts = ["body", "request"]
        samples = _option(
            req.samples, s.forecast_samples, s.max_samples, [*opts, "samples"], "samples"
        )
        hours = sorted(set(req.hours if req.hours is not None else s.forecast_hours))
        if hours[-1] * 60 > s.max_horizon_minutes:
            raise ClientError(
                [*opts, "hours"], f"hours must be <= {s.max_horizon_minutes / 60:g} on this server"
            )
        seed = req.seed if req.seed is not None else s.seed
        snap = req.snapshot
        check_snapshot(served, snap, s, prefix)
        with state.rollout_slot():
            t0 = time.perf_counter()
            fc = run_forecast(
                served.scenario,
                snap,
                served.policy,
                hours=hours,
                samples=samples,
                seed=seed,
                checked=True,  # checked above, once
            )
            state.metrics.rollout_seconds.labels("/v1/forecast").observe(time.perf_counter() - t0)

        def arm(sector: str | None) -> tuple[list[RiskAt], list[RiskAt]]:
            return tuple(  # type: ignore[return-value]
                [RiskAt.of(h, h.total if sector is None else h.sectors[sector]) for h in risks]
                for risks in (fc.policy, fc.no_action)
            )

        sectors = []
        for sector in served.scenario.sector_names:
            pol, none = arm(sector)
            sectors.append(SectorForecast(sector=sector, policy=pol, no_action=none))
        pol, none = arm(None)
        out = ForecastOut(
            policy_version=served.version,
            policy=served.ref,
            scenario=snap.scenario,
            minute=snap.minute,
            hours=hours,
            samples=samples,
            seed=seed,
            sectors=sectors,
            total=SectorForecast(sector="total", policy=pol, no_action=none),
        )
        return _json(out, served.version)

    @app.post(
        "/v1/feedback",
        response_model=FeedbackOut,
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "unknown recommendation"}},
        tags=["recommendations"],
    )
    def feedback(body: FeedbackRequest, state: StateDep, _: ApiKey) -> FeedbackOut:
        """Whether a recommendation was accepted (stored in the decision log)."""
        if not state.decisions.feedback(body.recommendation_id, body.accepted, body.comment):
            raise HTTPException(404, f"no recommendation with id {body.recommendation_id!r}")
        state.metrics.feedback.labels(str(body.accepted).lower()).inc()
        return FeedbackOut(recommendation_id=body.recommendation_id, stored=True)

    @app.post(
        "/v1/policy/reload",
        response_model=ReloadOut,
        responses={
            **_ERRORS,
            403: {"model": ErrorOut, "description": "needs the admin key"},
            409: {"model": ErrorOut, "description": "a bundle for another scenario"},
            422: {"description": "a missing, corrupt or incompatible bundle"},
        },
        tags=["policy"],
    )
    def reload(body: ReloadRequest, state: StateDep, _: AdminKey) -> Response:
        """Load another bundle, verify it fully, then swap it in atomically.

        The old policy keeps answering until the swap; a bundle that fails to load,
        fails its checksums or is incompatible is refused and nothing changes.
        """
        holder = state.holder
        with holder.reloading:
            old = holder.current
            try:
                # relative to the server's working directory, like --policy; ~ expanded
                new = load_served(Path(body.path).expanduser().resolve(), expect=old.scenario)
            except BundleError as err:
                state.metrics.reloads.labels("refused").inc()
                log.warning("reload refused: %s", err)
                raise ClientError(["body", "path"], str(err), "bundle_error") from None
            except ScenarioConflict as err:
                state.metrics.reloads.labels("refused").inc()
                log.warning("reload refused: %s", err)
                raise HTTPException(409, str(err)) from None
            holder.swap(new)
            state.metrics.set_policy(new)
            state.metrics.reloads.labels("ok").inc()
            if state.watcher is not None:
                state.watcher.publish(new)
        log.info("reloaded policy %s -> %s from %s", old.version, new.version, body.path)
        out = ReloadOut(
            policy_version=new.version,
            previous_version=old.version,
            name=new.policy.manifest.name,
            path=str(new.policy.path),
            loaded_at=new.loaded_at,
            load_seconds=round(new.load_seconds, 4),
        )
        return _json(out, new.version)


# --------------------------------------------------------------------------- running it


def app_from_env() -> FastAPI:
    """An app from ``SYNCTWIN_*`` variables: the uvicorn factory of worker processes."""
    return create_app(Settings())  # type: ignore[call-arg]


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
    common = {
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
