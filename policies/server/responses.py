"""What every policy-server response shares: the version header and the documented errors."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from policies.schemas import ErrorOut

VERSION_HEADER = "X-Policy-Version"

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid API key"},
    413: {"model": ErrorOut, "description": "request body too large"},
}
"""The errors of every authenticated route, for the OpenAPI document."""


def json_response(model: Any, version: str, status: int = 200) -> Response:
    """``model`` as JSON, with the version of the policy that answered in the header."""
    return Response(
        content=model.model_dump_json(),
        status_code=status,
        media_type="application/json",
        headers={VERSION_HEADER: version},
    )
