"""The store (:mod:`policies.store`): one contract, SQLite and a real PostgreSQL.

PostgreSQL is a throwaway server of this test session: ``initdb`` and ``pg_ctl`` (from
the Debian package ``make postgres`` installs) in a temporary folder, on a free port
of 127.0.0.1, stopped at the end. As root, the server runs as the ``postgres`` user
(PostgreSQL refuses to run as root). If it cannot start, the tests fail: they never
skip.

The server tests run ``synctwin serve --store ...`` as users do: killed mid-stream
(every 200 is stored exactly once), two workers on one store, and a store that
cannot write (its write lock held by another process past the busy timeout), which
turns ``/readyz`` and recommendations into 503s.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import run, stop_server, wait_ready
from pydantic import ValidationError

from policies.decision_log import DecisionLog
from policies.server.config import Settings
from policies.store import Store, StoreError, StoreUrlError, open_store, pages, parse_store_url
from policies.store.export import export_jsonl, export_lines, import_jsonl
from policies.store.sqlite import SqliteStore
from twin.model import OperationModel
from twin.scenario import load_scenario

API_KEY = "store-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is not installed: run `make postgres`"
    return Path(found[-1]).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    """``cmd`` as the ``postgres`` user when running as root (initdb refuses root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of this session; the URL of its ``postgres`` database."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="synctwin-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", free_port()
    init = subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "synctwin",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        ),
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, f"initdb failed: {init.stderr}"
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
    ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log")]
    start = subprocess.run(
        _as_server_user([*ctl, "-w", "-t", "60", "-o", options, "start"]),
        capture_output=True,
        text=True,
    )
    log_text = (root / "server.log").read_text() if (root / "server.log").exists() else ""
    assert start.returncode == 0, f"pg_ctl start failed: {start.stderr}\n{log_text}"
    try:
        yield f"postgresql://synctwin@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([*ctl, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = f"store_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_postgres_store_is_a_real_postgres(pg_url: str) -> None:
    import psycopg

    opened = open_store(pg_url)
    try:
        assert type(opened).__name__ == "PostgresStore"
        opened.record("r1", "p", "1", "{}", "{}")
    finally:
        opened.close()
    with psycopg.connect(pg_url) as conn:
        (n,) = conn.execute("SELECT count(*) FROM recommendations WHERE id = 'r1'").fetchone()
        (version,) = conn.execute("SHOW server_version").fetchone()
    assert n == 1 and version.split(".")[0].isdigit()


# --------------------------------------------------------------------------- the contract


def test_record_and_read_back_exactly(store: Store) -> None:
    snap, rec = '{"minute": 7, "name": "ü"}', '{"actions": [], "x": 1.5}'
    stamp = store.record("a", "pol", "1+abc", snap, rec)
    row = store.recommendation("a")
    assert row is not None
    assert (row.id, row.time, row.policy_name, row.policy_version) == ("a", stamp, "pol", "1+abc")
    assert (row.snapshot, row.recommendation) == (snap, rec)
    assert store.known("a") and not store.known("b") and store.recommendation("b") is None
    with pytest.raises(StoreError, match="record a recommendation"):
        store.record("a", "pol", "1", "{}", "{}")  # ids are unique
    assert store.counts()["recommendations"] == 1


def test_feedback_needs_a_stored_recommendation(store: Store) -> None:
    store.record("a", "pol", "1", "{}", "{}")
    assert store.add_feedback("nope", True, None) is None
    first = store.add_feedback("a", True, "ok")
    second = store.add_feedback("a", False, None)
    assert first is not None and second is not None and first <= second
    rows = store.feedback_for("a")
    assert [(f.accepted, f.comment) for f in rows] == [(True, "ok"), (False, None)]
    assert all(isinstance(f.accepted, bool) for f in rows)
    assert store.counts()["feedback"] == 2
    assert store.feedback_for("nope") == []


def test_a_record_is_visible_to_another_connection_and_process(store_url: str) -> None:
    writer = open_store(store_url)
    reader = open_store(store_url)
    try:
        writer.record("seen", "pol", "1", '{"a": 1}', "{}")
        assert reader.known("seen")  # no wait, no retry
        code = (
            "import sys; from policies.store import open_store; "
            "s = open_store(sys.argv[1]); r = s.recommendation('seen'); "
            "print(r.snapshot if r else 'missing'); s.add_feedback('seen', True, 'x')"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, store_url], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == '{"a": 1}'
        assert [f.comment for f in writer.feedback_for("seen")] == ["x"]
    finally:
        writer.close()
        reader.close()


def test_events_are_idempotent_and_report_which_were_new(store: Store) -> None:
    assert store.add_events("s1", [("e1", "t1", '{"k": 1}'), ("e2", "t2", "{}")]) == [True, True]
    assert store.add_events("s1", [("e2", "t2", "{}"), ("e3", "t3", "{}")]) == [False, True]
    assert store.add_events("s2", [("e1", "t1", "{}")]) == [True]  # ids are per site
    assert store.add_events("s1", []) == []
    rows = store.events("s1")
    assert [e.event_id for e in rows] == ["e1", "e2", "e3"]
    assert rows[0].payload == '{"k": 1}' and rows[0].site == "s1"
    assert [e.event_id for e in store.events("s1", after=rows[0].seq)] == ["e2", "e3"]
    assert store.counts()["events"] == 4


def test_a_failing_event_batch_stores_none_of_it(store: Store) -> None:
    with pytest.raises(StoreError, match="record events"):
        store.add_events("s", [("ok", "t", "{}"), ("bad", "t", None)])  # type: ignore[list-item]
    assert store.events("s") == []


def test_alerts_and_their_outcome(store: Store) -> None:
    assert store.add_alert("s1", "a1", '{"risk": 0.8}')
    assert not store.add_alert("s1", "a1", "{}")  # same id: ignored
    assert store.add_alert("s2", "a1", "{}")
    assert store.set_alert_outcome("s1", "a1", "averted")
    assert not store.set_alert_outcome("s1", "nope", "averted")
    (alert,) = store.alerts("s1")
    assert (alert.id, alert.payload, alert.outcome) == ("a1", '{"risk": 0.8}', "averted")
    assert store.alerts("s2")[0].outcome is None


def test_paging_reads_every_row_once_in_order(store: Store) -> None:
    for i in range(7):
        store.record(f"r{i}", "pol", "1", "{}", "{}")
    assert [r.id for r in pages(store.recommendations, limit=3)] == [f"r{i}" for i in range(7)]
    assert [r.id for r in pages(store.recommendations, limit=7)] == [f"r{i}" for i in range(7)]


def test_probe_writes(store: Store) -> None:
    store.probe()
    store.probe()  # repeatable: one row, updated


def test_export_has_whole_lines_that_match_the_store(store: Store, tmp_path: Path) -> None:
    snap = json.dumps({"minute": 1, "text": "a\nb"})  # a newline inside a string value
    for i in range(3):
        store.record(f"r{i}", "pol", "2", snap, json.dumps({"recommendation_id": f"r{i}"}))
    store.add_feedback("r1", False, "no staff")
    store.add_feedback("r0", True, None)
    out = tmp_path / "export" / "log.jsonl"
    summary = export_jsonl(store, out)
    assert (summary.recommendations, summary.feedback) == (3, 2)
    data = out.read_bytes()
    assert data.endswith(b"\n")
    lines = [json.loads(line) for line in data.decode().split("\n")[:-1]]
    assert [x["type"] for x in lines] == ["recommendation"] * 3 + ["feedback"] * 2
    for i, x in enumerate(lines[:3]):
        row = store.recommendation(f"r{i}")
        assert row is not None
        assert x == {
            "type": "recommendation",
            "id": row.id,
            "time": row.time,
            "policy": {"name": "pol", "version": "2"},
            "snapshot": json.loads(row.snapshot),
            "recommendation": json.loads(row.recommendation),
        }
    assert [(x["recommendation_id"], x["accepted"], x["comment"]) for x in lines[3:]] == [
        ("r1", False, "no staff"),
        ("r0", True, None),
    ]
    assert list(export_lines(store)) == data.decode().splitlines(keepends=True)
    assert not [p for p in out.parent.iterdir() if p.name != "log.jsonl"]  # no temp left


# --------------------------------------------------------------------------- SQLite


def test_sqlite_lookups_use_the_indexes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    try:
        (plan,) = store.query_plan("SELECT 1 FROM recommendations WHERE id = ?", ("x",))
        assert plan.startswith("SEARCH recommendations USING COVERING INDEX"), plan
        (plan,) = store.query_plan("SELECT * FROM feedback WHERE recommendation_id = ?", ("x",))
        assert "USING INDEX feedback_by_recommendation" in plan, plan
        (plan,) = store.query_plan(
            "SELECT * FROM events WHERE site = ? AND seq > ? ORDER BY seq", ("s", 0)
        )
        assert "USING INDEX events_by_site" in plan, plan
    finally:
        store.close()


def test_sqlite_file_is_in_wal_mode_with_normal_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SqliteStore(path)
    try:
        store.record("a", "p", "1", "{}", "{}")
        with store._connection() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        conn2 = sqlite3.connect(path)
        assert conn2.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn2.close()
    finally:
        store.close()
    full = open_store(f"sqlite:///{path}?synchronous=full&busy_timeout=250")
    assert isinstance(full, SqliteStore)
    assert (full.synchronous, full.busy_timeout_ms) == ("FULL", 250)
    assert full.known("a")
    with full._connection() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    full.close()


def test_sqlite_write_locked_by_another_process_fails_after_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    store = open_store(f"sqlite:///{path}?busy_timeout=100")
    store.record("a", "p", "1", "{}", "{}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # takes the write lock and keeps it
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="locked"):
            store.record("b", "p", "1", "{}", "{}")
        assert time.monotonic() - t0 >= 0.09
        with pytest.raises(StoreError, match="probe"):
            store.probe()
        assert store.known("a")  # reads go on (WAL)
        assert store.add_feedback("nope", True, None) is None  # an unknown id needs no lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.record("b", "p", "1", "{}", "{}")
    store.probe()
    assert store.counts()["recommendations"] == 2
    store.close()


def test_memory_store_shares_one_database_between_threads() -> None:
    store = open_store("sqlite://")
    done = []
    threads = [
        threading.Thread(
            target=lambda i=i: done.append(store.record(f"t{i}", "p", "1", "{}", "{}"))
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 8 and all(store.known(f"t{i}") for i in range(8))
    store.close()


# --------------------------------------------------------------------------- URLs, errors


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unknown store URL scheme 'mysql'"),
        ("sqlite:///a.db?sync=FULL", "unknown SQLite store option"),
        ("sqlite:///a.db?synchronous=OFF", "synchronous must be FULL or NORMAL"),
        ("sqlite:///a.db?busy_timeout=soon", "busy_timeout must be milliseconds"),
        ("sqlite:///", "has no file path"),
        ("  ", "empty store URL"),
    ],
)
def test_bad_store_urls_are_clear_errors(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(StoreUrlError, match=message):
        parse_store_url(url)
    with pytest.raises(ValidationError, match=message):
        Settings(policy=tmp_path, store=url)


def test_store_urls() -> None:
    assert parse_store_url("sqlite:////abs/s.db").path == Path("/abs/s.db")
    assert parse_store_url("sqlite:///rel/s.db").path == Path("rel/s.db")
    assert parse_store_url("plain.db").path == Path("plain.db")
    assert parse_store_url("sqlite://").path is None
    pg = parse_store_url("postgresql://u:secret@h:5/db")
    assert pg.kind == "postgresql" and "secret" not in pg.safe and "h:5/db" in pg.safe


def test_an_unreachable_postgres_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="create the schema"):
        open_store(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")


def test_an_unusable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a database"):
        open_store(f"sqlite:///{bad}")


# --------------------------------------------------------------------------- the decision log


def test_decision_log_keeps_its_interface_over_the_store(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path)
    log.record("a", {"name": "n", "version": "1"}, '{"minute": 1}', '{"ok": true}')
    assert log.feedback("a", True, "yes") and not log.feedback("b", True, None)
    assert log.known("a") and not log.known("b")
    first, second = log.records()
    assert first["snapshot"] == {"minute": 1} and second["comment"] == "yes"
    log.close()
    # the store is beside the log, and the JSONL copy has the same lines as an export
    assert (tmp_path / "decisions.sqlite").is_file()
    again = DecisionLog(path)
    assert again.known("a")
    assert path.read_text() == "".join(export_lines(again.store))
    again.close()


def test_a_partial_last_line_of_the_copy_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    whole = '{"type":"feedback","recommendation_id":"x","time":"t","accepted":true}\n'
    path.write_text(whole + '{"type":"recommendation","id":"half')
    log = DecisionLog(path, store="sqlite://")
    assert path.read_text() == whole
    log.record("b", {"name": "n", "version": "1"}, "{}", "{}")
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["id"] == "b"
    log.close()


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def snapshot_body() -> dict:
    """A real state of ``default`` at 07:00, as a recommendation request without rollouts."""
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(3))
    model.run_minutes(420)
    return {"snapshot": model.snapshot().model_dump(mode="json"), "impact": False}


class Serving:
    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc, self.url = proc, url
        self.headers = {"X-API-Key": API_KEY}


def serve(bundle: Path, store_url: str, *extra: str) -> Serving:
    port = free_port()
    cmd = [
        sys.executable, "-m", "experiments.cli", "serve", "--policy", str(bundle),
        "--port", str(port), "--api-key", API_KEY, "--store", store_url, *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, interval=0.05)
    return Serving(proc, url)


stop = stop_server  # the one way the tests stop a server (conftest)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_killed_server_keeps_every_answered_recommendation_once(
    backend: str,
    policy_bundle: Path,
    snapshot_body: dict,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILL mid-stream: every recommendation that got a 200 is stored exactly once,
    and feedback on each works after a restart."""
    url = (
        f"sqlite:///{tmp_path / 'kill.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    srv = serve(policy_bundle, url)
    answered: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_sending = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop_sending.is_set():
                try:
                    r = client.post(
                        f"{srv.url}/v1/recommend", json=snapshot_body, headers=srv.headers
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        answered.append(r.json()["recommendation_id"])
                else:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

    senders = [threading.Thread(target=send) for _ in range(3)]
    try:
        for t in senders:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 40 and time.monotonic() < deadline and not errors:
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGKILL)  # requests are in flight
        srv.proc.wait(timeout=10)
    finally:
        stop_sending.set()
        for t in senders:
            t.join(timeout=30)
        stop(srv.proc)
    assert not errors and len(answered) >= 40
    assert len(set(answered)) == len(answered)

    srv = serve(policy_bundle, url)
    try:
        with httpx.Client(timeout=10) as client:
            for rec_id in answered:
                fb = {"recommendation_id": rec_id, "accepted": True}
                r = client.post(f"{srv.url}/v1/feedback", json=fb, headers=srv.headers)
                assert r.status_code == 200, r.text
    finally:
        stop(srv.proc)
    store = open_store(url)
    try:
        stored = [r.id for r in pages(store.recommendations)]
        assert len(stored) == len(set(stored))  # no record twice
        assert set(answered) <= set(stored)  # every 200 is there
        assert len(stored) - len(answered) <= len(senders)  # at most the ones in flight
        for rec_id in answered:
            row = store.recommendation(rec_id)
            assert row is not None and json.loads(row.recommendation)["recommendation_id"] == rec_id
            assert [f.accepted for f in store.feedback_for(rec_id)] == [True]
        if backend == "sqlite":
            with store._connection() as conn:  # type: ignore[attr-defined]
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_store(
    backend: str,
    policy_bundle: Path,
    snapshot_body: dict,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Feedback sent to either worker finds a recommendation recorded by the other."""
    url = (
        f"sqlite:///{tmp_path / 'shared.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    srv = serve(policy_bundle, url, "--workers", "2")
    try:
        ids = []
        for _ in range(20):  # a new connection each time: both workers answer some
            r = httpx.post(f"{srv.url}/v1/recommend", json=snapshot_body, headers=srv.headers)
            assert r.status_code == 200, r.text
            ids.append(r.json()["recommendation_id"])
        for rec_id in ids:
            for accepted in (True, False):
                fb = {"recommendation_id": rec_id, "accepted": accepted}
                r = httpx.post(f"{srv.url}/v1/feedback", json=fb, headers=srv.headers)
                assert r.status_code == 200, r.text
    finally:
        stop(srv.proc)
    store = open_store(url)
    try:
        assert store.counts()["recommendations"] == 20
        assert all(len(store.feedback_for(i)) == 2 for i in ids)
    finally:
        store.close()


@pytest.mark.slow
def test_readyz_and_recommend_are_503_while_the_store_cannot_write(
    policy_bundle: Path, snapshot_body: dict, tmp_path: Path
) -> None:
    """Another process holds the SQLite write lock past the busy timeout."""
    path = tmp_path / "locked.sqlite"
    srv = serve(
        policy_bundle, f"sqlite:///{path}?busy_timeout=200", "--log", str(tmp_path / "l.jsonl")
    )
    try:
        r = httpx.post(f"{srv.url}/v1/recommend", json=snapshot_body, headers=srv.headers)
        assert r.status_code == 200
        rec_id = r.json()["recommendation_id"]
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            r = httpx.get(f"{srv.url}/readyz")
            assert r.status_code == 503
            assert r.json()["status"] == "not ready" and "locked" in r.json()["reason"]
            assert httpx.get(f"{srv.url}/healthz").status_code == 200  # the process is up
            r = httpx.post(f"{srv.url}/v1/recommend", json=snapshot_body, headers=srv.headers)
            assert r.status_code == 503 and "locked" in r.json()["detail"]
            assert r.headers["retry-after"] == "1"
            fb = {"recommendation_id": rec_id, "accepted": True}
            r = httpx.post(f"{srv.url}/v1/feedback", json=fb, headers=srv.headers)
            assert r.status_code == 503
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        r = httpx.get(f"{srv.url}/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready" and "reason" not in r.json()
        r = httpx.post(f"{srv.url}/v1/recommend", json=snapshot_body, headers=srv.headers)
        assert r.status_code == 200
        fb = {"recommendation_id": rec_id, "accepted": True}
        assert httpx.post(f"{srv.url}/v1/feedback", json=fb, headers=srv.headers).status_code == 200
    finally:
        stop(srv.proc)
    store = open_store(f"sqlite:///{path}")
    assert store.counts()["recommendations"] == 2 and store.counts()["feedback"] == 1
    store.close()


# --------------------------------------------------------------------------- the CLI


def test_export_log_and_feedback_report_from_the_cli(tmp_path: Path) -> None:
    """``synctwin export-log`` from a store, then ``feedback-report`` on the export,
    with paths relative to the working directory."""
    store = open_store(f"sqlite:///{tmp_path / 'st.sqlite'}")
    hold = json.dumps({"status": "hold", "actions": []})
    for i in range(3):
        store.record(f"r{i}", "pol", "1", "{}", hold)
    store.add_feedback("r0", True, None)
    store.add_feedback("r1", False, None)
    store.close()
    out = run(tmp_path, "export-log", "--store", "sqlite:///st.sqlite", "--out", "out/log.jsonl")
    assert "3 recommendation(s) and 2 feedback" in out.stdout
    lines = (tmp_path / "out" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(x)["type"] for x in lines)
    report = run(tmp_path, "feedback-report", "out/log.jsonl").stdout
    row = next(line for line in report.splitlines() if "hold" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][1:5] == ["3", "2", "1", "1"]
    missing = run(tmp_path, "export-log", "--store", "nope.sqlite", "--out", "x.jsonl", ok=False)
    assert missing.returncode == 2 and "no store at nope.sqlite" in missing.stderr
    bad = run(tmp_path, "export-log", "--store", "mysql://x", "--out", "x.jsonl", ok=False)
    assert bad.returncode == 2 and "unknown store URL scheme" in bad.stderr


def test_serve_refuses_a_bad_store_with_exit_2(policy_bundle: Path, tmp_path: Path) -> None:
    bad = run(tmp_path, "serve", "--policy", str(policy_bundle), "--store", "mysql://x", ok=False)
    assert bad.returncode == 2 and "unknown store URL scheme" in bad.stderr
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 1000)
    junk = run(
        tmp_path, "serve", "--policy", str(policy_bundle), "--store", "junk.sqlite", ok=False
    )
    assert junk.returncode == 2 and "not a database" in junk.stderr


def test_a_log_from_before_the_store_is_imported_once(tmp_path: Path) -> None:
    """Feedback on recommendations of an old JSONL log keeps working after the upgrade."""
    path = tmp_path / "old.jsonl"
    old = DecisionLog(None)
    old.record("r1", {"name": "n", "version": "1"}, '{"minute":1}', '{"ok":true}')
    old.record("r2", {"name": "n", "version": "1"}, '{"minute":2}', '{"ok":false}')
    old.feedback("r1", False, "later")
    lines = [json.dumps(x, separators=(",", ":")) + "\n" for x in old.records()]
    junk = 'not json\n{"type":"recommendation"}\n[1]\n{"type":"feedback"}\n'
    path.write_text("".join(lines) + junk + '{"type":"recommendation","id":"cut')
    found = import_jsonl(open_store("sqlite://"), path)
    assert (found.recommendations, found.feedback, found.bad_lines) == (2, 1, 5)
    log = DecisionLog(path)
    assert log.known("r1") and log.known("r2") and not log.known("cut")
    row = log.store.recommendation("r2")
    assert row is not None and json.loads(row.snapshot) == {"minute": 2}
    assert [(f.accepted, f.comment) for f in log.store.feedback_for("r1")] == [(False, "later")]
    assert log.feedback("r2", True, None)
    log.close()
    again = DecisionLog(path)  # imported once: nothing twice
    assert again.store.counts()["recommendations"] == 2
    assert again.store.counts()["feedback"] == 2
    assert [x["id"] for x in again.records() if x["type"] == "recommendation"] == ["r1", "r2"]
    again.close()


def test_the_copy_of_a_new_store_is_never_imported(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl"
    log = DecisionLog(path)  # no file yet: remembered as imported
    log.record("a", {"name": "n", "version": "1"}, "{}", "{}")
    log.close()
    store = open_store(f"sqlite:///{tmp_path / 'new.sqlite'}")
    assert import_jsonl(store, path).imported is False  # the copy is not read back
    fresh = open_store("sqlite://")  # another store may take it (a migration)
    found = import_jsonl(fresh, path)
    assert (found.imported, found.recommendations) == (True, 1) and fresh.known("a")
    store.close()
    fresh.close()
