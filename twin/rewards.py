"""Rewards: minus the cost each sector adds over a decision interval.

The twin's KPI record (:mod:`twin.kpis`) already attributes every cost to one
sector: regular pay to the home sector, overtime where it is worked, flex hours
where the agency staff work, transfers to the sector that lends, SLA misses to
the sector holding the item when it goes late. A sector's cost over an interval
is the increase of its ``labor_cost + penalty_cost``; the operation's is the sum.

Sector ``i``'s reward mixes its own cost with an equal share of the whole
operation's by ``team_weight`` (0 = silos, 1 = fully shared)::

    r_i = -((1 - team_weight) * dC_i + team_weight * dC_total / n_sectors) / scale

Because the shared part is an equal share, the mean of the sector rewards is
``-dC_total / (n_sectors * scale)`` for every ``team_weight``: the single-agent
(whole-operation) reward. With ``team_weight = 1`` every sector gets exactly that.

Scale: ``scale`` is what one *average sector's* nominal staff costs over one
decision interval at the regular rate::

    scale = regular_rate_per_hour * decision_interval_minutes / 60
            * mean over sectors of nominal staff (largest shift headcount)

so a sector paying its usual crew and nothing else earns about ``-1`` per
interval (``-staff_i / mean staff``), and each SLA miss is worth
``sla_miss_penalty / scale`` (0.1 in the default scenario: 15 / 155), split between
the sector and the team by ``team_weight``. If the regular rate is 0, the first
positive of the overtime rate, the flex rate and the miss penalty stands in for it
(then 1).

**Avoidable cost** (``reward="avoidable"``): the same with each sector's regular pay left
out, i.e. the increase of ``avoidable_cost`` (overtime, flex, transfers and SLA
penalties; :mod:`twin.kpis`). Regular pay is the rostered hours of the staff who came
in: no action changes it, but absences move it from seed to seed, so in the ``cost``
reward it is noise a policy cannot learn from. Both rewards differ by that pay alone, so
an action's effect on them is the same.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from twin.features import nominal_staff
from twin.kpis import Kpis
from twin.scenario import Scenario

#: Default mix of own and shared cost for sector rewards (0 = silos, 1 = fully shared).
DEFAULT_TEAM_WEIGHT = 0.5

#: What a reward counts: every cost, or only what actions can change (regular pay left out).
RewardKind = Literal["cost", "avoidable"]
REWARD_KINDS: tuple[str, ...] = get_args(RewardKind)


def cost_scale(scenario: Scenario) -> float:
    """Currency units per reward unit (see the module docstring)."""
    c = scenario.costs
    rate = next(
        (
            r
            for r in (
                c.regular_rate_per_hour,
                c.overtime_rate_per_hour,
                c.flex_rate_per_hour,
                c.sla_miss_penalty,
            )
            if r > 0
        ),
        1.0,
    )
    staff = np.mean([nominal_staff(scenario, s) for s in scenario.sector_names])
    return float(rate * scenario.decision_interval_minutes / 60.0 * staff)


def sector_costs(kpis: Kpis, sectors: tuple[str, ...], kind: RewardKind = "cost") -> np.ndarray:
    """Cumulative ``labor_cost + penalty_cost`` of each sector, in the order given;
    ``kind="avoidable"``: without regular pay (``avoidable_cost``)."""
    if kind == "avoidable":
        return np.array([kpis.sectors[s].avoidable_cost for s in sectors], dtype=np.float64)
    return np.array(
        [kpis.sectors[s].labor_cost + kpis.sectors[s].penalty_cost for s in sectors],
        dtype=np.float64,
    )


class CostReward:
    """Turns successive KPI records into per-sector and whole-operation rewards.

    Args:
        scenario: the scenario (sectors, costs, decision interval).
        team_weight: 0 = each sector pays only its own cost, 1 = all share the total.
        kind: ``"cost"`` (every cost) or ``"avoidable"`` (regular pay left out).
    """

    def __init__(
        self,
        scenario: Scenario,
        team_weight: float = DEFAULT_TEAM_WEIGHT,
        kind: RewardKind = "cost",
    ) -> None:
        if not 0.0 <= team_weight <= 1.0:
            raise ValueError(f"team_weight must be within [0, 1], got {team_weight}")
        if kind not in REWARD_KINDS:
            raise ValueError(f"reward must be one of {', '.join(REWARD_KINDS)}, got {kind!r}")
        self.kind: RewardKind = kind
        self.sectors = scenario.sector_names
        self.team_weight = float(team_weight)
        self.scale = cost_scale(scenario)
        self._last = np.zeros(len(self.sectors))

    def reset(self, kpis: Kpis) -> None:
        """Start counting from ``kpis`` (the record at the start of an episode)."""
        self._last = sector_costs(kpis, self.sectors, self.kind)

    def step(self, kpis: Kpis) -> tuple[np.ndarray, np.ndarray, float]:
        """Costs since the last call and the rewards they give.

        Returns:
            ``(cost, rewards, operation_reward)``: each sector's cost increase
            (currency), each sector's reward, and the whole operation's reward
            (the mean of the sector rewards).
        """
        now = sector_costs(kpis, self.sectors, self.kind)
        cost = now - self._last
        self._last = now
        n = len(self.sectors)
        total = float(cost.sum())
        w = self.team_weight
        rewards = -((1.0 - w) * cost + w * total / n) / self.scale
        return cost, rewards, -total / (n * self.scale)
