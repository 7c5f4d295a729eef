"""The site's alerts as they are raised: ``GET /v1/sites/{site}/alerts`` as Server-Sent Events.

A listener thread holds the stream open while the replay sends events, and hands each
alert (and each outcome, when the server learns it) to a callback. It asks only for
alerts raised after the replay began (``?after=`` the site's latest alert when it
started), so a second replay does not print the first one's alerts again. At the end,
:meth:`AlertListener.finish` asks for the same alerts as JSON and hands over any the
stream has not delivered yet, so the count is complete even when the last alert was
raised a moment before the replay ended.

A server without the alerts route (404 or 405) is not an error: the replay goes on
without alerts, and :attr:`AlertListener.missing` says why.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from experiments.replay.client import detail, headers

RECONNECT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 60.0  # the server sends a keep-alive comment every 15 s

Alert = dict[str, Any]


def sse_messages(lines: Iterator[str]) -> Iterator[tuple[str, str, str | None]]:
    """``(event, data, id)`` of each message of a Server-Sent Events stream.

    Follows the format's rules: ``field: value`` lines, one leading space stripped,
    ``data`` lines joined with newlines, a blank line ends a message, lines starting
    with ``:`` are comments (keep-alives), the event type defaults to ``message``.
    """
    event, last_id = "", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data), last_id
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value


class AlertListener:
    """Follows one site's alerts in a daemon thread.

    Args:
        server: the server's base URL.
        site: the site's name.
        on_alert: called with each new alert (the server's alert JSON), once per id.
        on_outcome: called with ``(alert id, outcome)`` when an alert's outcome is known.
    """

    def __init__(
        self,
        server: str,
        site: str,
        api_key: str | None,
        on_alert: Callable[[Alert], None],
        on_outcome: Callable[[str, dict[str, Any]], None] = lambda aid, outcome: None,
    ) -> None:
        self.url = f"{server.rstrip('/')}/v1/sites/{site}/alerts"
        self.headers = headers(api_key)
        self.on_alert, self.on_outcome = on_alert, on_outcome
        self.missing: str | None = None  # why there are no alerts to follow
        self.seen: set[str] = set()
        self._after = 0  # the latest alert seen (the stream resumes after it)
        self._baseline = 0  # the site's latest alert when the replay began
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)

    @property
    def received(self) -> int:
        return len(self.seen)

    def start(self) -> None:
        """Note the site's latest alert, then follow new ones; no thread if no route."""
        for alert in self._pages(after=0):
            self._after = max(self._after, _seq(alert))
        self._baseline = self._after
        if self.missing is None:
            self._thread.start()

    def finish(self) -> None:
        """Hand over the alerts raised since :meth:`start` not yet delivered; stop."""
        if self.missing is None:
            for alert in self._pages(after=self._baseline):
                self._deliver(alert)
        self._stop.set()

    def _pages(self, after: int) -> Iterator[Alert]:
        """Every stored alert after ``after``, page by page (the route may cap a page)."""
        while (page := self._stored(after)) and max(map(_seq, page)) > after:
            yield from page
            after = max(map(_seq, page))

    def _stored(self, after: int) -> list[Alert] | None:
        """The site's stored alerts after ``after`` as JSON (``None``: no alerts route)."""
        params = {"format": "json", "after": str(after)}
        try:
            r = httpx.get(
                self.url,
                params=params,
                headers={**self.headers, "Accept": "application/json"},
                timeout=30.0,
            )
        except httpx.TransportError as err:
            self.missing = f"cannot read alerts ({err or type(err).__name__})"
            return None
        if r.status_code in (404, 405):
            self.missing = f"the server has no alerts route ({r.status_code})"
            return None
        if r.status_code != 200:
            self.missing = f"alerts answered {r.status_code}: {detail(r)}"
            return None
        body = r.json()
        return [a for a in body if isinstance(a, dict)] if isinstance(body, list) else []

    def _deliver(self, alert: Alert) -> None:
        aid = str(alert.get("id"))
        with self._lock:
            if aid in self.seen:
                return
            self.seen.add(aid)
            self._after = max(self._after, _seq(alert))
        self.on_alert(alert)

    def _run(self) -> None:
        timeout = httpx.Timeout(30.0, read=READ_TIMEOUT_SECONDS)
        while not self._stop.is_set():
            try:
                with httpx.stream(
                    "GET",
                    self.url,
                    params={"after": str(self._after)},
                    headers={
                        **self.headers,
                        "Accept": "text/event-stream",
                        "Last-Event-ID": str(self._after),
                    },
                    timeout=timeout,
                ) as r:
                    if r.status_code != 200:
                        self.missing = f"alerts stream answered {r.status_code}"
                        return
                    for event, data, _ in sse_messages(r.iter_lines()):
                        if self._stop.is_set():
                            return
                        self._handle(event, data)
            except (httpx.HTTPError, ValueError):
                pass  # dropped or timed out: reconnect after the last alert seen
            self._stop.wait(RECONNECT_SECONDS)

    def _handle(self, event: str, data: str) -> None:
        body = json.loads(data)
        if event == "alert" and isinstance(body, dict):
            self._deliver(body)
        elif event == "outcome" and isinstance(body, dict):
            self.on_outcome(str(body.get("id")), body.get("outcome") or {})


def _seq(alert: Alert) -> int:
    """An alert's sequence number on its site (0 if it has none)."""
    seq = alert.get("seq")
    return seq if isinstance(seq, int) else 0
