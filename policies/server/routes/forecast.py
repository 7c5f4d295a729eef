"""``POST /v1/forecast``: per sector, the risk of SLA misses and overtime over the next hours.

The work is :func:`policies.impact.forecast`, under the served policy and under no
action; here the request is checked and the forecast shaped into a
:class:`~policies.schemas.ForecastOut`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from fastapi import APIRouter, Depends, Request, Response

from policies.impact import Forecast, HorizonRisk
from policies.questions import ForecastQuestion
from policies.schemas import (
    ErrorOut,
    ForecastBody,
    ForecastOut,
    ForecastRequest,
    RiskAt,
    SectorForecast,
)
from policies.server.checks import check_rollout_cost, check_snapshot, forecast_options
from policies.server.deps import PolicyDep, StateDep, require_api_key
from policies.server.responses import ERRORS, json_response
from policies.server.state import Served, ServerState, client_gone
from twin.snapshot import OperationSnapshot

router = APIRouter(tags=["recommendations"], dependencies=[Depends(require_api_key)])


@router.post(
    "/v1/forecast",
    response_model=ForecastOut,
    responses={**ERRORS, 503: {"model": ErrorOut, "description": "busy: retry"}},
)
def forecast(body: ForecastBody, served: PolicyDep, state: StateDep, request: Request) -> Response:
    """Per sector, the risk of SLA misses and overtime over the next hours, under the
    served policy and under no action (the actions in force, kept). Rollouts run in
    worker processes and stop when the client disconnects or after
    `rollout_deadline_seconds` (503)."""
    prefix: list[str | int]
    if isinstance(body, ForecastRequest):
        req, prefix = body, ["body", "request", "snapshot"]
    else:
        req, prefix = ForecastRequest(snapshot=body), ["body", "snapshot"]
    hours, samples, seed = forecast_options(state.settings, req)
    return _forecast(
        served, state, req.snapshot, hours, samples, seed, prefix, client_gone(request)
    )


def _forecast(
    served: Served,
    state: ServerState,
    snap: OperationSnapshot,
    hours: list[float],
    samples: int,
    seed: int,
    prefix: list[str | int],
    gone: Callable[[], bool] | None = None,
    demand_factors: dict[str, float] | None = None,
) -> Response:
    """The work of ``POST /v1/forecast`` (see the route): check, forecast, shape.

    ``demand_factors`` (by item class) scale the plan's arrival rates in the rollouts:
    a live site's observed demand (:mod:`twin.adaptive`); ``None``: the plan.
    """
    check_snapshot(served, snap, state.settings, prefix)
    check_rollout_cost(snap, samples, max(hours) * 60, state.settings, prefix[:-1])
    question = ForecastQuestion(
        snap.model_dump_json(),
        tuple(hours),
        samples,
        seed,
        None
        if demand_factors is None
        else tuple(demand_factors[c] for c in served.scenario.class_names),
    )
    t0 = time.perf_counter()
    fc = state.ask("/v1/forecast", question, served, client_gone=gone)
    state.metrics.rollout_seconds.labels("/v1/forecast").observe(time.perf_counter() - t0)
    out = forecast_out(fc, served, snap, hours=hours, samples=samples, seed=seed)
    if demand_factors is not None:
        out = out.model_copy(update={"demand_factors": demand_factors})
    return json_response(out, served.version)


def forecast_out(
    fc: Forecast,
    served: Served,
    snap: OperationSnapshot,
    *,
    hours: list[float],
    samples: int,
    seed: int,
) -> ForecastOut:
    """The response body of ``POST /v1/forecast`` for the forecast ``fc`` of ``snap``."""

    def arm(sector: str | None) -> tuple[list[RiskAt], list[RiskAt]]:
        def at(risks: Sequence[HorizonRisk]) -> list[RiskAt]:
            return [RiskAt.of(h, h.total if sector is None else h.sectors[sector]) for h in risks]

        return at(fc.policy), at(fc.no_action)

    sectors = []
    for sector in served.scenario.sector_names:
        pol, none = arm(sector)
        sectors.append(SectorForecast(sector=sector, policy=pol, no_action=none))
    pol, none = arm(None)
    return ForecastOut(
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
