"""The rollout host answers a question as the server's own process does, and survives a crash.

The host (:mod:`policies.rollout_host`) takes whole questions out of the server's
process. Its answer must be the in-process answer (same rollouts, same seeds, same
words), its failures must come back as the exceptions the server maps to HTTP codes,
and a host that died must be replaced on the next question.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from policies.advice import AdviceOptions
from policies.questions import ForecastQuestion, RecommendQuestion
from policies.rollout_host import HostSettings, RolloutHost, answer_here
from policies.rollout_pool import WORKER_NICENESS, RolloutsStopped, bundle_ref
from policies.runtime import BundlePolicy
from twin.model import OperationModel
from twin.scenario import load_scenario
from twin.snapshot import OperationSnapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def state() -> OperationSnapshot:
    """``default`` at 10:00 (static plan, seed 2)."""
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(2))
    model.run_minutes(10 * 60)
    return model.snapshot()


@pytest.fixture(scope="module")
def host() -> Iterator[RolloutHost]:
    h = RolloutHost(load_scenario("default"), HostSettings(workers=2, deadline_seconds=60))
    h.warm()
    yield h
    h.close()


def _question(policy: BundlePolicy, snap: OperationSnapshot) -> RecommendQuestion:
    from policies.schemas import PolicyRef

    ref = PolicyRef(name=policy.manifest.name, version=policy.version)
    return RecommendQuestion(snap.model_dump_json(), AdviceOptions(samples=4), ref)


def _without_id(body_json: str) -> dict:
    body = json.loads(body_json)
    body.pop("recommendation_id")
    return body


def test_the_host_answers_as_the_server_s_process_does(
    host: RolloutHost, state: OperationSnapshot, policy_bundle: Path
) -> None:
    policy = BundlePolicy(policy_bundle)
    ref = bundle_ref(policy_bundle, policy.version)
    question = _question(policy, state)
    here = answer_here(question, policy)
    there = host.ask(question, ref)
    assert here.estimated_impact and there.estimated_impact
    assert _without_id(there.body_json) == _without_id(here.body_json)
    assert (there.status, there.sector_kinds, there.declined) == (
        here.status,
        here.sector_kinds,
        here.declined,
    )
    fq = ForecastQuestion(state.model_dump_json(), (1.0, 2.0), 4, 7)
    assert host.ask(fq, ref) == answer_here(fq, policy)


def test_the_host_and_its_workers_run_below_the_server_s_priority(host: RolloutHost) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    pids = host.warm()
    assert len(pids) == 3  # the host and its two workers
    for pid in pids:
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(ours + WORKER_NICENESS, 19)


def test_a_host_given_cpus_runs_there_with_one_worker_per_cpu(
    state: OperationSnapshot, policy_bundle: Path
) -> None:
    """``rollout_cpus`` (``HostSettings.cpus``): the host and its workers are confined."""
    ours = os.sched_getaffinity(0)
    cpu = max(ours)
    h = RolloutHost(load_scenario("default"), HostSettings(cpus=(cpu,)))
    try:
        pids = h.warm()
        assert len(pids) == 2  # the host and one worker: one per CPU given
        for pid in pids:
            assert os.sched_getaffinity(pid) == {cpu}
        assert os.sched_getaffinity(0) == ours  # the server's own process is not confined
        policy = BundlePolicy(policy_bundle)
        question = _question(policy, state)
        there = h.ask(question, bundle_ref(policy_bundle, policy.version))
        assert _without_id(there.body_json) == _without_id(answer_here(question, policy).body_json)
    finally:
        h.close()


def test_a_stopped_question_comes_back_as_disconnected(
    host: RolloutHost, state: OperationSnapshot, policy_bundle: Path
) -> None:
    policy = BundlePolicy(policy_bundle)
    heavy = RecommendQuestion(
        state.model_dump_json(),
        AdviceOptions(samples=64, horizon_minutes=600, max_samples=64, max_horizon_minutes=600),
        _question(policy, state).policy,
    )
    t0 = time.monotonic()
    with pytest.raises(RolloutsStopped) as err:
        host.ask(
            heavy,
            bundle_ref(policy_bundle, policy.version),
            should_stop=lambda: time.monotonic() - t0 > 0.3,
        )
    assert err.value.reason == "disconnected"
    assert time.monotonic() - t0 < 10  # not the whole question (minutes of rollouts)


def test_a_killed_host_is_replaced_on_the_next_question(
    state: OperationSnapshot, policy_bundle: Path
) -> None:
    h = RolloutHost(load_scenario("default"), HostSettings(workers=1))
    try:
        policy = BundlePolicy(policy_bundle)
        ref = bundle_ref(policy_bundle, policy.version)
        question = _question(policy, state)
        first = h.ask(question, ref)
        old = h.warm()
        os.kill(old[0], signal.SIGKILL)
        answers, lost = [], 0
        for _ in range(3):  # the first may reach the dead host before its pipe reads EOF
            try:
                answers.append(h.ask(question, ref))
                break
            except RolloutsStopped as stopped:
                assert stopped.reason == "worker_lost"
                lost += 1
        assert lost <= 1 and answers
        assert _without_id(answers[0].body_json) == _without_id(first.body_json)
        new = h.warm()
        assert new[0] != old[0]
        deadline = time.monotonic() + 30
        while _alive(old[1]) and time.monotonic() < deadline:  # its worker follows it
            time.sleep(0.2)
        assert not _alive(old[1])
    finally:
        h.close()


def test_a_process_that_never_closes_its_host_still_exits() -> None:
    """At exit multiprocessing joins its children, and a host waits for its pipe to
    close: without the host's own exit handler the process would hang there."""
    code = (
        "from policies.rollout_host import HostSettings, RolloutHost\n"
        "from twin.scenario import load_scenario\n"
        "if __name__ == '__main__':\n"
        "    h = RolloutHost(load_scenario('default'), HostSettings(workers=1))\n"
        "    print(*h.warm())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2  # the host and its worker
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
