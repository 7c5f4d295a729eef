"""One seed's reality: what actually happens, drawn from the scenario's uncertainty model.

The twin draws its :class:`Reality` once, when it is built, from a random stream of
its own (:class:`twin.model.OperationModel`), so the draw neither depends on nor
disturbs the arrival, service and absence streams: every strategy run on the same
scenario and seed meets the same reality (common random numbers), and a scenario
without ``uncertainty`` behaves exactly as before it existed.

Reality is expressed in the plan's own terms: realized surges, absence waves and
outages are :class:`~twin.scenario.Surge`, :class:`~twin.scenario.Absenteeism` and
:class:`~twin.scenario.EquipmentBreakdown` records that the twin applies like the
scheduled ones, and forecast error is a table of hourly demand factors. Only the twin
that runs reality reads it; controllers and features see the scenario (the plan).

Each part is drawn from a child stream of its own, so giving a scenario (say) outages
does not change its demand draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.scenario import (
    MINUTES_PER_DAY,
    Absenteeism,
    Disruption,
    EquipmentBreakdown,
    Scenario,
    Surge,
)
from twin.uncertainty import DemandError, Uncertainty


@dataclass(frozen=True)
class Reality:
    """What one seed realizes beyond the plan.

    Attributes:
        demand: ``[hour of the horizon, class]`` factor on the planned rate (``None``:
            demand follows the plan).
        surges, absences, outages: the unplanned events, in the plan's record types.
    """

    demand: np.ndarray | None = None
    surges: tuple[Surge, ...] = ()
    absences: tuple[Absenteeism, ...] = ()
    outages: tuple[EquipmentBreakdown, ...] = ()

    @property
    def disruptions(self) -> tuple[Disruption, ...]:
        return (*self.surges, *self.absences, *self.outages)

    @property
    def surge_edges(self) -> tuple[int, ...]:
        """Minutes where a realized surge starts or ends (arrival segments cut there)."""
        return tuple(sorted({m for s in self.surges for m in (s.start_minute, s.end_minute)}))

    def demand_factor(self, cls: int, class_name: str, minute: float) -> float:
        """Realized / planned arrival rate of class ``cls`` at absolute ``minute``."""
        f = 1.0
        if self.demand is not None:
            hour = min(int(minute) // 60, self.demand.shape[0] - 1)
            f = float(self.demand[hour, cls])
        for s in self.surges:
            if s.start_minute <= minute < s.end_minute and s.item_class in (None, class_name):
                f *= s.multiplier
        return f

    def summary(self, scenario: Scenario) -> dict[str, Any]:
        """A JSON-ready account (``simulate --realized``): factors per day, the events."""
        out: dict[str, Any] = {"scenario": scenario.name}
        if self.demand is not None:
            days = scenario.horizon_days
            out["demand_factor_by_day"] = {
                c: [
                    round(float(self.demand[d * 24 : (d + 1) * 24, i].mean()), 4)
                    for d in range(days)
                ]
                for i, c in enumerate(scenario.class_names)
            }
        out["surges"] = [s.model_dump() for s in self.surges]
        out["absences"] = [a.model_dump() for a in self.absences]
        out["outages"] = [o.model_dump() for o in self.outages]
        return out


#: a reality that is exactly the plan
PLAN = Reality()


def draw_reality(
    scenario: Scenario, rng: np.random.Generator, start_minute: float = 0.0
) -> Reality:
    """Draw one reality for ``scenario`` from ``rng``.

    Events that would start before ``start_minute`` are dropped: a twin rebuilt from a
    snapshot knows the present from the snapshot (stations down, workers present), so
    only the future is drawn.
    """
    u: Uncertainty | None = scenario.uncertainty
    if u is None:
        return PLAN
    r_demand, r_surges, r_absence, r_outages = rng.spawn(4)
    demand = _demand_factors(scenario, u.demand, r_demand) if u.demand else None
    surges = _surges(scenario, u, r_surges, start_minute)
    absences = _absences(scenario, u, r_absence, start_minute)
    outages = _outages(scenario, u, r_outages, start_minute)
    return Reality(demand, surges, absences, outages)


def _lognormal_mean_one(rng: np.random.Generator, cv: float, size: Any) -> np.ndarray:
    if cv <= 0:
        return np.ones(size)
    sigma = math.sqrt(math.log1p(cv * cv))
    return np.exp(rng.normal(-sigma * sigma / 2, sigma, size))


def _demand_factors(scenario: Scenario, d: DemandError, rng: np.random.Generator) -> np.ndarray:
    """``[hour, class]`` factors: day factor x AR(1)-in-log hourly deviation, mean 1."""
    n_classes = len(scenario.item_classes)
    days = scenario.horizon_days
    hours = days * 24
    width = n_classes if d.per_class else 1
    day = _lognormal_mean_one(rng, d.day_cv, (days, width))
    hourly = np.ones((hours, width))
    if d.hourly_cv > 0:
        sigma = math.sqrt(math.log1p(d.hourly_cv**2))
        rho = d.hourly_correlation
        z = np.empty((hours, width))
        z[0] = rng.standard_normal(width)
        for h in range(1, hours):
            z[h] = rho * z[h - 1] + math.sqrt(1 - rho * rho) * rng.standard_normal(width)
        hourly = np.exp(sigma * z - sigma * sigma / 2)
    factors = np.repeat(day, 24, axis=0) * hourly
    if width == 1:
        factors = np.repeat(factors, n_classes, axis=1)
    if d.item_classes is not None:
        for i, c in enumerate(scenario.class_names):
            if c not in d.item_classes:
                factors[:, i] = 1.0
    return factors


def _starts(
    rng: np.random.Generator, per_day: float, window: tuple[int, int], days: int
) -> list[int]:
    """Poisson-many start minutes per day, uniform within the day's window."""
    out: list[int] = []
    for day in range(days):
        n = int(rng.poisson(per_day))
        offsets = rng.uniform(window[0], window[1], n)
        out.extend(sorted(int(day * MINUTES_PER_DAY + o) for o in offsets))
    return out


def _surges(
    scenario: Scenario, u: Uncertainty, rng: np.random.Generator, t0: float
) -> tuple[Surge, ...]:
    spec = u.surges
    if spec is None:
        return ()
    out: list[Surge] = []
    classes = spec.item_classes
    for start in _starts(rng, spec.per_day, spec.window, scenario.horizon_days):
        minutes = round(float(rng.uniform(*spec.duration_minutes)))
        multiplier = round(float(rng.uniform(*spec.multiplier)), 4)
        if start < t0:
            continue
        end = min(start + max(1, minutes), scenario.horizon_minutes)
        if end <= start:
            continue
        for c in classes if classes is not None else (None,):
            out.append(
                Surge(start_minute=start, end_minute=end, multiplier=multiplier, item_class=c)
            )
    return tuple(out)


def _absences(
    scenario: Scenario, u: Uncertainty, rng: np.random.Generator, t0: float
) -> tuple[Absenteeism, ...]:
    out: list[Absenteeism] = []
    first_day = int(t0 // MINUTES_PER_DAY)
    for spec in u.absence:
        names = spec.sectors if spec.sectors is not None else scenario.sector_names
        for day in range(scenario.horizon_days):
            hit = rng.random(len(names)) < spec.chance
            rates = rng.uniform(spec.rate[0], spec.rate[1], len(names))
            if day < first_day:
                continue
            for name, h, rate in zip(names, hit, rates, strict=True):
                if h and rate > 0:
                    out.append(Absenteeism(day=day, rate=round(float(rate), 4), sector=name))
    return tuple(out)


def _outages(
    scenario: Scenario, u: Uncertainty, rng: np.random.Generator, t0: float
) -> tuple[EquipmentBreakdown, ...]:
    """Unplanned outages; one that would overlap another outage of its sector (planned or
    realized) is dropped, so a sector never has more stations out than it has."""
    stations = {s.name: s.stations for s in scenario.sectors}
    busy: dict[str, list[tuple[int, int]]] = {name: [] for name in stations}
    for d in scenario.disruptions:
        if isinstance(d, EquipmentBreakdown):
            busy[d.sector].append((d.start_minute, d.start_minute + d.duration_minutes))
    out: list[EquipmentBreakdown] = []
    for spec in u.outages:
        total = stations[spec.sector] or 0
        for start in _starts(rng, spec.per_day, spec.window, scenario.horizon_days):
            minutes = max(1, round(float(rng.uniform(*spec.duration_minutes))))
            share = float(rng.uniform(*spec.share))
            end = start + minutes
            if start < t0 or any(a < end and start < b for a, b in busy[spec.sector]):
                continue
            busy[spec.sector].append((start, end))
            n = min(total, max(1, math.ceil(share * total - 1e-9)))
            out.append(
                EquipmentBreakdown(
                    sector=spec.sector, start_minute=start, duration_minutes=minutes, stations=n
                )
            )
    return tuple(out)


def expected_remaining_outage(scenario: Scenario, sector: str) -> float | None:
    """Expected minutes left of an unplanned outage of ``sector`` seen under way.

    A twin rebuilt from a snapshot sees stations out that no planned outage explains;
    the plan cannot know when they come back, but the uncertainty model gives the
    expected remaining length of an outage observed at a random moment,
    ``E[D^2] / (2 E[D])`` for the (uniform) duration ``D``. ``None``: the scenario has
    no model of this sector's outages.
    """
    u = scenario.uncertainty
    specs = [o for o in (u.outages if u else ()) if o.sector == sector]
    if not specs:
        return None
    a, b = specs[0].duration_minutes
    mean = (a + b) / 2
    second = (a * a + a * b + b * b) / 3
    return second / (2 * mean)
