"""``threshold``: the reactive floor manager, with thresholds tuned per scenario.

Every decision interval the manager reads the whole flow (:class:`agents.view.FlowView`,
including work still upstream that will reach each sector) and applies five rules:

1. **Help where due-soon work exceeds capacity.** A sector whose *pressure* (work due
   within ``h`` / capacity over ``h``, worst ``h`` up to ``horizon_minutes``) exceeds
   ``help_ratio`` receives workers from the sectors with the most slack, trained for it
   (best efficiency first), until its pressure would be down to ``target_ratio``. A donor
   keeps enough staff for its own due work and arrivals at ``keep_ratio`` load and lends
   at most ``max_lend_fraction`` of its staff on shift.
2. **Bring them home when the need is gone.** A loan stays while the receiver's pressure
   is above ``release_ratio`` and the donor is not itself under pressure.
3. **Flex when the backlog is large.** If a sector's pressure over the horizons beyond the
   agency lead time still exceeds ``flex_ratio`` after loans, it calls flex staff for the
   missing capacity; they are released once its pressure falls below ``release_ratio``.
4. **Overtime when work due before the shift end exceeds capacity.** When a shift with
   workers in a sector ends before the next decision (or overtime is under way), overtime
   is authorised if the work due before the end of the overtime window exceeds
   ``overtime_ratio`` x the capacity left until then (the next shift included).
5. **Earliest-due-first when due-soon work piles up**: at least ``edd_min_items`` items
   due within the hour (0 = always EDD); otherwise the plan's discipline.

Parameters come, in order, from an explicit :class:`ThresholdParams`, a tuned JSON file
given by path, the tuned file shipped for a built-in scenario (``agents/tuned/<name>.json``,
written by ``synctwin tune-baseline``), or the documented defaults below.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agents.view import CAPACITY_MINUTES, HORIZONS, FlowView, ScenarioFacts, ratio
from twin.actions import SectorAction
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

HorizonMinutes = Literal[30, 60, 120, 240, 480]


class ThresholdParams(BaseModel):
    """The floor manager's thresholds (the defaults are the fallback when nothing is tuned)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_minutes: HorizonMinutes = Field(
        120, description="how far ahead (minutes) 'due soon' looks"
    )
    help_ratio: float = Field(1.0, gt=0, description="pressure above which a sector gets help")
    target_ratio: float = Field(0.85, gt=0, description="pressure helpers bring a sector down to")
    keep_ratio: float = Field(0.8, gt=0, description="load a donor keeps its own staff for")
    release_ratio: float = Field(0.6, ge=0, description="pressure below which help goes home")
    max_lend_fraction: float = Field(0.5, ge=0, le=1, description="of a donor's staff on shift")
    flex_ratio: float | None = Field(
        1.5, gt=0, description="pressure that calls flex staff (null: never)"
    )
    overtime_ratio: float | None = Field(
        1.0, gt=0, description="due work / capacity left that authorises overtime (null: never)"
    )
    edd_min_items: int | None = Field(
        1, ge=0, description="items due within the hour that switch to EDD (0: always, null: never)"
    )
    flow_weight: float = Field(
        1.0,
        ge=0,
        le=1,
        description="weight of upstream work and forecast arrivals heading to a sector (0: local)",
    )

    @property
    def n_horizons(self) -> int:
        return HORIZONS.index(float(self.horizon_minutes)) + 1


DEFAULT_PARAMS = ThresholdParams()
TUNED_PACKAGE = "agents"
TUNED_DIR = "tuned"


class TunedFileError(ValueError):
    """A tuned-parameters file is missing or malformed; the message names the file."""


def tuned_path(scenario_name: str) -> Path:
    """Where the shipped tuned file for a built-in scenario lives (it may not exist)."""
    return Path(str(resources.files(TUNED_PACKAGE) / TUNED_DIR / f"{scenario_name}.json"))


def read_tuned(path: Path) -> dict[str, Any]:
    """Read and validate a tuned-parameters file (see :mod:`agents.tuning`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["params"] = ThresholdParams.model_validate(data["params"])
    except FileNotFoundError:
        raise TunedFileError(f"tuned parameters file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise TunedFileError(f"invalid tuned parameters file {path}: {err}") from None
    return data


def resolve_params(
    scenario: Scenario, params: ThresholdParams | Path | str | None = None
) -> tuple[ThresholdParams, str]:
    """The parameters to use for ``scenario`` and where they came from.

    ``params`` may be the parameters themselves, a path to a tuned file, or ``None``
    (the shipped tuned file of a built-in scenario with that name, else the defaults).
    A tuned file whose scenario digest differs from ``scenario``'s is still used (the
    source then says ``stale``): re-run ``synctwin tune-baseline`` after editing a scenario.
    """
    if isinstance(params, ThresholdParams):
        return params, "given"
    path = Path(params).expanduser() if params is not None else tuned_path(scenario.name)
    if params is None and not path.is_file():
        return DEFAULT_PARAMS, "defaults"
    data = read_tuned(path)
    stale = data.get("scenario_digest") != scenario.digest
    return data["params"], f"{path}{' (stale)' if stale else ''}"


class ThresholdController:
    """The coordinated floor manager (see the module docstring for the rules).

    Args:
        scenario: the scenario it manages.
        params: thresholds, a tuned file path, or ``None`` (tuned file, else defaults).
    """

    name = "threshold"

    def __init__(
        self, scenario: Scenario, params: ThresholdParams | Path | str | None = None
    ) -> None:
        self.facts = ScenarioFacts(scenario)
        self.params, self.params_source = resolve_params(scenario, params)
        self.interval = float(scenario.decision_interval_minutes)

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        f, p = self.facts, self.params
        v = FlowView.read(f, snapshot, flow=p.flow_weight > 0)
        current = {st.name: st.action for st in snapshot.sectors}
        work = v.work_due(f, flow_weight=p.flow_weight)
        lend, flex = self._loans_and_flex(v, work, current)
        actions = {}
        for s, name in enumerate(f.names):
            target, count = lend.get(s, (None, 0))
            actions[name] = SectorAction(
                lend_to=f.names[target] if target is not None and count > 0 else None,
                lend_count=count if target is not None and count > 0 else 0,
                flex_count=int(flex[s]),
                overtime=overtime_needed(f, p, v, work, s, self.interval),
                priority=priority(f, p, v, s),
            )
        return actions

    def _loans_and_flex(
        self, v: FlowView, work: np.ndarray, current: dict[str, SectorAction]
    ) -> tuple[dict[int, tuple[int, int]], np.ndarray]:
        """Rules 1-3: who lends how many to whom, and how many flex workers each sector has."""
        f, p = self.facts, self.params
        n, j = f.n, p.n_horizons
        horizons = np.asarray(CAPACITY_MINUTES[:j])
        cap = v.capacity[:, :j]
        w = work[:, :j]
        pressure = ratio(w, cap).max(axis=1)
        receiving = pressure > p.help_ratio
        # a donor also needs capacity for everything arriving meanwhile, due soon or not
        inflow = v.arrival_rate_per_hour[:, None] / 60.0 * horizons[None, :]
        donor_work = np.maximum(w, v.work_due(f, flow_weight=0.0)[:, :j])
        donor_work = donor_work + inflow * f.service_minutes[:, None]

        # rule 2: existing loans stay while needed and affordable
        lend: dict[int, tuple[int, int]] = {}
        for s, name in enumerate(f.names):
            a = current[name]
            t = f.index.get(a.lend_to) if a.lend_to else None
            if t is not None and a.lend_count > 0:
                if pressure[t] >= p.release_ratio and not receiving[s]:
                    lend[s] = (t, a.lend_count)

        # rule 1: new help, most pressed sector first, from the sectors with most slack
        spare = np.zeros(n)
        for d in range(n):
            if receiving[d] or v.own_home[d] <= 0:
                continue
            per_worker = np.minimum(horizons, max(0.0, float(v.shift_end[d])))
            if per_worker.min() <= 0:
                continue
            slack = (p.keep_ratio * cap[d] - donor_work[d]) / (p.keep_ratio * per_worker)
            can = math.floor(max(0.0, float(slack.min())))
            limit = math.floor(p.max_lend_fraction * v.own_on_shift[d]) - lend.get(d, (0, 0))[1]
            spare[d] = max(0, min(can, int(v.own_home[d]), limit))
        usable = np.maximum(horizons - f.transfer_minutes, horizons / 4)
        helped = np.zeros(n)
        for r in np.argsort(-pressure, kind="stable"):
            if not receiving[r]:
                break
            need = float(((w[r] - p.target_ratio * cap[r]) / (p.target_ratio * usable)).max())
            donors = [d for d in range(n) if d != r and f.eff[d, r] > 0 and spare[d] >= 1]
            donors.sort(key=lambda d: (-f.eff[d, r], -spare[d], d))
            for d in donors:
                if need <= 0:
                    break
                if d in lend and lend[d][0] != r:
                    continue  # a sector lends to one place at a time
                k = int(min(spare[d], math.ceil(need / f.eff[d, r])))
                lend[d] = (r, lend.get(d, (r, 0))[1] + k)
                spare[d] -= k
                need -= k * f.eff[d, r]
                helped[r] += k * f.eff[d, r]

        # rule 3: flex for what loans cannot cover, beyond the agency lead time
        flex = v.flex.copy()
        free = v.flex_free
        for s in range(n):
            if flex[s] > 0 and pressure[s] < p.release_ratio:
                free += int(flex[s])
                flex[s] = 0
        if p.flex_ratio is not None:
            lead = f.flex_lead_minutes
            all_h = np.asarray(CAPACITY_MINUTES)
            far = (all_h > lead) & (np.asarray(HORIZONS) <= max(p.horizon_minutes, 2 * lead))
            for r in np.argsort(-pressure, kind="stable"):
                if not far.any() or free <= 0:
                    break
                wr, cr = work[r, far], v.capacity[r, far]
                if ratio(wr, cr).max() <= p.flex_ratio:
                    continue
                gap = (wr - p.target_ratio * cr) / (p.target_ratio * (all_h[far] - lead))
                k = min(free, math.ceil(max(0.0, float(gap.max()) - helped[r]) / f.flex_efficiency))
                if k > 0:
                    flex[r] += k
                    free -= k
        return lend, flex.astype(int)


def overtime_needed(
    f: ScenarioFacts, p: ThresholdParams, v: FlowView, work: np.ndarray, s: int, interval: float
) -> bool:
    """Rule 4: authorise overtime in ``s`` when a shift there ends before the next decision
    (or overtime is under way) and the work due before the overtime window closes exceeds
    ``overtime_ratio`` x the capacity until then; only work not yet overdue can be saved."""
    if p.overtime_ratio is None:
        return False
    if not (v.shift_end[s] <= interval or v.overtime[s] > 0):
        return False
    window = (v.shift_end[s] if math.isfinite(v.shift_end[s]) else 0.0) + f.max_overtime_minutes
    j = min(int(np.searchsorted(HORIZONS, window)), len(HORIZONS) - 1)
    total = float(work[s, j])
    overdue = float(v.items[s, 0] * f.service_minutes[s])
    savable = total - overdue
    return bool(savable > 0 and total > p.overtime_ratio * max(float(v.capacity[s, j]), 1e-9))


def priority(f: ScenarioFacts, p: ThresholdParams, v: FlowView, s: int) -> Literal["fifo", "edd"]:
    """Rule 5: earliest-due-first when at least ``edd_min_items`` items are due within the hour."""
    if p.edd_min_items is not None and float(v.items[s, 1:3].sum()) >= p.edd_min_items:
        return "edd"
    return f.plan[f.names[s]].priority
