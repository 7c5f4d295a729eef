"""The policy server's Prometheus metrics: one registry per app."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from policies.advice import DECLINE_REASONS
from policies.messages import KINDS

if TYPE_CHECKING:
    from policies.server.state import Served


#: Recent recommendations whose kind of advice this process remembers for feedback.
REMEMBERED_KINDS = 100_000


class Metrics:
    """Prometheus metrics of one app (its own registry, so apps never share counters)."""

    def __init__(self) -> None:
        self._kinds: OrderedDict[str, str] = OrderedDict()
        self._kinds_lock = threading.Lock()
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "synctwin_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "synctwin_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.recommendations = Counter(
            "synctwin_recommendations", "sector recommendations by kind", ["kind"], registry=r
        )
        for k in KINDS:
            self.recommendations.labels(k)
        self.answers = Counter(
            "synctwin_advice_answers",
            "recommendation answers by status (act, hold, unranked)",
            ["status"],
            registry=r,
        )
        for status in ("act", "hold", "unranked"):
            self.answers.labels(status)
        self.actions = Counter(
            "synctwin_advice_actions", "ranked actions by kind", ["kind"], registry=r
        )
        for k in KINDS:
            self.actions.labels(k)
        self.not_recommended = Counter(
            "synctwin_advice_not_recommended",
            "policy proposals not recommended, by reason (costs_more: the twin predicts "
            "they cost more than they save)",
            ["reason"],
            registry=r,
        )
        for reason in DECLINE_REASONS:
            self.not_recommended.labels(reason)
        self.against_plan = Counter(
            "synctwin_advice_against_plan",
            "ranked actions that depart from the scenario's plan rules",
            registry=r,
        )
        self.policy_info = Gauge(
            "synctwin_policy_info",
            "the served policy (value 1)",
            ["name", "version", "scenario"],
            registry=r,
        )
        self.policy_loaded = Gauge(
            "synctwin_policy_loaded_timestamp_seconds", "when the policy was loaded", registry=r
        )
        self.reloads = Counter(
            "synctwin_policy_reloads", "policy reloads by result", ["result"], registry=r
        )
        self.feedback = Counter(
            "synctwin_feedback", "feedback on recommendations", ["accepted"], registry=r
        )
        self.feedback_by_advice = Counter(
            "synctwin_feedback_by_advice",
            "feedback by kind of advice (policies.feedback.advice_kind; 'unknown': a "
            "recommendation this process did not give)",
            ["advice", "accepted"],
            registry=r,
        )
        self.rollout_seconds = Histogram(
            "synctwin_rollout_seconds",
            "time spent in twin rollouts per request",
            ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.rollouts_stopped = Counter(
            "synctwin_rollouts_stopped",
            "requests whose rollouts were stopped before the end, by reason (deadline: "
            "rollout_deadline_seconds passed; disconnected: the client went away; "
            "worker_lost: a rollout process died)",
            ["route", "reason"],
            registry=r,
        )

        self.site_events = Counter(
            "synctwin_site_events",
            "events sent to live sites, by result (accepted, duplicate, rejected)",
            ["site", "result"],
            registry=r,
        )
        self.site_rejections = Counter(
            "synctwin_site_event_rejections",
            "events refused by live sites, by kind of reason (schema: does not parse; "
            "scenario: not in the site's scenario; late: beyond the reorder tolerance; "
            "state: contradicted by the state when applied)",
            ["site", "kind"],
            registry=r,
        )
        self.alerts = Counter(
            "synctwin_alerts",
            "alerts raised on live sites, by sector and risk (sla_misses, overtime)",
            ["site", "sector", "risk"],
            registry=r,
        )
        self.alert_outcomes = Counter(
            "synctwin_alert_outcomes",
            "alerts closed with their outcome (happened: the risk came true; "
            "not_happened: it did not, a false alert unless the floor acted)",
            ["site", "risk", "outcome"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "synctwin_webhook_deliveries",
            "webhook posts by result (delivered, retried, failed: gave up)",
            ["result"],
            registry=r,
        )

    def remember_advice(self, recommendation_id: str, kind: str) -> None:
        """Remember a recommendation's kind of advice, for its feedback."""
        with self._kinds_lock:
            self._kinds[recommendation_id] = kind
            if len(self._kinds) > REMEMBERED_KINDS:
                self._kinds.popitem(last=False)

    def count_feedback(self, recommendation_id: str, accepted: bool) -> None:
        """Count feedback, in total and by the recommendation's kind of advice."""
        self.feedback.labels(str(accepted).lower()).inc()
        with self._kinds_lock:
            kind = self._kinds.get(recommendation_id, "unknown")
        self.feedback_by_advice.labels(kind, str(accepted).lower()).inc()

    def set_policy(self, served: Served) -> None:
        self.policy_info.clear()
        m = served.policy.manifest
        self.policy_info.labels(m.name, served.version, m.scenario.name).set(1)
        self.policy_loaded.set(time.time())
