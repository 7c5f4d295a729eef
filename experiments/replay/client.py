"""The site's event route, as a sender that may retry: ``POST /v1/sites/{site}/events``.

What the server answers decides what the sender does: a 200 is counted; a 503 means
nothing of the batch was stored, so the same batch is sent again after a pause that
doubles each time (ids make resending safe); anything else (an unknown site, a
refused key, a batch too large, a server that cannot be reached) ends the replay
with one line saying why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

API_KEY_HEADER = "X-API-Key"  # as policies.server.deps names it
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 8.0
RETRY_ATTEMPTS = 8  # 0.5 + 1 + 2 + 4 + 8 x 4: about 40 s of a busy server


class ReplayError(RuntimeError):
    """The replay cannot go on (one line for the user)."""


def detail(response: httpx.Response) -> str:
    """The server's reason for an error answer (its ``detail``, else the body's start)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    found = body.get("detail") if isinstance(body, dict) else None
    if isinstance(found, list) and found and isinstance(found[0], dict):
        return str(found[0].get("msg", found[0]))
    return str(found if found is not None else body)[:200]


def headers(api_key: str | None) -> dict[str, str]:
    """Request headers with the API key, when one is given."""
    return {API_KEY_HEADER: api_key} if api_key else {}


class SiteClient:
    """Posts event batches to one site of one server, over one keep-alive connection.

    Args:
        server: the server's base URL (``http://127.0.0.1:8000``).
        site: the site's name.
        api_key: sent as ``X-API-Key`` when given.
        sleep: how to wait between retries (tests and benchmarks keep ``time.sleep``).
    """

    def __init__(
        self,
        server: str,
        site: str,
        api_key: str | None = None,
        *,
        timeout_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.server = server.rstrip("/")
        self.site = site
        self.url = f"{self.server}/v1/sites/{site}/events"
        self.retries = 0
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout_seconds, headers=headers(api_key))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SiteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Send ``batch`` (resending it whole on a 503); the server's answer.

        Raises:
            ReplayError: an answer other than 200 or 503, 503 after every retry, or no
                connection to the server.
        """
        wait = RETRY_FIRST_SECONDS
        for attempt in range(RETRY_ATTEMPTS + 1):
            try:
                response = self._http.post(self.url, json=batch)
            except httpx.TransportError as err:
                raise ReplayError(
                    f"cannot reach {self.server}: {err or type(err).__name__}"
                ) from None
            if response.status_code == 200:
                return response.json()
            if response.status_code != 503 or attempt == RETRY_ATTEMPTS:
                raise ReplayError(self._refused(response, len(batch)))
            self.retries += 1
            self._sleep(wait)
            wait = min(2 * wait, RETRY_MAX_SECONDS)
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, response: httpx.Response, size: int) -> str:
        code, why = response.status_code, detail(response)
        if code == 404:
            return f"{self.server}: {why}"
        if code in (401, 403):
            return f"{self.server} refused the request ({code}: {why}); pass --api-key KEY"
        if code == 413:
            return f"{self.server} refused a batch of {size} events ({why}); use a smaller --batch"
        if code == 503:
            return f"{self.server} stayed busy ({why}) after {RETRY_ATTEMPTS} retries"
        return f"{self.server} answered {code} to a batch of events: {why}"
