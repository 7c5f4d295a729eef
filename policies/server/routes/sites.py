"""Live sites: ``POST /v1/sites/{site}/events``, ``GET .../state``, ``POST .../recommend``
and ``.../forecast``.

Events are stored before the answer and applied from the store
(:mod:`policies.server.sites`); recommendations and forecasts are those of
``/v1/recommend`` and ``/v1/forecast``, on the site's live state, through the same
functions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response

from policies.schemas import (
    ErrorOut,
    ForecastOut,
    Recommendation,
    RejectedEventOut,
    SiteEventsOut,
    SiteForecastRequest,
    SiteRecommendRequest,
)
from policies.server.checks import forecast_options, request_options
from policies.server.deps import PolicyDep, StateDep, require_api_key
from policies.server.errors import ClientError
from policies.server.responses import ERRORS, json_response
from policies.server.routes.forecast import _forecast
from policies.server.routes.recommend import _recommend
from policies.server.sites import Site, Sites, as_served
from policies.server.state import client_gone
from twin.snapshot import OperationSnapshot

router = APIRouter(tags=["live sites"], dependencies=[Depends(require_api_key)])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such site"}
}
_BUSY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "busy, or the store is unavailable: retry"}
}


def get_site(site: str, request: Request) -> Site:
    """The site named in the path; 404 if this server has none by that name."""
    sites: Sites = request.app.state.sites
    found = sites.get(site)
    if found is None:
        known = ", ".join(sites.by_name) or "none"
        raise HTTPException(404, f"no site {site!r} on this server (sites: {known})")
    return found


SiteDep = Annotated[Site, Depends(get_site)]


def _events_of(body: Any, limit: int) -> list[Any]:
    """The events of a batch body (a list, or ``{"events": [...]}``); 413/422 if not one."""
    loc: list[str | int]
    if isinstance(body, bytes | str):  # sent without Content-Type: application/json
        raise ClientError(["body"], "expected a JSON body (Content-Type: application/json)")
    if isinstance(body, dict) and set(body) == {"events"}:
        events, loc = body["events"], ["body", "events"]
    else:
        events, loc = body, ["body"]
    if not isinstance(events, list):
        raise ClientError(loc, 'expected a list of events, or {"events": [...]}', "list_type")
    if len(events) > limit:
        raise HTTPException(
            413, f"{len(events)} events in one batch; this server takes at most {limit}"
        )
    return events


@router.post(
    "/v1/sites/{site}/events",
    response_model=SiteEventsOut,
    responses={**ERRORS, **_NOT_FOUND, **_BUSY},
)
def post_events(
    site: SiteDep, state: StateDep, body: Annotated[Any, Body()] = None
) -> SiteEventsOut:
    """Take a batch of floor events (a list, or `{"events": [...]}`).

    The batch is stored before the answer (one transaction; an id the site already
    has is a duplicate and changes nothing, so a batch may be resent), then applied
    to the site's live twin. Each refused event is listed with its reason; the rest
    of the batch is kept. A 503 means nothing of the batch was stored: resend it.
    """
    events = _events_of(body, state.settings.max_site_batch)
    result = site.take(events)
    m = state.metrics
    m.site_events.labels(site.name, "accepted").inc(result.accepted)
    m.site_events.labels(site.name, "duplicate").inc(result.duplicate)
    m.site_events.labels(site.name, "rejected").inc(len(result.refused))
    for r in result.refused:
        m.site_rejections.labels(site.name, r.kind).inc()
    return SiteEventsOut(
        site=site.name,
        accepted=result.accepted,
        duplicate=result.duplicate,
        rejected=[RejectedEventOut(id=r.id, reason=r.reason, kind=r.kind) for r in result.refused],
        stored_seq=result.stored_seq,
    )


def _live(site: Site, at: str | None, loc: list[str | int]) -> OperationSnapshot:
    """The site's state at ``at``, caught up with the store; a 422 for a bad ``at``."""
    try:
        return site.snapshot(at)
    except ValueError as err:
        raise ClientError(loc, str(err)) from None


@router.get(
    "/v1/sites/{site}/state",
    response_model=OperationSnapshot,
    responses={**ERRORS, **_NOT_FOUND, **_BUSY},
)
def get_state(
    site: SiteDep,
    served: PolicyDep,
    at: Annotated[str | None, Query(description="a timestamp (default: the latest event's)")] = (
        None
    ),
) -> Response:
    """The site's live state (an `OperationSnapshot`), from every event stored so far:
    events before `at` count (default: the time of the latest event)."""
    return json_response(_live(site, at, ["query", "at"]), served.version)


@router.post(
    "/v1/sites/{site}/recommend",
    response_model=Recommendation,
    responses={**ERRORS, **_NOT_FOUND, **_BUSY},
)
def recommend(
    site: SiteDep,
    served: PolicyDep,
    state: StateDep,
    request: Request,
    body: Annotated[SiteRecommendRequest | None, Body()] = None,
) -> Response:
    """`POST /v1/recommend` on the site's live state: the body holds only its options."""
    req = body or SiteRecommendRequest()
    options = request_options(state.advice_defaults, req)
    snap = as_served(_live(site, req.at, ["body", "at"]), served.scenario)
    return _recommend(served, state, snap, options, ["state"], req.detail, client_gone(request))


@router.post(
    "/v1/sites/{site}/forecast",
    response_model=ForecastOut,
    responses={**ERRORS, **_NOT_FOUND, **_BUSY},
)
def forecast(
    site: SiteDep,
    served: PolicyDep,
    state: StateDep,
    request: Request,
    body: Annotated[SiteForecastRequest | None, Body()] = None,
) -> Response:
    """`POST /v1/forecast` on the site's live state: the body holds only its options.

    By default the rollouts run the demand the site's arrivals so far show (per item
    class, shrunk toward the plan; `demand_factors` in the answer); `adaptive: false`
    runs the plan's."""
    req = body or SiteForecastRequest()
    hours, samples, seed = forecast_options(state.settings, req)
    snap = as_served(_live(site, req.at, ["body", "at"]), served.scenario)
    factors = site.demand_factors(req.at) if req.adaptive else None
    return _forecast(
        served, state, snap, hours, samples, seed, ["state"], client_gone(request), factors
    )
