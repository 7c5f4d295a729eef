"""``synctwin bench serve``: latency, throughput, memory and cold start of the policy server.

Starts ``synctwin serve`` in a subprocess on 127.0.0.1 (a free port), as a user
would, and measures from the client side over loopback:

- cold start: from spawning the process to the first ``200`` from ``/readyz``
  (interpreter start, imports, bundle verification, the reference day);
- ``/v1/recommend`` without impact: sequential latency (p50/p99, one keep-alive
  client) and throughput with concurrent clients (processes, one connection each);
- ``/v1/recommend`` with impact, at the server's defaults and with a cheaper
  request (fewer samples, shorter horizon): sequential latency, and throughput with
  two clients;
- ``/v1/policy`` (a cheap route) alone, and again while two clients keep impact
  requests running: rollouts run in worker processes, so the cheap route should stay
  within twice its idle p99;
- at the defaults, the rollouts each request ran and the arms the screen of
  :func:`policies.impact.estimate_impact` stopped early (read from the answers,
  :mod:`experiments.bench.serve_rollouts`);
- server memory: resident set size (``VmRSS``) after the runs and its peak (``VmHWM``),
  and the rollout worker processes' own;
- throughput without impact once more with ``--workers 2`` (both cores serve);
- the trade-off of keeping rollouts off a core (``SYNCTWIN_ROLLOUT_CPUS``): impact at
  the defaults and ``/v1/policy`` during an impact burst, with the rollout host and
  its one worker on the last CPU only.

Requests cycle through real snapshots of the bundle's scenario (static plan,
seed 1, every 30 minutes from 06:00 to 21:30), so no two consecutive requests are
alike. The client runs on the same machine and competes with the server for the
CPU: the numbers are a floor for what the server does on its own.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from experiments.bench.procs import descendants, rollout_processes

GOALS = {
    "no_impact_p99_ms": 3.0,
    "no_impact_requests_per_second": 1000.0,
    "impact_p99_ms": 100.0,
    "rss_mb": 300.0,
    "cold_start_seconds": 3.0,
    "policy_p99_during_impact_vs_idle": 2.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshots(bundle: Path, every_minutes: int = 30) -> list[dict[str, Any]]:
    """Real snapshots of the bundle's scenario from 06:00 to 21:30 (static plan, seed 1)."""
    from policies.bundle import read_manifest
    from twin.model import OperationModel
    from twin.scenario import load_scenario

    scenario = load_scenario(read_manifest(bundle).scenario.name)
    model = OperationModel(scenario, rng=np.random.default_rng(1), record_every_minutes=None)
    out = []
    stop = min(scenario.horizon_minutes, 22 * 60)
    model.run_minutes(6 * 60)
    while model.minute < stop - 1e-9:
        out.append(model.snapshot().model_dump(mode="json"))
        model.run_minutes(every_minutes)
    return out


def _rss_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (seconds)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stats(latencies: list[float], elapsed: float | None = None) -> dict[str, float]:
    ms = np.asarray(latencies) * 1e3
    out = {
        "requests": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }
    if elapsed is not None:
        out["requests_per_second"] = round(ms.size / elapsed, 1)
    return out


class Server:
    """``synctwin serve`` in a subprocess; the context exits by terminating it."""

    def __init__(
        self, bundle: Path, log: Path, *extra_args: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "experiments.cli", "serve", "--policy", str(bundle),
            "--port", str(self.port), "--log", str(log), *extra_args,
        ]  # fmt: skip
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **env} if env else None,
        )

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawn to the first 200 from /readyz."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"server exited with {self.proc.returncode}: {err}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return time.perf_counter() - self.t0
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
        raise TimeoutError(f"server not ready after {timeout} s")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sequential(
    url: str,
    bodies: list[bytes],
    n: int,
    warmup: int = 20,
    pid: int | None = None,
    workers: Sequence[int] = (),
) -> dict[str, float]:
    """``n`` requests one after another on one keep-alive connection.

    With the server's ``pid``, also the server's CPU time per request
    (``server_cpu_ms_per_request``): unlike latency, it hardly depends on what else
    the machine is running, so it says what one core can serve. With its rollout
    ``workers``, their CPU time per request too (``rollout_cpu_ms_per_request``).
    """
    headers = {"content-type": "application/json"}
    cpu0 = 0.0
    wcpu0 = 0.0
    latencies = []
    with httpx.Client(timeout=30.0) as client:
        for i in range(warmup + n):
            body = bodies[i % len(bodies)]
            t = time.perf_counter()
            r = client.post(f"{url}/v1/recommend", content=body, headers=headers)
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"/v1/recommend answered {r.status_code}: {r.text[:300]}")
            if i == warmup - 1 and pid is not None:
                cpu0 = _cpu_seconds(pid)
                wcpu0 = sum(map(_cpu_seconds, workers))
            if i >= warmup:
                latencies.append(dt)
    out = _stats(latencies)
    if pid is not None and warmup > 0:
        out["server_cpu_ms_per_request"] = round((_cpu_seconds(pid) - cpu0) / n * 1e3, 3)
        if workers:
            wcpu = sum(map(_cpu_seconds, workers)) - wcpu0
            out["rollout_cpu_ms_per_request"] = round(wcpu / n * 1e3, 3)
    return out


def policy_latency(url: str, n: int) -> dict[str, float]:
    """``n`` sequential ``GET /v1/policy`` on one keep-alive connection (a cheap route)."""
    latencies = []
    with httpx.Client(timeout=30.0) as client:
        for i in range(n + 20):
            t = time.perf_counter()
            r = client.get(f"{url}/v1/policy")
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"/v1/policy answered {r.status_code}: {r.text[:300]}")
            if i >= 20:
                latencies.append(dt)
    return _stats(latencies)


def policy_during_impact(
    url: str, impact_bodies: list[bytes], n: int, clients: int = 2
) -> dict[str, Any]:
    """``/v1/policy`` latency idle, then while ``clients`` processes post impact requests."""
    idle = policy_latency(url, n)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    stop = ctx.Event()  # set once the cheap requests are measured
    procs = [
        ctx.Process(
            target=_burst_client, args=(url, impact_bodies, k, clients, start_at, stop, queue)
        )
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    while time.time() < start_at + 0.5:  # both impact clients under way
        time.sleep(0.01)
    busy = policy_latency(url, n)
    stop.set()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    impact = [x for lat, _ in results for x in lat]
    errors = [e for _, errs in results for e in errs]
    return {
        "idle": idle,
        "during_impact": busy,
        "impact_clients": clients,
        "impact_requests_during": len(impact),
        "impact_errors_during": len(errors),
        "p99_ratio": round(busy["p99_ms"] / idle["p99_ms"], 2),
    }


def _burst_client(url, bodies, k, clients, start_at, stop, out) -> None:  # type: ignore[no-untyped-def]
    headers = {"content-type": "application/json"}
    latencies, errors = [], []
    with httpx.Client(timeout=60.0) as client:
        while time.time() < start_at:
            time.sleep(0.0005)
        i = k
        while not stop.is_set():
            t = time.perf_counter()
            r = client.post(f"{url}/v1/recommend", content=bodies[i % len(bodies)], headers=headers)
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:200]}")
            i += clients
    out.put((latencies, errors))


def _client(
    url: str, bodies: list[bytes], k: int, clients: int, start_at: float, stop_at: float, out
) -> None:
    headers = {"content-type": "application/json"}
    latencies, errors = [], []
    with httpx.Client(timeout=30.0) as client:
        client.get(f"{url}/healthz")
        while time.time() < start_at:
            time.sleep(0.0005)
        i = k
        while time.time() < stop_at:
            t = time.perf_counter()
            r = client.post(f"{url}/v1/recommend", content=bodies[i % len(bodies)], headers=headers)
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:200]}")
            i += clients
    out.put((latencies, errors))


def concurrent(url: str, bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` client processes, one connection each, posting for ``seconds``.

    Processes rather than threads: a Python client's own CPU time (GIL-bound) would
    otherwise cap the rate before the server does.
    """
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5 + 0.05 * clients
    stop_at = start_at + seconds
    procs = [
        ctx.Process(target=_client, args=(url, bodies, k, clients, start_at, stop_at, queue))
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    errors = [e for _, errs in results for e in errs]
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    out = _stats([x for lat, _ in results for x in lat], seconds)
    out["clients"] = clients
    return out


#: The impact requests measured: (key, label, options).
IMPACT_MODES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("impact_default", "per sector, server defaults (8 samples, 90 min)", {}),
    (
        "impact_fast",
        "per sector, 4 samples, 60 min",
        {"samples": 4, "horizon_minutes": 60},
    ),
    (
        "impact_total_fast",
        "all changes together only, 4 samples, 60 min",
        {"samples": 4, "horizon_minutes": 60, "impact_scope": "total"},
    ),
    (
        "impact_total_default",
        "all changes together only, 8 samples, 90 min",
        {"impact_scope": "total"},
    ),
)


def bench_serve(
    bundle: Path,
    *,
    requests: int = 2000,
    impact_requests: int = 30,
    clients: int = 4,
    seconds: float = 5.0,
) -> dict[str, Any]:
    """Run the benchmark against ``bundle``; returns the JSON-ready result."""
    from experiments.bench.serve_rollouts import screen_counts
    from policies.advice import AdviceOptions
    from policies.bundle import read_manifest

    manifest = read_manifest(bundle)
    shots = snapshots(bundle)

    def bodies(options: dict[str, Any]) -> list[bytes]:
        return [json.dumps({"snapshot": s, **options}).encode() for s in shots]

    no_impact = bodies({"impact": False})
    impact_defaults = bodies({"impact": True})
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "policy": {"name": manifest.name, "version": manifest.version, "path": str(bundle)},
        "snapshots": len(shots),
        "goals": GOALS,
    }
    with tempfile.TemporaryDirectory(prefix="synctwin-bench-") as tmp:
        with Server(bundle, Path(tmp) / "decisions.jsonl") as server:
            result["cold_start_seconds"] = round(server.wait_ready(), 3)
            url = server.url
            workers = _warm_workers(server.proc.pid)
            result["no_impact"] = {
                "sequential": sequential(url, no_impact, requests, pid=server.proc.pid),
                "concurrent": concurrent(url, no_impact, clients, seconds),
            }
            for key, label, options in IMPACT_MODES:
                requests_ = bodies({"impact": True, **options})
                result[key] = {
                    "label": label,
                    "options": options,
                    "sequential": sequential(
                        url,
                        requests_,
                        impact_requests,
                        warmup=2,
                        pid=server.proc.pid,
                        workers=workers,
                    ),
                    "concurrent": concurrent(url, requests_, 2, seconds),
                }
            with httpx.Client(timeout=60) as client:
                changed = []
                for body in bodies({"impact": False}):
                    rec = client.post(
                        f"{url}/v1/recommend",
                        content=body,
                        headers={"content-type": "application/json"},
                    ).json()
                    changed.append(sum(1 for s in rec["sectors"] if s["kinds"] != ["no_change"]))
            # rollouts per request = samples x arms; arms = 1 + changed (+1 if >= 2 changed),
            # fewer where the screen stopped an arm that could not save min_saving
            result["changed_sectors_per_request"] = round(float(np.mean(changed)), 2)
            result["impact_default"]["rollouts"] = screen_counts(
                url, impact_defaults, AdviceOptions().samples
            )
            result["policy_during_impact"] = policy_during_impact(
                url, impact_defaults, n=max(200, requests)
            )
            mem = _rss_kb(server.proc.pid)
            result["rss_mb"] = round(mem["VmRSS"] / 1024, 1)
            result["peak_rss_mb"] = round(mem["VmHWM"] / 1024, 1)
            hmem, wmem = _rss_kb(workers[0]), [_rss_kb(p) for p in workers[1:]]
            result["rollout_host"] = {
                "rss_mb": round(hmem["VmRSS"] / 1024, 1),
                "peak_rss_mb": round(hmem["VmHWM"] / 1024, 1),
            }
            result["rollout_workers"] = {
                "processes": len(wmem),
                "rss_mb_each": [round(m["VmRSS"] / 1024, 1) for m in wmem],
                "peak_rss_mb_each": [round(m["VmHWM"] / 1024, 1) for m in wmem],
            }
        with Server(bundle, Path(tmp) / "decisions-2.jsonl", "--workers", "2") as server:
            server.wait_ready()
            time.sleep(1.0)  # both workers up (readyz answers as soon as one is)
            children = descendants(server.proc.pid)
            result["no_impact_two_workers"] = {
                "concurrent": concurrent(server.url, no_impact, clients, seconds),
                "rss_mb_all_processes": round(
                    sum(_rss_kb(p)["VmRSS"] for p in [server.proc.pid, *children]) / 1024, 1
                ),
            }
        spare = rollout_cpu()
        if spare is not None:
            env = {"SYNCTWIN_ROLLOUT_CPUS": str(spare)}
            with Server(bundle, Path(tmp) / "decisions-3.jsonl", env=env) as server:
                server.wait_ready()
                _warm_workers(server.proc.pid)
                result["rollouts_on_one_cpu"] = {
                    "cpu": spare,
                    "impact_default": sequential(
                        server.url, impact_defaults, impact_requests, warmup=2
                    ),
                    "policy_during_impact": policy_during_impact(
                        server.url, impact_defaults, n=max(200, requests)
                    ),
                }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    ni = result["no_impact"]
    result["met"] = {
        "no_impact_p99_ms": ni["sequential"]["p99_ms"] <= GOALS["no_impact_p99_ms"],
        "no_impact_requests_per_second": ni["concurrent"]["requests_per_second"]
        >= GOALS["no_impact_requests_per_second"],
        "no_impact_requests_per_second (2 workers)": result["no_impact_two_workers"]["concurrent"][
            "requests_per_second"
        ]
        >= GOALS["no_impact_requests_per_second"],
        **{
            f"impact_p99_ms ({key})": result[key]["sequential"]["p99_ms"] <= GOALS["impact_p99_ms"]
            for key, _, _ in IMPACT_MODES
        },
        "rss_mb": result["peak_rss_mb"] <= GOALS["rss_mb"],
        "cold_start_seconds": result["cold_start_seconds"] <= GOALS["cold_start_seconds"],
        "policy_p99_during_impact_vs_idle": result["policy_during_impact"]["p99_ratio"]
        <= GOALS["policy_p99_during_impact_vs_idle"],
    }
    return result


def rollout_cpu() -> int | None:
    """The CPU a server's rollouts get to themselves in the trade-off run (the last one),
    or ``None`` where there is no CPU to spare or no CPU affinity."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) >= 2 else None


def _warm_workers(pid: int, timeout: float = 60.0) -> list[int]:
    """The server's rollout processes (host first), once they have started and imported."""
    deadline = time.monotonic() + timeout
    procs: list[int] = []
    while time.monotonic() < deadline:
        hosts, workers = rollout_processes(pid)
        procs = hosts + workers
        if hosts and workers:
            before = sum(map(_cpu_seconds, procs))
            time.sleep(0.5)
            if sum(map(_cpu_seconds, procs)) - before < 0.02 and rollout_processes(pid) == (
                hosts,
                workers,
            ):
                return procs
        else:
            time.sleep(0.1)
    return procs
