"""The peer-benchmark network: a Jackson tandem line, as a twin scenario and in theory.

``synctwin bench twin --vs-simpy`` times the twin against a SimPy model of the same
queueing network (:mod:`experiments.bench.simpy_peer`). This module holds what both
sides share: the network (:class:`TandemLine`), its closed-form waits, the replication
design (:class:`Design`), the twin side of one replication, and what a replication
reports (:class:`Replication`).

The twin scenario has nothing a plain queueing model lacks: one all-day shift (no
breaks, no absence, no overtime), no stations limit, no breakdowns, no uncertainty, one
FIFO worker per station. The one thing the twin does that SimPy does not: the shift ends
and starts again at every midnight, which hands the item in service back to the head of
its queue and restarts its service with a fresh draw. Service is exponential, so by
memorylessness the remaining work has the same law as a fresh draw: the queueing process
is the same (and the item's time in the station still counts from its arrival there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import MINUTES_PER_DAY, Scenario, scenario_from_dict
from twin.workers import WorkerState

#: item classes' due time: long enough never to matter (the twin still tracks it)
_DUE_WITHIN_MINUTES = 7 * MINUTES_PER_DAY


@dataclass(frozen=True)
class TandemLine:
    """Poisson arrivals into ``stations`` M/M/1 stations in series, FIFO, all at ``rho``.

    Attributes:
        stations: stations in the line.
        rho: utilisation of every station (arrival rate / service rate).
        service_minutes: mean exponential service time at every station.
    """

    stations: int = 3
    rho: float = 0.8
    service_minutes: float = 1.0

    @property
    def arrivals_per_minute(self) -> float:
        """λ: the line's Poisson arrival rate (by Burke's theorem, every station's too)."""
        return self.rho / self.service_minutes

    @property
    def station_names(self) -> tuple[str, ...]:
        return tuple(f"station_{i + 1}" for i in range(self.stations))

    @property
    def theory_wait_minutes(self) -> float:
        """Mean wait in queue at each station, Wq = ρ / (μ − λ) (Jackson: each is M/M/1)."""
        mu = 1.0 / self.service_minutes
        return self.rho / (mu - self.arrivals_per_minute)

    @property
    def theory_time_in_station_minutes(self) -> float:
        """Mean time in each station, wait plus service: 1 / (μ − λ)."""
        return self.theory_wait_minutes + self.service_minutes

    def scenario(self, horizon_days: int) -> Scenario:
        """The line as a twin scenario of ``horizon_days`` days (tick: the default minute)."""
        names = self.station_names
        return scenario_from_dict(
            {
                "name": f"tandem-{self.stations}-rho{self.rho:g}".replace(".", "_"),
                "description": "Jackson tandem line: Poisson arrivals, exponential "
                "service, one FIFO server per station (the SimPy peer benchmark).",
                "domain": "queueing",
                "horizon_days": horizon_days,
                "sectors": [
                    {"name": n, "service": {"dist": "exponential", "mean": self.service_minutes}}
                    for n in names
                ],
                "item_classes": [
                    {
                        "name": "job",
                        "route": list(names),
                        "hourly_rates": [self.arrivals_per_minute * 60.0] * 24,
                        "due": {"within_minutes": _DUE_WITHIN_MINUTES},
                    }
                ],
                "workforce": {
                    "shifts": [{"name": "all_day", "start": "00:00", "end": "00:00"}],
                    "headcount": {n: {"all_day": 1} for n in names},
                    "max_overtime_minutes": 0,
                    "absence_rate": 0.0,
                },
                "costs": {
                    "regular_rate_per_hour": 0.0,
                    "overtime_rate_per_hour": 0.0,
                    "flex_rate_per_hour": 0.0,
                    "sla_miss_penalty": 0.0,
                },
            },
            source="the tandem line",
        )


@dataclass(frozen=True)
class Design:
    """The replication design both models run: same count, horizon and warm-up.

    Replication ``i`` is seeded with ``i`` in each model (the models draw differently,
    so their runs are independent samples, not common random numbers). Only items that
    finish service at a station at or after ``warmup_minutes`` count in its means.
    """

    replications: int = 10
    horizon_days: int = 5
    warmup_minutes: float = 360.0

    @property
    def horizon_minutes(self) -> float:
        return self.horizon_days * MINUTES_PER_DAY


@dataclass(frozen=True)
class Replication:
    """What one replication of either model reports.

    Attributes:
        wall_seconds: construction and run, warm-up included.
        cpu_seconds: the same span in this process's CPU time (on a shared machine, less
            disturbed by other processes than the wall clock).
        events: network events over the whole horizon: arrivals plus service
            completions (the same count in both models, so a fair denominator).
        waits: per station, mean minutes from arrival at the station to the start of
            the service that completed it, over items completing after the warm-up.
        times_in_station: per station, the same items' mean minutes from arrival to
            completion.
        completed: per station, how many items those means are over.
    """

    wall_seconds: float
    cpu_seconds: float
    events: int
    waits: tuple[float, ...]
    times_in_station: tuple[float, ...]
    completed: tuple[int, ...]


def _station_sums(model: OperationModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per station: completions, minutes in station, minutes in service (twin accounts).

    The worker accounts accrue a busy spell when it ends, so between two readings the
    busy minutes are the service of the items completed in between (plus the partial
    spell of an item handed back at midnight, which its time in station includes too):
    time in station minus busy time is the time spent waiting.
    """
    n = len(model.sector_names)
    done = np.array(model.processed[:n], dtype=np.float64)
    in_station = np.array(model.sector_time_sum[:n], dtype=np.float64)
    busy = np.array([model.acc_loc[s][WorkerState.BUSY] for s in range(n)], dtype=np.float64)
    return done, in_station, busy


def twin_replication(scenario: Scenario, design: Design, seed: int) -> Replication:
    """One replication of the twin: a fresh model, run to the warm-up, then to the horizon.

    The twin runs as rollouts run it (:func:`twin.rollout.run_for`, no controller, no
    time series recorded): the event core and its tick loop, nothing else.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    model = OperationModel(scenario, rng=np.random.default_rng(seed), record_every_minutes=None)
    run_for(model, design.warmup_minutes)
    before = _station_sums(model)
    run_for(model)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    done, in_station, busy = (b - a for a, b in zip(before, _station_sums(model), strict=True))
    return Replication(
        wall_seconds=wall,
        cpu_seconds=cpu,
        events=model.arrived + sum(model.processed),
        waits=tuple(((in_station - busy) / done).tolist()),
        times_in_station=tuple((in_station / done).tolist()),
        completed=tuple(int(x) for x in done),
    )
