"""How the rollout pool talks to its workers: batches, the collector, asking about the client.

- a question's jobs travel in a few consecutive batches per worker, the last ones of a
  single job (:func:`batches`);
- a worker freezes what it holds for good out of the cyclic collector, whose full
  passes over a worker's imports stalled a rollout for about 70 ms;
- a waiting question asks ``should_stop`` (the server: is the client still there?)
  at most once per ``poll_seconds``, not after every finished batch.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import numpy as np
import pytest

from policies.impact import RolloutJob, run_here
from policies.rollout_pool import RolloutPool, batches
from twin.model import OperationModel
from twin.scenario import Scenario, load_scenario
from twin.snapshot import OperationSnapshot

pytestmark = pytest.mark.slow  # starts worker processes


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("default")


@pytest.fixture(scope="module")
def pool(scenario: Scenario) -> Iterator[RolloutPool]:
    p = RolloutPool(scenario, workers=2, poll_seconds=0.2)
    p.warm()
    yield p
    p.close()


def test_batches_cover_the_jobs_in_order() -> None:
    for n in range(0, 45):
        for workers, per in ((1, 1), (2, 3), (4, 2)):
            got = batches(n, workers, per)
            assert [i for b in got for i in b] == list(range(n))
            assert len(got) == min(n, workers * per)
            sizes = [len(b) for b in got]
            assert all(x >= 1 for x in sizes) and sizes == sorted(sizes, reverse=True)
            if n > workers * per:  # the last batches hold one job each
                tail = min(workers, len(got) - 1)
                head, last = sizes[: len(got) - tail], sizes[len(got) - tail :]
                assert last == [1] * tail and max(head) - min(head) <= 1


def test_workers_keep_their_imports_out_of_the_collector(pool: RolloutPool) -> None:
    frozen = {pool._executor.submit(gc.get_freeze_count).result() for _ in range(8)}
    assert min(frozen) > 50_000  # the twin, numpy, scipy, pydantic: well over that


def test_the_client_is_asked_once_per_poll_not_per_batch(
    pool: RolloutPool, scenario: Scenario
) -> None:
    model = OperationModel(scenario, rng=np.random.default_rng(1), record_every_minutes=None)
    model.run_minutes(10 * 60)
    snap: OperationSnapshot = model.snapshot()
    jobs = [RolloutJob(seed=i, minutes=15) for i in range(24)]  # 6 quick batches
    asked = 0

    def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return False

    with pool.ticket() as ticket:
        t0 = time.monotonic()
        done = pool.runner(ticket, should_stop=should_stop)(scenario, snap, jobs, None)
        elapsed = time.monotonic() - t0
    here = run_here(scenario, snap, jobs, None)
    assert len(done) == len(here)
    for a, b in zip(done, here, strict=True):  # same rollouts, in the jobs' order
        assert a.minutes == b.minutes
        for field in ("misses", "overtime_hours", "cost", "queue_item_minutes", "entered"):
            assert np.array_equal(getattr(a, field), getattr(b, field))
    assert asked <= elapsed / pool.poll_seconds + 1
