"""``GET /healthz``, ``/readyz`` and ``/metrics``: for orchestrators and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from policies.schemas import Health
from policies.server.deps import StateDep
from policies.server.responses import json_response

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "not ready"}},
)
async def readyz(state: StateDep) -> Response:
    """A policy is loaded and the server is accepting work."""
    version = state.holder.current.version
    ok = state.ready
    body = Health(status="ready" if ok else "not ready", policy_version=version)
    return json_response(body, version, 200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics: requests and latencies by route and status, the policy
    version, recommendations by kind, reloads, feedback, rollout time."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
