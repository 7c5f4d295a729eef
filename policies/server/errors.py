"""Errors the policy server renders: :class:`ClientError` and the app's exception handlers.

Every 422 has FastAPI's shape, ``{"detail": [{"loc", "msg", "type"}]}``; errors carry
their location (``loc``) as data and are rendered here, at the border.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import HTTPExceptionHandler

from twin.live import SnapshotError

log = logging.getLogger("synctwin.server")

E = TypeVar("E", bound=Exception)


class ClientError(Exception):
    """A request that is well-formed JSON but cannot be served; becomes a 422 naming the field."""

    def __init__(self, loc: list[str | int], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg
        self.kind = kind


def _unprocessable(loc: list[str | int], msg: str, kind: str) -> JSONResponse:
    return JSONResponse(
        status_code=422, content={"detail": [{"loc": loc, "msg": msg, "type": kind}]}
    )


async def client_error(request: Request, err: ClientError) -> JSONResponse:
    """A request that cannot be served: a 422 naming the field."""
    return _unprocessable(err.loc, err.msg, err.kind)


async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
    """A request that fails its schema: a 422 per error, without the input."""
    # FastAPI's own handler echoes each input back, which fails on NaN (a 500)
    # and can be the whole snapshot: report where and what, not the input
    detail = [
        {
            "loc": list(e["loc"]),
            "msg": e["msg"].removeprefix("Value error, "),
            "type": e["type"],
        }
        for e in err.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


async def snapshot_error(request: Request, err: SnapshotError) -> JSONResponse:
    """A snapshot that does not fit the scenario: a 422 at its location in the body."""
    return _unprocessable(["body", *err.loc], err.msg, "snapshot_error")


async def internal_error(request: Request, err: Exception) -> JSONResponse:
    """Anything else: logged, and a 500 that says nothing more."""
    log.exception("internal error on %s", request.url.path)
    return JSONResponse(status_code=500, content={"detail": "internal server error"})


def add_exception_handlers(app: FastAPI) -> None:
    """Install the handlers above on ``app``."""
    _handle(app, ClientError, client_error)
    _handle(app, RequestValidationError, invalid_request)
    _handle(app, SnapshotError, snapshot_error)
    _handle(app, Exception, internal_error)


def _handle(
    app: FastAPI, kind: type[E], handler: Callable[[Request, E], Awaitable[JSONResponse]]
) -> None:
    """Install ``handler`` for ``kind``: Starlette calls it only with a ``kind``, though it
    types every handler as taking any exception (hence the cast)."""
    app.add_exception_handler(kind, cast(HTTPExceptionHandler, handler))
