"""Rollouts in worker processes: the same numbers as in process, and work that stops.

The pool (:mod:`policies.rollout_pool`) must give exactly the impact and forecast
that running the rollouts in the server's own process gives (common random
numbers included), and a request's rollouts must stop — not keep burning CPU —
when its deadline passes, when its client disconnects, and when the server itself
is killed. The last three run a real ``synctwin serve`` on 127.0.0.1 and read the
worker processes' CPU time from ``/proc``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import stop_server, wait_ready

from experiments.bench.procs import descendants
from policies.impact import estimate_impact, forecast
from policies.rollout_pool import (
    WORKER_NICENESS,
    RolloutPool,
    RolloutsStopped,
    bundle_ref,
    in_process_runner,
)
from policies.runtime import BundlePolicy
from twin.model import OperationModel
from twin.scenario import load_scenario
from twin.snapshot import OperationSnapshot

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def busy_state() -> OperationSnapshot:
    """``default`` at 10:00 (static plan, seed 1): queues, staff on shift, a real question."""
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(1))
    model.run_minutes(10 * 60)
    return model.snapshot()


@pytest.fixture(scope="module")
def pool() -> Iterator[RolloutPool]:
    p = RolloutPool(load_scenario("default"), workers=2)
    p.warm()
    yield p
    p.close()


def test_workers_run_below_the_server_s_priority(pool: RolloutPool) -> None:
    """Rollouts yield the cores to the server's cheap routes (``WORKER_NICENESS``)."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    pids = pool.pids()
    assert len(pids) == 2
    for pid in pids:
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(ours + WORKER_NICENESS, 19)


def test_the_pool_gives_the_numbers_of_the_process(
    pool: RolloutPool, busy_state: OperationSnapshot, policy_bundle: Path
) -> None:
    scenario = pool.scenario
    policy = BundlePolicy(policy_bundle)
    recommended = policy.decide(busy_state)
    in_force = {s.name: s.action for s in busy_state.sectors}
    assert recommended != {k: in_force[k] for k in recommended}, "the policy changes nothing here"
    here = estimate_impact(scenario, busy_state, recommended, horizon_minutes=60, samples=4)
    with pool.ticket() as ticket:
        there = estimate_impact(
            scenario,
            busy_state,
            recommended,
            horizon_minutes=60,
            samples=4,
            runner=pool.runner(ticket),
        )
    assert there == here
    ref = bundle_ref(policy.path, policy.version)
    here_fc = forecast(scenario, busy_state, policy, hours=[1, 2], samples=3, seed=7)
    with pool.ticket() as ticket:
        there_fc = forecast(
            scenario,
            busy_state,
            policy,
            hours=[1, 2],
            samples=3,
            seed=7,
            runner=pool.runner(ticket, policy=ref),
        )
    assert there_fc == here_fc


def test_a_deadline_stops_the_question_and_frees_its_ticket(
    pool: RolloutPool, busy_state: OperationSnapshot, policy_bundle: Path
) -> None:
    recommended = BundlePolicy(policy_bundle).decide(busy_state)
    t0 = time.monotonic()
    with pool.ticket() as ticket, pytest.raises(RolloutsStopped) as stopped:
        estimate_impact(
            pool.scenario,
            busy_state,
            recommended,
            horizon_minutes=480,
            samples=32,
            runner=pool.runner(ticket, deadline_seconds=0.3),
        )
    assert stopped.value.reason == "deadline"
    assert time.monotonic() - t0 < 5.0  # far less than the question's ~15 s of work
    # both tickets are free again, and a question asked now is answered in full
    with pool.ticket(), pool.ticket() as ticket:
        done = estimate_impact(
            pool.scenario,
            busy_state,
            recommended,
            horizon_minutes=30,
            samples=2,
            runner=pool.runner(ticket),
        )
    assert done.samples == 2


def test_in_process_runs_stop_at_their_deadline_too(
    busy_state: OperationSnapshot, policy_bundle: Path
) -> None:
    recommended = BundlePolicy(policy_bundle).decide(busy_state)
    with pytest.raises(RolloutsStopped) as stopped:
        estimate_impact(
            load_scenario("default"),
            busy_state,
            recommended,
            horizon_minutes=480,
            samples=32,
            runner=in_process_runner(deadline_seconds=0.2),
        )
    assert stopped.value.reason == "deadline"


# --------------------------------------------------------------------------- a real server


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


#: CPU seconds the workers need for ``_heavy`` at 10:00 (at least 9 s: the first half of
#: 256 samples, which the impact screen runs whatever it finds, x 2 arms x the 840 minutes
#: left of the day, about 35 ms each); a stopped question must cost well under that
HEAVY_CPU_SECONDS = 13.0
#: what the servers of the heavy questions allow (the defaults allow 32 x 480)
HEAVY_LIMITS = {"SYNCTWIN_MAX_SAMPLES": "256", "SYNCTWIN_MAX_HORIZON_MINUTES": "840"}


def _wait_idle(pids: list[int], timeout: float = 60.0) -> float:
    """Wait until the processes use < 0.05 s of CPU per 0.5 s; their CPU seconds by then.

    CPU time, not wall time, is what a stopped question must not keep spending; on a
    loaded machine the wall time to notice the stop varies, the CPU spent hardly.
    """
    t0 = time.monotonic()
    before = _cpu_seconds(pids)
    while time.monotonic() - t0 < timeout:
        time.sleep(0.5)
        now = _cpu_seconds(pids)
        if now - before < 0.05:
            return now
        before = now
    raise AssertionError(f"rollout workers still busy after {timeout:g} s")


def _metric(url: str, name: str, **labels: str) -> float:
    """The value of one labelled sample in ``/metrics`` (0 if there is none yet)."""
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and set(head[len(name) + 1 : -1].split(",")) == want:
            return float(value)
    return 0.0


class Served:
    def __init__(self, bundle: Path, tmp: Path, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "experiments.cli", "serve", "--policy", str(bundle),
            "--port", str(self.port), "--log", str(tmp / "decisions.jsonl"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_ready(self.proc, self.url)

    def workers(self, n: int = 3, timeout: float = 60.0) -> list[int]:
        """The rollout processes (the rollout host and its workers), once all ``n`` run."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            kids = [p for p in descendants(self.proc.pid) if _alive(p)]
            # spawned: the host and its workers (the resource trackers are children too)
            workers = [p for p in kids if "spawn_main" in _cmdline(p)]
            if len(workers) >= n:
                return workers
            time.sleep(0.2)
        raise AssertionError("the rollout workers did not start")

    def stop(self) -> None:
        stop_server(self.proc)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _heavy(snap: OperationSnapshot) -> dict:
    return {"snapshot": snap.model_dump(mode="json"), "samples": 256, "horizon_minutes": 840}


def test_a_served_request_past_its_deadline_gets_503_and_stops(
    policy_bundle: Path, busy_state: OperationSnapshot, tmp_path: Path
) -> None:
    srv = Served(policy_bundle, tmp_path, SYNCTWIN_ROLLOUT_DEADLINE_SECONDS="0.5", **HEAVY_LIMITS)
    try:
        workers = srv.workers()
        idle = _wait_idle(workers)  # started and imported
        r = httpx.post(f"{srv.url}/v1/recommend", json=_heavy(busy_state), timeout=60)
        assert r.status_code == 503, r.text
        assert "rollout_deadline_seconds" in r.json()["detail"]
        assert r.headers["retry-after"] == "1"
        assert _wait_idle(workers) - idle < HEAVY_CPU_SECONDS / 3
        assert (
            _metric(
                srv.url, "synctwin_rollouts_stopped_total", route="/v1/recommend", reason="deadline"
            )
            == 1.0
        )
        # the server still answers a question that fits the deadline, in full
        small = {**_heavy(busy_state), "samples": 2, "horizon_minutes": 15}
        ok = httpx.post(f"{srv.url}/v1/recommend", json=small, timeout=60)
        assert ok.status_code == 200 and ok.json()["total_impact"] is not None
    finally:
        srv.stop()


def test_rollouts_stop_when_the_client_goes_away(
    policy_bundle: Path, busy_state: OperationSnapshot, tmp_path: Path
) -> None:
    srv = Served(policy_bundle, tmp_path, **HEAVY_LIMITS)
    try:
        workers = srv.workers()
        idle = _wait_idle(workers)  # started and imported
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{srv.url}/v1/recommend", json=_heavy(busy_state), timeout=1.0)
        assert _cpu_seconds(workers) - idle > 0.3, "the rollouts never started"
        assert _wait_idle(workers) - idle < HEAVY_CPU_SECONDS / 2
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            stopped = _metric(
                srv.url,
                "synctwin_rollouts_stopped_total",
                route="/v1/recommend",
                reason="disconnected",
            )
            if stopped:
                break
            time.sleep(0.2)
        assert stopped == 1.0
    finally:
        srv.stop()


def test_killing_the_server_takes_its_rollout_workers_with_it(
    policy_bundle: Path, tmp_path: Path
) -> None:
    srv = Served(policy_bundle, tmp_path)
    workers = srv.workers()
    srv.proc.kill()
    srv.proc.wait()
    t0 = time.monotonic()
    while any(_alive(p) for p in workers) and time.monotonic() - t0 < 60:
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "rollout workers outlived their server"
