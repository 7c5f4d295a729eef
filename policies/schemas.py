"""The policy server's request and response schemas (the HTTP contract, apart from internals).

Requests reuse the twin's :class:`~twin.snapshot.OperationSnapshot` as is (one schema
for the twin and for live systems); everything else here is the API's own shape,
converted from the internal dataclasses of :mod:`policies.impact` and
:mod:`policies.explain` at the border.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from policies.advice import Action, Declined
from policies.explain import Driver
from policies.impact import HorizonRisk, Impact, Interval, SectorRisk
from policies.messages import Kind
from policies.reasons import Reason
from twin.actions import SectorAction
from twin.snapshot import OperationSnapshot


class _In(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- requests


class RecommendRequest(_In):
    """A snapshot with options. A bare :class:`OperationSnapshot` is accepted too."""

    snapshot: OperationSnapshot
    impact: bool | None = Field(
        None,
        description="estimate the predicted impact with twin rollouts (server default if null)",
    )
    horizon_minutes: int | None = Field(
        None, ge=1, le=1440, description="rollout horizon in minutes (server default if null)"
    )
    samples: int | None = Field(
        None, ge=2, le=256, description="rollouts per arm (common random numbers)"
    )
    impact_scope: Literal["per_sector", "total"] | None = Field(
        None,
        description=(
            "per_sector: each changed sector's action alone, and all together (2 + changed "
            "sectors arms); total: only all together (2 arms, faster). Server default if null"
        ),
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="first rollout seed")
    explain: bool = Field(True, description="compute the features that drove each decision")
    min_saving: float | None = Field(
        None,
        ge=0,
        le=1e9,
        description="smallest predicted cost saving (cost units over the horizon) for an "
        "action to be listed (server default if null)",
    )
    detail: bool = Field(
        True, description="include every sector's decision in `sectors` (false: an empty list)"
    )


class ForecastRequest(_In):
    """A snapshot with options. A bare :class:`OperationSnapshot` is accepted too."""

    snapshot: OperationSnapshot
    hours: list[Annotated[float, Field(gt=0, le=24)]] | None = Field(
        None, min_length=1, max_length=12, description="horizons in hours (server default if null)"
    )
    samples: int | None = Field(None, ge=2, le=256, description="rollouts per arm")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="first rollout seed")


def _wrapped(value: Any) -> str:
    """Discriminator: a body with a ``snapshot`` key is a request with options."""
    if isinstance(value, dict):
        return "request" if "snapshot" in value else "snapshot"
    return "request" if isinstance(value, RecommendRequest | ForecastRequest) else "snapshot"


RecommendBody = Annotated[
    Annotated[RecommendRequest, Tag("request")] | Annotated[OperationSnapshot, Tag("snapshot")],
    Discriminator(_wrapped),
]
ForecastBody = Annotated[
    Annotated[ForecastRequest, Tag("request")] | Annotated[OperationSnapshot, Tag("snapshot")],
    Discriminator(_wrapped),
]


class ReloadRequest(_In):
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="a policy bundle directory (relative to the server's working directory)",
    )


class FeedbackRequest(_In):
    recommendation_id: str = Field(min_length=1, max_length=64)
    accepted: bool
    comment: str | None = Field(None, max_length=4000)


# --------------------------------------------------------------------------- responses


class IntervalOut(_Out):
    """A mean with its 95% confidence interval over the rollout samples."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, i: Interval) -> IntervalOut:
        return cls(mean=round(i.mean, 4), low=round(i.low, 4), high=round(i.high, 4))


class ImpactOut(_Out):
    """Predicted savings over the horizon (positive = better with the recommendation)."""

    focus_sector: str = Field(description="sector whose queueing delay is reported")
    horizon_minutes: float
    samples: int
    slowdown_minutes_avoided: IntervalOut = Field(
        description="reduction of the mean queueing delay per item in the focus sector (min)"
    )
    sla_misses_avoided: IntervalOut = Field(description="fewer new SLA misses, whole operation")
    overtime_hours_saved: IntervalOut = Field(description="fewer overtime hours, whole operation")
    cost_saved: IntervalOut = Field(description="lower total cost (labour + penalties)")
    wait_minutes_without: float = Field(
        description="mean queueing delay per item in the focus sector without the recommendation"
    )

    @classmethod
    def of(cls, i: Impact) -> ImpactOut:
        return cls(
            focus_sector=i.focus_sector,
            horizon_minutes=i.horizon_minutes,
            samples=i.samples,
            slowdown_minutes_avoided=IntervalOut.of(i.slowdown_minutes_avoided),
            sla_misses_avoided=IntervalOut.of(i.sla_misses_avoided),
            overtime_hours_saved=IntervalOut.of(i.overtime_hours_saved),
            cost_saved=IntervalOut.of(i.cost_saved),
            wait_minutes_without=round(i.wait_minutes_without, 4),
        )


class DriverOut(_Out):
    """A feature that drove the decision (occlusion attribution, see policies.explain)."""

    feature: str
    meaning: str
    unit: str
    value: float = Field(description="the feature's value in this snapshot")
    reference: float = Field(description="its typical value (the occlusion baseline)")
    contribution: float = Field(
        description="drop of the chosen action's log-probability when set to the reference"
    )

    @classmethod
    def of(cls, d: Driver) -> DriverOut:
        return cls(
            feature=d.name,
            meaning=d.meaning,
            unit=d.unit,
            value=round(d.value, 6),
            reference=round(d.reference, 6),
            contribution=round(d.contribution, 6),
        )


class ReasonOut(_Out):
    """A reason for a decision in the floor's terms (a driver that contributed)."""

    text: str
    feature: str = Field(description="the feature it comes from")
    contribution: float = Field(description="its attribution (> 0), as in drivers")

    @classmethod
    def of(cls, r: Reason) -> ReasonOut:
        return cls(text=r.text, feature=r.feature, contribution=round(r.contribution, 6))


class ActionOut(_Out):
    """A change worth making now (savings positive, over ``horizon_minutes``)."""

    rank: int = Field(description="1 = the largest predicted cost saved")
    sectors: list[str] = Field(description="the acting sector(s), then a lend's target")
    change: str = Field(description="the change in words")
    kinds: list[Kind]
    actions: dict[str, SectorAction] = Field(description="acting sector -> its action")
    horizon_minutes: float
    cost_saved: IntervalOut = Field(description="lower total cost (labour + penalties)")
    sla_misses_avoided: IntervalOut
    overtime_hours_saved: IntervalOut
    confidence: float | None = Field(description="the policy's probability of its choice")
    certainty: Literal["likely", "uncertain"] = Field(description="confidence in words")
    reasons: list[ReasonOut]
    against_plan: list[str] = Field(description="the plan rules it departs from (empty: none)")
    text: str = Field(description="the action and its predicted effect in one sentence")

    @classmethod
    def of(cls, a: Action) -> ActionOut:
        return cls(
            rank=a.rank,
            sectors=list(a.sectors),
            change=a.change,
            kinds=list(a.kinds),
            actions=dict(a.actions),
            horizon_minutes=a.impact.horizon_minutes,
            cost_saved=IntervalOut.of(a.impact.cost_saved),
            sla_misses_avoided=IntervalOut.of(a.impact.sla_misses_avoided),
            overtime_hours_saved=IntervalOut.of(a.impact.overtime_hours_saved),
            confidence=round(a.confidence, 6) if a.confidence is not None else None,
            certainty=a.certainty,
            reasons=[ReasonOut.of(r) for r in a.reasons],
            against_plan=list(a.against_plan),
            text=a.text,
        )


class DeclinedOut(_Out):
    """A change the policy proposes that is not recommended, and why."""

    sectors: list[str]
    change: str
    reason: Literal["costs_more", "below_minimum", "uncertain"] = Field(
        description="costs_more: the twin predicts it costs more than it saves; "
        "below_minimum: saves less than min_saving; uncertain: its interval reaches 0"
    )
    horizon_minutes: float
    cost_saved: IntervalOut
    sla_misses_avoided: IntervalOut
    overtime_hours_saved: IntervalOut
    against_plan: list[str]
    text: str

    @classmethod
    def of(cls, d: Declined) -> DeclinedOut:
        return cls(
            sectors=list(d.sectors),
            change=d.change,
            reason=d.reason,
            horizon_minutes=d.impact.horizon_minutes,
            cost_saved=IntervalOut.of(d.impact.cost_saved),
            sla_misses_avoided=IntervalOut.of(d.impact.sla_misses_avoided),
            overtime_hours_saved=IntervalOut.of(d.impact.overtime_hours_saved),
            against_plan=list(d.against_plan),
            text=d.text,
        )


class PolicyRef(_Out):
    name: str
    version: str


class SectorRecommendation(_Out):
    sector: str
    action: SectorAction = Field(description="the policy's action for this sector")
    action_in_force: SectorAction = Field(description="the action in force in the snapshot")
    kinds: list[Kind] = Field(description="what the action changes")
    message: str = Field(description="the recommendation in plain language")
    confidence: float = Field(description="probability of the chosen action under the policy")
    probabilities: dict[str, dict[str, float]] = Field(
        description="per action field, the probability of each value"
    )
    drivers: list[DriverOut] = Field(description="the features that drove the decision most")
    reasons: list[ReasonOut] = Field(
        default_factory=list, description="the drivers that contributed, in the floor's terms"
    )
    impact: ImpactOut | None = Field(
        description="predicted impact of this sector's action alone (others as in force); "
        "null without impact or with impact_scope 'total'"
    )


class Recommendation(_Out):
    recommendation_id: str = Field(description="quote it in POST /v1/feedback")
    policy_version: str
    policy: PolicyRef
    scenario: str
    minute: float
    status: Literal["act", "hold", "unranked"] = Field(
        description="act: actions qualify; hold: nothing worth changing now; "
        "unranked: no impact estimated, nothing ranked"
    )
    headline: str = Field(description="the top action in one line, or the hold")
    actions: list[ActionOut] = Field(
        description="the changes worth making, largest predicted cost saved first"
    )
    not_recommended: list[DeclinedOut] = Field(
        description="changes the policy proposes that do not qualify, and why"
    )
    min_saving: float = Field(description="the smallest cost saving an action needed")
    sectors: list[SectorRecommendation] = Field(
        description="every sector's decision (empty with detail: false)"
    )
    total_impact: ImpactOut | None = Field(
        description="predicted impact of all changed sectors' actions together"
    )
    impact_seed: int | None = Field(description="seed of the first rollout (null: no impact)")
    impact_scope: Literal["per_sector", "total"] | None = Field(
        description="how impact was estimated (null: no impact)"
    )


class RiskAt(_Out):
    hours: float
    minutes_simulated: float
    p_any_miss: IntervalOut = Field(description="probability of at least one new SLA miss")
    expected_misses: IntervalOut
    expected_overtime_hours: IntervalOut

    @classmethod
    def of(cls, h: HorizonRisk, risk: SectorRisk) -> RiskAt:
        return cls(
            hours=h.hours,
            minutes_simulated=h.minutes_simulated,
            p_any_miss=IntervalOut.of(risk.p_any_miss),
            expected_misses=IntervalOut.of(risk.expected_misses),
            expected_overtime_hours=IntervalOut.of(risk.expected_overtime_hours),
        )


class SectorForecast(_Out):
    sector: str = Field(description="a sector, or 'total' for the whole operation")
    policy: list[RiskAt] = Field(description="under the served policy, one entry per horizon")
    no_action: list[RiskAt] = Field(description="under the actions in force, kept")


class ForecastOut(_Out):
    policy_version: str
    policy: PolicyRef
    scenario: str
    minute: float
    hours: list[float]
    samples: int
    seed: int
    sectors: list[SectorForecast]
    total: SectorForecast
    demand_factors: dict[str, float] | None = Field(
        None,
        description="per item class, the factor on the plan's arrival rates the rollouts "
        "ran: the demand a live site observed (twin.adaptive); null: the plan",
    )


class PolicyInfo(_Out):
    name: str
    version: str
    scenario: str
    scenario_digest: str
    sectors: list[str]
    policy_mode: str
    path: str
    loaded_at: str
    manifest: dict[str, Any]


class ReloadOut(_Out):
    policy_version: str
    previous_version: str
    name: str
    path: str
    loaded_at: str
    load_seconds: float


class FeedbackOut(_Out):
    recommendation_id: str
    stored: bool


class Health(_Out):
    status: str
    policy_version: str | None = None


class ErrorOut(_Out):
    detail: str


# --------------------------------------------------------------------------- live sites


class SiteRecommendRequest(RecommendRequest):
    """The options of ``POST /v1/recommend``, answered on a site's live state."""

    snapshot: None = Field(  # type: ignore[assignment]
        None, description="not sent: the site's live state answers"
    )
    at: str | None = Field(None, description="the state at this timestamp (default: latest)")


class SiteForecastRequest(ForecastRequest):
    """The options of ``POST /v1/forecast``, answered on a site's live state."""

    snapshot: None = Field(  # type: ignore[assignment]
        None, description="not sent: the site's live state answers"
    )
    at: str | None = Field(None, description="the state at this timestamp (default: latest)")
    adaptive: bool = Field(
        True,
        description="roll out the demand the site's arrivals so far show, per item class, "
        "shrunk toward the plan (twin.adaptive); false: the plan's demand",
    )


class RejectedEventOut(_Out):
    id: str | None = Field(description="the event's id (null if it had none)")
    reason: str
    kind: Literal["schema", "scenario", "late", "state"] = Field(
        description="schema: does not parse (not stored); scenario: names what the site's "
        "scenario lacks; late: beyond the reorder tolerance; state: contradicted by the "
        "state when applied"
    )


class SiteEventsOut(_Out):
    """What a batch of events did; every event is either counted or listed."""

    site: str
    accepted: int = Field(description="events of the batch taken in")
    duplicate: int = Field(description="events whose id the site already had (unchanged)")
    rejected: list[RejectedEventOut] = Field(
        description="refused events, with why (including earlier ones refused when applied now)"
    )
    stored_seq: int = Field(description="the last stored event this answer reflects")


class AlertOutcomeOut(_Out):
    """What came of an alert, once its ``by`` plus the grace period has passed."""

    happened: bool = Field(description="the risk came true (false with no action: a false alert)")
    observed: float = Field(description="SLA misses seen in the sector (or overtime hours)")
    checked_minute: float
    checked_at: str = Field(description="when the outcome was checked (site clock)")


class AlertPreventionOut(_Out):
    """The served policy's advice at the alert's state (stored as a recommendation)."""

    recommendation_id: str = Field(description="takes feedback like any recommendation")
    status: Literal["act", "hold"]
    headline: str
    change: str | None = Field(description="the top action's change (null: hold)")
    cost_saved: float | None = Field(description="its predicted saving (null: hold)")


class AlertOut(_Out):
    """A risk forming at a live site (``policies/alerts.py``), as stored and streamed."""

    seq: int = Field(description="its place in the site's alerts (SSE id; resume after it)")
    id: str
    site: str
    raised_at: str = Field(description="site clock when the risk was assessed")
    minute: float
    sector: str
    risk: Literal["sla_misses", "overtime"]
    by: str = Field(description="the risk is forecast to have happened by then")
    by_minute: float
    hours: float = Field(description="from raised_at to by")
    probability: float = Field(description="forecast probability that it happens by `by`")
    expected: float = Field(description="expected SLA misses (or overtime hours) by `by`")
    expected_cost: float = Field(description="expected cost of it, in the scenario's units")
    message: str = Field(description="the alert in words, with the prevention")
    prevention: AlertPreventionOut | None = Field(
        description="the served policy's advice at that state (null if it could not be "
        "computed, e.g. while the rollout workers stayed busy)"
    )
    outcome: AlertOutcomeOut | None = Field(description="null until known")
