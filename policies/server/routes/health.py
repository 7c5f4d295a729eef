"""``GET /healthz``, ``/readyz`` and ``/metrics``: for orchestrators and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from policies.schemas import Health
from policies.server.deps import StateDep
from policies.server.responses import json_response
from policies.store import StoreError

router = APIRouter(tags=["operations"])


class Readiness(Health):
    """``/readyz``'s answer when not ready: ``reason`` says why."""

    reason: str | None = None


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready"}},
)
def readyz(state: StateDep) -> Response:
    """A policy is loaded, the server is accepting work and its store can commit a write.

    The probe is a real committed write (one row), so a full disk, a read-only or
    locked database or an unreachable PostgreSQL turns this 503, like the
    recommendations it would fail. A plain ``def``: the probe may wait on the
    database (at most its busy timeout) without stalling the event loop.
    """
    version = state.holder.current.version
    reason = None if state.ready else "starting or stopping"
    if reason is None:
        try:
            state.decisions.store.probe()
        except StoreError as err:
            reason = str(err)
    if reason is None:  # the body it always had: no reason when there is none
        return json_response(Health(status="ready", policy_version=version), version)
    body = Readiness(status="not ready", policy_version=version, reason=reason)
    return json_response(body, version, 503)


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics: requests and latencies by route and status, the policy
    version, recommendations by kind, reloads, feedback, rollout time."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
