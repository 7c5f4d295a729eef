"""Live sites over HTTP: events in, the twin's own state out, durable across a kill.

The known answer is the twin itself (as in ``test_live_twin``): a run of ``default``
logs its floor events and, at every decision, the snapshot it reports. Posted to a
real ``synctwin serve --site ...`` (a subprocess started from a temporary directory
with relative paths) in batches, those events must give, through ``GET
/v1/sites/{site}/state?at=...``, exactly that snapshot (``==`` on the parsed
``OperationSnapshot``). Then the stream rules at the border: resends are
duplicates, bad input is a 4xx or a per-event rejection with its reason, never a
5xx; recommendations and forecasts on a site equal those of ``/v1/recommend`` and
``/v1/forecast`` on its state; the store survives a SIGKILL mid-stream, and two
workers agree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import CLI, SHIPPED_BUNDLE, stop_server, wait_ready
from conftest import run as run_cli
from test_live_twin import recorded
from test_server import free_port

from policies.server.config import SiteSpec
from policies.server.sites import Site
from policies.store import open_store
from twin.eventlog import log_start
from twin.floor_events import FLOOR_EVENTS_FILE, read_jsonl
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot
from twin.wallclock import format_timestamp, minute_of

BATCH = 2000
CALIBRATED = "extends: default\nname: default-site-a\n"  # a site's own copy of default


@dataclass
class Server:
    url: str
    proc: subprocess.Popen

    def post(self, path: str, **kw: object) -> httpx.Response:
        # a new connection per request, so with several workers each answers some
        return httpx.post(f"{self.url}{path}", timeout=120, **kw)  # type: ignore[arg-type]

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=120, **kw)  # type: ignore[arg-type]


def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """``synctwin serve`` of ``./bundle`` in ``cwd``, its store beside ``decisions.jsonl``
    (rollouts in the server process: the tests share a small machine)."""
    port = free_port()
    cmd = [CLI, "serve", "--policy", "bundle", "--port", str(port), "--log", "decisions.jsonl"]
    proc = subprocess.Popen(
        [*cmd, *args],
        cwd=cwd,
        env={**os.environ, "HOME": str(cwd), "SYNCTWIN_ROLLOUT_WORKERS": "0", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, interval=0.05)
    return Server(url, proc)


stop = stop_server  # the one way the tests stop a server (conftest)


def workdir(root: Path) -> Path:
    """A directory with the bundle and a calibrated scenario file, as a user has them."""
    shutil.copytree(SHIPPED_BUNDLE, root / "bundle")
    (root / "calibrated.yaml").write_text(CALIBRATED)
    return root


@pytest.fixture(scope="module")
def run() -> tuple[Scenario, list[dict], list[tuple[OperationSnapshot, int]]]:
    """The twin's run: scenario, floor events (as the file has them), decisions."""
    return recorded("default", "threshold", 0)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The log ``synctwin simulate --log-events`` writes for the same run."""
    cwd = tmp_path_factory.mktemp("simulate")
    run_cli(cwd, "simulate", "--scenario", "default", "--strategy", "threshold", "--seed", "0",
            "--log-events", "logs")  # fmt: skip
    return read_jsonl(cwd / "logs" / FLOOR_EVENTS_FILE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cwd = workdir(tmp_path_factory.mktemp("sites"))
    sites = ["--site", "main=default", "--site", "idem=default", "--site", "cal=calibrated.yaml"]
    srv = start(cwd, *sites, env={"SYNCTWIN_MAX_SITE_BATCH": "5000"})
    yield srv
    stop(srv.proc)


def post_all(srv: Server, site: str, events: list[dict], batch: int = BATCH) -> tuple[int, int]:
    """Post ``events`` in batches; the accepted and duplicate counts. No rejections."""
    accepted = duplicate = 0
    for i in range(0, len(events), batch):
        r = srv.post(f"/v1/sites/{site}/events", json=events[i : i + batch])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["rejected"] == []
        accepted += body["accepted"]
        duplicate += body["duplicate"]
    return accepted, duplicate


def state(srv: Server, site: str, sc: Scenario, minute: float) -> OperationSnapshot:
    at = format_timestamp(minute, log_start(sc))
    r = srv.get(f"/v1/sites/{site}/state", params={"at": at})
    assert r.status_code == 200, r.text
    return OperationSnapshot.model_validate(r.json())


# --------------------------------------------------------------------------- the replay


def test_the_simulate_log_is_the_runs_log(run: tuple, events_file: list[dict]) -> None:
    assert events_file == run[1]


def test_replay_through_http_gives_the_twins_snapshot_at_each_decision(
    server: Server, run: tuple
) -> None:
    sc, events, seen = run
    done = 0
    checked = 0
    for k, (want, n) in enumerate(seen):
        accepted, duplicate = post_all(server, "main", events[done:n])
        assert (accepted, duplicate) == (n - done, 0)
        done = n
        if k % 4 == 0 or k == len(seen) - 1:
            assert state(server, "main", sc, want.minute) == want, f"decision {k}"
            checked += 1
    assert checked >= 8 and done == len(events)


def test_resending_changes_nothing(server: Server, run: tuple) -> None:
    sc, events, seen = run
    want, n = seen[12]
    assert post_all(server, "idem", events[:n]) == (n, 0)
    assert post_all(server, "idem", events[:n]) == (0, n)
    wrapped = server.post("/v1/sites/idem/events", json={"events": events[n - 10 : n]})
    assert (wrapped.json()["accepted"], wrapped.json()["duplicate"]) == (0, 10)
    assert state(server, "idem", sc, want.minute) == want
    metrics = server.get("/metrics").text
    assert f'synctwin_site_events_total{{result="duplicate",site="idem"}} {n + 10}.0' in metrics


# --------------------------------------------------------------------------- bad input


def test_unknown_site_is_404(server: Server) -> None:
    for method, path in (("post", "events"), ("get", "state"), ("post", "recommend"),
                         ("post", "forecast")):  # fmt: skip
        url = f"/v1/sites/nowhere/{path}"
        r = server.post(url, json=[]) if method == "post" else server.get(url)
        assert r.status_code == 404, path
        assert "no site 'nowhere'" in r.json()["detail"] and "main" in r.json()["detail"]


@pytest.mark.parametrize(
    ("kw", "loc"),
    [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, "body"),
        ({"json": {"events": [], "more": 1}}, "body"),
        ({"json": {"items": []}}, "body"),
        ({"json": {"events": "e1"}}, "events"),
        ({"json": 42}, "body"),
    ],
)
def test_malformed_body_is_422_naming_the_problem(server: Server, kw: dict, loc: str) -> None:
    r = server.post("/v1/sites/idem/events", **kw)
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"][:1]
    assert loc in err["loc"]


def test_oversized_batch_is_413(server: Server, run: tuple) -> None:
    events = run[1]
    before = server.get("/v1/sites/cal/state").json()
    r = server.post("/v1/sites/cal/events", json=events[:5001])
    assert r.status_code == 413
    assert "5001 events" in r.json()["detail"] and "at most 5000" in r.json()["detail"]
    assert server.get("/v1/sites/cal/state").json() == before  # nothing taken


def test_bad_events_are_rejected_with_reasons_and_the_rest_kept(server: Server, run: tuple) -> None:
    sc, events, seen = run
    want, n = seen[16]
    done = seen[12][1]  # test_resending_changes_nothing sent the events before it
    post_all(server, "idem", events[:done])
    part = events[done:n]
    t = part[5]["timestamp"]
    arrive = next(e for e in part if e["kind"] == "item_arrive")
    start_ev = next(e for e in part if e["kind"] == "item_start")
    bad = [
        dict(arrive, id="b-sector", timestamp=t, sector="moon"),
        dict(start_ev, id="b-worker", timestamp=t, worker_id="w-404"),
        {"id": "b-kind", "timestamp": t, "kind": "teleport"},
        "not an event",
        dict(arrive, id="b-late", timestamp=events[0]["timestamp"]),
    ]
    batch = part[:6] + bad + part[6:]
    r = server.post("/v1/sites/idem/events", json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicate"]) == (len(part), 0)
    got = {x["id"]: (x["kind"], x["reason"]) for x in body["rejected"]}
    assert got["b-sector"] == ("scenario", got["b-sector"][1])
    assert "unknown sector 'moon'" in got["b-sector"][1]
    assert got["b-worker"][0] == "scenario" and "unknown worker 'w-404'" in got["b-worker"][1]
    assert got["b-kind"][0] == "schema"
    assert got[None][0] == "schema"
    assert got["b-late"][0] == "late" and "too late" in got["b-late"][1]
    assert len(body["rejected"]) == len(bad)
    # refused events change nothing: the state is the twin's
    assert state(server, "idem", sc, want.minute) == want
    # an event that does not parse was not stored: resent, it is refused again
    again = server.post("/v1/sites/idem/events", json=[bad[2]]).json()
    assert [x["kind"] for x in again["rejected"]] == ["schema"] and again["duplicate"] == 0
    r = server.get("/v1/sites/idem/state", params={"at": "yesterday"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "at"]
    metrics = server.get("/metrics").text
    for kind in ("schema", "scenario", "late"):
        assert f'synctwin_site_event_rejections_total{{kind="{kind}",site="idem"}}' in metrics


def test_a_refused_event_does_not_hand_on_a_grid_state_early(run: tuple) -> None:
    """The state at a grid point is handed on only when an *accepted* event finalises it.

    A refused event from far ahead (an unknown sector, an hour past the point) must
    not take the point's state: events within the reorder tolerance before the point,
    arriving after it, belong in that state.
    """
    sc, events, seen = run
    site = Site(SiteSpec(name="grid", scenario="default"), sc, open_store("sqlite://"))
    handed: dict[float, OperationSnapshot] = {}
    site.watch_grid(lambda _site, minute, state: handed.setdefault(minute, state))
    want, n = seen[20]  # a decision at 10:00, with events up to it
    zero = site.twin.zero
    before = [e for e in events[:n] if minute_of(e["timestamp"], zero) < want.minute - 1]
    site.take(before)
    arrive = next(e for e in events if e["kind"] == "item_arrive")
    far = format_timestamp(want.minute + 60, zero)
    refused = site.take([dict(arrive, id="far-moon", timestamp=far, sector="moon")])
    assert [(r.id, r.kind) for r in refused.refused] == [("far-moon", "scenario")]
    assert want.minute not in handed  # the refused event finalised nothing
    site.take(events[len(before) :])
    assert handed[want.minute] == want  # the last minute's events are in it


# --------------------------------------------------------------------------- advice


def test_site_recommend_and_forecast_equal_the_plain_routes_on_its_state(
    server: Server, run: tuple
) -> None:
    sc, events, seen = run
    want, n = seen[28]  # mid-morning: work in every sector
    post_all(server, "cal", events[:n])
    at = format_timestamp(want.minute, log_start(sc))
    live = server.get("/v1/sites/cal/state", params={"at": at}).json()
    assert live["scenario"] == "default-site-a"  # the site's own scenario
    # the policy answers it as a state of its own scenario (same sectors, classes, shifts)
    snap = live | {"scenario": sc.name, "scenario_digest": sc.digest}
    options = {"impact": True, "samples": 3, "horizon_minutes": 45}
    site = server.post("/v1/sites/cal/recommend", json={**options, "at": at})
    plain = server.post("/v1/recommend", json={**options, "snapshot": snap})
    assert site.status_code == plain.status_code == 200, site.text
    a, b = site.json(), plain.json()
    assert a.pop("recommendation_id") != b.pop("recommendation_id")
    assert a == b
    fopts = {"hours": [1.0], "samples": 2}
    site = server.post("/v1/sites/cal/forecast", json={**fopts, "at": at, "adaptive": False})
    plain = server.post("/v1/forecast", json={**fopts, "snapshot": snap})
    assert site.status_code == plain.status_code == 200, site.text
    assert site.json() == plain.json()
    # without a body: the latest state, the server's defaults
    r = server.post("/v1/sites/cal/recommend", json={"impact": False})
    assert r.status_code == 200 and set(r.json()) == set(b) | {"recommendation_id"}
    bad = server.post("/v1/sites/cal/recommend", json={"snapshot": snap})
    assert bad.status_code == 422  # the live state answers; a snapshot is refused


# --------------------------------------------------------------------------- durability


@pytest.mark.slow
def test_kill_mid_stream_restart_and_resend_loses_and_doubles_nothing(
    tmp_path: Path, run: tuple, events_file: list[dict]
) -> None:
    sc, _, seen = run
    events = events_file
    cwd = workdir(tmp_path)
    srv = start(cwd, "--site", "main=default")
    half = len(events) // 2 // BATCH * BATCH
    post_all(srv, "main", events[:half])
    inflight = threading.Thread(
        target=lambda: _swallow(srv, events[half : half + BATCH]), daemon=True
    )
    inflight.start()
    time.sleep(0.1)  # the batch is on its way, or being stored
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    inflight.join(timeout=60)

    srv = start(cwd, "--site", "main=default")
    try:
        accepted, duplicate = post_all(srv, "main", events)
        assert accepted + duplicate == len(events)
        assert half <= duplicate <= half + BATCH  # what was stored before the kill stays
        final = seen[-1][0]
        assert state(srv, "main", sc, final.minute) == final
        last = srv.post("/v1/sites/main/events", json=[]).json()
        assert last["stored_seq"] == len(events)  # each event stored once
    finally:
        stop(srv.proc)


def _swallow(srv: Server, batch: list[dict]) -> None:
    try:
        srv.post("/v1/sites/main/events", json=batch)
    except httpx.TransportError:
        pass  # the server was killed under it


@pytest.mark.slow
def test_two_workers_give_the_same_state(tmp_path: Path, run: tuple) -> None:
    sc, events, seen = run
    cwd = workdir(tmp_path)
    srv = start(cwd, "--site", "main=default", "--workers", "2")
    try:
        want, n = seen[40]
        # small batches, each on a new connection: both workers store some of them
        assert post_all(srv, "main", events[:n], batch=250) == (n, 0)
        for _ in range(12):  # new connections: both workers answer some
            assert state(srv, "main", sc, want.minute) == want
    finally:
        stop(srv.proc)


# --------------------------------------------------------------------------- bad sites


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "main=no-such-scenario"], "no-such-scenario"),
        (["--site", "main=claims"], "does not fit"),
        (["--site", "main"], "expected NAME=SCENARIO"),
        (["--site", "a=default", "--site", "a=default"], "given twice"),
        (["--sites", "sites.yaml"], "missing.yaml"),
        (["--site", "main=claims", "--workers", "2"], "does not fit"),
    ],
)
def test_a_bad_site_exits_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    cwd = workdir(tmp_path)
    (cwd / "sites.yaml").write_text("east: calibrated.yaml\nwest: {scenario: missing.yaml}\n")
    proc = run_cli(cwd, "serve", "--policy", "bundle", "--port", str(free_port()), *args,
                   ok=False, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_site_routes_never_answer_a_server_error(server: Server, tmp_path: Path) -> None:
    """Schemathesis on the site routes (examples, boundary values, wrong types,
    fuzzing): every answer is a 2xx or a 4xx, never a 5xx."""
    proc = subprocess.run(
        [str(Path(CLI).parent / "schemathesis"), "run", f"{server.url}/openapi.json",
         "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing",
         "--max-examples", "10", "--seed", "0", "--workers", "1",
         "--request-timeout", "60", "--include-path-regex", "^/v1/sites/"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Selected: 5/" in proc.stdout  # events, state, recommend, forecast, alerts


def test_a_sites_file_names_scenarios_and_starts(tmp_path: Path, run: tuple) -> None:
    events = run[1]
    cwd = workdir(tmp_path)
    west = {"scenario": "default", "start": "2026-03-03T00:00:00"}
    (cwd / "sites.json").write_text(json.dumps({"east": "calibrated.yaml", "west": west}))
    srv = start(cwd, "--sites", "sites.json")
    try:
        assert srv.get("/v1/sites/east/state").json()["scenario"] == "default-site-a"
        # west starts on another Tuesday: the twin's log (from 2026-01-06) is before it
        r = srv.post("/v1/sites/west/events", json=events[:5]).json()
        assert r["accepted"] == 0 and {x["kind"] for x in r["rejected"]} == {"scenario"}
        assert all("before the site's start" in x["reason"] for x in r["rejected"])
        assert srv.post("/v1/sites/east/events", json=events[:5]).json()["accepted"] == 5
    finally:
        stop(srv.proc)
