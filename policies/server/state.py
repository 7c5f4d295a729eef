"""What the policy server serves and shares: the loaded policy, its holder, the app state.

:func:`load_served` loads and verifies a bundle; :class:`PolicyHolder` swaps the
current one atomically; :func:`reload_policy` is a reload; :class:`ReloadWatcher`
carries reloads between worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import anyio.from_thread
import numpy as np
from fastapi import HTTPException, Request

from policies.advice import AdviceOptions, action_labels
from policies.bundle import BundleError
from policies.decision_log import DecisionLog
from policies.explain import ReferenceDay, decide_and_explain, reference_day
from policies.rollout_host import HostSettings, Question, RolloutHost, answer_here
from policies.rollout_pool import PoolBusy, RolloutsStopped, bundle_ref
from policies.runtime import BundlePolicy
from policies.schemas import PolicyRef
from policies.server.config import Settings, advice_defaults
from policies.server.metrics import Metrics
from twin.scenario import Scenario

log = logging.getLogger("synctwin.server")

T = TypeVar("T")


class ScenarioConflict(ValueError):
    """A bundle for another scenario than the one being served."""


@dataclass(frozen=True)
class Served:
    """A loaded, verified bundle and what serving it needs."""

    policy: BundlePolicy
    reference: ReferenceDay
    labels: dict[str, tuple[tuple[str, ...], ...]]  # see action_labels
    loaded_at: str
    load_seconds: float

    @property
    def scenario(self) -> Scenario:
        return self.policy.scenario

    @property
    def version(self) -> str:
        """The manifest's version and the bundle's content digest: ``"1+3f2a9c0b1d4e"``."""
        return self.policy.version

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(name=self.policy.manifest.name, version=self.version)


def load_served(path: Path, expect: Scenario | None = None) -> Served:
    """Load ``path``, check it serves ``expect`` (if given), and try it on example states.

    Raises:
        BundleError: missing, corrupt or incompatible files, or a policy that fails on
            the example states.
        ScenarioConflict: the bundle is for another scenario than ``expect``.
    """
    t0 = time.perf_counter()
    try:
        policy = BundlePolicy(path)
    except (OSError, ValueError) as err:
        if isinstance(err, BundleError):
            raise
        # read_manifest lets the file system's own errors through (a name too long,
        # a NUL byte, no permission): they are still a bundle that cannot be used
        raise BundleError(f"policy bundle {str(path)[:200]}: cannot be read: {err}") from None
    sc = policy.scenario
    if expect is not None and (sc.name, sc.digest) != (expect.name, expect.digest):
        raise ScenarioConflict(
            f"policy bundle {path} is for scenario {sc.name!r} (digest {sc.digest}), but this "
            f"server serves {expect.name!r} (digest {expect.digest}); start another server for it"
        )
    reference = reference_day(sc)
    try:
        for snap in reference.examples.values():
            decisions = policy.decisions(snap)
            feats = np.stack([d.features for d in decisions.values()])
            explained = decide_and_explain(policy, feats, reference.features)
            if any((explained[k].vector != d.vector).any() for k, d in decisions.items()):
                raise BundleError("batched and single-state decisions differ")
    except Exception as err:  # onnxruntime raises its own types
        raise BundleError(f"policy bundle {path}: fails on an example state: {err}") from None
    return Served(
        policy=policy,
        reference=reference,
        labels=action_labels(policy),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_seconds=time.perf_counter() - t0,
    )


class PolicyHolder:
    """The current :class:`Served`: read without a lock, swapped under one."""

    def __init__(self, served: Served) -> None:
        self._current = served
        self._swap = threading.Lock()
        self.reloading = threading.Lock()  # one reload at a time

    @property
    def current(self) -> Served:
        return self._current

    def swap(self, served: Served) -> Served:
        with self._swap:
            old, self._current = self._current, served
        return old


@dataclass
class ServerState:
    """What the routes share: settings, the served policy, the log, the metrics."""

    settings: Settings
    holder: PolicyHolder
    decisions: DecisionLog
    metrics: Metrics
    rollouts: threading.BoundedSemaphore
    ready: bool = False
    watcher: ReloadWatcher | None = None
    _host: RolloutHost | None = None
    _host_lock: threading.Lock = field(default_factory=threading.Lock)

    def rollout_host(self) -> RolloutHost | None:
        """The rollout host process, started on first use (``None``: rollouts run here)."""
        if self.settings.rollout_workers == 0:
            return None
        with self._host_lock:
            if self._host is None:
                s = self.settings
                self._host = RolloutHost(
                    self.holder.current.scenario,
                    HostSettings(
                        workers=s.rollout_workers,
                        tickets=s.rollout_concurrency,
                        wait_seconds=s.rollout_wait_seconds,
                        deadline_seconds=s.rollout_deadline_seconds,
                        cpus=s.rollout_cpus,
                    ),
                )
            return self._host

    def close_host(self) -> None:
        with self._host_lock:
            host, self._host = self._host, None
        if host is not None:
            host.close()

    def ask(
        self,
        route: str,
        question: Question[T],
        served: Served,
        *,
        client_gone: Callable[[], bool] | None = None,
    ) -> T:
        """``question``'s answer, with one of the rollout slots, under ``served``'s policy.

        On the rollout host (:mod:`policies.rollout_host`), or in this process when
        there are no rollout workers.

        Args:
            route: the route, for the metrics.
            client_gone: asked while the rollouts run; true stops them.

        Raises:
            HTTPException: 503 when every slot stays busy, when the rollouts outlive
                ``rollout_deadline_seconds``, or when the client went away.
        """
        s = self.settings
        host = self.rollout_host()
        try:
            if host is None:
                with _Slot(self.rollouts, s.rollout_wait_seconds):
                    return answer_here(
                        question,
                        served.policy,
                        deadline_seconds=s.rollout_deadline_seconds,
                        should_stop=client_gone,
                    )
            ref = bundle_ref(served.policy.path, served.version)
            return host.ask(question, ref, should_stop=client_gone)
        except PoolBusy:
            raise _busy() from None
        except RolloutsStopped as err:
            self.metrics.rollouts_stopped.labels(route, err.reason).inc()
            limit = " (rollout_deadline_seconds)" if err.reason == "deadline" else ""
            raise HTTPException(503, f"{err}{limit}; retry", headers={"Retry-After": "1"}) from None

    @cached_property
    def advice_defaults(self) -> AdviceOptions:
        """What a recommendation request gets unless it asks otherwise."""
        return advice_defaults(self.settings)


def client_gone(request: Request) -> Callable[[], bool]:
    """Whether ``request``'s client has disconnected, asked from a worker thread."""

    def gone() -> bool:
        return bool(anyio.from_thread.run(request.is_disconnected))

    return gone


def _busy() -> HTTPException:
    return HTTPException(
        503, "the server is busy running rollouts; retry", headers={"Retry-After": "1"}
    )


class _Slot:
    def __init__(self, sem: threading.BoundedSemaphore, wait: float) -> None:
        self.sem, self.wait = sem, wait

    def __enter__(self) -> None:
        if not self.sem.acquire(timeout=self.wait):
            raise _busy()

    def __exit__(self, *exc: object) -> None:
        self.sem.release()


class ReloadWatcher(threading.Thread):
    """Worker processes share reloads through a small state file, polled every second.

    The worker that serves ``POST /v1/policy/reload`` writes ``{"path", "version"}``
    to ``reload_state_file`` (atomically); the others load that bundle in the
    background and swap it in the same way.
    """

    def __init__(self, state: ServerState, path: Path, every_seconds: float = 1.0) -> None:
        super().__init__(name="synctwin-reload-watcher", daemon=True)
        self.state, self.path, self.every = state, path, every_seconds
        self.stop_event = threading.Event()
        # not the file's current state: a worker that starts after a reload catches up
        self._seen: float | None = None

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def publish(self, served: Served) -> None:
        data = json.dumps({"path": str(served.policy.path), "version": served.version})
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".reload-")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, self.path)
        self._seen = self._mtime()

    def run(self) -> None:
        while True:
            self.check()
            if self.stop_event.wait(self.every):
                return

    def check(self) -> None:
        """Load the published bundle if the file changed and names another bundle."""
        mtime = self._mtime()
        if mtime is None or mtime == self._seen:
            return
        self._seen = mtime
        try:
            data = json.loads(self.path.read_text())
            holder = self.state.holder
            current = holder.current
            if data.get("version") == current.version and Path(data["path"]) == Path(
                current.policy.path
            ):
                return
            with holder.reloading:
                served = load_served(Path(data["path"]), expect=current.scenario)
                holder.swap(served)
            self.state.metrics.set_policy(served)
            self.state.metrics.reloads.labels("ok").inc()
            log.info("reloaded policy %s from %s (shared)", served.version, data["path"])
        except Exception as err:  # keep serving the old policy, whatever went wrong
            self.state.metrics.reloads.labels("refused").inc()
            log.error("shared reload refused: %s", err)


def reload_policy(state: ServerState, path: Path) -> tuple[Served, Served]:
    """Load ``path``, verify it fully, then swap it in atomically; one reload at a time.

    The old policy keeps answering until the swap; a refused bundle changes nothing.
    Other worker processes learn of the reload through ``state.watcher``.

    Returns:
        The previous and the new policy.

    Raises:
        BundleError: a missing, corrupt or incompatible bundle (counted as refused).
        ScenarioConflict: a bundle for another scenario (counted as refused).
    """
    holder = state.holder
    with holder.reloading:
        old = holder.current
        try:
            new = load_served(path, expect=old.scenario)
        except (BundleError, ScenarioConflict) as err:
            state.metrics.reloads.labels("refused").inc()
            log.warning("reload refused: %s", err)
            raise
        holder.swap(new)
        state.metrics.set_policy(new)
        state.metrics.reloads.labels("ok").inc()
        if state.watcher is not None:
            state.watcher.publish(new)
    return old, new
