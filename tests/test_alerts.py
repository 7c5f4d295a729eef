"""Risk alerts: the rules (policies/alerts.py), the offline replay experiment, and a live
site on a real server raising them, streaming them over SSE, posting them to a webhook
that fails at first, and recording their outcomes."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import run as run_cli
from test_live_twin import recorded
from test_sites import Server, start, stop

from experiments.comparison.alert_lead import replay_seed
from experiments.comparison.strategies import controller_for
from policies.alerts import (
    Alert,
    AlertBook,
    AlertRules,
    GridHistory,
    Risk,
    assess,
    risk_message,
)
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import load_scenario
from twin.wallclock import clock

PEAK_BUNDLE = Path(__file__).resolve().parent.parent / "policies" / "peak-surge"
#: peak-surge under its plan, a seed no test tunes anything on: picking falls behind
SEED = 100


def risk(**kw: object) -> Risk:
    base: dict = dict(
        sector="picking", kind="sla_misses", minute=600.0, by_minute=690.0,
        probability=0.875, expected=12.4, expected_cost=186.0,
    )  # fmt: skip
    return Risk(**{**base, **kw})


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    "kw",
    [{"probability": 0.0}, {"probability": 1.5}, {"min_misses": 0}, {"samples": 0},
     {"horizon_hours": 0}, {"min_overtime_hours": 0}],
)  # fmt: skip
def test_rules_refuse_nonsense(kw: dict) -> None:
    with pytest.raises(ValueError):
        AlertRules(**kw)


def test_read_times_cover_the_horizon() -> None:
    assert AlertRules(horizon_hours=1.0, step_minutes=15).marks == (15, 30, 45, 60)


def test_one_open_alert_per_sector_and_risk_and_outcomes_from_what_the_floor_shows() -> None:
    book = AlertBook(AlertRules(min_misses=3, grace_minutes=30))
    first = risk()
    assert book.new([first]) == [first]
    book.opened(Alert("a1", "s", first, "m"))
    later = risk(minute=630.0, by_minute=720.0)
    other = risk(sector="packing")
    overtime = risk(kind="overtime")
    assert book.new([later, other, overtime]) == [other, overtime]

    seen: list[tuple] = []

    def observed(sector: str, kind: str, t0: float, t1: float) -> float:
        seen.append((sector, kind, t0, t1))
        return 2.0

    assert book.close_due(719.0, observed) == []  # by 690 + grace 30 = 720: not yet
    (closed,) = book.close_due(720.0, observed)
    assert seen == [("picking", "sla_misses", 600.0, 720.0)]
    assert closed.outcome is not None
    assert (closed.outcome.happened, closed.outcome.observed) == (False, 2.0)  # 2 < 3
    assert book.open == {}
    book.opened(Alert("a2", "s", later, "m"))
    (closed,) = book.close_due(800.0, lambda *a: 3.0)
    assert closed.outcome is not None and closed.outcome.happened


def test_the_message_says_what_the_numbers_say() -> None:
    sc = load_scenario("peak-surge")
    r = risk(expected=12.4, probability=0.875, by_minute=735.0, expected_cost=186.0)
    text = risk_message(sc, r, "To prevent it: move 2 workers.")
    assert text.startswith("Picking is likely to miss the due time of about 12 items by 12:15")
    assert "probability 88%" in text and "about 186 in cost" in text
    assert text.endswith("To prevent it: move 2 workers.")
    assert clock(r.by_minute) in text
    ot = risk_message(sc, risk(kind="overtime", expected=2.5, expected_cost=100.0))
    assert "about 2.5 overtime hours" in ot


def test_overtime_seen_on_the_grid() -> None:
    sc = load_scenario("peak-surge")
    model = OperationModel(sc, rng=SEED)
    history = GridHistory(30.0)
    run_for(model, 23 * 60.0 - 1)  # late evening: some workers on overtime in some runs
    snap = model.snapshot()
    history.add(snap)
    working = {
        s: sum(g.count for g in snap.workers if g.sector == s and g.state == "overtime")
        for s in sc.sector_names
    }
    for s, n in working.items():
        assert history.overtime_hours(s, snap.minute, snap.minute + 1) == n * 0.5
        assert history.overtime_hours(s, 0.0, snap.minute) == 0.0


def test_assessment_is_reproducible_and_finds_the_forming_backlog() -> None:
    sc = load_scenario("peak-surge")
    model = OperationModel(sc, rng=SEED)
    run_for(model, 9.5 * 60)
    snap = model.snapshot()
    rules = AlertRules(samples=4)
    risks = assess(sc, snap, rules)
    assert risks == assess(sc, snap, rules)  # same state, same seeds: same answer
    picking = [r for r in risks if r.sector == "picking" and r.kind == "sla_misses"]
    assert picking, risks  # the surge's backlog in picking is alerted at 09:30
    r = picking[0]
    assert r.probability >= rules.probability
    assert snap.minute < r.by_minute <= snap.minute + 180
    assert r.expected_cost == pytest.approx(r.expected * sc.costs.sla_miss_penalty)
    # night shift, empty floor: nothing forms
    quiet = OperationModel(sc, rng=SEED)
    run_for(quiet, 60.0)
    assert [x for x in assess(sc, quiet.snapshot(), rules) if x.kind == "sla_misses"] == []


# --------------------------------------------------------------------------- experiment


@pytest.mark.slow
def test_experiment_alerts_as_a_user_runs_it(tmp_path: Path) -> None:
    proc = run_cli(
        tmp_path, "experiment", "alerts", "-s", "peak-surge", "--seeds", "1",
        "--first-seed", str(SEED), "--samples", "4", "--workers", "1", "--out", "out",
    )  # fmt: skip
    assert "Alerts on replays" in proc.stdout
    report = json.loads((tmp_path / "out" / "alerts.json").read_text())
    s = report["scenarios"]["peak-surge"]["summary"]
    assert 0 <= s["sectors_led"] <= s["sectors_with_misses"] > 0
    assert s["false_alerts"] <= s["alerts_closed"] <= s["alerts"]
    (seed,) = report["scenarios"]["peak-surge"]["seeds"]
    for lead in seed["leads"]:
        if lead["first_alert_minute"] is not None:
            assert lead["first_alert_minute"] <= lead["first_miss_minute"]
    for a in seed["alerts"]:
        assert a["risk"]["probability"] >= 0.6
    bad = run_cli(tmp_path, "experiment", "alerts", "--probability", "2", ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# --------------------------------------------------------------------------- live site


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to its first ``fail`` posts."""

    def __init__(self, fail: int) -> None:
        self.bodies: list[dict] = []
        self.tries = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.tries += 1
                ok = outer.tries > fail
                if ok:
                    outer.bodies.append(body)
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.http.shutdown()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    cwd = tmp_path_factory.mktemp("alerts")
    shutil.copytree(PEAK_BUNDLE, cwd / "bundle")
    srv = start(
        cwd, "--site", "main=peak-surge", "--webhook", receiver.url,
        env={"SYNCTWIN_WEBHOOK_BACKOFF_SECONDS": "0.05"},
    )  # fmt: skip
    yield srv
    stop(srv.proc)


def wait_for(check, timeout: float = 300.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_a_live_site_raises_the_alerts_of_the_replay_streams_posts_and_closes_them(
    site: Server, receiver: Receiver
) -> None:
    sc, events, _ = recorded("peak-surge", "static", SEED)
    rules = AlertRules(samples=8)  # the server's defaults
    offline = replay_seed(sc, controller_for("static", sc, SEED), SEED, rules, site="main")
    cut = next(i for i, e in enumerate(events) if e["timestamp"] >= "2026-01-06T14:00")
    for i in range(0, cut, 5000):
        r = site.post("/v1/sites/main/events", json=events[i : min(i + 5000, cut)])
        assert r.status_code == 200 and r.json()["rejected"] == []

    def closed_alerts() -> list[dict]:
        got = site.get("/v1/sites/main/alerts", params={"format": "json"}).json()
        return got if any(a["outcome"] is not None for a in got) else []

    alerts = wait_for(closed_alerts)
    # the server's grid states are the replay's: the same alerts, with the same numbers
    want = {a.id: a for a in offline.alerts if a.risk.minute < 12 * 60}
    got = {a["id"]: a for a in alerts if a["minute"] < 12 * 60}
    assert set(got) == set(want) and got
    for aid, a in got.items():
        w = want[aid]
        assert (a["sector"], a["risk"], a["by_minute"]) == (w.risk.sector, w.risk.kind,
                                                            w.risk.by_minute)  # fmt: skip
        assert a["probability"] == pytest.approx(w.risk.probability)
        assert a["expected"] == pytest.approx(w.risk.expected)
        if a["outcome"] is not None and w.outcome is not None:
            assert a["outcome"]["happened"] == w.outcome.happened
            assert a["outcome"]["observed"] == w.outcome.observed
        assert re.search(r"by \d\d:\d\d if nothing changes", a["message"])
    first = alerts[0]
    assert [a["seq"] for a in alerts] == sorted(a["seq"] for a in alerts)
    # the prevention is a stored recommendation: it takes feedback
    rec_id = first["prevention"]["recommendation_id"]
    fb = site.post("/v1/feedback", json={"recommendation_id": rec_id, "accepted": True})
    assert fb.status_code == 200, fb.text

    # Server-Sent Events: every stored alert, in order, with what is known of it
    streamed: list[dict] = []
    with httpx.stream(
        "GET", f"{site.url}/v1/sites/main/alerts", headers={"Accept": "text/event-stream"},
        timeout=30,
    ) as stream:  # fmt: skip
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "alert":
                streamed.append(json.loads(line[6:]))
            if len(streamed) >= len(alerts):
                break
    assert [a["id"] for a in streamed] == [a["id"] for a in alerts]
    assert [a["seq"] for a in streamed] == [a["seq"] for a in alerts]
    # resumed after the first: the rest only
    with httpx.stream(
        "GET", f"{site.url}/v1/sites/main/alerts",
        headers={"Accept": "text/event-stream", "Last-Event-ID": str(first["seq"])}, timeout=30,
    ) as stream:  # fmt: skip
        for line in stream.iter_lines():
            if line.startswith("id: "):
                assert int(line[4:]) == alerts[1]["seq"]
                break

    # the webhook failed twice, then got every alert (retried with backoff)
    posted = wait_for(lambda: {b["id"] for b in receiver.bodies if b["type"] == "alert"}
                      >= {a["id"] for a in alerts} or None)  # fmt: skip
    assert posted and receiver.tries >= len(alerts) + 2
    metrics = site.get("/metrics").text
    assert re.search(r'synctwin_webhook_deliveries_total\{result="retried"\} 2\.0', metrics)
    assert re.search(r'synctwin_alerts_total\{risk="sla_misses",sector="picking",site="main"\}',
                     metrics)  # fmt: skip

    # every grid point the events passed (up to 13:30) is assessed, as in the replay;
    # resending the same events then raises nothing new
    def ids() -> set[str]:
        return {
            a["id"] for a in site.get("/v1/sites/main/alerts", params={"format": "json"}).json()
        }

    upto = {a.id for a in offline.alerts if a.risk.minute <= 13.5 * 60}
    wait_for(lambda: ids() == upto)
    for i in range(0, cut, 5000):
        r = site.post("/v1/sites/main/events", json=events[i : min(i + 5000, cut)])
        assert r.json()["duplicate"] == min(i + 5000, cut) - i
    time.sleep(2)
    assert ids() == upto


def test_alerts_of_an_unknown_site_are_404(site: Server) -> None:
    r = site.get("/v1/sites/nope/alerts")
    assert r.status_code == 404 and "no site 'nope'" in r.json()["detail"]
