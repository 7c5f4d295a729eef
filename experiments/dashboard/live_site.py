"""The live dashboard's model: a site on a policy server, polled.

Mesa's visualization drives a ``mesa.Model``: the page's components read it and its
``DataCollector``. :class:`LiveSite` is that model for the live mode. It simulates
nothing: each ``step()`` is one poll of the site's routes through
:class:`~experiments.dashboard.site_client.SiteClient` (the state; the forecast when
the state has moved on; the alerts), and the DataCollector keeps one row per new state
(queues and risk over time, for the *Trend* tab).

A failing route does not raise: the page shows :attr:`LiveSite.error` (no state) or
the panel's own error, keeps the last good answers, and tries again at the next poll.

Nothing here imports solara: the page lives in :mod:`experiments.dashboard.live_app`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import mesa
import numpy as np

from experiments.dashboard.live_view import display, queues, risks
from experiments.dashboard.site_client import (
    FORECAST_HOURS,
    SiteAlert,
    SiteClient,
    SiteClientError,
)
from policies.schemas import ForecastOut
from twin.snapshot import OperationSnapshot

#: How ``synctwin dashboard --live`` hands its options to the page it serves.
ENV_LIVE_URL = "SYNCTWIN_DASHBOARD_LIVE_URL"
ENV_LIVE_SITE = "SYNCTWIN_DASHBOARD_LIVE_SITE"
ENV_LIVE_API_KEY = "SYNCTWIN_DASHBOARD_LIVE_API_KEY"
ENV_LIVE_EVERY = "SYNCTWIN_DASHBOARD_LIVE_EVERY"
#: Seconds between polls unless ``--every`` says otherwise, and the limits of ``--every``.
DEFAULT_EVERY_SECONDS = 10.0
MIN_EVERY_SECONDS, MAX_EVERY_SECONDS = 1.0, 3600.0


def queue_series(sector: str) -> str:
    """The DataCollector column of a sector's items waiting (its display name)."""
    return display(sector)


def risk_series(sector: str) -> str:
    """The DataCollector column of a sector's chance of SLA misses within the last horizon."""
    return f"{display(sector)} "  # a trailing space keeps it apart from the queue column


class LiveSite(mesa.Model):
    """One site, as its routes last answered.

    Args:
        client: the site's routes.
        every_seconds: seconds between polls (the page's timer reads it).
        hours: the forecast's horizons, hours ahead.
    """

    def __init__(
        self,
        client: SiteClient,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        hours: tuple[float, ...] = FORECAST_HOURS,
    ) -> None:
        super().__init__(rng=np.random.default_rng(0))  # nothing random: Mesa wants a source
        self.client = client
        self.every_seconds = every_seconds
        self.hours = hours
        self.snapshot: OperationSnapshot | None = None
        self.forecast: ForecastOut | None = None
        self.alerts: list[SiteAlert] | None = []  # None: the server has no alerts route
        self.error: str | None = None  # the state could not be read
        self.forecast_error: str | None = None
        self.alerts_error: str | None = None
        self.polled_at: str | None = None  # local time of the last poll that got a state
        self.sectors: tuple[str, ...] = ()
        self.datacollector: mesa.DataCollector | None = None
        self.running = True
        self._lock = threading.Lock()  # the page's timer and its "Poll now" button

    def step(self) -> None:
        """One poll of the site (Mesa counts it in ``steps``)."""
        self.poll()

    def poll(self) -> None:
        """Read the state; on a new state the forecast too; the alerts every time."""
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        try:
            snap = self.client.state()
        except SiteClientError as err:
            self.error = str(err)
            return
        self.error = None
        self.polled_at = time.strftime("%H:%M:%S")
        moved = snap != self.snapshot
        self.snapshot = snap
        if not self.sectors:
            self._start_series(tuple(st.name for st in snap.sectors))
        if moved or self.forecast is None:
            try:
                self.forecast = self.client.forecast(self.hours)
                self.forecast_error = None
            except SiteClientError as err:
                self.forecast_error = str(err)
        try:
            self.alerts = self.client.alerts()
            self.alerts_error = None
        except SiteClientError as err:
            self.alerts_error = str(err)
        if moved and self.datacollector is not None:
            self.datacollector.collect(self)

    def _start_series(self, sectors: tuple[str, ...]) -> None:
        self.sectors = sectors
        reporters: dict[str, Any] = {"minute": lambda m: m.snapshot.minute}
        for s in sectors:
            reporters[queue_series(s)] = lambda m, s=s: m._waiting(s)
            reporters[risk_series(s)] = lambda m, s=s: m._p_miss(s)
        self.datacollector = mesa.DataCollector(model_reporters=reporters)

    def _waiting(self, sector: str) -> int:
        assert self.snapshot is not None
        return next(q.waiting for q in queues(self.snapshot) if q.sector == sector)

    def _p_miss(self, sector: str) -> float:
        """Chance of SLA misses within the last horizon, no action (NaN: no forecast)."""
        if self.forecast is None or self.forecast_error is not None:
            return float("nan")
        return risks(self.forecast)[sector][-1].p_miss

    @property
    def newest_alerts(self) -> list[SiteAlert]:
        """The alerts, newest first."""
        return sorted(self.alerts or [], key=lambda a: (a.seq, a.minute), reverse=True)
