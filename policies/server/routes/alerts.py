"""``GET /v1/sites/{site}/alerts``: a site's alerts, as a list or as Server-Sent Events.

Alerts are raised by :mod:`policies.server.alerting` and kept in the store, the one
source every server worker reads: the event stream polls it, so a client connected to
any worker sees every alert, and reconnecting with ``Last-Event-ID`` (or ``?after=``)
resumes without a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from policies.schemas import AlertOut
from policies.server.deps import StateDep, require_api_key
from policies.server.responses import ERRORS
from policies.server.routes.sites import _BUSY, _NOT_FOUND, SiteDep
from policies.store import AlertRow, Store

router = APIRouter(tags=["live sites"], dependencies=[Depends(require_api_key)])

#: how often the event stream looks for new alerts and outcomes (seconds)
POLL_SECONDS = 0.5
#: a comment line after this long without an event keeps proxies from closing the stream
KEEPALIVE_SECONDS = 15.0


def alert_out(row: AlertRow) -> AlertOut:
    """A stored alert, with its outcome when known."""
    payload: dict[str, Any] = json.loads(row.payload)
    payload["outcome"] = json.loads(row.outcome) if row.outcome else None
    return AlertOut(seq=row.seq, **payload)


@router.get(
    "/v1/sites/{site}/alerts",
    response_model=list[AlertOut],
    responses={
        **ERRORS,
        **_NOT_FOUND,
        **_BUSY,
        200: {
            "content": {"text/event-stream": {}},
            "description": "a JSON list, or with `Accept: text/event-stream` an event stream: "
            "`event: alert` (data: an alert, id: its seq) and `event: outcome` "
            '(data: {"id", "seq", "outcome"})',
        },
    },
)
async def alerts(
    site: SiteDep,
    state: StateDep,
    request: Request,
    after: Annotated[int, Query(ge=0, description="only alerts after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="most alerts in a list")] = 100,
    format: Annotated[str | None, Query(pattern="^(json|sse)$")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Any:
    """The site's alerts, oldest first: risks of SLA misses or overtime forming in a
    sector, with when, how likely, the expected cost, the prevention the policy
    recommends (its recommendation id takes feedback) and, later, the outcome.

    With `Accept: text/event-stream` (or `?format=sse`) the answer is a stream that
    stays open: each alert as it is raised, each outcome as it is known; resume with
    `Last-Event-ID`."""
    store = state.decisions.store
    sse = format == "sse" or (
        format is None and "text/event-stream" in request.headers.get("accept", "")
    )
    if not sse:
        rows = await run_in_threadpool(store.alerts, site.name, after, limit)
        return [alert_out(r) for r in rows]
    if last_event_id is not None and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    return EventSourceResponse(_stream(store, site.name, after, request))


async def _stream(store: Store, site: str, after: int, request: Request) -> AsyncIterator[bytes]:
    """Alerts after ``after`` and outcomes as they come, until the client leaves.

    Outcomes are sent for alerts this stream has sent (or that were open when it
    started): the ones still waiting for theirs are re-read on every poll.
    """
    waiting: dict[int, str] = {}  # seq -> id of alerts sent without an outcome
    quiet = 0.0  # seconds since the last thing sent
    if after > 0:  # a resumed stream: open alerts from before still get their outcomes
        rows = await run_in_threadpool(store.alerts, site, 0, after)
        waiting = {r.seq: r.id for r in rows if r.outcome is None}
    while not await request.is_disconnected():
        if waiting:
            first = min(waiting)
            span = max(waiting) - first + 1
            for r in await run_in_threadpool(store.alerts, site, first - 1, span):
                if r.seq in waiting and r.outcome is not None:
                    del waiting[r.seq]
                    data = {"id": r.id, "seq": r.seq, "outcome": json.loads(r.outcome)}
                    quiet = 0.0
                    yield format_sse_event(event="outcome", data_str=json.dumps(data))
        for r in await run_in_threadpool(store.alerts, site, after, 100):
            after = r.seq
            quiet = 0.0
            yield format_sse_event(
                event="alert", id=str(r.seq), data_str=alert_out(r).model_dump_json()
            )
            if r.outcome is None:
                waiting[r.seq] = r.id
        if quiet >= KEEPALIVE_SECONDS:
            quiet = 0.0
            yield KEEPALIVE_COMMENT
        await asyncio.sleep(POLL_SECONDS)
        quiet += POLL_SECONDS
