"""``synctwin bench compare``: comparison throughput on local processes or a Ray cluster.

One strategy (``static`` by default) on one cheap scenario (``claims``: one day, about
0.15 s a run on one core) over ``runs`` seeds, through the same
:func:`~experiments.comparison.compare.run_plan` as ``synctwin compare``, into a temporary
directory. The cheap run is the point: it is where batching and streaming matter, since a
run costs not much more than shipping it. Reported: runs per second over the whole call
(connecting, the first-run probe, every batch, reading the results back), the batches
(part files) written, and peak RSS of this process (the driver, which streams every batch
to disk and holds no finished row) and of its largest local worker. Ray's workers are
processes of the cluster, not of this one, so their memory is not reported.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from experiments.comparison.compare import check_plan, run_plan


def _peak_rss_mb(who: int) -> float:
    """Peak resident set size (``ru_maxrss``: KiB on Linux, bytes on macOS) in MiB."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def bench_compare(
    runs: int = 2000,
    scenario: str = "claims",
    strategy: str = "static",
    address: str | None = None,
    workers: int | None = None,
    runs_per_task: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Time one comparison of ``runs`` seeds; see the module docstring for what is measured.

    Raises:
        ClusterError: no usable Ray cluster at ``address``.
        ScenarioError, StrategyError: an unknown scenario or strategy.
    """
    plan = check_plan([scenario], [strategy], runs)
    with tempfile.TemporaryDirectory(prefix="synctwin-bench-compare-") as tmp:
        t0 = time.perf_counter()
        cmp = run_plan(
            plan,
            workers=workers,
            progress=progress,
            out=Path(tmp),
            address=address,
            runs_per_task=runs_per_task,
        )
        wall = time.perf_counter() - t0
        parts = len(list((Path(tmp) / "runs").glob("part-*.parquet")))
    finished = len(cmp.results)
    return {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "mode": "ray cluster" if address else "local processes",
        "address": address,
        "workers": None if address else (workers or os.cpu_count()),
        "scenario": cmp.results["scenario"].iloc[0],
        "strategy": strategy,
        "runs": finished,
        "wall_seconds": wall,
        "runs_per_second": finished / wall,
        "run_seconds_mean": float(cmp.results["wall_seconds"].mean()),
        "part_files": parts,
        "runs_per_part_mean": finished / max(parts, 1),
        "peak_rss_mb_driver": _peak_rss_mb(resource.RUSAGE_SELF),
        "peak_rss_mb_largest_local_worker": (
            None if address else _peak_rss_mb(resource.RUSAGE_CHILDREN)
        ),
        "mean_total_cost": float(cmp.results["total_cost"].mean()),
    }
