"""Where a comparison's batches run: this process, a local process pool, or a Ray cluster.

Every executor takes :class:`~experiments.comparison.runs.Batch` es and yields each batch's
results as soon as it finishes, in whatever order they finish; the caller streams them to
its :class:`~experiments.comparison.store.RunStore`. Results do not depend on the
executor: every run is seeded (common random numbers) and runs alone in its process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import as_completed
from typing import Protocol

from agents.evaluation import process_pool
from experiments.comparison.runs import Batch, RunResult, run_batch

BatchResult = list[tuple[int, RunResult]]


class Executor(Protocol):
    """Runs batches somewhere and yields each one's results as it finishes."""

    #: CPUs the runs share (what batches are sized for)
    cpus: int

    def run(self, batches: Sequence[Batch]) -> Iterator[BatchResult]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """``workers`` processes on this machine (one: this process, no pool).

    The pool is :func:`agents.evaluation.process_pool`, the one tuning and training's
    evaluation use as well.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.cpus = workers or os.cpu_count() or 1

    def run(self, batches: Sequence[Batch]) -> Iterator[BatchResult]:
        pool = process_pool(self.cpus, jobs=len(batches))
        if pool is None:
            for batch in batches:
                yield run_batch(batch)
            return
        with pool:
            futures = [pool.submit(run_batch, batch) for batch in batches]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            finally:
                for fut in futures:
                    fut.cancel()

    def close(self) -> None:
        """Nothing to release: the pool lives only as long as one :meth:`run`."""


def open_executor(workers: int | None = None, address: str | None = None) -> Executor:
    """The executor for ``--address`` (a Ray cluster) or ``--workers`` (this machine).

    Raises:
        ClusterError: no Ray cluster answers at ``address``, or it refuses this driver.
    """
    if address:
        from experiments.comparison.cluster import ClusterExecutor

        return ClusterExecutor(address)
    return LocalExecutor(workers)
