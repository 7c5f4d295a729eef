"""Advice: what each sector should do now, why, and what it is predicted to save.

One function, :func:`advise`, answers "what would this policy do at this state" for
every caller: the policy server's ``POST /v1/recommend`` and the planner dashboard.
Its steps are the domain's, in order:

1. **decide** — a policy bundle's greedy action per sector, with its probabilities,
   its confidence and (``explain``) the features that drove it
   (:func:`policies.explain.decide_and_explain`); any other
   :class:`~twin.actions.Controller` gives its action only;
2. **impact** — twin rollouts with and without the recommendation
   (:func:`policies.impact.estimate_impact`, common random numbers), unless off; a
   change whose first half of the samples shows it cannot save ``min_saving`` stops
   there (the screen), so only the changes that could be recommended run them all;
3. **kinds** — what each action changes against the action in force
   (:func:`policies.messages.kinds`);
4. **words** — the plain-language message (:func:`policies.messages.message`) and the
   reasons in the floor's terms (:func:`policies.reasons.reasons`);
5. **rank** — the changes worth making (:func:`rank`): a changed sector's action is an
   :class:`Action` only when the twin predicts it saves at least ``min_saving`` with
   its 95% interval above 0; ranked by predicted cost saved, the top one worded as the
   ``headline``; nothing qualifying is an explicit hold. Proposals that do not qualify
   are :class:`Declined` with the reason (``costs_more``: the twin predicts the
   policy's proposal costs more than it saves). A change that departs from an
   explicit rule of the scenario's plan is marked ``against_plan``, with its effect.

:class:`AdviceOptions` holds the defaults (samples, horizon, seed, ...) and the
limits a caller may ask for; :class:`Advice` is the typed result, which the server
shapes into its JSON response (:mod:`policies.schemas`). Nothing here knows HTTP:
request validation, metrics and the decision log stay in :mod:`policies.server`.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.explain import Driver, decide_and_explain, reference_day
from policies.impact import Impact, Interval, Runner, estimate_impact, run_here
from policies.messages import (
    Certainty,
    Kind,
    against_plan,
    change_words,
    confidence_words,
    display_names,
    effect_notes,
    kinds,
    message,
    saving_words,
    situation,
)
from policies.reasons import Reason, reasons
from policies.runtime import BundlePolicy
from twin.actions import Controller, SectorAction
from twin.features import featurizer
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot
from twin.spaces import ACTION_FIELDS, PRIORITIES
from twin.wallclock import clock

#: Defaults of a recommendation's predicted impact (the server's, unless configured).
IMPACT_SAMPLES = 8  # rollouts per arm
IMPACT_HORIZON_MINUTES = 90
#: Limits on what one request may ask for (CPU per request).
MAX_SAMPLES = 32
MAX_HORIZON_MINUTES = 480
#: Drivers reported per sector.
TOP_DRIVERS = 3
#: Smallest predicted cost saving (scenario cost units, over the horizon) worth acting on.
MIN_SAVING = 20.0

#: ``act``: at least one action qualifies; ``hold``: impact was estimated and nothing
#: qualifies; ``unranked``: no impact was estimated, so nothing can be ranked.
Status = Literal["act", "hold", "unranked"]
#: Why a proposed change is not recommended.
DeclineReason = Literal["costs_more", "below_minimum", "uncertain"]
DECLINE_REASONS: tuple[DeclineReason, ...] = ("costs_more", "below_minimum", "uncertain")
HOLD_HEADLINE = "Hold: nothing worth changing now."
UNRANKED_HEADLINE = "No ranked advice: the impact was not estimated (ask with impact on)."

ImpactScope = Literal["per_sector", "total"]


class OptionError(ValueError):
    """A requested option beyond its limit; ``option`` names it (e.g. ``samples``)."""

    def __init__(self, option: str, limit: int) -> None:
        super().__init__(f"{option} must be <= {limit}")
        self.option = option
        self.limit = limit


class AdviceError(ValueError):
    """A state that cannot be advised on (e.g. values that give non-finite features)."""


class AdviceOptions(BaseModel):
    """How to advise: decisions, drivers and the predicted impact's rollouts.

    The defaults are the server's; :class:`policies.server.Settings` may configure
    others, and a request overrides them within ``max_samples`` and
    ``max_horizon_minutes`` (:meth:`requested`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    impact: bool = Field(True, description="estimate the predicted impact with twin rollouts")
    samples: int = Field(IMPACT_SAMPLES, ge=2, description="rollouts per arm")
    horizon_minutes: int = Field(IMPACT_HORIZON_MINUTES, ge=1, description="rollout horizon")
    impact_scope: ImpactScope = Field(
        "per_sector", description="per_sector: each change alone and all together; total: together"
    )
    seed: int = Field(0, ge=0, description="first rollout seed (same state, same answer)")
    explain: bool = Field(True, description="compute each decision's drivers (bundles only)")
    min_saving: float = Field(
        MIN_SAVING, ge=0, description="smallest predicted cost saving worth an action"
    )
    top_drivers: int = Field(TOP_DRIVERS, ge=0, description="drivers per sector")
    max_samples: int = Field(MAX_SAMPLES, ge=2, description="largest samples one may ask for")
    max_horizon_minutes: int = Field(
        MAX_HORIZON_MINUTES, ge=1, description="longest rollout one may ask for"
    )

    @model_validator(mode="after")
    def _within_limits(self) -> AdviceOptions:
        if self.samples > self.max_samples:
            raise ValueError("samples exceeds max_samples")
        if self.horizon_minutes > self.max_horizon_minutes:
            raise ValueError("horizon_minutes exceeds max_horizon_minutes")
        return self

    def requested(
        self,
        *,
        impact: bool | None = None,
        samples: int | None = None,
        horizon_minutes: int | None = None,
        impact_scope: ImpactScope | None = None,
        seed: int | None = None,
        explain: bool | None = None,
        min_saving: float | None = None,
    ) -> AdviceOptions:
        """These options with a caller's choices (``None``: keep the default).

        Raises:
            OptionError: ``samples`` or ``horizon_minutes`` beyond its limit.
        """
        if samples is not None and samples > self.max_samples:
            raise OptionError("samples", self.max_samples)
        if horizon_minutes is not None and horizon_minutes > self.max_horizon_minutes:
            raise OptionError("horizon_minutes", self.max_horizon_minutes)
        given = {
            "impact": impact,
            "samples": samples,
            "horizon_minutes": horizon_minutes,
            "impact_scope": impact_scope,
            "seed": seed,
            "explain": explain,
            "min_saving": min_saving,
        }
        update = {k: v for k, v in given.items() if v is not None}
        return self.model_copy(update=update) if update else self


DEFAULT_OPTIONS = AdviceOptions()


@dataclass(frozen=True)
class SectorAdvice:
    """What one sector should do now.

    ``confidence``, ``probabilities`` and ``drivers`` come from a policy bundle's
    action distribution; an advisor that is not a bundle has none (``None``, ``()``).
    ``impact`` is this sector's action alone (``None`` without impact, or with
    ``impact_scope`` ``total``).
    """

    sector: str
    action: SectorAction
    in_force: SectorAction
    kinds: tuple[Kind, ...]
    message: str
    confidence: float | None  # probability of the chosen action (product over fields)
    probabilities: dict[str, dict[str, float]] | None  # field -> value label -> probability
    drivers: tuple[Driver, ...]
    impact: Impact | None
    reasons: tuple[Reason, ...] = ()  # the drivers that contributed, in the floor's words

    @property
    def changes(self) -> bool:
        """The action changes something against the action in force."""
        return self.kinds != ("no_change",)


@dataclass(frozen=True)
class Action:
    """A change worth making now: the twin predicts it saves at least ``min_saving``.

    ``impact`` is this change alone (the other sectors keep the actions in force), or
    with ``impact_scope`` ``total`` every change together (``sectors`` lists them all).
    """

    rank: int  # 1 = the largest predicted cost saved
    sectors: tuple[str, ...]  # the acting sector(s), then a lend's target
    change: str  # the change in words ("Move 3 workers from Putaway to Picking now")
    kinds: tuple[Kind, ...]
    actions: dict[str, SectorAction]  # acting sector -> its recommended action
    impact: Impact
    confidence: float | None  # the policy's probability of its choice (lowest if several)
    certainty: Certainty  # "likely" or "uncertain" (policies.messages.confidence_words)
    reasons: tuple[Reason, ...]
    against_plan: tuple[str, ...]  # the plan rules it departs from, in words
    text: str  # the action with its predicted effect, in one sentence


@dataclass(frozen=True)
class Declined:
    """A change the policy proposes that is not recommended, and why."""

    sectors: tuple[str, ...]
    change: str
    reason: DeclineReason
    impact: Impact
    against_plan: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Advice:
    """Every sector's advice at one state, the ranked changes worth making and the headline."""

    scenario: str
    minute: float
    sectors: tuple[SectorAdvice, ...]  # in the policy's (the scenario's) sector order
    total_impact: Impact | None  # None: no impact estimated, or nothing changes
    options: AdviceOptions
    estimated_impact: bool  # rollouts ran (options.impact)
    rollout_seconds: float  # wall time spent in rollouts (0 without)
    actions: tuple[Action, ...] = ()  # ranked, largest predicted saving first
    declined: tuple[Declined, ...] = ()
    headline: str = UNRANKED_HEADLINE
    status: Status = "unranked"

    @property
    def impact_seed(self) -> int | None:
        return self.options.seed if self.estimated_impact else None

    @property
    def impact_scope(self) -> ImpactScope | None:
        return self.options.impact_scope if self.estimated_impact else None

    def sector(self, name: str) -> SectorAdvice:
        """The advice for sector ``name``."""
        for s in self.sectors:
            if s.sector == name:
                return s
        raise KeyError(name)


def action_labels(policy: BundlePolicy) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Per sector, the label of each value of each action field (for ``probabilities``)."""
    labels = _LABELS.get(policy)
    if labels is None:
        labels = _LABELS[policy] = {
            sector: (
                ("none", *codec.targets),
                tuple(str(i) for i in range(codec.max_lend + 1)),
                tuple(str(i) for i in range(codec.max_flex + 1)),
                ("no", "yes"),
                tuple(PRIORITIES),
            )
            for sector, codec in policy.codecs.items()
        }
    return labels


_LABELS: weakref.WeakKeyDictionary[BundlePolicy, dict[str, tuple[tuple[str, ...], ...]]] = (
    weakref.WeakKeyDictionary()
)


def _probabilities(
    labels: tuple[tuple[str, ...], ...], probs: list[np.ndarray]
) -> dict[str, dict[str, float]]:
    return {
        field: dict(zip(names, p.tolist(), strict=True))
        for field, names, p in zip(ACTION_FIELDS, labels, probs, strict=True)
    }


@dataclass(frozen=True)
class _Decided:
    action: SectorAction
    confidence: float | None = None
    probabilities: dict[str, dict[str, float]] | None = None
    drivers: tuple[Driver, ...] = ()


def _decide(
    policy: Controller, scenario: Scenario, snapshot: OperationSnapshot, options: AdviceOptions
) -> dict[str, _Decided]:
    if isinstance(policy, BundlePolicy):
        feats = featurizer(scenario).matrix(snapshot)
        if not np.isfinite(feats).all():
            raise AdviceError("the snapshot's values give non-finite features")
        reference = reference_day(scenario).features if options.explain else None
        explained = decide_and_explain(policy, feats, reference, top=options.top_drivers)
        labels = action_labels(policy)
        return {
            sector: _Decided(
                action=d.action,
                confidence=d.confidence,
                probabilities=_probabilities(labels[sector], d.probabilities),
                drivers=tuple(d.drivers),
            )
            for sector, d in explained.items()
        }
    decided = dict(policy.decide(snapshot))
    in_force = {st.name: st.action for st in snapshot.sectors}
    return {s: _Decided(action=decided.get(s, in_force[s])) for s in scenario.sector_names}


def advise(
    policy: Controller,
    snapshot: OperationSnapshot,
    options: AdviceOptions = DEFAULT_OPTIONS,
    *,
    scenario: Scenario | None = None,
    rollout_gate: Callable[[], AbstractContextManager[Runner]] | None = None,
    checked: bool = False,
) -> Advice:
    """What ``policy`` would do in every sector at ``snapshot``: decide, impact, kinds, words.

    Args:
        policy: a :class:`~policies.runtime.BundlePolicy` (decisions with probabilities,
            confidence and drivers) or any other controller (its actions only; sectors
            it leaves out keep the action in force).
        snapshot: the live state; it must fit the scenario (the server checks it first).
        options: samples, horizon, seed, scope of the impact; whether to explain.
        scenario: the scenario the state belongs to (default: the bundle's own;
            required for a controller that is not a bundle).
        rollout_gate: called for a context held while the rollouts run (a limit on
            concurrent rollouts); it gives the runner that runs them (e.g. on worker
            processes, stopping when the client leaves). Default: in this process.
        checked: the caller has checked ``snapshot`` against the scenario already (the
            server does, once, at its border), so the rollouts do not check it again.

    Raises:
        AdviceError: the snapshot's values give non-finite features.
        twin.model.SnapshotError: the snapshot does not fit the scenario (rollouts).
        ValueError: no scenario for a controller that is not a bundle.
    """
    if scenario is None:
        scenario = getattr(policy, "scenario", None)
        if not isinstance(scenario, Scenario):
            raise ValueError("advise: pass the scenario of a controller that is not a bundle")
    decided = _decide(policy, scenario, snapshot, options)
    report = None
    seconds = 0.0
    if options.impact:
        with rollout_gate() if rollout_gate is not None else nullcontext(run_here) as runner:
            t0 = time.perf_counter()
            report = estimate_impact(
                scenario,
                snapshot,
                {sector: d.action for sector, d in decided.items()},
                horizon_minutes=options.horizon_minutes,
                samples=options.samples,
                seed=options.seed,
                per_sector=options.impact_scope == "per_sector",
                checked=checked,
                runner=runner,
                min_saving=options.min_saving,
            )
            seconds = time.perf_counter() - t0
    sectors = []
    for sector, d in decided.items():
        in_force = snapshot.sector(sector).action
        impact = report.per_sector.get(sector) if report is not None else None
        sectors.append(
            SectorAdvice(
                sector=sector,
                action=d.action,
                in_force=in_force,
                kinds=tuple(kinds(d.action, in_force)),
                message=message(
                    scenario, snapshot, sector, d.action, in_force, impact, d.confidence
                ),
                confidence=d.confidence,
                probabilities=d.probabilities,
                drivers=d.drivers,
                impact=impact,
                reasons=reasons(scenario, snapshot, sector, d.drivers),
            )
        )
    total = report.total if report is not None else None
    ranked = rank(scenario, snapshot, sectors, total, options) if report is not None else None
    return Advice(
        scenario=snapshot.scenario,
        minute=snapshot.minute,
        sectors=tuple(sectors),
        total_impact=total,
        options=options,
        estimated_impact=report is not None,
        rollout_seconds=seconds,
        **(ranked._asdict() if ranked is not None else {}),
    )


class Ranked(NamedTuple):
    """What :func:`rank` returns: the fields of :class:`Advice` it fills."""

    actions: tuple[Action, ...]
    declined: tuple[Declined, ...]
    headline: str
    status: Status


def _decline_reason(cost: Interval, min_saving: float) -> DeclineReason | None:
    if cost.mean < 0:
        return "costs_more"
    if cost.mean < min_saving or cost.mean <= 0:
        return "below_minimum"
    if cost.low <= 0:
        return "uncertain"
    return None


_DECLINED_WORDS: dict[DeclineReason, str] = {
    "costs_more": "not recommended: the twin predicts it costs more than it saves",
    "below_minimum": "not worth it: the predicted saving is below the minimum of {minimum:g}",
    "uncertain": "not recommended: the saving is uncertain (its 95% interval reaches 0)",
}


def _effect(impact: Impact, certainty: Certainty | None) -> str:
    notes = [saving_words(impact.cost_saved.mean), *effect_notes(impact)]
    head, rest = notes[0], notes[1:]
    sure = f"; {certainty}" if certainty is not None else ""
    more = f" ({', '.join(rest)}{sure})" if rest or sure else ""
    return f"{head} over the next {impact.horizon_minutes:g} min{more}"


def rank(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    sectors: Sequence[SectorAdvice],
    total: Impact | None,
    options: AdviceOptions,
) -> Ranked:
    """The changes worth making, ranked by predicted cost saved, and the headline.

    A candidate is each changed sector's action with its own impact (``per_sector``),
    or every change together with the total impact (``total``). It is an
    :class:`Action` when its predicted cost saving is at least ``options.min_saving``
    and its 95% interval lies above 0; otherwise it is :class:`Declined`.
    """
    show = display_names(scenario)
    changed = [a for a in sectors if a.changes]
    groups: list[tuple[list[SectorAdvice], Impact]] = []
    if options.impact_scope == "per_sector":
        groups = [([a], a.impact) for a in changed if a.impact is not None]
    elif changed and total is not None:
        groups = [(changed, total)]
    actions: list[Action] = []
    declined: list[Declined] = []
    for members, impact in groups:
        names = [a.sector for a in members]
        targets = [
            a.action.lend_to
            for a in members
            if a.action.lend_to is not None and a.action.lend_count > 0
        ]
        involved = tuple(dict.fromkeys([*names, *(t for t in targets if t is not None)]))
        change = "; ".join(change_words(scenario, a.sector, a.action, a.in_force) for a in members)
        plan = tuple(
            r for a in members for r in against_plan(scenario, a.sector, a.action, a.in_force)
        )
        confs = [a.confidence for a in members if a.confidence is not None]
        confidence = min(confs) if confs else None
        reason = _decline_reason(impact.cost_saved, options.min_saving)
        marked = f" Against the plan: {'; '.join(plan)}." if plan else ""
        if reason is not None:
            why = _DECLINED_WORDS[reason].format(minimum=options.min_saving)
            declined.append(
                Declined(
                    sectors=involved,
                    change=change,
                    reason=reason,
                    impact=impact,
                    against_plan=plan,
                    text=f"{change}: {why} ({_effect(impact, None)}).{marked}",
                )
            )
            continue
        certainty = confidence_words(impact.cost_saved, confidence)
        actions.append(
            Action(
                rank=0,
                sectors=involved,
                change=change,
                kinds=tuple(k for a in members for k in a.kinds),
                actions={a.sector: a.action for a in members},
                impact=impact,
                confidence=confidence,
                certainty=certainty,
                reasons=tuple(r for a in members for r in a.reasons),
                against_plan=plan,
                text=f"{change}: {_effect(impact, certainty)}.{marked}",
            )
        )
    actions.sort(key=lambda a: -a.impact.cost_saved.mean)
    actions = [replace(a, rank=i + 1) for i, a in enumerate(actions)]
    declined.sort(key=lambda d: -d.impact.cost_saved.mean)
    if not actions:
        return Ranked((), tuple(declined), HOLD_HEADLINE, "hold")
    top = actions[0]
    focus = top.impact.focus_sector
    misses = top.impact.misses_without
    change = top.change[0].lower() + top.change[1:]
    if misses >= 0.5:
        by = clock(snapshot.minute + top.impact.horizon_minutes, days=False)
        lead = f"{show[focus]} will miss about {math.floor(misses + 0.5)} items by {by}: "
    else:
        now = situation(scenario, snapshot, focus)
        lead = f"{show[focus]} has {now.overdue} items past due: " if now.overdue else ""
    if not lead:
        change = top.change
    marked = " (against the plan)" if top.against_plan else ""
    saving = saving_words(top.impact.cost_saved.mean)
    headline = f"{lead}{change}{marked}; {saving} ({top.certainty})."
    return Ranked(tuple(actions), tuple(declined), headline, "act")
