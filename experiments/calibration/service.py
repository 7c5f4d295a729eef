"""Service-time distributions per sector, from start->finish pairs in the log.

The scenario's service time is that of a fully trained worker at home, uninterrupted.
A log shows something else: services by borrowed staff, and services cut short by
breaks, shift ends and the ends of the log. :func:`service_pairs` finds the completed
services and counts the interrupted ones, :func:`fit_service` leaves out borrowed
staff and undoes the length bias of interruptions (:func:`interruption_weights`),
and the family is chosen by :func:`~experiments.calibration.durations.fit_durations`.
:func:`fit_service_part` does this for every sector of the base scenario.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.calibration.data import STAY_ORDER
from experiments.calibration.durations import FamilyFit, fit_durations
from twin.scenario import Scenario

MIN_SERVICE_SAMPLES = 10  # fewer start->finish pairs: keep the base scenario's distribution


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class ServicePairs:
    """Start->finish pairs (completed services) and the services the log cut short.

    Attributes:
        pairs: ``sector, item_class, worker_id, start, minutes`` per completed service.
        interrupted: per sector, services whose end the log does not show: starts
            handed back before finishing, starts still open when the log ends, and
            finishes of items already in service when the log began.
    """

    pairs: pd.DataFrame
    interrupted: dict[str, int]


def service_pairs(events: pd.DataFrame) -> ServicePairs:
    """Match each ``start`` with the ``finish`` that follows it for the same item and sector.

    A ``start`` followed by another ``start`` of the same item in the same sector
    is work handed back (a break or a shift end interrupted it): it is not a
    completed service, and counts as interrupted.
    """
    s = events.assign(rank=events["event"].map(STAY_ORDER))
    s = s.sort_values(["item_id", "sector", "t", "rank"], kind="stable")
    same_next = (s["item_id"] == s["item_id"].shift(-1)) & (s["sector"] == s["sector"].shift(-1))
    same_prev = (s["item_id"] == s["item_id"].shift(1)) & (s["sector"] == s["sector"].shift(1))
    next_ev = s["event"].shift(-1).where(same_next)
    prev_ev = s["event"].shift(1).where(same_prev)
    starts = s["event"] == "start"
    done = starts & (next_ev == "finish")
    pairs = pd.DataFrame(
        {
            "sector": s.loc[done, "sector"].to_numpy(),
            "item_class": s.loc[done, "item_class"].to_numpy(),
            "worker_id": s.loc[done, "worker_id"].to_numpy(),
            "start": s.loc[done, "t"].to_numpy(),
            "minutes": (s["t"].shift(-1)[done] - s.loc[done, "t"]).to_numpy(),
        }
    )
    cut = (starts & (next_ev != "finish")) | ((s["event"] == "finish") & (prev_ev != "start"))
    interrupted = s.loc[cut].groupby("sector").size().to_dict()
    return ServicePairs(pairs=pairs, interrupted={k: int(v) for k, v in interrupted.items()})


# --------------------------------------------------------------------------- one sector


@dataclass(frozen=True)
class ServiceFit:
    """The service-time fit of one sector.

    Attributes:
        chosen: the family written into the scenario.
        candidates: every family tried, with log-likelihood, AIC and KS statistic.
        durations: the completed-service durations used (minutes).
        weights: inverse-probability weights correcting for interrupted services.
        interrupted: services the log does not show the end of.
        excluded_other: pairs left out because a worker from another sector did them.
        rule: why ``chosen`` was chosen.
    """

    sector: str
    chosen: FamilyFit | None
    candidates: list[FamilyFit]
    durations: np.ndarray
    weights: np.ndarray
    interrupted: int
    excluded_other: int = 0
    other_mean: float = float("nan")
    rule: str = ""

    @property
    def n(self) -> int:
        return len(self.durations)

    @property
    def observed_mean(self) -> float:
        if not self.n:
            return float("nan")
        return float(np.average(self.durations, weights=self.weights))

    def distribution(self) -> dict[str, Any] | None:
        """The chosen family as a scenario ``service`` mapping."""
        if self.chosen is None:
            return None
        return {"dist": self.chosen.family, **self.chosen.params}


def interruption_weights(durations: np.ndarray, interrupted: int) -> np.ndarray:
    """Inverse-probability weights that undo the length bias of interrupted services.

    A break, a shift end or the end of the log cuts a service short at an instant
    unrelated to its start, so a service of length ``s`` is interrupted with
    probability about ``c * s``: long services are under-represented among the
    completed ones (the log does not say when work was handed back, so the cut
    services cannot be used as censored observations). Weighting each completed
    duration by ``1 / (1 - c s)`` restores the population; ``c`` solves
    ``sum_i 1 / (1 - c s_i) = completed + interrupted`` (the weights count every
    service started, finished or not). The correction is capped at weight 10.
    """
    n = len(durations)
    if interrupted <= 0 or n == 0:
        return np.ones(n)
    target = n + interrupted
    s_max = float(durations.max())
    hi = 0.9 / s_max  # weights at most 10

    def total(c: float) -> float:
        return float(np.sum(1.0 / (1.0 - c * durations)))

    if total(hi) <= target:
        c = hi
    else:
        lo = 0.0
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if total(mid) < target else (lo, mid)
        c = (lo + hi) / 2
    return 1.0 / (1.0 - c * durations)


def fit_service(
    pairs: pd.DataFrame,
    sector: str,
    interrupted: int = 0,
    worker_home: Mapping[str, str] | None = None,
) -> ServiceFit:
    """Fit the service-time distribution of ``sector`` from its start->finish pairs.

    The scenario's service time is that of a fully trained worker at home, so when
    ``worker_home`` (worker -> home sector, from attendance) is known, pairs done by
    workers from other sectors or by agency staff (not in attendance) are left out
    and reported. Interrupted services are corrected for with
    :func:`interruption_weights`; the family is chosen by :func:`fit_durations`.
    """
    p = pairs[pairs["sector"] == sector]
    excluded, other_mean = 0, float("nan")
    if worker_home:
        home = p["worker_id"].map(worker_home)
        mine = home == sector
        if mine.sum() >= MIN_SERVICE_SAMPLES:
            excluded = int((~mine).sum())
            other_mean = float(p.loc[~mine, "minutes"].mean()) if excluded else float("nan")
            p = p[mine]
    x = p["minutes"].to_numpy(float)
    w = interruption_weights(x, interrupted)
    if len(x) < MIN_SERVICE_SAMPLES:
        return ServiceFit(sector, None, [], x, w, interrupted, excluded, other_mean,
                          f"only {len(x)} completed services: kept from base")  # fmt: skip
    chosen, candidates, rule = fit_durations(x, w)
    return ServiceFit(sector, chosen, candidates, x, w, interrupted, excluded, other_mean, rule)


# --------------------------------------------------------------------------- every sector


@dataclass(frozen=True)
class ServicePart:
    """The service-time part of a calibration.

    Attributes:
        fits: every sector's fit (fitted or not).
        services: the scenario's ``service`` mapping of each sector with enough data;
            the others keep the base scenario's.
        pairs: completed services (start->finish pairs) in the log.
        interrupted: services the log cut short, over all sectors.
        notes: sectors whose service time was kept from the base, and why.
    """

    fits: dict[str, ServiceFit]
    services: dict[str, dict[str, Any]]
    pairs: int
    interrupted: int
    notes: tuple[str, ...]


def fit_service_part(
    events: pd.DataFrame, base: Scenario, worker_home: Mapping[str, str]
) -> ServicePart:
    """:func:`fit_service` for every sector of ``base``.

    ``worker_home`` (worker -> home sector, from attendance; empty without it) says
    whose services count as a home worker's.
    """
    pairs = service_pairs(events)
    fits: dict[str, ServiceFit] = {}
    services: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for sector in base.sector_names:
        fit = fit_service(
            pairs.pairs, sector, pairs.interrupted.get(sector, 0), worker_home or None
        )
        fits[sector] = fit
        dist = fit.distribution()
        if dist is None:
            notes.append(f"sector {sector!r}: {fit.rule}")
        else:
            services[sector] = dist
    return ServicePart(
        fits=fits,
        services=services,
        pairs=len(pairs.pairs),
        interrupted=int(sum(pairs.interrupted.values())),
        notes=tuple(notes),
    )
