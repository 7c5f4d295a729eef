"""``POST /v1/recommend``: what each sector should do now, why, and its predicted impact.

The work is :func:`policies.advice.advise`, shaped into a
:class:`~policies.schemas.Recommendation` (:class:`policies.questions.RecommendQuestion`);
here the request is checked, the answer counted and logged.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from policies.advice import AdviceError, AdviceOptions
from policies.feedback import advice_kind
from policies.questions import AdviceAnswer, RecommendQuestion
from policies.schemas import ErrorOut, Recommendation, RecommendBody, RecommendRequest
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
    answer = advise_and_record(served, state, snap, options, prefix, detail, gone)
    return Response(
        content=answer.body_json,
        media_type="application/json",
        headers={VERSION_HEADER: served.version},
    )


def advise_and_record(
    served: Served,
    state: ServerState,
    snap: OperationSnapshot,
    options: AdviceOptions,
    prefix: list[str | int],
    detail: bool = True,
    gone: Callable[[], bool] | None = None,
) -> AdviceAnswer:
    """Check, advise, count and store one recommendation; the answer (its JSON body).

    The one pipeline of ``POST /v1/recommend``, the site routes and the preventions of
    alerts (:mod:`policies.server.alerting`). With impact, the advice is worked out on
    the rollout host (:meth:`ServerState.ask`), so this process only checks, waits
    and records.
    """
    check_snapshot(served, snap, state.settings, prefix)
    if options.impact:
        check_rollout_cost(
            snap, options.samples, options.horizon_minutes, state.settings, prefix[:-1]
        )
    snap_json = snap.model_dump_json()
    question = RecommendQuestion(snap_json, options, served.ref, detail)
    try:
        if options.impact:
            answer = state.ask("/v1/recommend", question, served, client_gone=gone)
        else:
            answer = question.answer(served.policy, snap)  # no rollouts: about a millisecond
    except AdviceError as err:
        raise ClientError(prefix, str(err)) from None
    m = state.metrics
    if answer.estimated_impact:
        m.rollout_seconds.labels("/v1/recommend").observe(answer.rollout_seconds)
    for kinds in answer.sector_kinds:
        for k in kinds:
            m.recommendations.labels(k).inc()
    m.answers.labels(answer.status).inc()
    for kinds in answer.action_kinds:
        for k in kinds:
            m.actions.labels(k).inc()
    if answer.against_plan:
        m.against_plan.inc(answer.against_plan)
    for reason in answer.declined:
        m.not_recommended.labels(reason).inc()
    top = answer.action_kinds[0] if answer.action_kinds else ()
    m.remember_advice(answer.recommendation_id, advice_kind(answer.status, top))
    state.decisions.record(
        answer.recommendation_id, served.ref.model_dump(), snap_json, answer.body_json
    )
    return answer
