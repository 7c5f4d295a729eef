"""The SimPy peer of the twin on the tandem line: the yardstick of ``bench twin --vs-simpy``.

Written the way SimPy's own examples write a queueing network: one ``Resource`` per
station, one process per item that requests each station in turn, a source process that
starts items at exponential gaps. It draws its durations with the twin's
:class:`~twin.distributions.DurationStream` (blocks of numpy draws), so the two models pay
the same for randomness and the comparison measures the event cores.

It measures what the twin's accounts measure (:func:`experiments.bench.tandem.twin_replication`):
per station, over the items completing service at or after the warm-up, the mean wait
(arrival at the station to start of service) and the mean time in the station.

Importing this module needs ``simpy`` (the ``dev`` extra); the CLI imports it only when
``--vs-simpy`` is asked.
"""

from __future__ import annotations

import time
from collections.abc import Generator

import numpy as np
import simpy

from experiments.bench.tandem import Design, Replication, TandemLine
from twin.distributions import DurationStream, Exponential

VERSION: str = simpy.__version__


class _Tally:
    """Per-station sums over the items that finish after the warm-up, and event counts."""

    def __init__(self, stations: int, warmup_minutes: float) -> None:
        self.warmup_minutes = warmup_minutes
        self.completed = [0] * stations
        self.wait_sum = [0.0] * stations
        self.in_station_sum = [0.0] * stations
        self.arrivals = 0
        self.completions = 0


def _item(
    env: simpy.Environment,
    stations: list[simpy.Resource],
    services: list[DurationStream],
    tally: _Tally,
) -> Generator[simpy.Event, object, None]:
    """One item through the line: queue, serve, move on (FIFO: ``Resource`` is FIFO)."""
    for s, (station, service) in enumerate(zip(stations, services, strict=True)):
        arrive = env.now
        with station.request() as turn:
            yield turn
            start = env.now
            yield env.timeout(service.next())
        tally.completions += 1
        if env.now >= tally.warmup_minutes:
            tally.completed[s] += 1
            tally.wait_sum[s] += start - arrive
            tally.in_station_sum[s] += env.now - arrive


def _source(
    env: simpy.Environment,
    gaps: DurationStream,
    stations: list[simpy.Resource],
    services: list[DurationStream],
    tally: _Tally,
) -> Generator[simpy.Event, object, None]:
    """Poisson arrivals: exponential gaps, one new item process each."""
    while True:
        yield env.timeout(gaps.next())
        tally.arrivals += 1
        env.process(_item(env, stations, services, tally))


def simpy_replication(line: TandemLine, design: Design, seed: int) -> Replication:
    """One replication of the SimPy model: same horizon and warm-up as the twin's."""
    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(seed)
    gap_rng, *service_rngs = rng.spawn(1 + line.stations)
    env = simpy.Environment()
    stations = [simpy.Resource(env, capacity=1) for _ in range(line.stations)]
    services = [DurationStream(Exponential(mean=line.service_minutes), r) for r in service_rngs]
    gaps = DurationStream(Exponential(mean=1.0 / line.arrivals_per_minute), gap_rng)
    tally = _Tally(line.stations, design.warmup_minutes)
    env.process(_source(env, gaps, stations, services, tally))
    env.run(until=design.horizon_minutes)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    done = np.array(tally.completed, dtype=np.float64)
    return Replication(
        wall_seconds=wall,
        cpu_seconds=cpu,
        events=tally.arrivals + tally.completions,
        waits=tuple((np.array(tally.wait_sum) / done).tolist()),
        times_in_station=tuple((np.array(tally.in_station_sum) / done).tolist()),
        completed=tuple(tally.completed),
    )
