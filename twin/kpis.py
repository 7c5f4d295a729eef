"""The KPI record: one definition, used by the CLI, comparisons, rewards and the server.

Per sector and for the whole operation:

==================  =================================================================
overtime_hours      worker-hours in the overtime state (past shift end, working)
sla_misses          items whose due time passed before they left the operation;
                    a sector is charged for the items that were there when it happened
sla_attainment      on-time completions / (on-time completions + misses); per sector:
                    1 - misses / max(1, items processed there)
items_completed     total: items that left the operation; sector: items processed there
backlog_end         items queued or in service now
mean_cycle_minutes  total: arrival to exit; sector: arrival in the sector to handoff
utilization         busy worker-minutes / present worker-minutes (idle + busy + overtime)
transfers           workers moved between sectors (charged to the sector that decided)
flex_hours          agency worker-hours present (idle, busy or on break)
regular_cost        regular pay: rostered hours of present workers (by home sector);
                    a floor that no action changes (absence lowers it, nothing raises it)
labor_cost          regular_cost + overtime + flex + transfer costs
penalty_cost        sla_misses x penalty
avoidable_cost      total_cost - regular_cost: overtime, flex, transfers and SLA
                    penalties, what the decisions can reduce
total_cost          labor_cost + penalty_cost
==================  =================================================================
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

KPI_NAMES: tuple[str, ...] = (
    "overtime_hours",
    "sla_misses",
    "sla_attainment",
    "items_completed",
    "backlog_end",
    "mean_cycle_minutes",
    "utilization",
    "transfers",
    "flex_hours",
    "regular_cost",
    "labor_cost",
    "penalty_cost",
    "avoidable_cost",
    "total_cost",
)


class KpiRecord(BaseModel):
    """KPIs for one sector or for the whole operation."""

    model_config = ConfigDict(frozen=True)

    overtime_hours: float
    sla_misses: int
    sla_attainment: float
    items_completed: int
    backlog_end: int
    mean_cycle_minutes: float
    utilization: float
    transfers: int
    flex_hours: float
    regular_cost: float
    labor_cost: float
    penalty_cost: float
    avoidable_cost: float
    total_cost: float


class Kpis(BaseModel):
    """The whole operation's KPIs and each sector's."""

    model_config = ConfigDict(frozen=True)

    minute: float
    total: KpiRecord
    sectors: dict[str, KpiRecord]

    def flat(self) -> dict[str, float]:
        """``{"total_cost": ..., "packing.total_cost": ...}``: the ``kpis.json`` layout."""
        out: dict[str, float] = dict(self.total.model_dump())
        for name, rec in self.sectors.items():
            out.update({f"{name}.{k}": v for k, v in rec.model_dump().items()})
        return out
