"""Predicted impact and risk forecasts: short twin rollouts from a live snapshot.

Both answers come from the same experiment: rebuild the twin from the snapshot
(:func:`twin.rollout.rollout_twin`), run it a little way into the
future under two or more *arms*, and compare. Every arm of one question uses the
same seeds (**common random numbers**): sample ``i`` of every arm starts from
seed ``seed + i``, so arrivals, absences and the ``k``-th service time of each
sector are the same in every arm, and the per-sample *differences* between arms
carry far less noise than the arms themselves.

Impact of a recommendation (:func:`estimate_impact`)
    arm ``without``: the actions in force in the snapshot, kept for the horizon;
    arm ``with``: the same, with the recommended action(s) put in force at once and
    kept for the horizon. Per sample, the saving is ``without - with`` of:

    ``slowdown_minutes_avoided``
        reduction of the mean queueing delay, in minutes per item, in the *focus*
        sector (the sector a lend sends workers to; otherwise the acting sector).
        The delay is Little's-law estimate over the horizon:
        ``(integral of the queue length over the horizon, item-minutes) /
        (items waiting at the start + items that entered the sector)``.
    ``sla_misses_avoided``
        new SLA misses in the whole operation over the horizon.
    ``overtime_hours_saved``
        worker-hours in overtime in the whole operation over the horizon.
    ``cost_saved``
        ``total_cost`` (labour + SLA penalties, :mod:`twin.kpis`) of the whole
        operation over the horizon, in the scenario's cost units.

Risk forecast (:func:`forecast`)
    arm ``policy``: the policy decides now and then on the scenario's decision grid
    (every ``decision_interval_minutes`` counted from minute 0: :mod:`twin.rollout`);
    arm ``no_action``: the actions in force, kept. At each horizon (hours from the
    snapshot) and per sector: the probability of at least one new SLA miss (share of
    samples, Wilson 95% interval), the expected number of new misses and the
    expected overtime hours (mean, Student-t 95% interval).

Execution: both functions describe their rollouts as jobs and hand them, a stage at a
time, to a *runner* (:mod:`policies.rollouts`, whose names this module re-exports):
by default in this process, in the server on worker processes
(:class:`policies.rollout_pool.RolloutPool`). A job's result depends only on the
scenario, the snapshot and the job, so every runner gives the same numbers.

Intervals: ``low``/``high`` are a 95% confidence interval of the mean over the
samples (Student t on the paired differences), not a range of outcomes. With the
few samples a live answer can afford they are wide; they say how sure the
estimate is. A rollout stops at the scenario's horizon; ``horizon_minutes`` in the
result is how far it actually ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from policies.rollouts import Rollout as Rollout
from policies.rollouts import RolloutInterrupted as RolloutInterrupted
from policies.rollouts import RolloutJob as RolloutJob
from policies.rollouts import Runner as Runner
from policies.rollouts import rollout as rollout
from policies.rollouts import run_here as run_here
from policies.rollouts import run_job as run_job
from twin.actions import Controller, SectorAction
from twin.live import check_snapshot
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot
from twin.stats import Interval as Interval
from twin.stats import t_interval, wilson_interval


def mean_interval(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean of ``values`` with its Student-t 95% interval; a point if n < 2 and zeros if
    there are none (a JSON answer carries numbers, never NaN)."""
    if len(values) == 0:
        return Interval(0.0, 0.0, 0.0, 0)
    return t_interval(values, single="point")


#: A share ``successes / n`` with its Wilson 95% interval.
proportion_interval = wilson_interval


# --------------------------------------------------------------------------- impact


@dataclass(frozen=True)
class Impact:
    """Predicted savings of putting some actions in force now (see the module docstring)."""

    focus_sector: str
    horizon_minutes: float
    samples: int
    slowdown_minutes_avoided: Interval
    sla_misses_avoided: Interval
    overtime_hours_saved: Interval
    cost_saved: Interval
    wait_minutes_without: float  # mean queueing delay in the focus sector without the actions
    misses_without: float = 0.0  # mean new SLA misses in the focus sector without the actions


def _wait(r: Rollout, s: int) -> float:
    return float(r.queue_item_minutes[s] / max(1.0, r.entered[s]))


def compare_arms(
    scenario: Scenario, focus_sector: str, without: list[Rollout], with_: list[Rollout]
) -> Impact:
    """The paired savings ``without - with`` of two arms run on the same seeds.

    ``with_`` may have run fewer samples than ``without`` (an arm stopped by the
    screen of :func:`estimate_impact`): the savings pair its samples with the first
    ones of ``without``, which ran the same seeds; what ``without`` alone says (the
    wait and the misses without the actions) uses all of its samples.
    """
    s = scenario.sector_names.index(focus_sector)
    pairs = list(zip(without[: len(with_)], with_, strict=True))
    return Impact(
        focus_sector=focus_sector,
        horizon_minutes=min(r.minutes for r in without),
        samples=len(pairs),
        slowdown_minutes_avoided=mean_interval([_wait(a, s) - _wait(b, s) for a, b in pairs]),
        sla_misses_avoided=mean_interval(
            [a.misses[-1].sum() - b.misses[-1].sum() for a, b in pairs]
        ),
        overtime_hours_saved=mean_interval(
            [a.overtime_hours[-1].sum() - b.overtime_hours[-1].sum() for a, b in pairs]
        ),
        cost_saved=mean_interval([a.cost[-1].sum() - b.cost[-1].sum() for a, b in pairs]),
        wait_minutes_without=float(np.mean([_wait(a, s) for a in without])),
        misses_without=float(np.mean([a.misses[-1][s] for a in without])),
    )


def focus_of(sector: str, action: SectorAction) -> str:
    """The sector whose queue an action is meant to relieve: a lend's target, else its own."""
    return action.lend_to if action.lend_to is not None and action.lend_count > 0 else sector


@dataclass(frozen=True)
class ImpactReport:
    """Impact of each changed sector's recommendation alone, and of all of them together."""

    per_sector: dict[str, Impact]
    total: Impact | None
    horizon_minutes: float
    samples: int
    seed: int


#: The screen of :func:`estimate_impact`: an arm stops after its first samples when the
#: one-sided upper bound of its mean cost saved, at this error, is below the minimum.
SCREEN_ALPHA = 0.01


def screen_samples(samples: int) -> int:
    """How many samples every arm runs before the screen (all of them below 4)."""
    return samples // 2 if samples >= 4 else samples


def cannot_reach(savings: Sequence[float] | np.ndarray, min_saving: float) -> bool:
    """The paired cost savings of an arm's first samples say it cannot qualify.

    True when the one-sided ``1 - SCREEN_ALPHA`` upper bound of the mean saving
    (Student t on the paired differences: the ``high`` end of a two-sided
    ``1 - 2 * SCREEN_ALPHA`` interval) is below ``min_saving``, or not above 0: then
    even the most favourable mean the samples allow is not worth an action.
    Differences that are all equal (an action without effect over the horizon gives
    exactly 0 for every seed) have a bound equal to their value.
    """
    if len(savings) < 2:
        return False
    high = t_interval(savings, level=1.0 - 2.0 * SCREEN_ALPHA).high
    return bool(high < min_saving or high <= 0.0)


def _cost_savings(without: list[Rollout], with_: list[Rollout]) -> list[float]:
    return [float(a.cost[-1].sum() - b.cost[-1].sum()) for a, b in zip(without, with_, strict=True)]


def estimate_impact(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    recommended: Mapping[str, SectorAction],
    *,
    horizon_minutes: float,
    samples: int,
    seed: int = 0,
    per_sector: bool = True,
    checked: bool = False,
    runner: Runner = run_here,
    min_saving: float | None = None,
) -> ImpactReport:
    """Predicted impact of the recommendations, each alone and all together.

    Sectors whose recommendation equals the action in force change nothing: their
    impact is exactly zero and costs no rollout. Each changed sector gets an arm with
    only its recommendation (the others keep the actions in force): its *marginal*
    impact. With two or more changes, one more arm puts all of them in force
    (``total``); with one change, ``total`` is that sector's impact; with none,
    ``None``. Every arm runs the same ``samples`` seeds as the ``without`` arm, so
    a request costs ``samples x (2 + changed sectors)`` rollouts (``samples`` less
    with one change).

    With ``per_sector=False`` only ``total`` is estimated (two arms, whatever the
    number of changes) and ``per_sector`` is empty: the cheap answer to "what does
    the whole recommendation save".

    **The screen** (``min_saving`` given, ``samples >= 4``): every arm first runs the
    first half of the seeds (:func:`screen_samples`); an arm whose paired cost savings
    show it cannot save ``min_saving`` (:func:`cannot_reach`) stops there, and only
    the others, with the ``without`` arm, run the remaining seeds (none do if every
    arm stopped). So a change that cannot be recommended costs half its rollouts,
    while one that can is estimated exactly as without the screen: the same seeds,
    paired with the same ``without`` samples. A stopped arm's :class:`Impact`
    covers the samples it ran (its ``samples``) and is declined by any rule that
    needs a saving of ``min_saving`` (its mean is below the bound). ``None``: every
    arm runs every seed.

    The snapshot is checked against the scenario once, here (``checked=True``: the
    caller already did), never per rollout. Every arm's rollouts of a stage go to
    ``runner`` in one batch, so a runner with several processes runs arms side by side.

    Raises:
        twin.live.SnapshotError: the snapshot does not fit the scenario.
    """
    if not checked:
        check_snapshot(scenario, snapshot)
    in_force = {st.name: st.action for st in snapshot.sectors}
    changed = {s: a for s, a in recommended.items() if a != in_force.get(s)}
    arms: list[Mapping[str, SectorAction] | None] = [None]
    if per_sector:
        arms += [{sector: action} for sector, action in changed.items()]
    all_together = len(changed) > 1 or (len(changed) == 1 and not per_sector)
    if all_together:
        arms.append(changed)
    first = screen_samples(samples) if min_saving is not None and len(arms) > 1 else samples
    runs = _run_arms(scenario, snapshot, arms, range(first), horizon_minutes, seed, runner)
    if first < samples:
        going = [0] + [
            k
            for k in range(1, len(arms))
            if not cannot_reach(_cost_savings(runs[0], runs[k]), float(min_saving or 0.0))
        ]
        if len(going) > 1:
            more = _run_arms(
                scenario,
                snapshot,
                [arms[k] for k in going],
                range(first, samples),
                horizon_minutes,
                seed,
                runner,
            )
            for k, extra in zip(going, more, strict=True):
                runs[k] = runs[k] + extra
    without = runs[0]
    horizon = min(r.minutes for r in without) if without else 0.0
    names = scenario.sector_names

    def wait_without(sector: str) -> float:
        return float(np.mean([_wait(a, names.index(sector)) for a in without]))

    impacts: dict[str, Impact] = {}
    if per_sector:
        for k, (sector, action) in enumerate(changed.items(), start=1):
            impacts[sector] = compare_arms(scenario, focus_of(sector, action), without, runs[k])
    total: Impact | None = None
    if all_together:
        focus = max((focus_of(s, a) for s, a in changed.items()), key=wait_without)
        total = compare_arms(scenario, focus, without, runs[-1])
    elif changed:
        total = next(iter(impacts.values()))
    if per_sector:
        zero = Interval(0.0, 0.0, 0.0, len(without))
        for sector, action in recommended.items():
            if sector not in changed:
                focus = focus_of(sector, action)
                impacts[sector] = Impact(
                    focus_sector=focus,
                    horizon_minutes=horizon,
                    samples=len(without),
                    slowdown_minutes_avoided=zero,
                    sla_misses_avoided=zero,
                    overtime_hours_saved=zero,
                    cost_saved=zero,
                    wait_minutes_without=wait_without(focus),
                    misses_without=float(
                        np.mean([a.misses[-1][names.index(focus)] for a in without])
                    ),
                )
    return ImpactReport(
        per_sector={s: impacts[s] for s in recommended if s in impacts},
        total=total,
        horizon_minutes=horizon,
        samples=samples,
        seed=seed,
    )


def _run_arms(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    arms: Sequence[Mapping[str, SectorAction] | None],
    samples: range,
    horizon_minutes: float,
    seed: int,
    runner: Runner,
) -> list[list[Rollout]]:
    """Every arm on the seeds ``seed + i`` for ``i`` in ``samples``, in one batch; per arm."""
    jobs = [
        RolloutJob(seed=seed + i, minutes=horizon_minutes, actions=actions)
        for actions in arms
        for i in samples
    ]
    done = runner(scenario, snapshot, jobs, None) if jobs else []
    n = len(samples)
    return [done[k * n : (k + 1) * n] for k in range(len(arms))]


# --------------------------------------------------------------------------- forecast


@dataclass(frozen=True)
class SectorRisk:
    """One sector's risk over one horizon under one arm."""

    p_any_miss: Interval
    expected_misses: Interval
    expected_overtime_hours: Interval


@dataclass(frozen=True)
class HorizonRisk:
    """Every sector's risk, and the whole operation's, ``hours`` ahead."""

    hours: float
    minutes_simulated: float
    sectors: dict[str, SectorRisk]
    total: SectorRisk


@dataclass(frozen=True)
class Forecast:
    """Risk forecasts under the policy and under no action, per horizon."""

    policy: list[HorizonRisk]
    no_action: list[HorizonRisk]
    samples: int
    seed: int


def _risk(misses: np.ndarray, overtime: np.ndarray) -> SectorRisk:
    return SectorRisk(
        p_any_miss=proportion_interval(int((misses > 0).sum()), int(misses.size)),
        expected_misses=mean_interval(misses),
        expected_overtime_hours=mean_interval(overtime),
    )


def _horizons(scenario: Scenario, runs: list[Rollout], hours: Sequence[float]) -> list[HorizonRisk]:
    names = scenario.sector_names
    out = []
    for k, h in enumerate(hours):
        misses = np.stack([r.misses[k] for r in runs])  # (samples, sectors)
        overtime = np.stack([r.overtime_hours[k] for r in runs])
        out.append(
            HorizonRisk(
                hours=h,
                minutes_simulated=min(h * 60.0, min(r.minutes for r in runs)),
                sectors={n: _risk(misses[:, i], overtime[:, i]) for i, n in enumerate(names)},
                total=_risk(misses.sum(axis=1), overtime.sum(axis=1)),
            )
        )
    return out


def forecast(
    scenario: Scenario,
    snapshot: OperationSnapshot,
    policy: Controller,
    *,
    hours: Sequence[float],
    samples: int,
    seed: int = 0,
    checked: bool = False,
    runner: Runner = run_here,
    demand_factors: Sequence[float] | None = None,
) -> Forecast:
    """Risk of SLA misses and overtime ``hours`` ahead, under ``policy`` and under no action.

    The policy decides at the start and then on the scenario's decision grid
    (:func:`twin.rollout.run_for`). The snapshot is checked once, here (``checked=True``:
    the caller already did). ``demand_factors`` (per item class, scenario order) scale
    the plan's arrival rates in every rollout: the demand a live site has observed
    (:mod:`twin.adaptive`); ``None`` rolls out the plan.

    Raises:
        twin.live.SnapshotError: the snapshot does not fit the scenario.
    """
    if not checked:
        check_snapshot(scenario, snapshot)
    hours = sorted(set(hours))
    marks = [h * 60.0 for h in hours]
    longest = marks[-1]
    factors = tuple(float(f) for f in demand_factors) if demand_factors is not None else None
    jobs = [
        RolloutJob(
            seed=seed + i,
            minutes=longest,
            with_policy=w,
            checkpoints=tuple(marks),
            demand_factors=factors,
        )
        for w in (True, False)
        for i in range(samples)
    ]
    done = runner(scenario, snapshot, jobs, policy)
    under_policy, no_action = done[:samples], done[samples:]
    return Forecast(
        policy=_horizons(scenario, under_policy, hours),
        no_action=_horizons(scenario, no_action, hours),
        samples=samples,
        seed=seed,
    )
