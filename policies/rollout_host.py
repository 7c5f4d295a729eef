"""The rollout host: one process that answers every question needing rollouts.

The rollout workers (:mod:`policies.rollout_pool`) took the rollouts out of the
server's process, but not the Python around them: deciding, handing out batches,
taking the rollouts back, the statistics and the words of an impact
recommendation cost the server about 5 ms of CPU per request (3 ms on the request's
thread, 2 ms in the pool's own threads). While a thread did that work, a cheap
route on the event loop waited for the GIL: during a burst of impact requests
``/v1/policy``'s p99 went to 2.5-3.4 times its idle value, while two busy processes
at the workers' priority cost it only 1.1-1.3 times.

So a whole question runs here: the server checks the request, sends the question
(its snapshot as JSON, a few kilobytes) and waits without holding the GIL; this
process answers it on its own :class:`~policies.rollout_pool.RolloutPool` and sends
back the answer. The server's share of an impact request is parsing, routing and
recording.

**Same answers.** A question is a picklable callable (:class:`Question`) given a
rollout runner and the served policy; :meth:`RolloutHost.ask` runs it here, and a
server without rollout workers runs the same callable in its own process
(:func:`answer_here`), so both give the same numbers.

**Stopping.** A question holds one of the pool's tickets while it runs, as before:
it waits up to ``wait_seconds`` for one (:class:`~policies.rollout_pool.PoolBusy`),
its rollouts stop after ``deadline_seconds``, and when the server's ``should_stop``
says the client went away the server sends ``stop`` and the question's rollouts
stop at their next tick (:class:`~policies.rollout_pool.RolloutsStopped`).

**Lifetime.** The host runs at the rollout workers' lower CPU priority and exits
when its pipe to the server closes (the server exited or was killed); its workers
follow it. A host that died fails its questions with ``worker_lost`` and is
started again on the next question.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

from policies.advice import AdviceError
from policies.rollout_pool import (
    WORKER_NICENESS,
    PolicyCache,
    PolicyRef,
    PoolBusy,
    RolloutPool,
    RolloutsStopped,
    in_process_runner,
    keep_out_of_gc,
)
from policies.rollouts import Runner
from twin.actions import Controller
from twin.scenario import Scenario

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")

log = logging.getLogger("synctwin.server")


class Question(Protocol[T_co]):
    """Work that needs rollouts: called with the question's runner and the served policy."""

    def __call__(self, runner: Runner, policy: Controller) -> T_co: ...


@dataclass(frozen=True)
class HostSettings:
    """What the host's pool is built with (see :class:`~policies.rollout_pool.RolloutPool`)."""

    workers: int | None = None
    tickets: int = 2
    wait_seconds: float = 30.0
    deadline_seconds: float | None = None
    cpus: tuple[int, ...] | None = None
    """CPUs the host and its workers may run on (none: any); workers default to one each."""


# --------------------------------------------------------------------------- the host process


def _host_main(conn: Connection, scenario: Scenario, settings: HostSettings) -> None:
    """The host's loop: a thread per question; ``stop`` raises that question's flag."""
    os.nice(WORKER_NICENESS)
    if settings.cpus:  # before the pool: its workers and threads inherit the affinity
        os.sched_setaffinity(0, settings.cpus)
    pool = RolloutPool(
        scenario,
        workers=settings.workers or (len(settings.cpus) if settings.cpus else None),
        tickets=settings.tickets,
        wait_seconds=settings.wait_seconds,
        niceness=0,  # the workers inherit this process's lower priority
    )
    policies = PolicyCache(scenario)
    stops: dict[int, threading.Event] = {}
    send_lock, load_lock = threading.Lock(), threading.Lock()
    keep_out_of_gc()

    def reply(qid: int, ok: bool, value: Any) -> None:
        try:
            with send_lock:
                conn.send((qid, ok, value))
        except (OSError, ValueError):  # the server is gone: nobody to answer
            pass
        except Exception as err:  # an answer that does not pickle is a bug: say which
            with send_lock:
                conn.send((qid, False, RuntimeError(f"answer cannot be sent: {err!r}")))

    def answer(qid: int, question: Question[Any], ref: PolicyRef) -> None:
        stop = stops[qid]
        try:
            with load_lock:  # questions run on threads; a bundle loads once
                policy = policies.get(ref)
            with pool.ticket() as ticket:
                runner = pool.runner(
                    ticket,
                    policy=ref,
                    deadline_seconds=settings.deadline_seconds,
                    should_stop=stop.is_set,
                )
                value = question(runner, policy)
            reply(qid, True, value)
        except BaseException as err:  # every failure goes back to the waiting request
            if not isinstance(err, PoolBusy | RolloutsStopped | AdviceError):
                log.exception("rollout host: question %d failed", qid)  # a bug: keep its trace
            reply(qid, False, err)
        finally:
            stops.pop(qid, None)

    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # the server closed its end or died
            kind, qid = message[0], message[1]
            if kind == "quit":
                return
            if kind == "ask":
                stops[qid] = threading.Event()
                threading.Thread(target=answer, args=(qid, *message[2:]), daemon=True).start()
            elif kind == "stop":
                event = stops.get(qid)
                if event is not None:
                    event.set()
            elif kind == "warm":
                threading.Thread(
                    target=lambda q=qid: reply(q, True, (os.getpid(), pool.warm())), daemon=True
                ).start()
    finally:
        for event in list(stops.values()):
            event.set()
        pool.close()


# --------------------------------------------------------------------------- the server's side


class RolloutHost:
    """The server's handle on the host process: ask questions, wait, stop them.

    Args:
        scenario: the scenario every question is about.
        settings: the host's pool.
        poll_seconds: how often a waiting question asks ``should_stop``.
    """

    def __init__(
        self, scenario: Scenario, settings: HostSettings, *, poll_seconds: float = 0.05
    ) -> None:
        self.scenario, self.settings, self.poll_seconds = scenario, settings, poll_seconds
        self._ctx = multiprocessing.get_context("spawn")  # never fork a threaded server
        self._lock = threading.Lock()
        self._ids = itertools.count()
        # a question's future and the pipe of the host that answers it
        self._pending: dict[int, tuple[Future[Any], Connection]] = {}
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        # At exit, multiprocessing joins every child it started, and the host waits for
        # its pipe to close: a process that exits without close() would hang there.
        # Handlers run last-registered first, so this one runs before multiprocessing's.
        atexit.register(self.close, timeout=5.0)

    def _connection(self) -> Connection:
        """The pipe to a running host, started first if there is none (or it died)."""
        if self._conn is None:
            if self._proc is not None:
                self._proc.join(timeout=0)  # a host that died: reap it
            ours, theirs = self._ctx.Pipe()
            proc = self._ctx.Process(
                target=_host_main,
                args=(theirs, self.scenario, self.settings),
                name="synctwin-rollout-host",
            )
            proc.start()
            theirs.close()
            self._conn, self._proc = ours, proc
            threading.Thread(
                target=self._read, args=(ours,), name="synctwin-rollout-host", daemon=True
            ).start()
        return self._conn

    def _read(self, conn: Connection) -> None:
        """Hand every answer to its waiting question; fail them all if the host dies."""
        while True:
            try:
                qid, ok, value = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future, _ = self._pending.pop(qid, (None, None))
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        with self._lock:
            if self._conn is conn:
                self._conn = None
            lost = [qid for qid, (_, c) in self._pending.items() if c is conn]
            futures = [self._pending.pop(qid)[0] for qid in lost]
        for f in futures:
            f.set_exception(RolloutsStopped("worker_lost", "the rollout host died; retry"))

    def _send(self, kind: str, *payload: Any) -> tuple[int, Future[Any]]:
        qid = next(self._ids)
        future: Future[Any] = Future()
        with self._lock:
            conn = self._connection()
            self._pending[qid] = (future, conn)
            try:
                conn.send((kind, qid, *payload))
            except (OSError, ValueError):
                self._pending.pop(qid, None)
                raise RolloutsStopped("worker_lost", "the rollout host died; retry") from None
        return qid, future

    def ask(
        self,
        question: Question[T],
        policy: PolicyRef,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> T:
        """``question``'s answer from the host, waiting without holding the GIL.

        Raises:
            PoolBusy: no ticket freed within the settings' ``wait_seconds``.
            RolloutsStopped: stopped (deadline, client gone) or the host died.
            Exception: whatever the question raised (e.g. an ``AdviceError``).
        """
        qid, future = self._send("ask", question, policy)
        stopped = False
        while True:
            try:
                return future.result(timeout=self.poll_seconds)
            except FutureTimeout:
                if stopped or should_stop is None or not should_stop():
                    continue
                stopped = True  # the host answers with RolloutsStopped("disconnected")
                with self._lock, contextlib.suppress(OSError, ValueError):
                    if self._conn is not None:
                        self._conn.send(("stop", qid))

    def warm(self) -> list[int]:
        """Start the host and its workers now; the pids of the host and its workers."""
        host, workers = self._send("warm")[1].result(timeout=120)
        return [host, *workers]

    def close(self, timeout: float = 30.0) -> None:
        """Stop the host: it stops its questions, closes its pool and exits (killed after
        ``timeout`` seconds). Safe to call twice; it runs at exit too."""
        with self._lock:
            conn, proc, self._conn, self._proc = self._conn, self._proc, None, None
            if conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("quit", -1))
        if proc is not None:
            proc.join(timeout=timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if conn is not None:
            conn.close()


def answer_here(
    question: Question[T],
    policy: Controller,
    *,
    deadline_seconds: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> T:
    """``question`` answered in this process (a server without rollout workers)."""
    return question(
        in_process_runner(deadline_seconds=deadline_seconds, should_stop=should_stop), policy
    )
