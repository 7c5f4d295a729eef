"""Demand: piecewise-constant hourly Poisson arrivals per item class, with surges.

Arrivals are drawn one hour at a time as continuous times (Poisson counts per
constant-rate segment, uniform times within it), so the twin's waiting times are
exact between ticks and demand does not depend on what the controllers do: the
same seed gives every strategy the same arrivals (common random numbers).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from twin.reality import PLAN, Reality
from twin.scenario import MINUTES_PER_DAY, Scenario, Surge


def rate_per_hour(scenario: Scenario, cls: int, minute: float) -> float:
    """Planned arrivals per hour of class ``cls`` at absolute ``minute`` (surges included)."""
    c = scenario.item_classes[cls]
    day, minute_of_day = divmod(int(minute), MINUTES_PER_DAY)
    rate = (
        c.hourly_rates[minute_of_day // 60] * c.weekday_factors[(scenario.start_weekday + day) % 7]
    )
    for d in scenario.disruptions:
        if (
            isinstance(d, Surge)
            and d.start_minute <= minute < d.end_minute
            and d.item_class in (None, c.name)
        ):
            rate *= d.multiplier
    return rate


class ArrivalStream:
    """Arrival times and classes, generated an hour at a time from its own generator.

    Rates are the plan's (:func:`rate_per_hour`) times what ``reality`` realizes beyond
    it (forecast error, unplanned surges; :mod:`twin.reality`), times a per-class demand
    factor if one was set (:meth:`set_factors`: what a rollout believes from the
    arrivals observed so far, :mod:`twin.adaptive`).
    """

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator,
        start_minute: float,
        reality: Reality = PLAN,
    ) -> None:
        self._scenario = scenario
        self._rng = rng
        self._reality = reality
        self._class_names = scenario.class_names
        surge_edges = {
            m
            for d in scenario.disruptions
            if isinstance(d, Surge)
            for m in (d.start_minute, d.end_minute)
        }
        self._edges = sorted(surge_edges | set(reality.surge_edges))
        self.times: list[float] = []
        self.classes: list[int] = []
        self.i = 0
        self.hour_end = float(start_minute)  # arrivals are known up to here
        self._factors: tuple[float, ...] | None = None

    def set_factors(self, factors: Sequence[float]) -> None:
        """Scale each class's rate by ``factors`` (scenario order) from here on: the
        arrivals not drawn yet (a twin rebuilt from a snapshot has drawn none).

        Raises:
            ValueError: not one finite factor >= 0 per item class.
        """
        values = tuple(float(f) for f in factors)
        n = len(self._class_names)
        if len(values) != n or not all(math.isfinite(f) and f >= 0 for f in values):
            raise ValueError(
                f"demand factors: expected {n} finite numbers >= 0 (one per item class: "
                f"{', '.join(self._class_names)}), got {list(values)}"
            )
        self._factors = values

    def rate(self, cls: int, minute: float) -> float:
        """Realized arrivals per hour of class ``cls`` at absolute ``minute``."""
        planned = rate_per_hour(self._scenario, cls, minute)
        if self._factors is not None:
            planned *= self._factors[cls]
        if self._reality is PLAN:
            return planned
        return planned * self._reality.demand_factor(cls, self._class_names[cls], minute)

    def generate_next_hour(self) -> None:
        """Draw the arrivals of the next hour (or the rest of the current one)."""
        start = self.hour_end
        end = float((int(start) // 60 + 1) * 60)
        cuts = [start, *(e for e in self._edges if start < e < end), end]
        times: list[np.ndarray] = []
        classes: list[np.ndarray] = []
        for a, b in itertools.pairwise(cuts):
            for cls in range(len(self._scenario.item_classes)):
                lam = self.rate(cls, a) * (b - a) / 60.0
                n = int(self._rng.poisson(lam)) if lam > 0 else 0
                if n:
                    times.append(a + (b - a) * self._rng.random(n))
                    classes.append(np.full(n, cls))
        if times:
            t = np.concatenate(times)
            c = np.concatenate(classes)
            order = np.argsort(t, kind="stable")
            self.times = t[order].tolist()
            self.classes = c[order].tolist()
        else:
            self.times, self.classes = [], []
        self.i = 0
        self.hour_end = end
