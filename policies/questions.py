"""The questions that need rollouts, in a form that can travel to the rollout host.

Each question (:class:`RecommendQuestion`, :class:`ForecastQuestion`,
:class:`AssessQuestion`) holds only what the answer depends on, the snapshot as its
JSON, and is called with a rollout runner and the served policy
(:class:`policies.rollout_host.Question`). The server checks a request before it asks;
the rollout host (or the server itself, without rollout workers) answers. An answer
is what the server needs to reply and to record, small to send back: an impact
recommendation comes back as its response body and the few facts the metrics count
(:class:`AdviceAnswer`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from policies.advice import Advice, AdviceOptions, advise
from policies.alerts import AlertRules, Risk, assess
from policies.impact import Forecast, forecast
from policies.rollouts import Runner
from policies.runtime import BundlePolicy
from policies.schemas import (
    ActionOut,
    DeclinedOut,
    DriverOut,
    ImpactOut,
    PolicyRef,
    ReasonOut,
    Recommendation,
    SectorRecommendation,
)
from twin.actions import Controller
from twin.snapshot import OperationSnapshot


def recommendation(
    advice: Advice, policy: PolicyRef, recommendation_id: str, *, detail: bool = True
) -> Recommendation:
    """The response body of ``POST /v1/recommend`` for ``advice`` (numbers rounded);
    ``policy``: the served bundle; ``detail``: with every sector's decision in ``sectors``."""
    sectors = []
    for a in advice.sectors if detail else ():
        assert a.confidence is not None and a.probabilities is not None  # a bundle's advice
        sectors.append(
            SectorRecommendation(
                sector=a.sector,
                action=a.action,
                action_in_force=a.in_force,
                kinds=list(a.kinds),
                message=a.message,
                confidence=round(a.confidence, 6),
                probabilities={
                    field: dict(zip(p, np.round(list(p.values()), 6).tolist(), strict=True))
                    for field, p in a.probabilities.items()
                },
                drivers=[DriverOut.of(x) for x in a.drivers],
                reasons=[ReasonOut.of(x) for x in a.reasons],
                impact=ImpactOut.of(a.impact) if a.impact is not None else None,
            )
        )
    total = advice.total_impact
    return Recommendation(
        recommendation_id=recommendation_id,
        policy_version=policy.version,
        policy=policy,
        scenario=advice.scenario,
        minute=advice.minute,
        status=advice.status,
        headline=advice.headline,
        actions=[ActionOut.of(x) for x in advice.actions],
        not_recommended=[DeclinedOut.of(x) for x in advice.declined],
        min_saving=advice.options.min_saving,
        sectors=sectors,
        total_impact=ImpactOut.of(total) if total is not None else None,
        impact_seed=advice.impact_seed,
        impact_scope=advice.impact_scope,
    )


@dataclass(frozen=True)
class AdviceAnswer:
    """A recommendation's response body and what the server's metrics count of it."""

    recommendation_id: str
    body_json: str
    status: str
    sector_kinds: tuple[tuple[str, ...], ...]  # every sector's kinds of advice
    action_kinds: tuple[tuple[str, ...], ...]  # the ranked actions' kinds, best first
    against_plan: int  # actions that go against the scenario's plan rules
    declined: tuple[str, ...]  # the reason of every change not recommended
    estimated_impact: bool
    rollout_seconds: float

    @classmethod
    def of(cls, advice: Advice, policy: PolicyRef, *, detail: bool) -> AdviceAnswer:
        rec = recommendation(advice, policy, str(uuid.uuid4()), detail=detail)
        return cls(
            recommendation_id=rec.recommendation_id,
            body_json=rec.model_dump_json(),
            status=advice.status,
            sector_kinds=tuple(tuple(a.kinds) for a in advice.sectors),
            action_kinds=tuple(tuple(a.kinds) for a in advice.actions),
            against_plan=sum(1 for a in advice.actions if a.against_plan),
            declined=tuple(d.reason for d in advice.declined),
            estimated_impact=advice.estimated_impact,
            rollout_seconds=advice.rollout_seconds,
        )


@dataclass(frozen=True)
class RecommendQuestion:
    """``POST /v1/recommend``'s work: the advice at a checked snapshot, shaped."""

    snapshot_json: str
    options: AdviceOptions
    policy: PolicyRef
    detail: bool = True

    def answer(
        self,
        policy: Controller,
        snapshot: OperationSnapshot,
        rollout_gate: Callable[[], contextlib.AbstractContextManager[Runner]] | None = None,
    ) -> AdviceAnswer:
        """The answer at ``snapshot`` (this question's, already parsed)."""
        advice = advise(policy, snapshot, self.options, rollout_gate=rollout_gate, checked=True)
        return AdviceAnswer.of(advice, self.policy, detail=self.detail)

    def __call__(self, runner: Runner, policy: Controller) -> AdviceAnswer:
        snap = OperationSnapshot.model_validate_json(self.snapshot_json)
        return self.answer(policy, snap, lambda: contextlib.nullcontext(runner))


@dataclass(frozen=True)
class ForecastQuestion:
    """``POST /v1/forecast``'s work: the risks under the policy and under no action."""

    snapshot_json: str
    hours: tuple[float, ...]
    samples: int
    seed: int
    demand_factors: tuple[float, ...] | None = None  # per item class, scenario order

    def __call__(self, runner: Runner, policy: Controller) -> Forecast:
        bundle = cast(BundlePolicy, policy)
        return forecast(
            bundle.scenario,
            OperationSnapshot.model_validate_json(self.snapshot_json),
            bundle,
            hours=list(self.hours),
            samples=self.samples,
            seed=self.seed,
            checked=True,  # the server checked it, once
            runner=runner,
            demand_factors=None if self.demand_factors is None else list(self.demand_factors),
        )


@dataclass(frozen=True)
class AssessQuestion:
    """A live site's grid point: the risks forming under the actions in force."""

    snapshot_json: str
    rules: AlertRules
    demand_factors: tuple[float, ...] | None = None

    def __call__(self, runner: Runner, policy: Controller) -> list[Risk]:
        return assess(
            cast(BundlePolicy, policy).scenario,
            OperationSnapshot.model_validate_json(self.snapshot_json),
            self.rules,
            runner=runner,
            demand_factors=self.demand_factors,
        )
