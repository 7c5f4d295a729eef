"""``POST /v1/feedback``: was a recommendation accepted? Stored in the decision log.

The answer is committed to the store before the 200; a store that cannot write gives
a 503 (the app's ``StoreError`` handler), an unknown id a 404 (one index lookup).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from policies.schemas import ErrorOut, FeedbackOut, FeedbackRequest
from policies.server.deps import StateDep, require_api_key
from policies.server.responses import ERRORS

router = APIRouter(tags=["recommendations"], dependencies=[Depends(require_api_key)])


@router.post(
    "/v1/feedback",
    response_model=FeedbackOut,
    responses={
        **ERRORS,
        404: {"model": ErrorOut, "description": "unknown recommendation"},
        503: {"model": ErrorOut, "description": "the store cannot write now; retry"},
    },
)
def feedback(body: FeedbackRequest, state: StateDep) -> FeedbackOut:
    """Whether a recommendation was accepted (stored in the decision log)."""
    if not state.decisions.feedback(body.recommendation_id, body.accepted, body.comment):
        raise HTTPException(404, f"no recommendation with id {body.recommendation_id!r}")
    state.metrics.count_feedback(body.recommendation_id, body.accepted)
    return FeedbackOut(recommendation_id=body.recommendation_id, stored=True)
