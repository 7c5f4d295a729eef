"""Shadow mode: ``synctwin replay`` streams a recorded log into a real server's site.

As users run it: ``synctwin simulate --log-events logs`` writes the log, ``synctwin
serve --site main=default`` runs on 127.0.0.1, and ``synctwin replay logs --server
... --site main`` runs as a subprocess from the same temporary directory, with
relative paths. The known answer is the twin: after replaying the morning (``--until
12:00``), the site's state at 12:00 is exactly the snapshot the twin itself reports at
minute 720. Then resending: a second replay is all duplicates and changes nothing.
Mistakes (a malformed line, an unknown site, no server, a bad option) are one line
and exit code 2, and a malformed log sends nothing at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI
from conftest import run as run_cli
from test_live_twin import assert_same
from test_server import free_port
from test_sites import Server, start, stop, workdir

from agents import make_controller
from twin.eventlog import log_start
from twin.floor_events import FLOOR_EVENTS_FILE, read_jsonl
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import load_scenario
from twin.snapshot import OperationSnapshot
from twin.wallclock import format_timestamp, minute_of

NOON = 12 * 60.0


@pytest.fixture(scope="module")
def cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: the bundle, and the log of a seeded run of ``default``."""
    root = workdir(tmp_path_factory.mktemp("replay"))
    run_cli(root, "simulate", "--scenario", "default", "--strategy", "threshold", "--seed", "0",
            "--log-events", "logs")  # fmt: skip
    return root


@pytest.fixture(scope="module")
def server(cwd: Path) -> Iterator[Server]:
    sites = ("main", "paced", "untouched")
    srv = start(cwd, *(arg for name in sites for arg in ("--site", f"{name}=default")))
    yield srv
    stop(srv.proc)


def replay(cwd: Path, srv: Server | str, *args: str) -> subprocess.CompletedProcess[str]:
    url = srv if isinstance(srv, str) else srv.url
    linger = () if "--linger" in args else ("--linger", "0")
    return run_cli(cwd, "replay", *args, *linger, "--server", url, ok=False, timeout=300)


def counts(out: str) -> tuple[int, int, int]:
    """accepted, duplicate, rejected as the summary prints them."""
    m = re.search(r"accepted ([\d,]+), duplicate ([\d,]+), rejected ([\d,]+)", out)
    assert m is not None, out
    a, d, r = (int(x.replace(",", "")) for x in m.groups())
    return a, d, r


def stored(srv: Server, site: str) -> int:
    """How many events the site has stored (an empty batch answers it)."""
    return srv.post(f"/v1/sites/{site}/events", json=[]).json()["stored_seq"]


def state_at(srv: Server, site: str, minute: float) -> OperationSnapshot:
    sc = load_scenario("default")
    r = srv.get(f"/v1/sites/{site}/state", params={"at": format_timestamp(minute, log_start(sc))})
    assert r.status_code == 200, r.text
    return OperationSnapshot.model_validate(r.json())


def twin_at(minute: float) -> OperationSnapshot:
    """The snapshot the twin itself reports at ``minute`` (same run as ``simulate``)."""
    sc = load_scenario("default")
    model = OperationModel(sc, np.random.default_rng(0))
    run_for(model, minute, make_controller("threshold", sc, 0))
    assert model.minute == minute
    return model.snapshot()


def morning(cwd: Path) -> int:
    """Events of the log before 12:00."""
    sc = load_scenario("default")
    events = read_jsonl(cwd / "logs" / FLOOR_EVENTS_FILE)
    return sum(minute_of(e["timestamp"], log_start(sc)) < NOON for e in events)


@pytest.mark.slow
def test_replaying_the_morning_gives_the_twins_state_at_noon_and_a_resend_changes_nothing(
    cwd: Path, server: Server
) -> None:
    n = morning(cwd)
    first = replay(cwd, server, "logs", "--site", "main", "--speed", "max", "--until", "12:00",
                   "--linger", "30")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert f"replaying {n:,} events of logs/{FLOOR_EVENTS_FILE}" in first.stdout
    assert counts(first.stdout) == (n, 0, 0)
    assert stored(server, "main") == n
    # the alerts the server raised on the morning, each printed once, as it stores them
    raised = server.get("/v1/sites/main/alerts", params={"format": "json"}).json()
    printed = re.findall(r"^alert (\d\d:\d\d) (\w+): (.+)$", first.stdout, re.M)
    assert raised and f"alerts received: {len(raised)}" in first.stdout
    assert printed == [(a["raised_at"][11:16], a["sector"], a["message"]) for a in raised]
    want = twin_at(NOON)
    assert_same(state_at(server, "main", NOON), want)

    again = replay(cwd, server, "logs", "--site", "main", "--speed", "max", "--until", "12:00",
                   "--batch", "4000", "--linger", "1")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert counts(again.stdout) == (0, n, 0)
    assert "alerts received: 0" in again.stdout  # the first replay's are not shown again
    assert stored(server, "main") == n  # nothing stored twice
    assert_same(state_at(server, "main", NOON), want)


def test_a_paced_replay_follows_the_logs_clock(cwd: Path, server: Server) -> None:
    # 00:00 to 01:00 of the log at 3600x: about a second, in several requests
    out = replay(cwd, server, "logs", "--site", "paced", "--speed", "3600", "--until", "01:00")
    assert out.returncode == 0, out.stderr
    m = re.search(r"sent ([\d,]+) events in ([\d,]+) batches in ([\d.]+) s", out.stdout)
    assert m is not None, out.stdout
    sent, batches, seconds = int(m[1].replace(",", "")), int(m[2]), float(m[3])
    sc = load_scenario("default")
    events = read_jsonl(cwd / "logs" / FLOOR_EVENTS_FILE)
    minutes = [minute_of(e["timestamp"], log_start(sc)) for e in events[:sent]]
    assert sent == sum(m < 60 for m in (minute_of(e["timestamp"], log_start(sc)) for e in events))
    assert counts(out.stdout) == (sent, 0, 0)
    assert batches > 1
    assert seconds >= (minutes[-1] - minutes[0]) / 3600 * 60 - 0.05  # not faster than the log


def test_a_malformed_line_is_named_and_nothing_is_sent(cwd: Path, server: Server) -> None:
    lines = (cwd / "logs" / FLOOR_EVENTS_FILE).read_text().splitlines()[:20]
    for name, bad in (
        ("broken", lines[6][:-5]),  # cut short: not JSON
        ("schema", json.dumps({**json.loads(lines[6]), "kind": "teleport"})),
        ("listed", "[1, 2]"),
    ):
        folder = cwd / name
        folder.mkdir()
        (folder / FLOOR_EVENTS_FILE).write_text("\n".join([*lines[:6], bad, *lines[7:]]) + "\n")
        out = replay(cwd, server, name, "--site", "untouched", "--speed", "max")
        assert out.returncode == 2, out.stdout
        assert out.stderr.startswith(f"error: {name}/{FLOOR_EVENTS_FILE} line 7: "), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert stored(server, "untouched") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["logs", "--site", "nowhere"], "no site 'nowhere' on this server (sites: main, paced"),
        (["missing", "--site", "main"], "no log directory missing"),
        (["cwd", "--site", "main"], f"no {FLOOR_EVENTS_FILE} in cwd"),
        (["logs", "--site", "main", "--speed", "fast"], "--speed 'fast': expected a positive"),
        (["logs", "--site", "main", "--speed", "0"], "--speed '0'"),
        (["logs", "--site", "main", "--until", "25:00"], "--until '25:00': not a time of day"),
        (["logs", "--site", "main", "--until", "noon"], "--until 'noon': expected HH:MM"),
        (["logs", "--site", "main", "--until", "00:00"], "no event of"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    cwd: Path, server: Server, args: list[str], message: str
) -> None:
    (cwd / "cwd").mkdir(exist_ok=True)
    before = stored(server, "untouched"), stored(server, "main")
    out = replay(cwd, server, *args)
    assert out.returncode == 2, out.stdout
    assert message in out.stderr and out.stderr.startswith("error: ")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert (stored(server, "untouched"), stored(server, "main")) == before


def test_an_unreachable_server_is_one_line(cwd: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = replay(cwd, url, "logs", "--site", "main", "--speed", "max")
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: cannot reach {url}") and "Traceback" not in out.stderr
    bad = replay(cwd, "localhost:8000", "logs", "--site", "main")
    assert bad.returncode == 2 and "--server 'localhost:8000': expected a URL" in bad.stderr


def test_a_refused_key_is_one_line_and_the_right_key_replays(cwd: Path, tmp_path: Path) -> None:
    own = workdir(tmp_path)  # a store of its own
    shutil.copytree(cwd / "logs", own / "logs")
    cwd = own
    srv = start(cwd, "--site", "main=default", "--api-key", "s3cret")
    try:
        out = replay(cwd, srv, "logs", "--site", "main", "--speed", "max", "--until", "01:00")
        assert out.returncode == 2
        assert "refused the request (401" in out.stderr and "pass --api-key KEY" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        ok = replay(cwd, srv, "logs", "--site", "main", "--speed", "max", "--until", "01:00",
                    "--api-key", "s3cret")  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert counts(ok.stdout)[0] > 0
    finally:
        stop(srv.proc)


@pytest.mark.slow
def test_a_busy_store_is_waited_out_and_nothing_is_stored_twice(cwd: Path, tmp_path: Path) -> None:
    """The store locked by another process: the server answers 503 (nothing stored), the
    replay sends the same batch again after a pause, and gets through once it is free."""
    own = workdir(tmp_path)
    shutil.copytree(cwd / "logs", own / "logs")
    srv = start(own, "--site", "main=default", "--store", "sqlite:///site.db?busy_timeout=100")
    try:
        lock = sqlite3.connect(own / "site.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # every write of the server now fails: 503
        cmd = [CLI, "replay", "logs", "--server", srv.url, "--site", "main", "--speed", "max",
               "--until", "08:00", "--linger", "0"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=own, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
        time.sleep(2.5)  # a few refused tries
        assert stored(srv, "main") == 0
        lock.execute("ROLLBACK")
        lock.close()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        retries = re.search(r", (\d+) retries", out)
        assert retries is not None and int(retries[1]) >= 2, out
        sc = load_scenario("default")
        events = read_jsonl(own / "logs" / FLOOR_EVENTS_FILE)
        n = sum(minute_of(e["timestamp"], log_start(sc)) < 8 * 60 for e in events)
        assert counts(out) == (n, 0, 0)
        assert stored(srv, "main") == n
    finally:
        stop(srv.proc)
