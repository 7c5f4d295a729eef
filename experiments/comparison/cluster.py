"""Comparison runs on an existing Ray cluster (``synctwin compare --address HOST:PORT``).

The driver joins the cluster the way training does
(:func:`training.rllib_config.connect_ray`: a TCP check first, so a wrong address fails in
milliseconds, not after Ray's long retries), sends each batch as one task of one CPU, keeps
at most :data:`IN_FLIGHT_PER_CPU` tasks per cluster CPU in flight, and yields each batch's
results as it finishes. It only disconnects at the end: the cluster stays up.

Workers import the project by module name, so every node needs it installed (a loopback
cluster started from the same environment has it). Scenarios travel inside the tasks and
strategy file paths are made absolute by the driver, so a worker's working directory does
not matter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from experiments.comparison.runs import Batch, RunResult, run_batch

#: tasks kept in flight per cluster CPU: enough that no CPU waits for the driver
IN_FLIGHT_PER_CPU = 2


class ClusterError(ValueError):
    """No usable Ray cluster at the address given; the message names it and what to do."""


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``HOST:PORT``) as a driver.

    Raises:
        ClusterError: nothing answers there (start one with ``ray start --head``), the
            address is malformed, or the cluster refuses this driver.
    """
    from training.rllib_config import connect_ray
    from training.runs import TrainingError

    try:
        connect_ray(address)
    except TrainingError as err:
        raise ClusterError(str(err)) from None


class ClusterExecutor:
    """Batches as Ray tasks on the cluster at ``address`` (joined on construction)."""

    def __init__(self, address: str) -> None:
        import ray

        #: only a connection this executor made is closed by it
        self._owns_connection = not ray.is_initialized()
        connect(address)
        self.address = address
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(self, batches: Sequence[Batch]) -> Iterator[list[tuple[int, RunResult]]]:
        import ray

        task = ray.remote(num_cpus=1)(run_batch)
        waiting = list(batches)
        waiting.reverse()  # pop() from the end keeps the given order
        pending: list = []
        window = IN_FLIGHT_PER_CPU * self.cpus
        try:
            while waiting or pending:
                while waiting and len(pending) < window:
                    pending.append(task.remote(waiting.pop()))
                ready, pending = ray.wait(pending, num_returns=1)
                yield ray.get(ready[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Disconnect this driver (if it joined here); the cluster and its other jobs go on."""
        import ray

        if self._owns_connection:
            ray.shutdown()
