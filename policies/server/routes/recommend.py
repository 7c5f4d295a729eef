"""``POST /v1/recommend``: what each sector should do now, why, and its predicted impact.

The work is :func:`policies.advice.advise`; here the request is checked, the advice
shaped into a :class:`~policies.schemas.Recommendation`, counted and logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from policies.advice import Advice, AdviceError, AdviceOptions, advise
from policies.feedback import advice_kind
from policies.schemas import (
    ActionOut,
    DeclinedOut,
    DriverOut,
    ErrorOut,
    ImpactOut,
    ReasonOut,
    Recommendation,
    RecommendBody,
    RecommendRequest,
    SectorRecommendation,
)
from policies.server.checks import check_rollout_cost, check_snapshot, request_options
from policies.server.deps import PolicyDep, StateDep, require_api_key
from policies.server.errors import ClientError
from policies.server.responses import ERRORS, VERSION_HEADER
from policies.server.state import Served, ServerState, client_gone
from twin.snapshot import OperationSnapshot

router = APIRouter(tags=["recommendations"], dependencies=[Depends(require_api_key)])


@router.post(
    "/v1/recommend",
    response_model=Recommendation,
    responses={**ERRORS, 503: {"model": ErrorOut, "description": "busy: retry"}},
)
async def recommend(
    body: RecommendBody, served: PolicyDep, state: StateDep, request: Request
) -> Response:
    """What each sector should do now, why, and what it is predicted to save.

    The body is an `OperationSnapshot`, or `{"snapshot": ..., options}`. Impact is
    estimated from twin rollouts with and without each sector's action (common random
    numbers; see the response fields); `impact: false` skips it. Rollouts run in
    worker processes and stop when the client disconnects or after
    `rollout_deadline_seconds` (503); without them the answer (about a millisecond
    of work) is computed on the event loop.
    """
    prefix: list[str | int]
    if isinstance(body, RecommendRequest):
        req, prefix = body, ["body", "request", "snapshot"]
    else:
        req, prefix = RecommendRequest(snapshot=body), ["body", "snapshot"]
    options = request_options(state.advice_defaults, req)
    if options.impact:
        return await run_in_threadpool(
            _recommend,
            served,
            state,
            req.snapshot,
            options,
            prefix,
            req.detail,
            client_gone(request),
        )
    return _recommend(served, state, req.snapshot, options, prefix, req.detail)


def recommendation(
    advice: Advice, served: Served, recommendation_id: str, *, detail: bool = True
) -> Recommendation:
    """The response body of ``POST /v1/recommend`` for ``advice`` (numbers rounded);
    ``detail``: with every sector's decision in ``sectors``."""
    sectors = []
    for a in advice.sectors if detail else ():
        assert a.confidence is not None and a.probabilities is not None  # a bundle's advice
        sectors.append(
            SectorRecommendation(
                sector=a.sector,
                action=a.action,
                action_in_force=a.in_force,
                kinds=list(a.kinds),
                message=a.message,
                confidence=round(a.confidence, 6),
                probabilities={
                    field: dict(zip(p, np.round(list(p.values()), 6).tolist(), strict=True))
                    for field, p in a.probabilities.items()
                },
                drivers=[DriverOut.of(x) for x in a.drivers],
                reasons=[ReasonOut.of(x) for x in a.reasons],
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
        status=advice.status,
        headline=advice.headline,
        actions=[ActionOut.of(x) for x in advice.actions],
        not_recommended=[DeclinedOut.of(x) for x in advice.declined],
        min_saving=advice.options.min_saving,
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
    detail: bool = True,
    gone: Callable[[], bool] | None = None,
) -> Response:
    """The work of ``POST /v1/recommend`` (see the route): check, advise, shape, record."""
    _, body_json = advise_and_record(served, state, snap, options, prefix, detail, gone)
    return Response(
        content=body_json, media_type="application/json", headers={VERSION_HEADER: served.version}
    )


def advise_and_record(
    served: Served,
    state: ServerState,
    snap: OperationSnapshot,
    options: AdviceOptions,
    prefix: list[str | int],
    detail: bool = True,
    gone: Callable[[], bool] | None = None,
) -> tuple[Recommendation, str]:
    """Check, advise, count and store one recommendation; it and its JSON body.

    The one pipeline of ``POST /v1/recommend``, the site routes and the preventions of
    alerts (:mod:`policies.server.alerting`).
    """
    check_snapshot(served, snap, state.settings, prefix)
    if options.impact:
        check_rollout_cost(
            snap, options.samples, options.horizon_minutes, state.settings, prefix[:-1]
        )
    try:
        advice = advise(
            served.policy,
            snap,
            options,
            rollout_gate=lambda: state.rollout_runner("/v1/recommend", client_gone=gone),
            checked=True,
        )
    except AdviceError as err:
        raise ClientError(prefix, str(err)) from None
    if advice.estimated_impact:
        state.metrics.rollout_seconds.labels("/v1/recommend").observe(advice.rollout_seconds)
    counter = state.metrics.recommendations
    for a in advice.sectors:
        for k in a.kinds:
            counter.labels(k).inc()
    m = state.metrics
    m.answers.labels(advice.status).inc()
    for action in advice.actions:
        for k in action.kinds:
            m.actions.labels(k).inc()
        if action.against_plan:
            m.against_plan.inc()
    for d in advice.declined:
        m.not_recommended.labels(d.reason).inc()
    rec = recommendation(advice, served, str(uuid.uuid4()), detail=detail)
    top = advice.actions[0].kinds if advice.actions else ()
    m.remember_advice(rec.recommendation_id, advice_kind(advice.status, top))
    body_json = rec.model_dump_json()
    state.decisions.record(
        rec.recommendation_id, served.ref.model_dump(), snap.model_dump_json(), body_json
    )
    return rec, body_json
