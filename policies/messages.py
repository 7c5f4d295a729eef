"""Plain-language recommendations: what to do now, why, and what it is predicted to save.

A message has up to three parts, built from the recommended action, the action in
force, the live state of the *focus* sector (a lend's target, otherwise the acting
sector) and, when it was estimated, the predicted impact::

    Packing is approaching a bottleneck (84 items waiting, 30 due within 60 min).
    Move 3 workers from Putaway to Packing now to avoid a 20-minute slowdown in
    Packing (saves about 120; about 14 fewer SLA misses; likely, over the next 90 min).

A change that departs from an explicit rule of the scenario's plan (a field the plan
sets for the sector, changed away from the plan's value: :func:`against_plan`) ends
with "Against the plan: ...".

One sign convention, the JSON's: savings are positive, and the words say "saves
about 120" for ``cost_saved.mean = +120`` and "costs about 16 more" for ``-16``.

The situation is a *bottleneck* when the focus sector's waiting work is at least
half an hour of its nominal capacity, or the work due within 60 minutes is; it is
*behind* when items already past due are waiting. Changes are classified into
kinds (``lend``, ``recall``, ``flex``, ``overtime``, ``priority``, or
``no_change``); the metrics count recommendations by kind. Impact numbers are
quoted only when they are at least one minute, half a miss, a quarter of an
overtime hour. Confidence is in words (:func:`confidence_words`): "likely" when the
cost saving's 95% interval lies above zero and the policy gives its choice at least
even odds, "uncertain" otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policies.impact import Impact, Interval, focus_of
from twin.actions import SectorAction
from twin.features import featurizer
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

#: What an action can change against the action in force.
Kind = Literal["lend", "recall", "flex", "overtime", "priority", "no_change"]
KINDS: tuple[Kind, ...] = ("lend", "recall", "flex", "overtime", "priority", "no_change")
#: Confidence in words: a saving is "likely" or "uncertain" (see :func:`confidence_words`).
Certainty = Literal["likely", "uncertain"]
#: The policy's probability of its choice from which a saving may be called likely.
LIKELY_POLICY_CONFIDENCE = 0.5
#: A focus sector is a bottleneck from this much waiting (or due-soon) work, in hours of capacity.
BOTTLENECK_HOURS = 0.5


def kinds(recommended: SectorAction, in_force: SectorAction) -> list[Kind]:
    """What a recommendation changes relative to the action in force (``no_change`` if nothing)."""
    out: list[Kind] = []
    new_to = recommended.lend_to if recommended.lend_count > 0 else None
    old_to = in_force.lend_to if in_force.lend_count > 0 else None
    if new_to is not None and (new_to != old_to or recommended.lend_count > in_force.lend_count):
        out.append("lend")
    if old_to is not None and (new_to != old_to or recommended.lend_count < in_force.lend_count):
        out.append("recall")
    if recommended.flex_count != in_force.flex_count:
        out.append("flex")
    if recommended.overtime != in_force.overtime:
        out.append("overtime")
    if recommended.priority != in_force.priority:
        out.append("priority")
    return out or ["no_change"]


@dataclass(frozen=True)
class SectorSituation:
    """The numbers a message quotes about one sector."""

    waiting: int
    overdue: int
    due_within_60: int
    capacity_per_hour: float

    @property
    def bottleneck(self) -> bool:
        cap = max(self.capacity_per_hour, 1e-9)
        return (
            self.waiting / cap >= BOTTLENECK_HOURS or self.due_within_60 / cap >= BOTTLENECK_HOURS
        )


def situation(scenario: Scenario, snapshot: OperationSnapshot, sector: str) -> SectorSituation:
    """Waiting, overdue and due-soon work of ``sector`` in ``snapshot``."""
    st = snapshot.sector(sector)
    waiting = st.queued
    overdue = sum(c[0] for c in st.queue.values())
    due_60 = sum(c[1] + c[2] for c in st.queue.values()) + sum(
        c[1] + c[2] for c in st.in_service.values()
    )
    fz = featurizer(scenario)  # cached per scenario
    return SectorSituation(
        waiting=waiting,
        overdue=overdue,
        due_within_60=due_60,
        capacity_per_hour=float(fz.capacity_per_hour[fz.index[sector]]),
    )


def display_names(scenario: Scenario) -> dict[str, str]:
    """Sector name -> display name (cached per scenario)."""
    key = (scenario.name, scenario.digest)
    names = _DISPLAY.get(key)
    if names is None:
        names = _DISPLAY[key] = {s.name: s.display for s in scenario.sectors}
    return names


_DISPLAY: dict[tuple[str, str], dict[str, str]] = {}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _situation_sentence(name: str, s: SectorSituation) -> str:
    counts = f"{_plural(s.waiting, 'item')} waiting, {s.due_within_60} due within 60 min"
    if s.overdue:
        return f"{name} is behind ({counts}; {s.overdue} already past due)."
    if s.bottleneck:
        return f"{name} is approaching a bottleneck ({counts})."
    return f"{name} is keeping up ({counts})."


def _action_phrases(
    scenario: Scenario, sector: str, recommended: SectorAction, in_force: SectorAction
) -> list[str]:
    show = display_names(scenario)
    me = show[sector]
    phrases = []
    new_to = recommended.lend_to if recommended.lend_count > 0 else None
    old_to = in_force.lend_to if in_force.lend_count > 0 else None
    if old_to is not None and new_to != old_to:
        phrases.append(
            f"bring {me}'s {_plural(in_force.lend_count, 'worker')} back from {show[old_to]}"
        )
    elif old_to is not None and recommended.lend_count < in_force.lend_count:
        k = in_force.lend_count - recommended.lend_count
        phrases.append(f"bring {k} of {me}'s workers back from {show[old_to]}")
    if new_to is not None:
        more = recommended.lend_count - (in_force.lend_count if new_to == old_to else 0)
        if more > 0:
            extra = " more" if new_to == old_to else ""
            phrases.append(f"move {_plural(more, 'worker')}{extra} from {me} to {show[new_to]} now")
    if recommended.flex_count > in_force.flex_count:
        n = recommended.flex_count - in_force.flex_count
        lead = scenario.workforce.flex.lead_minutes
        phrases.append(
            f"call {_plural(n, 'agency worker')} to {me} (they arrive in about {lead:g} min)"
        )
    elif recommended.flex_count < in_force.flex_count:
        n = in_force.flex_count - recommended.flex_count
        phrases.append(f"release {_plural(n, 'agency worker')} from {me}")
    if recommended.overtime != in_force.overtime:
        phrases.append(
            f"authorise overtime in {me}" if recommended.overtime else f"stop overtime in {me}"
        )
    if recommended.priority != in_force.priority:
        phrases.append(
            f"switch {me} to earliest-due-first"
            if recommended.priority == "edd"
            else f"switch {me} back to first-in-first-out"
        )
    return phrases


def saving_words(cost_saved: float) -> str:
    """The cost saving in words, savings positive: ``saves about 405`` / ``costs about 16 more``."""
    n = round(cost_saved)
    if n > 0:
        return f"saves about {n:,}"
    if n < 0:
        return f"costs about {-n:,} more"
    return "costs about the same"


def effect_notes(impact: Impact) -> list[str]:
    """SLA misses and overtime hours the impact quotes (savings positive, as in the JSON)."""
    notes = []
    misses = impact.sla_misses_avoided.mean
    overtime = impact.overtime_hours_saved.mean
    if misses >= 0.5:
        notes.append(f"about {misses:.0f} fewer SLA misses")
    elif misses <= -0.5:
        notes.append(f"about {-misses:.0f} more SLA misses")
    if overtime >= 0.25:
        notes.append(f"about {overtime:.1f} fewer overtime hours")
    elif overtime <= -0.25:
        notes.append(f"about {-overtime:.1f} more overtime hours")
    return notes


def confidence_words(cost_saved: Interval, policy_confidence: float | None = None) -> Certainty:
    """``likely`` when the saving's 95% interval lies above 0 and the policy is at least
    even about its choice (``policy_confidence`` >= 0.5, or not a bundle); else ``uncertain``."""
    sure_policy = policy_confidence is None or policy_confidence >= LIKELY_POLICY_CONFIDENCE
    return "likely" if cost_saved.low > 0 and sure_policy else "uncertain"


def _impact_clause(impact: Impact, focus_name: str, policy_confidence: float | None) -> str:
    slow = impact.slowdown_minutes_avoided
    cost = impact.cost_saved
    horizon = f"{impact.horizon_minutes:g} min"
    head = ""
    if slow.mean >= 1.0:
        head = f" to avoid a {slow.mean:.0f}-minute slowdown in {focus_name}"
    elif slow.mean <= -1.0:
        head = f", though it slows {focus_name} by about {-slow.mean:.0f} min per item"
    notes = effect_notes(impact)
    if abs(cost.mean) >= 0.5:
        notes.insert(0, saving_words(cost.mean))
    if not head and not notes:
        return f" (predicted effect over the next {horizon}: negligible)"
    sure = confidence_words(cost, policy_confidence)
    return f"{head} ({'; '.join(notes) + '; ' if notes else ''}{sure}, over the next {horizon})"


def change_words(
    scenario: Scenario, sector: str, recommended: SectorAction, in_force: SectorAction
) -> str:
    """The change against the action in force, as one capitalised phrase ("" if none)."""
    phrases = _action_phrases(scenario, sector, recommended, in_force)
    if not phrases:
        return ""
    action = _join(phrases)
    return action[0].upper() + action[1:]


def against_plan(
    scenario: Scenario, sector: str, recommended: SectorAction, in_force: SectorAction
) -> tuple[str, ...]:
    """The explicit rules of the scenario's plan for ``sector`` that the change departs
    from (a field the plan sets, changed away from the plan's value), in words."""
    plan = scenario.plan.get(sector)
    if plan is None:
        return ()
    name = display_names(scenario)[sector]
    out = []
    rules = plan.model_fields_set
    if "overtime" in rules and recommended.overtime != in_force.overtime:
        if recommended.overtime != plan.overtime:
            kept = "keeps overtime authorised" if plan.overtime else "allows no overtime"
            out.append(f"the plan {kept} in {name}")
    if "priority" in rules and recommended.priority != in_force.priority:
        if recommended.priority != plan.priority:
            order = "earliest-due-first" if plan.priority == "edd" else "first-in-first-out"
            out.append(f"the plan has {name} work {order}")
    if "flex_workers" in rules and recommended.flex_count < min(
        in_force.flex_count, plan.flex_workers
    ):
        out.append(f"the plan keeps {plan.flex_workers} agency workers in {name}")
    return tuple(out)


def message(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    sector: str,
    recommended: SectorAction,
    in_force: SectorAction,
    impact: Impact | None = None,
    confidence: float | None = None,
) -> str:
    """The plain-language recommendation for ``sector`` (``confidence``: the policy's
    probability of its choice, worded with the impact as "likely" or "uncertain")."""
    show = display_names(scenario)
    focus = focus_of(sector, recommended)
    sentence = _situation_sentence(show[focus], situation(scenario, snapshot, focus))
    action = change_words(scenario, sector, recommended, in_force)
    if not action:
        return f"{sentence} No change for {show[sector]}: keep the current plan."
    clause = (
        _impact_clause(impact, show[impact.focus_sector], confidence) if impact is not None else ""
    )
    plan = against_plan(scenario, sector, recommended, in_force)
    marked = f" Against the plan: {'; '.join(plan)}." if plan else ""
    return f"{sentence} {action}{clause}.{marked}"
