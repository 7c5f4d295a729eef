"""``silo``: sector-local floor managers, each seeing only its own queue.

The contrast to :mod:`agents.threshold` for the "silo vs synchronized" experiment
(:mod:`experiments.comparison.silo`). Each sector's manager uses the same thresholds as the
coordinated manager but only its own sector's queue and staff:

- it calls flex staff and authorises overtime *for itself* when its own due-soon work
  exceeds the thresholds (the agency pool goes to whoever asks first);
- it switches to earliest-due-first on its own due-soon work;
- it never asks another sector for help, and lends only when its own queue is empty:
  then up to ``max_lend_fraction`` of its workers go to its *feeder* (the upstream
  sector that hands it work and that they are trained for: "my queue is empty because
  they are slow"), and they come home as soon as its own queue is not.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from agents.threshold import ThresholdParams, overtime_needed, priority, resolve_params
from agents.view import CAPACITY_MINUTES, HORIZONS, FlowView, ScenarioFacts, ratio
from twin.actions import SectorAction
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot


class SiloController:
    """One local manager per sector (see the module docstring).

    Args:
        scenario: the scenario it manages.
        params: thresholds, a tuned file path, or ``None`` (the coordinated manager's
            tuned file for this scenario, else the defaults): the same thresholds, less
            information.
    """

    name = "silo"

    def __init__(
        self, scenario: Scenario, params: ThresholdParams | Path | str | None = None
    ) -> None:
        self.facts = ScenarioFacts(scenario)
        self.params, self.params_source = resolve_params(scenario, params)
        self.interval = float(scenario.decision_interval_minutes)
        f = self.facts
        # the feeder a sector's idle workers go to: upstream, trained, most efficient
        self.feeder: list[int | None] = []
        for s in range(f.n):
            options = [u for u in f.feeders[s] if f.eff[s, u] > 0]
            self.feeder.append(max(options, key=lambda u: f.eff[s, u]) if options else None)

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        f, p = self.facts, self.params
        v = FlowView.read(f, snapshot, flow=False)
        work = v.work_due(f, flow_weight=0.0)
        cap = v.capacity
        r = ratio(work, cap)
        pressure = r[:, : p.n_horizons].max(axis=1)
        free = v.flex_free
        lead = f.flex_lead_minutes
        all_h = np.asarray(CAPACITY_MINUTES)
        far = (all_h > lead) & (np.asarray(HORIZONS) <= max(p.horizon_minutes, 2 * lead))
        actions = {}
        for s, name in enumerate(f.names):
            # flex for itself, first come first served
            flex = int(v.flex[s])
            if flex > 0 and pressure[s] < p.release_ratio:
                flex = 0
            elif p.flex_ratio is not None and far.any() and r[s, far].max() > p.flex_ratio:
                gap = (work[s, far] - p.target_ratio * cap[s, far]) / (
                    p.target_ratio * (all_h[far] - lead)
                )
                k = min(free, math.ceil(max(0.0, float(gap.max())) / f.flex_efficiency))
                flex += k
                free -= k
            # lend to the feeder only while its own queue is empty
            lend_to, lend_count = None, 0
            feeder = self.feeder[s]
            if feeder is not None and v.queued[s] == 0 and pressure[s] < p.keep_ratio:
                lend_to = f.names[feeder]
                lend_count = math.floor(p.max_lend_fraction * v.own_on_shift[s])
            actions[name] = SectorAction(
                lend_to=lend_to if lend_count > 0 else None,
                lend_count=max(0, lend_count),
                flex_count=flex,
                overtime=overtime_needed(f, p, v, work, s, self.interval),
                priority=priority(f, p, v, s),
            )
        return actions
