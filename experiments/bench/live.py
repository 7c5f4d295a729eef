"""``synctwin bench live``: how fast live sites take events and answer their state.

Goals (issue "The live twin", item 7): ingestion of at least 20,000 events/s on one
core, and ``GET /v1/sites/{site}/state`` p99 within 5 ms.

The events are a whole day of the bundle's scenario as the twin logs it (threshold
strategy, seed 0: the log ``synctwin simulate --log-events`` writes), so the mix of
kinds is a real floor's. Measured:

- **in process**: :meth:`LiveTwin.ingest` of the whole day (one call, then ``flush``),
  and in batches of 1,000; beside it the cost of the two steps every event takes
  before the state sees it, JSON decoding of its line and schema validation
  (:data:`~twin.floor_events.FLOOR_EVENT`), to say where the time goes;
- **through the server**: ``synctwin serve --site ...`` on 127.0.0.1 as a user starts
  it (SQLite store beside ``--log``), the day posted in batches of 1,000 and of 5,000
  to fresh sites, one keep-alive client, bodies encoded beforehand; events/s by the
  wall clock and per CPU second of the server (all its processes: on a machine shared
  with the client, that is what one core does); the same day sent again (all
  duplicates);
- **state latency**: ``GET .../state`` (the latest state) at several times of day,
  each after the day's events up to then were posted: p50/p99 over sequential requests.

Alerts: a server that raises risk alerts assesses each site on the decision grid while
it ingests (a background thread and the rollout workers). The numbers above are taken
with alerts off; the day is then posted once more to a server with alerts on, as it
runs by default: events/s while it ingests, how long until its assessments have caught
up with the day (the server and its rollout workers idle again), the CPU all of that
took, and the alerts raised.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from experiments.bench import machine
from experiments.bench.procs import descendants
from experiments.bench.serve import Server, _cpu_seconds, _rss_kb, _stats

GOALS = {"events_per_second": 20_000.0, "state_p99_ms": 5.0}
BATCHES = (1000, 5000)
STATE_TIMES = ("08:00", "12:00", "16:00", "20:00")


def day_log(scenario_name: str, seed: int = 0) -> list[dict[str, Any]]:
    """A day of ``scenario_name`` as the twin logs it (threshold strategy), as sent."""
    from agents import make_controller
    from twin.eventlog import EventLog, log_start
    from twin.floor_events import records
    from twin.model import OperationModel
    from twin.rollout import run_for
    from twin.scenario import load_scenario, scenario_from_dict

    sc = load_scenario(scenario_name)
    if sc.horizon_days > 1:
        sc = scenario_from_dict(sc.model_dump(mode="json") | {"horizon_days": 1}, sc.name)
    log = EventLog()
    model = OperationModel(sc, np.random.default_rng(seed), event_log=log)
    run_for(model, None, make_controller("threshold", sc, seed))
    return list(records(log.floor, sc, log_start(sc)))


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def in_process(scenario_name: str, events: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    """``LiveTwin.ingest`` of the day, whole and in batches of 1,000; decode and validate."""
    from twin.eventlog import log_start
    from twin.floor_events import FLOOR_EVENT
    from twin.live_twin import LiveTwin
    from twin.scenario import load_scenario

    sc = load_scenario(scenario_name)
    lines = [json.dumps(e, separators=(",", ":")) for e in events]
    n = len(events)

    def timed(work: Any) -> dict[str, float]:
        best_wall = best_cpu = float("inf")
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            work()
            best_wall = min(best_wall, time.perf_counter() - w)
            best_cpu = min(best_cpu, time.process_time() - c)
        return {
            "seconds": round(best_wall, 4),
            "events_per_second": _rate(n, best_wall),
            "events_per_cpu_second": _rate(n, best_cpu),
        }

    def whole() -> None:
        live = LiveTwin(sc, log_start(sc))
        live.ingest(events)
        live.flush()
        assert live.accepted == n and not live.rejections, "the day's log must replay cleanly"

    def batched() -> None:
        live = LiveTwin(sc, log_start(sc))
        for i in range(0, n, 1000):
            live.ingest(events[i : i + 1000])
        live.flush()

    return {
        "events": n,
        "ingest_whole_day": timed(whole),
        "ingest_batches_of_1000": timed(batched),
        "json_decode_only": timed(lambda: [json.loads(line) for line in lines]),
        "schema_validation_only": timed(lambda: [FLOOR_EVENT.validate_python(e) for e in events]),
    }


def _cpu_all(pid: int) -> float:
    """CPU seconds of the server process and its children (rollout workers)."""
    total = _cpu_seconds(pid)
    for child in descendants(pid):
        try:
            total += _cpu_seconds(child)
        except FileNotFoundError:
            pass  # exited meanwhile
    return total


def _post_all(
    client: httpx.Client, url: str, bodies: list[bytes], pid: int
) -> tuple[dict[str, int], float, float]:
    """Post the pre-encoded batches; summed counts, wall seconds, server CPU seconds."""
    totals = {"accepted": 0, "duplicate": 0, "rejected": 0}
    headers = {"content-type": "application/json"}
    cpu0, t0 = _cpu_all(pid), time.perf_counter()
    for body in bodies:
        r = client.post(url, content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
        answer = r.json()
        totals["accepted"] += answer["accepted"]
        totals["duplicate"] += answer["duplicate"]
        totals["rejected"] += len(answer["rejected"])
    return totals, time.perf_counter() - t0, _cpu_all(pid) - cpu0


def _encode(events: list[dict[str, Any]], size: int) -> list[bytes]:
    return [json.dumps(events[i : i + size]).encode() for i in range(0, len(events), size)]


def _server_ingest(
    client: httpx.Client, server: Server, site: str, events: list[dict[str, Any]], size: int
) -> dict[str, Any]:
    """The day posted to a fresh ``site`` in batches of ``size``: events/s, wall and CPU."""
    counts, wall, cpu = _post_all(
        client, f"{server.url}/v1/sites/{site}/events", _encode(events, size), server.proc.pid
    )
    if counts["accepted"] != len(events) or counts["rejected"]:
        raise RuntimeError(f"batches of {size}: {counts}")
    return {
        "batch": size,
        "events": len(events),
        "seconds": round(wall, 3),
        "events_per_second": _rate(len(events), wall),
        "server_cpu_seconds": round(cpu, 3),
        "events_per_server_cpu_second": _rate(len(events), cpu),
    }


def through_server(
    bundle: Path, scenario_name: str, events: list[dict[str, Any]], state_requests: int
) -> dict[str, Any]:
    """Ingestion per batch size, resending, and state latency through a real server.

    First with alerts off (``SYNCTWIN_ALERTS=false``): ingestion alone. Then as a
    server runs by default, raising alerts: its assessments run in a background thread
    and the rollout workers while events keep coming, so they are measured apart.
    """
    from twin.eventlog import log_start
    from twin.scenario import load_scenario
    from twin.wallclock import minute_of

    sc = load_scenario(scenario_name)
    zero = log_start(sc)
    minutes = [minute_of(e["timestamp"], zero) for e in events]
    sites = [f"b{size}" for size in BATCHES] + ["state"]
    args = [a for s in sites for a in ("--site", f"{s}={scenario_name}")]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="synctwin-bench-live-") as tmp:
        # ingestion alone, in the server process alone (no rollout workers to start)
        quiet = {"SYNCTWIN_ALERTS": "false", "SYNCTWIN_ROLLOUT_WORKERS": "0"}
        with Server(bundle, Path(tmp) / "decisions.jsonl", *args, env=quiet) as server:
            server.wait_ready()
            with httpx.Client(timeout=600) as client:
                out["ingest"] = [
                    _server_ingest(client, server, f"b{size}", events, size) for size in BATCHES
                ]
                size = BATCHES[-1]
                counts, wall, cpu = _post_all(
                    client,
                    f"{server.url}/v1/sites/b{size}/events",
                    _encode(events, size),
                    server.proc.pid,
                )
                out["resend"] = {
                    "batch": size,
                    "duplicate": counts["duplicate"],
                    "events_per_second": _rate(len(events), wall),
                    "events_per_server_cpu_second": _rate(len(events), cpu),
                }
                out["state"] = _state_latency(
                    client, server.url, server.proc.pid, events, minutes, state_requests
                )
            mem = _rss_kb(server.proc.pid)
            out["server_rss_mb"] = round(mem["VmRSS"] / 1024, 1)
            out["server_peak_rss_mb"] = round(mem["VmHWM"] / 1024, 1)
        site = ("--site", f"main={scenario_name}")
        with Server(bundle, Path(tmp) / "alerts.jsonl", *site) as server:
            server.wait_ready()
            with httpx.Client(timeout=600) as client:
                pid, cpu0, t0 = server.proc.pid, _cpu_all(server.proc.pid), time.perf_counter()
                live = _server_ingest(client, server, "main", events, BATCHES[-1])
                busy = _until_idle(pid) - t0  # the assessments catch up with the events
                cpu = _cpu_all(pid) - cpu0
                r = client.get(f"{server.url}/v1/sites/main/alerts", params={"format": "json"})
                live["alerts_raised"] = len(r.json()) if r.status_code == 200 else None
                live["seconds_until_assessed"] = round(busy, 3)
                live["cpu_seconds_with_assessments"] = round(cpu, 3)
                out["with_alerts"] = live
    return out


def _state_latency(
    client: httpx.Client, url: str, pid: int, events: list[dict], minutes: list[float], n: int
) -> list[dict[str, Any]]:
    """``GET .../state`` p50/p99 at each of :data:`STATE_TIMES`, the day posted up to it."""
    rows = []
    done = 0
    headers = {"content-type": "application/json"}
    for hhmm in STATE_TIMES:
        h, m = map(int, hhmm.split(":"))
        upto = next((i for i, t in enumerate(minutes) if t >= h * 60 + m), len(events))
        for body in _encode(events[done:upto], BATCHES[-1]):
            r = client.post(f"{url}/v1/sites/state/events", content=body, headers=headers)
            r.raise_for_status()
        done = upto
        latencies = []
        cpu0 = 0.0
        for i in range(n + 20):
            if i == 20:
                cpu0 = _cpu_all(pid)
            t = time.perf_counter()
            r = client.get(f"{url}/v1/sites/state/state")
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"state answered {r.status_code}: {r.text[:300]}")
            if i >= 20:
                latencies.append(dt)
        cpu_ms = (_cpu_all(pid) - cpu0) / n * 1e3
        snap = r.json()
        rows.append(
            {
                "time": hhmm,
                "events_before": upto,
                "items_waiting": sum(sum(map(sum, s["queue"].values())) for s in snap["sectors"]),
                "response_bytes": len(r.content),
                **_stats(latencies),
                "server_cpu_ms_per_request": round(cpu_ms, 3),
            }
        )
    return rows


def _until_idle(pid: int, idle_cpu: float = 0.05, step: float = 1.0, limit: float = 300.0) -> float:
    """Wait until the server and its workers use under ``idle_cpu`` CPU seconds in a
    ``step``; the :func:`time.perf_counter` at which they became idle."""
    deadline = time.monotonic() + limit
    last, at = _cpu_all(pid), time.perf_counter()
    while time.monotonic() < deadline:
        time.sleep(step)
        now = _cpu_all(pid)
        if now - last < idle_cpu:
            return at
        last, at = now, time.perf_counter()
    return at


def bench_live(
    bundle: Path, *, repeats: int = 3, state_requests: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Run the benchmark against ``bundle``'s scenario; returns the JSON-ready result."""
    from policies.bundle import read_manifest

    manifest = read_manifest(bundle)
    name = manifest.scenario.name
    events = day_log(name, seed)
    result: dict[str, Any] = {
        "machine": machine(),
        "policy": {"name": manifest.name, "version": manifest.version, "path": str(bundle)},
        "scenario": name,
        "log": {"strategy": "threshold", "seed": seed, "events": len(events)},
        "goals": GOALS,
        "in_process": in_process(name, events, repeats),
    }
    result["server"] = through_server(bundle, name, events, state_requests)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    server = result["server"]
    result["met"] = {
        "in_process_events_per_second": result["in_process"]["ingest_whole_day"][
            "events_per_second"
        ]
        >= GOALS["events_per_second"],
        **{
            f"server_events_per_server_cpu_second (batch {r['batch']})": r[
                "events_per_server_cpu_second"
            ]
            >= GOALS["events_per_second"]
            for r in server["ingest"]
        },
        "state_p99_ms": max(r["p99_ms"] for r in server["state"]) <= GOALS["state_p99_ms"],
    }
    return result
