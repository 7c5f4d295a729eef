"""The live dashboard: its client against a real server, its panels' numbers, its page.

A real ``synctwin serve --site main=default --site side=default --api-key ...`` runs
from a temporary directory (as in ``test_sites``), fed with the floor events of
``synctwin simulate --scenario default --strategy static --seed 0 --log-events``
up to 17:00 of the day, when the forecast expects Picking to miss orders (so the risk
panel has something to highlight). The client must read what the routes answer, the
panels must show the site's own numbers, and the command must refuse bad input
before it starts a page. The browser test opens ``synctwin dashboard --live`` in
headless Chromium and compares the queue table with the site's state.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import CLI
from conftest import run as run_cli
from test_dashboard import ARTIFACTS, _chart_images, _until, _wait_http, browser  # noqa: F401  (a fixture)
from test_server import free_port
from test_sites import Server, start, stop, workdir

from experiments.dashboard.live_site import LiveSite, queue_series, risk_series
from experiments.dashboard.live_view import display, headline, queues, risks, staff, worst
from experiments.dashboard.site_client import SiteAlert, SiteClient, SiteClientError
from policies.schemas import AlertOutcomeOut, ForecastOut
from twin.floor_events import FLOOR_EVENTS_FILE, read_jsonl
from twin.snapshot import OperationSnapshot

KEY = "live-dashboard-key"


def alert(**kw: object) -> SiteAlert:
    """An alert as the server lists it, with ``kw`` changed."""
    base: dict = dict(
        id="a", seq=1, site="main", raised_at="2026-01-06T16:30:00", minute=990.0,
        sector="picking", risk="sla_misses", by="2026-01-06T18:00:00", by_minute=1080.0,
        hours=1.5, probability=0.75, expected=4.0, expected_cost=60.0, message="m",
        prevention=None, outcome=None,
    )  # fmt: skip
    return SiteAlert(**{**base, **kw})


UNTIL = "2026-01-06T17:00:00"  # the static day's events before 17:00


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The floor events of the default day under the plan as written, as the file has them."""
    cwd = tmp_path_factory.mktemp("simulate")
    run_cli(cwd, "simulate", "--scenario", "default", "--strategy", "static", "--seed", "0",
            "--log-events", "logs")  # fmt: skip
    return read_jsonl(cwd / "logs" / FLOOR_EVENTS_FILE)


def post(srv: Server, site: str, batch: list[dict]) -> None:
    for i in range(0, len(batch), 5000):
        r = srv.post(
            f"/v1/sites/{site}/events", json=batch[i : i + 5000], headers={"X-API-Key": KEY}
        )
        assert r.status_code == 200 and r.json()["rejected"] == [], r.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, events: list[dict]) -> Iterator[Server]:
    """Two sites of ``default``: ``main`` fed up to 17:00, ``side`` left for the polls test."""
    cwd = workdir(tmp_path_factory.mktemp("live"))
    srv = start(cwd, "--site", "main=default", "--site", "side=default", "--api-key", KEY)
    post(srv, "main", [e for e in events if e["timestamp"] < UNTIL])
    yield srv
    stop(srv.proc)


@pytest.fixture()
def client(server: Server) -> Iterator[SiteClient]:
    with SiteClient(server.url, "main", api_key=KEY) as c:
        yield c


def raw(server: Server, method: str, path: str, **kw: object) -> httpx.Response:
    kw.setdefault("headers", {"X-API-Key": KEY})
    return httpx.request(method, f"{server.url}{path}", timeout=120, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the client


def test_state_is_the_sites_snapshot_at_its_latest_event(
    client: SiteClient, server: Server, events: list[dict]
) -> None:
    snap = client.state()
    assert snap == OperationSnapshot.model_validate(
        raw(server, "GET", "/v1/sites/main/state").json()
    )
    assert snap.scenario == "default"
    assert 16 * 60 < snap.minute < 17 * 60  # the clock of the latest event posted


def test_forecast_is_the_routes_answer_for_1_and_2_hours(
    client: SiteClient, server: Server
) -> None:
    fc = client.forecast()
    direct = raw(server, "POST", "/v1/sites/main/forecast", json={"hours": [1, 2]})
    assert fc == ForecastOut.model_validate(direct.json())
    assert fc.hours == [1.0, 2.0]
    assert [s.sector for s in fc.sectors] == [st.name for st in client.state().sectors]


def test_alerts_are_the_routes_list_or_none_without_the_route(
    client: SiteClient, server: Server
) -> None:
    alerts = client.alerts()
    direct = raw(server, "GET", "/v1/sites/main/alerts", params={"format": "json"})
    if direct.status_code == 404:  # a server from before the alerts route
        assert direct.json() == {"detail": "Not Found"} and alerts is None
    else:
        assert alerts is not None
        assert [a.id for a in alerts] == [a["id"] for a in direct.json()]
        assert client.alerts(page_size=2) == alerts  # read page by page, nothing lost


@pytest.mark.parametrize(
    ("url", "site", "key", "message"),
    [
        ("SERVER", "nope", KEY, "no site 'nope' on this server (sites: main, side)"),
        ("SERVER", "main", None, "refused the API key (401"),
        ("SERVER", "main", "wrong", "refused the API key (401"),
        ("http://127.0.0.1:PORT", "main", KEY, "cannot reach http://127.0.0.1:"),
        ("ftp://example.org", "main", KEY, "--live expects the server's http(s) URL"),
    ],
)
def test_a_route_that_does_not_answer_is_one_line_naming_why(
    server: Server, url: str, site: str, key: str | None, message: str
) -> None:
    url = url.replace("SERVER", server.url).replace("PORT", str(free_port()))
    with pytest.raises(SiteClientError) as err:
        with SiteClient(url, site, api_key=key) as c:
            c.state()
    assert message in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- the panels


def test_panels_show_the_states_own_numbers(client: SiteClient) -> None:
    snap = client.state()
    qs = {q.sector: q for q in queues(snap)}
    for st in snap.sectors:
        q = qs[st.name]
        assert q.waiting == sum(sum(counts) for counts in st.queue.values())
        assert q.overdue == sum(counts[0] for counts in st.queue.values())
        assert q.due_within_1h == sum(counts[1] + counts[2] for counts in st.queue.values())
        assert q.in_service == sum(sum(counts) for counts in st.in_service.values())
        assert q.stations_down == st.stations_down
    on_floor = sum(
        g.count
        for g in snap.workers
        if g.sector is not None and g.state in ("busy", "idle", "break", "transfer", "overtime")
    )
    assert sum(s.on_floor for s in staff(snap)) == on_floor > 0


def test_the_risk_panel_and_headline_say_what_the_forecast_says(client: SiteClient) -> None:
    snap, fc = client.state(), client.forecast()
    by_sector = risks(fc)
    assert list(by_sector) == [*(s.sector for s in fc.sectors), "total"]
    picking = by_sector["picking"][-1]
    assert picking.p_miss == fc.sectors[2].no_action[-1].p_any_miss.mean
    assert picking.policy_expected_misses == fc.sectors[2].policy[-1].expected_misses.mean
    top = worst(fc)
    assert top is not None and top.sector == "picking" and top.hot_misses  # Picking at 17:00
    line = headline(snap, fc, [])
    waiting = sum(q.waiting for q in queues(snap))
    assert line.startswith(f"{waiting:,} items waiting")
    assert f"Highest risk: Picking: {top.p_miss:.0%} chance of SLA misses" in line
    alerts = [
        alert(id="a1", seq=1, sector="packing", minute=990.0),
        alert(id="a2", seq=2, sector="shipping", minute=1000.0,
              outcome=AlertOutcomeOut(happened=True, observed=4, checked_minute=1100.0,
                                      checked_at="2026-01-06T18:20:00")),
    ]  # fmt: skip
    assert headline(snap, fc, alerts).endswith(
        " 2 alerts (1 open), the newest for Shipping at Day 1 · 16:40."
    )


def test_each_poll_reads_the_site_and_a_new_state_adds_a_row(
    server: Server, events: list[dict]
) -> None:
    with SiteClient(server.url, "side", api_key=KEY) as c:
        post(server, "side", [e for e in events if e["timestamp"] < "2026-01-06T09:00:00"])
        model = LiveSite(c, every_seconds=1.0)
        model.step()
        assert model.error is None and model.snapshot == c.state()
        assert model.forecast is not None and model.forecast.minute == model.snapshot.minute
        model.step()  # nothing new: no new row
        post(server, "side", [e for e in events if "09:00:00" <= e["timestamp"][11:] < "10:00"])
        model.step()
        df = model.datacollector.get_model_vars_dataframe()
        assert model.steps == 3 and len(df) == 2
        assert df["minute"].iloc[0] < 9 * 60 <= df["minute"].iloc[1]
        assert df[queue_series("picking")].iloc[1] == queues(c.state())[2].waiting
        assert 0.0 <= df[risk_series("picking")].iloc[1] <= 1.0


def test_a_poll_that_fails_keeps_the_last_state_and_says_why(server: Server) -> None:
    with SiteClient(server.url, "main", api_key=KEY) as c:
        model = LiveSite(c)
        model.step()
        good = model.snapshot
        model.client = SiteClient(f"http://127.0.0.1:{free_port()}", "main")
        model.step()
        assert model.snapshot == good and model.error and "cannot reach" in model.error


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "nope"], "error: no site 'nope' on this server"),
        (["--site", "main", "--api-key", "wrong"], "error: SERVER refused the API key"),
        (["--site", "main", "--every", "0"], "error: Invalid value for '--every'"),
        (["--site", "main", "--every", "soon"], "error: Invalid value for '--every'"),
        (["--site", "main", "--live", "http://127.0.0.1:PORT"], "error: cannot reach"),
        ([], "error: --live needs --site NAME"),
    ],
)
def test_bad_live_options_exit_2_with_one_line(
    server: Server, tmp_path: Path, args: list[str], message: str
) -> None:
    port = str(free_port())
    args = [a.replace("PORT", port) for a in args]
    live = [] if "--live" in args else ["--live", server.url]
    key = [] if "--api-key" in args else ["--api-key", KEY]
    proc = run_cli(tmp_path, "dashboard", *live, *key, *args, ok=False, timeout=60)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith(message.replace("SERVER", server.url)), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def live_url(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``synctwin dashboard --live`` on the main site, on a free port of 127.0.0.1."""
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "dashboard", "--live", server.url, "--site", "main", "--api-key", KEY,
         "--every", "2", "--port", str(port)],
        cwd=tmp_path_factory.mktemp("dashboard"),
        env={**os.environ, "SOLARA_KERNEL_CULL_TIMEOUT": "3s"},  # sessions end 3 s after close
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc)
        yield url
    finally:
        proc.terminate()  # the command stops its Solara server with it
        proc.communicate(timeout=30)


def _cells(driver, panel: str, sector: str) -> list[str]:
    row = driver.find_element("css selector", f'.{panel} tr[data-sector="{sector}"]')
    return [td.text.strip() for td in row.find_elements("tag name", "td")]


@pytest.mark.slow
def test_the_live_page_shows_the_sites_queues_risk_and_alerts(
    browser,  # noqa: F811
    live_url: str,
    client: SiteClient,
    server: Server,
) -> None:
    d = browser
    d.set_window_size(1600, 1150)
    d.get(live_url)
    snap = client.state()
    _until(lambda: "Queues by due time" in d.find_element("css selector", ".synctwin-live-queues")
           .text, "the queue panel", seconds=60)  # fmt: skip
    for q in queues(snap):
        cells = _cells(d, "synctwin-live-queues", q.sector)
        assert cells[0] == display(q.sector)
        shown = [int(c.replace(",", "")) for c in cells[1:]]
        assert shown == [q.overdue, q.due_within_1h, q.later, q.waiting, q.in_service,
                         q.stations_down]  # fmt: skip
    for s in staff(snap):
        assert _cells(d, "synctwin-live-staff", s.sector)[6] == str(s.on_floor)
    header = d.find_element("css selector", ".synctwin-live-headline").text
    assert header.splitlines()[0] == "Day 1 · 16:59"
    assert header.splitlines()[1].startswith(f"{sum(q.waiting for q in queues(snap)):,} items")
    risk = _until(lambda: d.find_element("css selector", ".synctwin-live-risk"), "the risk panel")
    assert "Risk ahead" in risk.text and "Total" in risk.text
    hot = d.find_elements("css selector", '.synctwin-live-risk tr.hot[data-sector="picking"]')
    assert len(hot) == 1  # Picking's risk is highlighted
    alerts = d.find_element("css selector", ".synctwin-live-alerts").text
    assert "no alerts route on this server" in alerts or "Outcome:" in alerts
    tabs = [t.text.strip().lower() for t in d.find_elements("css selector", ".v-tab")]
    assert tabs == ["now", "trend"]
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1)
    d.save_screenshot(str(ARTIFACTS / "dashboard-live.png"))  # the README's docs/dashboard-live.png
    d.find_element("xpath", "//div[contains(@class,'v-tab') and normalize-space()='Trend']").click()
    _until(lambda: len(_chart_images(d)) == 2, "the queue and risk charts on the Trend tab")

    d.get("about:blank")  # the page closes: its session ends, and with it the polling
    _until(lambda: _polls_stopped(server), "the polling to stop", seconds=60)


def _state_requests(server: Server) -> float:
    text = raw(server, "GET", "/metrics").text
    line = next(x for x in text.splitlines() if 'route="/v1/sites/{site}/state"' in x)
    return float(line.rsplit(" ", 1)[1])


def _polls_stopped(server: Server) -> bool:
    """No state request for three poll intervals (``--every 2``)."""
    before = _state_requests(server)
    time.sleep(6)
    return _state_requests(server) == before
