"""The policy server's dependencies, as ``Annotated`` aliases for route signatures.

``StateDep`` (the app's :class:`~policies.server.state.ServerState`), ``PolicyDep`` (the
policy answering this request), ``ApiKey`` and ``AdminKey`` (authentication; a router
that is all-authenticated declares ``Depends(require_api_key)`` itself).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from policies.server.state import Served, ServerState

API_KEY_HEADER = "X-API-Key"

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
