"""Comparisons in batches, streamed to disk, on local processes and on a real Ray cluster.

The cluster tests start their own Ray head on 127.0.0.1 (a free port, a dedicated temp dir)
and stop exactly that cluster's processes afterwards (a plain ``ray stop`` would stop every
Ray process on the machine). The command runs as users run it: a subprocess in a temporary
working directory, with relative paths.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from experiments.comparison.compare import TIMING_COLUMNS, check_plan, run_plan
from experiments.comparison.runs import MIN_TASK_SECONDS, runs_per_task

BIN = Path(sys.executable).parent
CLI = [str(BIN / "synctwin")]
#: a cheap comparison: claims is one day, about 0.15 s a run
SMALL = ["compare", "-s", "claims", "--strategies", "static,threshold"]


def synctwin(
    cwd: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=(env or dict(os.environ)) | {"COLUMNS": "200"},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def kpis(results: pd.DataFrame) -> pd.DataFrame:
    """A results table without its timings (wall clock differs between any two runs)."""
    return results.drop(columns=list(TIMING_COLUMNS))


def part_runs(directory: Path) -> dict[str, list[int]]:
    """Each part file of a run store and the plan indices of the runs it holds."""
    return {
        p.name: pq.read_table(p, columns=["run"])["run"].to_pylist()
        for p in sorted((directory / "runs").glob("part-*.parquet"))
    }


# --------------------------------------------------------------------------- batching


def test_batches_are_sized_from_the_run_time() -> None:
    # cheap runs: enough per task to reach the minimum task time
    assert runs_per_task(0.01, runs=10_000, cpus=2) * 0.01 >= MIN_TASK_SECONDS
    # many cheap runs, few CPUs: big tasks, but at most ~5 s of work each
    assert runs_per_task(0.15, runs=2000, cpus=2) == 33
    # slow runs go one per task
    assert runs_per_task(30.0, runs=100, cpus=8) == 1
    # few runs, many CPUs: still at least the minimum task time
    assert runs_per_task(0.05, runs=10, cpus=64) == 5


def test_results_do_not_depend_on_batching(tmp_path: Path) -> None:
    plan = check_plan(["claims"], ["static", "threshold"], 3)
    one = run_plan(plan, workers=1, out=tmp_path / "one", runs_per_task=1)
    three = run_plan(plan, workers=2, out=tmp_path / "three", runs_per_task=3)
    auto = run_plan(plan, workers=1)  # no --out: streamed to a temporary directory
    assert len(part_runs(tmp_path / "one")) == 6
    assert list(part_runs(tmp_path / "three").values()) == [[0, 1, 2], [3, 4, 5]]
    pd.testing.assert_frame_equal(kpis(one.results), kpis(three.results))
    pd.testing.assert_frame_equal(kpis(one.results), kpis(auto.results))
    pd.testing.assert_frame_equal(one.summary, three.summary)
    pd.testing.assert_frame_equal(one.timeseries, three.timeseries)
    assert one.results["seed"].tolist() == [0, 1, 2, 0, 1, 2]
    assert auto.recorded_in is None


def test_a_bad_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = synctwin(tmp_path, *SMALL, "--seeds", "2", "--address", f"127.0.0.1:{port}", ok=False)
    assert proc.returncode == 2, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "ray start --head" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "compare" / "runs").exists(), "no run before the check"
    bad = synctwin(tmp_path, *SMALL, "--seeds", "2", "--address", "nowhere", ok=False)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr and "Traceback" not in bad.stderr


# --------------------------------------------------------------------------- a real cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_pids(temp_dir: str) -> list[int]:
    """Processes of the cluster started with ``--temp-dir temp_dir`` and their children."""
    import psutil

    found: set[int] = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(temp_dir in part for part in p.info["cmdline"] or []):
                found.add(p.pid)
                found.update(c.pid for c in p.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(found)


def _stop_cluster(temp_dir: str) -> None:
    """Stop only this cluster's processes (by pid): SIGTERM, then SIGKILL after 15 s."""
    import psutil

    procs = []
    for pid in _cluster_pids(temp_dir):
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            procs.append(proc)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head on 127.0.0.1 with two CPUs: its address and the environment to join it."""
    port = _free_port()
    # a short temp dir: Ray's unix socket paths must stay under ~107 characters
    temp_dir = tempfile.mkdtemp(prefix="st-ray-")
    head = [
        str(BIN / "ray"), "start", "--head",
        "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--disable-usage-stats", "--include-dashboard", "false",
        "--temp-dir", temp_dir,
    ]  # fmt: skip
    # token auth on, with a token of this cluster's own (Ray's format: 32 random bytes, hex)
    env = dict(os.environ) | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    try:
        started = subprocess.run(head, capture_output=True, text=True, timeout=180, env=env)
        assert started.returncode == 0, started.stderr[-3000:]
        yield f"127.0.0.1:{port}", env
        assert _cluster_pids(temp_dir), "the cluster is still up: compare only disconnected"
    finally:
        _stop_cluster(temp_dir)
        deadline = time.monotonic() + 20
        while _cluster_pids(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _cluster_pids(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_cluster_results_equal_local_ones(tmp_path: Path, cluster) -> None:
    address, env = cluster
    synctwin(tmp_path, *SMALL, "--seeds", "4", "--workers", "1", "--out", "local")
    proc = synctwin(
        tmp_path, *SMALL, "--seeds", "4", "--address", address, "--out", "on cluster", env=env
    )
    assert "wrote on cluster/results.parquet" in proc.stdout
    local = pd.read_parquet(tmp_path / "local" / "results.parquet")
    remote = pd.read_parquet(tmp_path / "on cluster" / "results.parquet")
    assert len(remote) == 8
    pd.testing.assert_frame_equal(kpis(local), kpis(remote))
    for name in ("summary.csv", "timeseries.parquet"):
        assert (tmp_path / "local" / name).read_bytes() == (
            tmp_path / "on cluster" / name
        ).read_bytes(), name
    assert (tmp_path / "on cluster" / "report.html").is_file()


@pytest.mark.slow
def test_a_killed_cluster_comparison_resumes_with_the_missing_runs(tmp_path: Path, cluster) -> None:
    address, env = cluster
    args = [*SMALL, "--seeds", "12", "--runs-per-task", "2", "--out", "cut short"]
    proc = subprocess.Popen(
        [*CLI, *args, "--address", address],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = tmp_path / "cut short"
    deadline = time.monotonic() + 300
    while len(part_runs(out) if (out / "runs").is_dir() else {}) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "no batch finished"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: a lost driver
    proc.wait(timeout=60)
    before = part_runs(out)
    kept = {name: (out / "runs" / name).read_bytes() for name in before}
    assert 2 <= sum(map(len, before.values())) < 24
    assert not (out / "results.parquet").exists()

    synctwin(tmp_path, *args, "--address", address, "--resume", env=env)
    after = part_runs(out)
    for name, data in kept.items():  # the finished batches were neither redone nor touched
        assert (out / "runs" / name).read_bytes() == data
    done = [i for runs in after.values() for i in runs]
    assert sorted(done) == list(range(24)), "every run exactly once"

    synctwin(tmp_path, *args[:-2], "--workers", "2", "--out", "whole")
    pd.testing.assert_frame_equal(
        kpis(pd.read_parquet(out / "results.parquet")),
        kpis(pd.read_parquet(tmp_path / "whole" / "results.parquet")),
    )
    assert (out / "summary.csv").read_bytes() == (tmp_path / "whole" / "summary.csv").read_bytes()


def test_bench_compare_writes_json(tmp_path: Path) -> None:
    proc = synctwin(tmp_path, "bench", "compare", "--runs", "6", "--workers", "2",
                    "--runs-per-task", "2", "--out", "bench/compare.json")  # fmt: skip
    result = json.loads((tmp_path / "bench" / "compare.json").read_text())
    assert result["runs"] == 6 and result["part_files"] == 3
    assert result["mode"] == "local processes" and result["workers"] == 2
    assert result["runs_per_second"] > 0 and result["peak_rss_mb_driver"] > 50
    assert result["peak_rss_mb_largest_local_worker"] > 50
    assert "runs/s" in proc.stdout and "wrote bench/compare.json" in proc.stdout
