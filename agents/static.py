"""``static``: the plan as written. No reallocation; overtime, flex and priority as planned."""

from __future__ import annotations

from twin.actions import SectorAction
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot


class StaticController:
    """Returns the scenario's plan for every sector at every decision."""

    name = "static"

    def __init__(self, scenario: Scenario) -> None:
        self._plan = {
            s: SectorAction(overtime=p.overtime, priority=p.priority, flex_count=p.flex_workers)
            for s in scenario.sector_names
            for p in [scenario.sector_plan(s)]
        }

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        return dict(self._plan)
