"""Rollouts in worker processes: cheap routes keep their latency, and unwanted work stops.

A rollout is pure Python and holds the GIL for its whole run; run in the server's
own threads, two impact requests slowed every other route from a 2.7 ms to a
145 ms p99. :class:`RolloutPool` runs them in separate processes instead, and
spreads the rollouts of one question (every arm and sample of
:func:`policies.impact.estimate_impact` or :func:`policies.impact.forecast`) over
them, so one request also finishes sooner when the cores are free.

**Same answer as in process.** A job's result depends only on the scenario, the
snapshot and the job (its seed, actions, length), never on which process ran it
or in what order: the pool gives the numbers :func:`policies.rollouts.run_here`
gives, common random numbers included.

**Stopping unwanted work.** Each running question holds a *ticket*: an index into
a flag array shared with the workers. A worker's rollout reads its ticket's flag
after every simulated tick and stops when it is raised; rollouts not yet started
are dropped. The flag is raised when the question's deadline passes or when
``should_stop`` (the server asks whether the client is still connected) says so,
checked every ``poll_seconds`` while waiting. So a client that goes away, or a
question that outlives its deadline, costs at most one tick of every busy worker.

**What a worker holds.** The scenario (sent once, when the worker starts) and, for
forecasts, the served bundle, loaded once per bundle version. A question's jobs
travel in a few batches per worker (:func:`batches`), each with the snapshot as JSON
(a few kilobytes), parsed once per question per worker.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Literal

from policies.rollouts import Rollout, RolloutInterrupted, RolloutJob, Runner, run_job
from twin.actions import Controller
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

StopReason = Literal["deadline", "disconnected", "worker_lost"]


class PoolBusy(Exception):
    """Every ticket stayed taken for ``wait_seconds``."""


class RolloutsStopped(Exception):
    """A question's rollouts were stopped before they finished (see ``reason``)."""

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[RolloutsStopped], tuple[StopReason, str]]:
        return type(self), (self.reason, str(self))  # raised in the rollout host, sent back


@dataclass(frozen=True)
class PolicyRef:
    """Where a worker loads the question's policy from, and which version it must be."""

    path: str
    version: str


# --------------------------------------------------------------------------- the workers

_scenario: Scenario | None = None
_flags: SynchronizedArray | None = None
_snapshots: dict[str, OperationSnapshot] = {}
_policies: PolicyCache | None = None


#: How much lower a rollout worker's CPU priority is than the server's (``nice``).
#: Rollouts are the work that can wait. At the server's priority, two clients posting
#: impact requests kept both cores, and ``/v1/policy``'s p99 went from under 1 ms to
#: 5.7-8.0 ms (five runs); niced, the scheduler runs the server first and the rollouts
#: take every cycle it leaves: 1.9-4.0 ms in five runs on the same machine.
WORKER_NICENESS = 10


def _init_worker(scenario: Scenario, flags: SynchronizedArray, parent: int, niceness: int) -> None:
    global _scenario, _flags, _policies
    _scenario, _flags, _policies = scenario, flags, PolicyCache(scenario)
    if niceness:
        os.nice(niceness)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    keep_out_of_gc()


def keep_out_of_gc() -> None:
    """Move what the worker holds for good (its imports, the scenario, a loaded bundle)
    out of the cyclic collector's reach.

    A worker's imports are some 165,000 objects; the collector's full passes, which
    the allocations of rollouts trigger every couple of hundred rollouts, walked them
    all: about 70 ms each, a stall of one question's rollouts on one worker (measured
    on ``default``). Frozen, a full pass sees only what rollouts left, a fraction of
    a millisecond. A rollout's twin is freed by reference counting
    (:func:`twin.rollout.close`), not by the collector. Called again when a bundle
    is loaded (a reload): what the previous one left is collected first.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _exit_with(parent: int, every_seconds: float = 0.5) -> None:
    """Exit when the server that started this worker is gone.

    A worker blocks on its task queue, which it holds both ends of, so a server
    killed with SIGKILL would leave it waiting forever; the new parent of an
    orphan is another process, which is what this watches for. ``parent`` is the
    server's pid as the server knows it (not ``os.getppid()`` at start: the server
    may die while the worker is still importing).
    """
    while os.getppid() == parent:
        time.sleep(every_seconds)
    os._exit(0)


class PolicyCache:
    """The served bundle, loaded once per version in a process that runs rollouts."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._loaded: dict[str, Controller] = {}

    def get(self, ref: PolicyRef) -> Controller:
        """The bundle ``ref`` names, loaded on first use.

        Raises:
            RuntimeError: the bundle at ``ref.path`` is no longer ``ref.version``.
        """
        if ref.version not in self._loaded:
            from policies.runtime import BundlePolicy

            policy = BundlePolicy(ref.path, scenario=self.scenario)
            if policy.version != ref.version:
                raise RuntimeError(
                    f"bundle at {ref.path} is now {policy.version}, not {ref.version}"
                )
            self._loaded.clear()  # one served bundle at a time
            self._loaded[ref.version] = policy
            keep_out_of_gc()
        return self._loaded[ref.version]


def _run_in_worker(
    ticket: int, snapshot_json: str, jobs: tuple[RolloutJob, ...], policy: PolicyRef | None
) -> list[Rollout]:
    """Run a batch of jobs in a worker, in turn; stops when the ticket's flag is raised."""
    assert _scenario is not None and _flags is not None and _policies is not None
    flags, policies = _flags, _policies
    snap = _snapshots.get(snapshot_json)
    if snap is None:
        _snapshots.clear()  # one question at a time per worker is the common case
        snap = _snapshots[snapshot_json] = OperationSnapshot.model_validate_json(snapshot_json)
    out = []
    for job in jobs:
        if flags[ticket]:
            raise RolloutInterrupted
        controller = policies.get(policy) if policy is not None and job.with_policy else None
        out.append(run_job(_scenario, snap, job, controller, interrupt=lambda: bool(flags[ticket])))
    return out


def batches(n: int, workers: int, per_worker: int) -> list[range]:
    """``n`` jobs cut into at most ``workers * per_worker`` consecutive batches, larger first.

    One task per job would send the snapshot, and wake the server, once per rollout
    (a few hundred microseconds each: a tenth of a 90-minute rollout); one task per
    worker would leave a core idle when the other is slowed. A few batches per
    worker keep both costs small. The last ``workers`` batches hold one job each
    (when there are more jobs than batches): a worker that finishes early takes
    them, so a question's last rollouts end close together on every worker.
    """
    if n == 0:
        return []
    k = min(n, max(1, workers * per_worker))
    tail = min(workers, k - 1) if n > k else 0
    size, extra = divmod(n - tail, k - tail)
    sizes = [size + (1 if i < extra else 0) for i in range(k - tail)] + [1] * tail
    out, start = [], 0
    for length in sizes:
        out.append(range(start, start + length))
        start += length
    return out


def _warm(seconds: float) -> int:
    time.sleep(seconds)  # long enough that every worker gets one
    return os.getpid()


# --------------------------------------------------------------------------- the pool


class RolloutPool:
    """Worker processes that run rollouts for one scenario, and tickets to stop them.

    Args:
        scenario: the scenario every question is about (the server serves one).
        workers: worker processes (default: the machine's cores).
        tickets: questions that may run at once; more wait up to ``wait_seconds``
            for a ticket and then get :class:`PoolBusy`.
        wait_seconds: how long a question waits for a ticket.
        poll_seconds: how often a waiting question checks its deadline and
            ``should_stop``.
        batches_per_worker: a question's jobs go to the workers in this many
            batches per worker (:func:`batches`).
        niceness: how much lower than this process's the workers' CPU priority is
            (0 in the rollout host, which runs at the lower priority already).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        workers: int | None = None,
        tickets: int = 2,
        wait_seconds: float = 30.0,
        poll_seconds: float = 0.05,
        batches_per_worker: int = 3,
        niceness: int = WORKER_NICENESS,
    ) -> None:
        self.scenario, self.niceness = scenario, niceness
        self.batches_per_worker = batches_per_worker
        self.workers = workers or os.cpu_count() or 1
        self.wait_seconds, self.poll_seconds = wait_seconds, poll_seconds
        self._ctx = multiprocessing.get_context("spawn")  # never fork a threaded server
        self._flags = self._ctx.Array("b", tickets, lock=False)
        self._free: queue.Queue[int] = queue.Queue()
        for t in range(tickets):
            self._free.put(t)
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=self._ctx,
            initializer=_init_worker,
            initargs=(self.scenario, self._flags, os.getpid(), self.niceness),
        )

    def warm(self) -> list[int]:
        """Start every worker now (a spawned worker imports the twin: a second or two)."""
        with self._lock:
            executor = self._executor
        futures = [executor.submit(_warm, 0.2) for _ in range(2 * self.workers)]
        return sorted({f.result() for f in futures})

    def pids(self) -> list[int]:
        """The worker processes' ids (for memory and CPU accounting)."""
        with self._lock:
            procs = getattr(self._executor, "_processes", None) or {}
        return sorted(procs)

    def close(self) -> None:
        with self._lock:
            self._executor.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def ticket(self) -> Iterator[int]:
        """Hold one of the tickets while a question runs.

        Raises:
            PoolBusy: no ticket freed within ``wait_seconds``.
        """
        try:
            t = self._free.get(timeout=self.wait_seconds)
        except queue.Empty:
            raise PoolBusy from None
        self._flags[t] = 0
        try:
            yield t
        finally:
            self._flags[t] = 0
            self._free.put(t)

    def runner(
        self,
        ticket: int,
        *,
        policy: PolicyRef | None = None,
        deadline_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Runner:
        """A :data:`policies.rollouts.Runner` that runs a question's jobs on the workers.

        Args:
            ticket: from :meth:`ticket`, held for as long as the runner is used.
            policy: the bundle the ``with_policy`` jobs act with (forecasts).
            deadline_seconds: the question's rollouts stop after this long.
            should_stop: asked while waiting; true stops the question (the client left).

        The runner raises :class:`RolloutsStopped` when the question was stopped.
        """
        start = time.monotonic()
        encoded: dict[int, tuple[OperationSnapshot, str]] = {}  # a question's stages share it

        def run(
            scenario: Scenario,
            snapshot: OperationSnapshot,
            jobs: Sequence[RolloutJob],
            controller: Controller | None,
        ) -> list[Rollout]:
            if scenario is not self.scenario and scenario.digest != self.scenario.digest:
                raise ValueError(f"this pool runs scenario {self.scenario.name!r} only")
            if any(j.with_policy for j in jobs) and policy is None:
                raise ValueError("jobs that act with the policy need the policy's bundle")
            if id(snapshot) not in encoded:
                encoded.clear()
                encoded[id(snapshot)] = (snapshot, snapshot.model_dump_json())
            return self._run(
                ticket,
                encoded[id(snapshot)][1],
                jobs,
                policy,
                start,
                deadline_seconds,
                should_stop,
            )

        return run

    def _run(
        self,
        ticket: int,
        snapshot_json: str,
        jobs: Sequence[RolloutJob],
        policy: PolicyRef | None,
        start: float,
        deadline_seconds: float | None,
        should_stop: Callable[[], bool] | None,
    ) -> list[Rollout]:
        deadline = None if deadline_seconds is None else start + deadline_seconds
        with self._lock:
            executor = self._executor
        try:
            futures: list[Future[list[Rollout]]] = [
                executor.submit(
                    _run_in_worker, ticket, snapshot_json, tuple(jobs[i] for i in b), policy
                )
                for b in batches(len(jobs), self.workers, self.batches_per_worker)
            ]
        except BrokenProcessPool:
            self._replace(executor)
            raise RolloutsStopped("worker_lost", "a rollout worker died; retry") from None
        pending = set(futures)
        try:
            while pending:
                # wake when every batch is done (or one failed), else every poll_seconds
                # to ask about the deadline and the client: not once per finished batch
                done, pending = wait(
                    pending, timeout=self.poll_seconds, return_when=FIRST_EXCEPTION
                )
                for f in done:
                    f.result()  # a failed batch raises here; the rest are stopped below
                if not pending:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise RolloutsStopped(
                        "deadline", f"the rollouts did not finish within {deadline_seconds:g} s"
                    )
                if should_stop is not None and should_stop():
                    raise RolloutsStopped("disconnected", "the client went away")
            return [r for f in futures for r in f.result()]
        except BrokenProcessPool:
            self._replace(executor)
            raise RolloutsStopped("worker_lost", "a rollout worker died; retry") from None
        except BaseException:
            self._flags[ticket] = 1  # running rollouts stop at their next tick
            for f in pending:
                f.cancel()
            wait(pending)  # the ticket is free again only when nothing uses it
            raise

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()


def bundle_ref(path: Path | str, version: str) -> PolicyRef:
    """The :class:`PolicyRef` of a served bundle."""
    return PolicyRef(path=str(Path(path).resolve()), version=version)


def in_process_runner(
    *,
    deadline_seconds: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    poll_seconds: float = 0.05,
) -> Runner:
    """A :data:`policies.rollouts.Runner` in this process that stops like the pool's does.

    The rollouts ask after every tick whether the deadline has passed, and every
    ``poll_seconds`` whether ``should_stop``; either stops them with
    :class:`RolloutsStopped`.
    """
    start = time.monotonic()
    deadline = None if deadline_seconds is None else start + deadline_seconds
    asked = start
    reason: StopReason | None = None

    def interrupt() -> bool:
        nonlocal asked, reason
        now = time.monotonic()
        if deadline is not None and now > deadline:
            reason = "deadline"
        elif should_stop is not None and now - asked >= poll_seconds:
            asked = now
            if should_stop():
                reason = "disconnected"
        return reason is not None

    def run(
        scenario: Scenario,
        snapshot: OperationSnapshot,
        jobs: Sequence[RolloutJob],
        policy: Controller | None,
    ) -> list[Rollout]:
        try:
            return [run_job(scenario, snapshot, job, policy, interrupt) for job in jobs]
        except RolloutInterrupted:
            if reason == "deadline":
                raise RolloutsStopped(
                    "deadline", f"the rollouts did not finish within {deadline_seconds:g} s"
                ) from None
            raise RolloutsStopped("disconnected", "the client went away") from None

    return run
