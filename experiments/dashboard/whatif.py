"""What-if scenarios for the planner dashboard, built through the scenario schema.

A planner's what-if (more demand, more absence, a breakdown, another roster) is
expressed in the scenario's own vocabulary and validated like a YAML file: the base
scenario is dumped, changed and validated again with
:func:`twin.scenario.scenario_from_dict`. Nothing is patched on a live twin, so a
what-if run is exactly what ``synctwin simulate`` would do with the same scenario
written to a file, and an impossible what-if fails with a message naming the field.

- **demand** multiplies every item class's hourly arrival rates: the day is busier
  (or quieter) and the demand plan knows it.
- **absenteeism** adds an ``absenteeism`` disruption for every day of the horizon:
  the extra chance that a rostered worker misses a shift, on top of the usual rate.
- **breakdown** adds an ``equipment_breakdown``: a share of one sector's stations out
  of order from a time of day for a number of minutes.
- **headcount** scales one sector's roster (every shift) to a percentage of the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twin.scenario import MINUTES_PER_DAY, Scenario, scenario_from_dict

NO_BREAKDOWN = "none"


@dataclass(frozen=True)
class WhatIf:
    """The planner's changes to a scenario; the defaults change nothing.

    Attributes:
        demand: multiplier of every item class's hourly arrival rates.
        absenteeism: extra probability (0..1) that a worker misses a shift, every day.
        breakdown_sector: sector whose stations break down (``"none"``: no breakdown).
        breakdown_minute: when the breakdown starts, in minutes from the start.
        breakdown_minutes: how long it lasts.
        breakdown_share: share (0..1] of the sector's stations that go down (at least one).
        headcount_pct: per sector, the roster as a percentage of the plan (100 = as planned).
    """

    demand: float = 1.0
    absenteeism: float = 0.0
    breakdown_sector: str = NO_BREAKDOWN
    breakdown_minute: int = 600
    breakdown_minutes: int = 120
    breakdown_share: float = 0.5
    headcount_pct: Mapping[str, int] = field(default_factory=dict)

    def is_baseline(self) -> bool:
        """True when the what-if leaves the scenario as it is."""
        return (
            self.demand == 1.0
            and self.absenteeism == 0.0
            and self.breakdown_sector == NO_BREAKDOWN
            and all(p == 100 for p in self.headcount_pct.values())
        )

    def describe(self, scenario: Scenario) -> list[str]:
        """The changes in words, for the page and the scenario's description."""
        show = {s.name: s.display for s in scenario.sectors}
        out = []
        if self.demand != 1.0:
            out.append(f"demand x{self.demand:g}")
        if self.absenteeism > 0:
            out.append(f"+{self.absenteeism:.0%} absence")
        if self.breakdown_sector != NO_BREAKDOWN:
            start = _clock(self.breakdown_minute)
            out.append(
                f"{show.get(self.breakdown_sector, self.breakdown_sector)} breakdown "
                f"({self.breakdown_share:.0%} of stations) at {start} "
                f"for {self.breakdown_minutes} min"
            )
        for sector, pct in sorted(self.headcount_pct.items()):
            if pct != 100:
                out.append(f"{show.get(sector, sector)} staff {pct}%")
        return out


def _clock(minute: float) -> str:
    day, m = divmod(int(minute), MINUTES_PER_DAY)
    text = f"{m // 60:02d}:{m % 60:02d}"
    return f"day {day + 1} {text}" if day else text


def breakdown_sectors(scenario: Scenario) -> list[str]:
    """Sectors that have stations that can break (the others have nothing to break)."""
    return [s.name for s in scenario.sectors if s.stations is not None]


def what_if_scenario(base: Scenario, what_if: WhatIf) -> Scenario:
    """``base`` with ``what_if`` applied, validated as a scenario file would be.

    Raises:
        twin.scenario.ScenarioError: the change makes an invalid scenario (the message
            names the field), e.g. a breakdown in a sector without stations.
    """
    if what_if.is_baseline():
        return base
    data: dict[str, Any] = base.model_dump(mode="json")
    for c in data["item_classes"]:
        c["hourly_rates"] = [r * what_if.demand for r in c["hourly_rates"]]
    disruptions = list(data.get("disruptions") or [])
    if what_if.absenteeism > 0:
        disruptions += [
            {"kind": "absenteeism", "day": day, "rate": what_if.absenteeism}
            for day in range(base.horizon_days)
        ]
    if what_if.breakdown_sector != NO_BREAKDOWN:
        stations = {s.name: s.stations for s in base.sectors}.get(what_if.breakdown_sector) or 0
        disruptions.append(
            {
                "kind": "equipment_breakdown",
                "sector": what_if.breakdown_sector,
                "start_minute": what_if.breakdown_minute,
                "duration_minutes": what_if.breakdown_minutes,
                "stations": max(1, round(stations * what_if.breakdown_share)),
            }
        )
    data["disruptions"] = disruptions
    for sector, pct in what_if.headcount_pct.items():
        per_shift = data["workforce"]["headcount"].get(sector)
        if per_shift is None:
            continue  # a sector of another scenario: nothing to scale
        for shift, n in per_shift.items():
            per_shift[shift] = round(n * pct / 100)
    changes = "; ".join(what_if.describe(base))
    data["description"] = f"{base.description} What-if: {changes}.".strip()
    return scenario_from_dict(data, source=f"{base.name!r} with the what-if ({changes})")
