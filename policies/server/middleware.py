"""The policy server's ASGI middleware: body-size limit, metrics, policy-version header."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies.server.state import ServerState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ServingMiddleware:
    """Body-size limit (413), metrics by route and status, and the policy-version header.

    A plain ASGI middleware (cheaper than ``BaseHTTPMiddleware``). Bodies with a
    ``Content-Length`` above the limit are refused before they are read; bodies
    without one are read up to the limit and refused past it.
    """

    def __init__(self, app: Callable, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.limit = state.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                headers = message.setdefault("headers", [])
                if not any(k.lower() == b"x-policy-version" for k, _ in headers):
                    version = self.state.holder.current.version
                    headers.append((b"x-policy-version", version.encode()))
            await send(message)

        try:
            length = None
            chunked = False
            for k, v in scope.get("headers", []):
                if k == b"content-length":
                    length = v
                elif k == b"transfer-encoding" and b"chunked" in v.lower():
                    chunked = True
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                await self._too_large(send_wrapper, length.decode(errors="replace"))
                return
            if length is None and chunked:
                body = b""
                more = True
                while more:
                    message = await receive()
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.limit:
                        await self._too_large(send_wrapper, f"more than {self.limit}")
                        return
                replay = [{"type": "http.request", "body": body, "more_body": False}]

                async def receive_replay() -> Message:
                    return replay.pop() if replay else await receive()

                await self.app(scope, receive_replay, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if not started:
                status = 500
            labels = (path, scope.get("method", ""), str(status))
            self.state.metrics.requests.labels(*labels).inc()
            self.state.metrics.latency.labels(*labels).observe(time.perf_counter() - start)

    async def _too_large(self, send: Send, length: str) -> None:
        body = json.dumps(
            {"detail": f"request body of {length} bytes exceeds the limit of {self.limit} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
