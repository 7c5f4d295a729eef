"""A small HTTP client for a live site's routes on ``synctwin serve ... --site NAME=SCENARIO``.

The live dashboard reads three routes of one site, and nothing else:

``GET /v1/sites/{site}/state``
    the live :class:`~twin.snapshot.OperationSnapshot` (at the site's latest event);
``POST /v1/sites/{site}/forecast``
    the risk of SLA misses and overtime per sector over the next hours, under the served
    policy and with no action (:class:`~policies.schemas.ForecastOut`);
``GET /v1/sites/{site}/alerts?format=json``
    the site's stored alerts, oldest first (:class:`SiteAlert`); a server without the
    route answers ``None`` rather than an error, so the page can say so and go on.

It lives apart from the page so that it can be tested against a real server without a
browser, and so that the command line can use it to check its options before it
starts the page. Every failure is a :class:`SiteClientError` with one line that names
the problem (the server's own ``detail`` when it gave one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from policies.schemas import AlertOut, ForecastOut
from twin.snapshot import OperationSnapshot

#: Seconds to wait for one answer (a forecast runs rollouts on the server).
DEFAULT_TIMEOUT_SECONDS = 60.0
#: The horizons (hours ahead) the dashboard asks the forecast for.
FORECAST_HOURS: tuple[float, ...] = (1.0, 2.0)


class SiteClientError(Exception):
    """A site route that did not give its answer; ``str(err)`` is one line for the user."""


#: one alert as ``GET /v1/sites/{site}/alerts?format=json`` lists it (the server's schema)
SiteAlert = AlertOut


def _detail(response: httpx.Response) -> str:
    """The server's ``detail`` (a string, or the first of a 422's located errors)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0] if response.text.strip() else ""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = ".".join(str(x) for x in detail[0].get("loc", []))
        return f"{loc}: {detail[0].get('msg', '')}" if loc else str(detail[0].get("msg", ""))
    return str(detail) if detail is not None else ""


def check_url(url: str) -> str:
    """``url`` without a trailing slash; a :class:`SiteClientError` unless it is http(s)."""
    given = url.strip()
    parsed = httpx.URL(given) if given else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise SiteClientError(f"--live expects the server's http(s) URL, got {url!r}")
    return given.rstrip("/")


class SiteClient:
    """The routes of one site on one server.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8000``.
        site: the site's name (``--site NAME=...`` on the server).
        api_key: sent as ``X-API-Key`` when the server requires one.
        timeout: seconds to wait for each answer.
        transport: an httpx transport (tests may pass one; the default is the network).
    """

    def __init__(
        self,
        url: str,
        site: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = check_url(url)
        if not site.strip():
            raise SiteClientError("--site needs a site name")
        self.site = site
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> SiteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    @property
    def _base(self) -> str:
        return f"/v1/sites/{quote(self.site, safe='')}"

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TimeoutException:
            raise SiteClientError(f"{self.url} did not answer {method} {path} in time") from None
        except httpx.TransportError as err:
            raise SiteClientError(f"cannot reach {self.url}: {err}") from None

    def _fail(self, response: httpx.Response, what: str) -> SiteClientError:
        detail = _detail(response)
        code = response.status_code
        if code in (401, 403):
            hint = "" if self._http.headers.get("X-API-Key") else " (give it with --api-key)"
            return SiteClientError(f"{self.url} refused the API key ({code}: {detail}){hint}")
        if code == 404 and detail == "Not Found":
            return SiteClientError(
                f"{self.url} has no live site routes (start it with synctwin serve ... --site "
                f"{self.site}=SCENARIO)"
            )
        if code == 404 and detail:
            return SiteClientError(f"{detail} ({self.url})")  # the server names its sites
        return SiteClientError(f"{what} of site {self.site!r}: {code} {detail}".rstrip())

    def state(self) -> OperationSnapshot:
        """The site's live state, at the time of its latest event."""
        r = self._send("GET", f"{self._base}/state")
        if r.status_code != 200:
            raise self._fail(r, "state")
        try:
            return OperationSnapshot.model_validate(r.json())
        except (ValueError, ValidationError) as err:
            raise SiteClientError(f"state of site {self.site!r} is not a snapshot: {err}") from None

    def forecast(
        self, hours: Sequence[float] = FORECAST_HOURS, samples: int | None = None
    ) -> ForecastOut:
        """The risk per sector over the next ``hours``, under the policy and with no action."""
        body: dict[str, Any] = {"hours": list(hours)}
        if samples is not None:
            body["samples"] = samples
        r = self._send("POST", f"{self._base}/forecast", json=body)
        if r.status_code != 200:
            raise self._fail(r, "forecast")
        try:
            return ForecastOut.model_validate(r.json())
        except (ValueError, ValidationError) as err:
            raise SiteClientError(f"forecast of site {self.site!r} does not parse: {err}") from None

    def alerts(self, page_size: int = 1000) -> list[SiteAlert] | None:
        """All the site's alerts, oldest first; ``None`` if the server has no alerts route.

        The route answers a page at a time (``?after=SEQ&limit=N``), so this reads pages
        until a short one: every poll sees every alert, and the outcomes of old ones.
        """
        out: list[SiteAlert] = []
        after = 0
        while True:
            page = self._alerts_page(after, page_size)
            if page is None:
                return None
            out += page
            if len(page) < page_size:
                return out
            after = page[-1].seq

    def _alerts_page(self, after: int, limit: int) -> list[SiteAlert] | None:
        params: dict[str, Any] = {"format": "json", "after": after, "limit": limit}
        r = self._send(
            "GET", f"{self._base}/alerts", params=params, headers={"Accept": "application/json"}
        )
        if r.status_code in (404, 405) and _detail(r) in ("Not Found", "Method Not Allowed"):
            return None  # a server from before alerts: no such route at all
        if r.status_code != 200:
            raise self._fail(r, "alerts")
        try:
            body = r.json()
            items = body.get("alerts", []) if isinstance(body, dict) else body
            return [SiteAlert.model_validate(a) for a in items]
        except (ValueError, ValidationError, AttributeError) as err:
            raise SiteClientError(f"alerts of site {self.site!r} do not parse: {err}") from None
