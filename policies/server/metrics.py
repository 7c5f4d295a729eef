"""The policy server's Prometheus metrics: one registry per app."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from policies.messages import KINDS

if TYPE_CHECKING:
    from policies.server.state import Served


class Metrics:
    """Prometheus metrics of one app (its own registry, so apps never share counters)."""

    def __init__(self) -> None:
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
        self.rollout_seconds = Histogram(
            "synctwin_rollout_seconds",
            "time spent in twin rollouts per request",
            ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def set_policy(self, served: Served) -> None:
        self.policy_info.clear()
        m = served.policy.manifest
        self.policy_info.labels(m.name, m.version, m.scenario.name).set(1)
        self.policy_loaded.set(time.time())
