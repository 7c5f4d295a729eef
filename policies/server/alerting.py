"""Alerts on live sites: risks assessed while they form, stored, streamed and posted.

Each site's twin hands this module its state at every point of the scenario's decision
grid as the floor's events pass it (:meth:`policies.server.sites.Site.catch_up`: the
state at the grid point exactly, taken before the first event after it is applied).
A background thread (:class:`SiteAlerts`) then, per grid point and in order:

1. closes the site's open alerts whose ``by`` plus grace has passed, recording their
   outcome from what the floor showed (the live twin's SLA misses in the sector; the
   overtime seen on the grid) in the store, and posting it to the webhook;
2. assesses the state (:func:`policies.alerts.assess`; rollouts on the server's
   rollout workers, with the demand the site's arrivals have shown so far,
   :mod:`twin.adaptive`) and, for each risk with no open alert, asks the served policy for
   the prevention (the advice of ``POST /v1/recommend`` with its predicted impact,
   stored as a recommendation, so its id takes feedback), and stores the alert.

An alert's id is a function of the site, minute, sector and risk, and the store takes
an id once: server workers that assess the same site store each alert once, and only
the worker that stored it posts it to the webhook. A restarted server reopens the
alerts the store holds without an outcome and assesses only grid points it has not
seen. The webhook (:class:`Webhook`) retries a failed post with exponential backoff;
the store and the event stream keep every alert whether or not a post got through.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import asdict
from typing import Any

import httpx
from fastapi import HTTPException

from policies.alerts import (
    Alert,
    AlertBook,
    AlertRules,
    GridHistory,
    Risk,
    RiskKind,
    alert_id,
    risk_message,
)
from policies.questions import AssessQuestion
from policies.schemas import Recommendation
from policies.server.metrics import Metrics
from policies.server.routes.recommend import advise_and_record
from policies.server.sites import Site, Sites, as_served
from policies.server.state import Served, ServerState
from policies.store import pages
from twin.adaptive import live_belief
from twin.live import check_snapshot
from twin.snapshot import OperationSnapshot
from twin.wallclock import format_timestamp

log = logging.getLogger("synctwin.alerts")

#: how often a busy rollout pool is asked again before a grid point is skipped
_BUSY_TRIES = 20


def rules_of(state: ServerState) -> AlertRules:
    s = state.settings
    return AlertRules(
        probability=s.alert_probability,
        min_misses=s.alert_min_misses,
        samples=s.alert_samples,
        horizon_hours=s.alert_horizon_hours,
        seed=s.seed,
    )


def alert_json(alert: Alert, site: Site) -> dict[str, Any]:
    """The alert as the API, the store and the webhook carry it."""
    r = alert.risk
    stamp = site.twin.zero
    return {
        "id": alert.id,
        "site": alert.site,
        "raised_at": format_timestamp(r.minute, stamp),
        "minute": r.minute,
        "sector": r.sector,
        "risk": r.kind,
        "by": format_timestamp(r.by_minute, stamp),
        "by_minute": r.by_minute,
        "hours": r.hours,
        "probability": round(r.probability, 6),
        "expected": round(r.expected, 6),
        "expected_cost": round(r.expected_cost, 6),
        "message": alert.message,
        "prevention": alert.prevention,
    }


def _risk_of(payload: dict[str, Any]) -> Risk:
    return Risk(
        sector=payload["sector"],
        kind=payload["risk"],
        minute=payload["minute"],
        by_minute=payload["by_minute"],
        probability=payload["probability"],
        expected=payload["expected"],
        expected_cost=payload["expected_cost"],
    )


class Webhook:
    """Posts alerts and outcomes to one URL, in order, retrying with exponential backoff."""

    def __init__(self, url: str, attempts: int, backoff_seconds: float, metrics: Metrics) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.metrics = metrics
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="synctwin-webhook", daemon=True)
        self._thread.start()

    def post(self, body: dict[str, Any]) -> None:
        self._queue.put(body)

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while (body := self._queue.get()) is not None:
                self._deliver(client, body)

    def _deliver(self, client: httpx.Client, body: dict[str, Any]) -> None:
        wait = self.backoff_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                reply = client.post(self.url, json=body)
                if reply.status_code < 300:
                    self.metrics.webhook_deliveries.labels("delivered").inc()
                    return
                why = f"HTTP {reply.status_code}"
            except httpx.HTTPError as err:
                why = f"{type(err).__name__}: {err}"
            if attempt == self.attempts:
                break
            self.metrics.webhook_deliveries.labels("retried").inc()
            log.warning("webhook %s: %s; retry %d in %.1f s", self.url, why, attempt, wait)
            time.sleep(wait)
            wait *= 2
        self.metrics.webhook_deliveries.labels("failed").inc()
        log.error("webhook %s: gave up after %d tries (%s)", self.url, self.attempts, why)


class SiteAlerts:
    """The alert engine of one server process, for all of its sites (module docstring)."""

    def __init__(self, state: ServerState, sites: Sites) -> None:
        self.state = state
        self.rules = rules_of(state)
        s = state.settings
        self.webhook = (
            Webhook(s.webhook, s.webhook_attempts, s.webhook_backoff_seconds, state.metrics)
            if s.webhook
            else None
        )
        self.books: dict[str, AlertBook] = {}
        self.history: dict[str, GridHistory] = {}
        self._queue: queue.Queue[tuple[Site, float, OperationSnapshot] | None] = queue.Queue()
        for site in sites.by_name.values():
            self.books[site.name] = self._reopen(site)
            self.history[site.name] = GridHistory(float(site.scenario.decision_interval_minutes))
            site.watch_grid(self.on_grid)
        self._thread = threading.Thread(target=self._run, name="synctwin-alerts", daemon=True)
        self._thread.start()

    def _reopen(self, site: Site) -> AlertBook:
        """The site's alerts still open in the store (no outcome yet)."""
        book = AlertBook(self.rules)
        rows = pages(
            lambda after, limit: self.state.decisions.store.alerts(site.name, after, limit)
        )
        for row in rows:
            if row.outcome is None:
                p = json.loads(row.payload)
                book.opened(
                    Alert(p["id"], site.name, _risk_of(p), p["message"], p.get("prevention"))
                )
        return book

    def on_grid(self, site: Site, minute: float, snap: OperationSnapshot) -> None:
        """Called by a site's twin at each grid point it passes (under the site's lock)."""
        self._queue.put((site, minute, snap))

    def close(self) -> None:
        self._queue.put(None)
        if self.webhook is not None:
            self.webhook.close()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            site, minute, snap = job
            try:
                self._grid_point(site, minute, snap)
            except Exception:  # a bad assessment must not stop the next ones
                log.exception("alerts: site %s at minute %g", site.name, minute)

    def _grid_point(self, site: Site, minute: float, snap: OperationSnapshot) -> None:
        history = self.history[site.name]
        history.add(snap)
        book = self.books[site.name]
        store, m = self.state.decisions.store, self.state.metrics

        def observed(sector: str, kind: RiskKind, t0: float, t1: float) -> float:
            if kind == "overtime":
                return history.overtime_hours(sector, t0, t1)
            with site.lock:
                return float(site.twin.misses(sector, since=t0, until=t1))

        for a in book.close_due(minute, observed):
            assert a.outcome is not None
            outcome = asdict(a.outcome)
            outcome["checked_at"] = format_timestamp(a.outcome.checked_minute, site.twin.zero)
            store.set_alert_outcome(site.name, a.id, json.dumps(outcome))
            label = "happened" if a.outcome.happened else "not_happened"
            m.alert_outcomes.labels(site.name, a.risk.kind, label).inc()
            if self.webhook is not None:
                self.webhook.post({"type": "outcome", "site": site.name, "id": a.id, **outcome})
        served = self.state.holder.current
        sv = as_served(snap, served.scenario)
        check_snapshot(served.scenario, sv)
        with site.lock:  # the demand the site's arrivals showed by then (twin.adaptive)
            factors = live_belief(site.twin, minute).factors
        risks = book.new(
            self._ask(AssessQuestion(sv.model_dump_json(), self.rules, tuple(factors)), served)
        )
        if not risks:
            return
        prevention = self._prevention(sv)
        if prevention is None:
            advice = None
        elif prevention["status"] == "act":
            advice = f"To prevent it: {prevention['headline']}"
        else:
            advice = "No change is predicted to save enough yet; the advice is to hold."
        for risk in risks:
            alert = Alert(
                alert_id(site.name, risk),
                site.name,
                risk,
                risk_message(served.scenario, risk, advice),
                prevention,
            )
            book.opened(alert)
            body = alert_json(alert, site)
            if store.add_alert(site.name, alert.id, json.dumps(body)):
                m.alerts.labels(site.name, risk.sector, risk.kind).inc()
                if self.webhook is not None:
                    self.webhook.post({"type": "alert", **body})

    def _ask(self, question: AssessQuestion, served: Served) -> list[Risk]:
        """The risks ``question`` finds on the rollout host, waiting while it is busy."""
        for _ in range(_BUSY_TRIES):
            try:
                return self.state.ask("alerts", question, served)
            except HTTPException:  # every slot busy, or a deadline: requests come first
                time.sleep(0.5)
        log.warning("alerts: rollout workers stayed busy; a grid point was skipped")
        return []

    def _prevention(self, snap: OperationSnapshot) -> dict[str, Any] | None:
        """The served policy's advice at ``snap``, stored as a recommendation."""
        try:
            answer = advise_and_record(
                self.state.holder.current,
                self.state,
                snap,
                self.state.advice_defaults,
                ["alert"],
                detail=False,
            )
        except HTTPException as err:  # busy rollout workers: the alert goes out without
            log.warning("alerts: no prevention (%s)", err.detail)
            return None
        rec = Recommendation.model_validate_json(answer.body_json)
        top = rec.actions[0] if rec.actions else None
        return {
            "recommendation_id": rec.recommendation_id,
            "status": rec.status,
            "headline": rec.headline,
            "change": top.change if top else None,
            "cost_saved": top.cost_saved.mean if top else None,
        }
