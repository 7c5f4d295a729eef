"""Why a policy chose its action, in the floor's terms: drivers turned into reasons.

:mod:`policies.explain` finds the features that drove a decision (occlusion
attribution); a floor manager reads "12 items due within the hour in Packing", not
``due_within_60``. :func:`reasons` words each driver that *contributed* (its
contribution is above :data:`MIN_CONTRIBUTION`, a log-probability) with numbers read
from the snapshot itself, in the order of the contributions, one reason per phrase
(two features that say the same thing on the floor give one reason).

Where a feature has no count on the floor (a rate, a pressure), the reason compares
its value with the *reference* (a typical moment of the scenario's day, the same
baseline as the attribution): "more work arriving at Picking than usual".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policies.explain import Driver
from policies.messages import display_names, situation
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot, SectorState

#: A driver is a reason only if occluding it lowers the chosen action's log-probability
#: by more than this (about 1% of its probability).
MIN_CONTRIBUTION = 0.01
#: Minutes the shift features are scaled by (:mod:`twin.features`).
SHIFT_CLOCK_MINUTES = 720.0

_PRESENT = ("idle", "busy", "overtime", "break")


@dataclass(frozen=True)
class Reason:
    """One reason for a decision, in words, with the feature it comes from."""

    text: str
    feature: str
    contribution: float  # from the attribution (> MIN_CONTRIBUTION)


@dataclass(frozen=True)
class _Ctx:
    scenario: Scenario
    snapshot: OperationSnapshot
    sector: str
    name: str  # display name
    state: SectorState
    driver: Driver

    @property
    def above(self) -> bool:
        return self.driver.value > self.driver.reference

    def usual(self, more: str = "more", fewer: str = "fewer") -> str:
        return f"{more if self.above else fewer} than usual"

    def workers(self, keep: Callable[[str | None, str | None, bool, str], bool]) -> int:
        return sum(
            g.count for g in self.snapshot.workers if keep(g.home, g.sector, g.flex, g.state)
        )


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def _overdue(c: _Ctx) -> str:
    n = situation(c.scenario, c.snapshot, c.sector).overdue
    return f"{_items(n)} already past due in {c.name}"


def _due_hour(c: _Ctx) -> str:
    n = situation(c.scenario, c.snapshot, c.sector).due_within_60
    return f"{_items(n)} due within the hour in {c.name}"


def _due_two_hours(c: _Ctx) -> str:
    n = situation(c.scenario, c.snapshot, c.sector).due_within_60
    n += sum(q[3] for q in c.state.queue.values()) + sum(q[3] for q in c.state.in_service.values())
    return f"{_items(n)} due within two hours in {c.name}"


def _backlog(c: _Ctx) -> str:
    return f"{_items(c.state.queued)} waiting in {c.name} ({c.usual()})"


def _present(c: _Ctx) -> str:
    n = c.workers(lambda home, sector, flex, state: sector == c.sector and state in _PRESENT)
    short = "staff short" if not c.above else "more staff than usual"
    return f"{_workers(n)} on the floor in {c.name} ({short})"


def _busy(c: _Ctx) -> str:
    n = c.workers(lambda home, sector, flex, state: sector == c.sector and state != "idle")
    return f"{_workers(n)} busy in {c.name} ({c.usual()})"


def _absent(c: _Ctx) -> str:
    n = c.workers(lambda home, sector, flex, state: home == c.sector and state == "absent")
    return f"{_workers(n)} of {c.name} absent (staff short)" if n else f"nobody absent in {c.name}"


def _lent_out(c: _Ctx) -> str:
    n = c.workers(
        lambda home, sector, flex, state: (
            home == c.sector and sector not in (None, c.sector) and state in (*_PRESENT, "transfer")
        )
    )
    return f"{_workers(n)} of {c.name} working elsewhere"


def _borrowed(c: _Ctx) -> str:
    n = c.workers(
        lambda home, sector, flex, state: (
            sector == c.sector and home != c.sector and not flex and state in _PRESENT
        )
    )
    return f"{_workers(n)} from other sectors helping in {c.name}"


def _in_transfer(c: _Ctx) -> str:
    n = c.workers(lambda home, sector, flex, state: sector == c.sector and state == "transfer")
    return f"{_workers(n)} on their way to {c.name}"


def _flex(c: _Ctx) -> str:
    n = c.workers(lambda home, sector, flex, state: flex and sector == c.sector)
    return f"{n} agency workers called to {c.name}" if n != 1 else f"1 agency worker in {c.name}"


def _overtime(c: _Ctx) -> str:
    n = c.workers(lambda home, sector, flex, state: sector == c.sector and state == "overtime")
    return f"{_workers(n)} in overtime in {c.name}"


def _utilization(c: _Ctx) -> str:
    return f"{c.name} {c.driver.value:.0%} busy ({c.usual('busier', 'quieter')})"


def _overtime_budget(c: _Ctx) -> str:
    return f"{c.driver.value:.0%} of the overtime allowance used in {c.name}"


def _arrivals(c: _Ctx) -> str:
    rate = c.state.arrival_rate_per_hour
    return f"{rate:.0f} items an hour arriving at {c.name} ({c.usual()})"


def _completions(c: _Ctx) -> str:
    rate = c.state.completion_rate_per_hour
    return f"{rate:.0f} items an hour done in {c.name} ({c.usual()})"


def _vs_plan(c: _Ctx) -> str:
    v = c.driver.value
    if abs(v) < 0.05:
        return f"arrivals at {c.name} on plan"
    return f"arrivals at {c.name} {'above' if v > 0 else 'below'} plan"


def _forecast(c: _Ctx) -> str:
    return f"{c.usual('more', 'less')} work planned for {c.name} in the next hour"


def _shift_end(c: _Ctx) -> str:
    if c.driver.value <= 0:
        return f"no shift running in {c.name}"
    return f"{c.name}'s shift ends in {c.driver.value * SHIFT_CLOCK_MINUTES:.0f} min"


def _next_shift(c: _Ctx) -> str:
    return f"next shift in {c.name} starts in {c.driver.value * SHIFT_CLOCK_MINUTES:.0f} min"


def _stations(c: _Ctx) -> str:
    n = c.state.stations_down
    if n == 0:
        return f"every station in {c.name} working"
    return f"{n} station{'s' if n != 1 else ''} down in {c.name}"


def _upstream(c: _Ctx) -> str:
    return f"{c.usual()} work on its way to {c.name} from upstream"


def _downstream(c: _Ctx) -> str:
    return f"queues after {c.name} {c.usual('longer', 'shorter')}"


def _clock(c: _Ctx) -> str:
    m = int(c.snapshot.minute_of_day)
    return f"the time of day ({m // 60:02d}:{m % 60:02d})"


def _horizon(c: _Ctx) -> str:
    return "the time left in the planning period"


def _lending(c: _Ctx) -> str:
    a = c.state.action
    if a.lend_to is not None and a.lend_count > 0:
        to = display_names(c.scenario)[a.lend_to]
        return f"{c.name} lending {_workers(a.lend_count)} to {to} now"
    return f"{c.name} lending nobody now"


def _flex_asked(c: _Ctx) -> str:
    return f"{c.state.action.flex_count} agency workers asked for {c.name} now"


def _overtime_now(c: _Ctx) -> str:
    return f"overtime {'authorised' if c.state.action.overtime else 'not authorised'} in {c.name}"


def _priority_now(c: _Ctx) -> str:
    edd = c.state.action.priority == "edd"
    return f"{c.name} working {'earliest-due-first' if edd else 'first-in-first-out'} now"


_PHRASES: dict[str, Callable[[_Ctx], str]] = {
    "queue_overdue": _overdue,
    "queue_due_0_30": _due_hour,
    "queue_due_30_60": _due_hour,
    "queue_due_60_120": _due_two_hours,
    "queue_due_120_240": _backlog,
    "queue_due_240_480": _backlog,
    "queue_due_480_plus": _backlog,
    "due_within_30": _due_hour,
    "due_within_60": _due_hour,
    "due_within_120": _due_two_hours,
    "staff_present": _present,
    "staff_busy": _busy,
    "staff_absent": _absent,
    "staff_lent_out": _lent_out,
    "staff_borrowed_in": _borrowed,
    "staff_in_transfer": _in_transfer,
    "staff_flex": _flex,
    "staff_overtime": _overtime,
    "utilization": _utilization,
    "overtime_budget_used": _overtime_budget,
    "arrival_rate": _arrivals,
    "completion_rate": _completions,
    "arrivals_vs_plan": _vs_plan,
    "forecast_next_hour": _forecast,
    "shift_end_in": _shift_end,
    "next_shift_in": _next_shift,
    "stations_down": _stations,
    "upstream_pressure": _upstream,
    "downstream_pressure": _downstream,
    "time_of_day_sin": _clock,
    "time_of_day_cos": _clock,
    "horizon_left": _horizon,
    "action_lending": _lending,
    "action_lend_count": _lending,
    "action_flex_count": _flex_asked,
    "action_overtime": _overtime_now,
    "action_priority_edd": _priority_now,
}


def reasons(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    sector: str,
    drivers: Sequence[Driver],
    *,
    min_contribution: float = MIN_CONTRIBUTION,
) -> tuple[Reason, ...]:
    """The drivers of ``sector``'s decision that contributed, in the floor's words.

    Args:
        scenario: the scenario of the snapshot.
        snapshot: the state the decision was made at.
        sector: the deciding sector (its features are the drivers').
        drivers: from :func:`policies.explain.decide_and_explain`, largest first.
        min_contribution: drivers at or below this are not reasons.
    """
    name = display_names(scenario)[sector]
    state = snapshot.sector(sector)
    out: list[Reason] = []
    seen: set[str] = set()
    for d in drivers:
        if d.contribution <= min_contribution:
            continue
        text = _PHRASES[d.name](_Ctx(scenario, snapshot, sector, name, state, d))
        if text not in seen:
            seen.add(text)
            out.append(Reason(text=text, feature=d.name, contribution=d.contribution))
    return tuple(out)
