"""The planner dashboard: its logic without a browser, and the page in headless Chromium.

The browser tests start ``synctwin dashboard`` on a free port of 127.0.0.1 and drive
Debian's Chromium with Selenium. They do not skip when the browser is missing: they
fail and say to run ``make browser`` (``make test`` does it first).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents import make_controller
from experiments.dashboard.session import NO_COMPARE, STEP_MINUTES, PlannerTwin, clock, staffing
from experiments.dashboard.whatif import WhatIf, what_if_scenario
from policies.advice import AdviceOptions, advise
from policies.messages import message
from twin.model import OperationModel
from twin.runner import simulate
from twin.scenario import Absenteeism, EquipmentBreakdown, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
#: ``synctwin`` with this interpreter (``-m experiments.cli`` would load the CLI twice)
SYNCTWIN = [sys.executable, "-c", "from experiments.cli import main; main()"]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# --------------------------------------------------------------------------- what-if scenarios


def test_what_if_changes_the_scenario_through_its_schema() -> None:
    base = load_scenario("default")
    w = WhatIf(
        demand=1.5,
        absenteeism=0.1,
        breakdown_sector="packing",
        breakdown_minute=600,
        breakdown_minutes=90,
        breakdown_share=0.5,
        headcount_pct={"picking": 50, "packing": 120},
    )
    sc = what_if_scenario(base, w)
    for c0, c1 in zip(base.item_classes, sc.item_classes, strict=True):
        assert c1.hourly_rates == pytest.approx([r * 1.5 for r in c0.hourly_rates])
    assert [d for d in sc.disruptions if isinstance(d, Absenteeism)] == [
        Absenteeism(day=0, rate=0.1)
    ]
    (outage,) = [d for d in sc.disruptions if isinstance(d, EquipmentBreakdown)]
    assert (outage.sector, outage.start_minute, outage.duration_minutes) == ("packing", 600, 90)
    assert outage.stations == 10  # half of packing's 20 benches
    assert sc.workforce.headcount["picking"] == {"early": 10, "late": 8}
    assert sc.workforce.headcount["packing"] == {"early": 19, "late": 17}
    assert sc.workforce.headcount["shipping"] == base.workforce.headcount["shipping"]
    assert sc.digest != base.digest  # a new, validated scenario, not a patched copy
    assert "demand x1.5" in sc.description


def test_a_what_if_that_changes_nothing_is_the_scenario_itself() -> None:
    base = load_scenario("default")
    assert what_if_scenario(base, WhatIf(headcount_pct={"picking": 100})) is base


def test_an_impossible_what_if_names_the_field() -> None:
    with pytest.raises(ScenarioError, match=r"disruptions\.0: 'intake' has no stations"):
        what_if_scenario(load_scenario("claims"), WhatIf(breakdown_sector="intake"))


# --------------------------------------------------------------------------- the session model


def test_side_by_side_runs_match_synctwin_simulate() -> None:
    """Stepping the dashboard to the end gives what ``simulate`` gives, for both strategies."""
    m = PlannerTwin(
        scenario="default", strategy="static", compare="threshold", seed=3, demand=1.2,
        headcount_packing=80,
    )  # fmt: skip
    assert m.error is None and m.running
    m.run_to_end()
    assert not m.running
    assert m.steps == m.scenario.horizon_minutes // STEP_MINUTES
    for name, arm in (("static", m.a), ("threshold", m.b)):
        expected = simulate(m.scenario, make_controller(name, m.scenario, 3), 3).kpis()
        assert arm is not None and arm.kpis() == expected
    rows = {label: (a, b) for label, a, b in m.side_by_side()}
    assert rows["SLA misses"] == (m.a.kpis().total.sla_misses, m.b.kpis().total.sla_misses)
    df = m.datacollector.get_model_vars_dataframe()
    assert len(df) == m.steps + 1  # the start, then one row per step
    assert df["A.sla_misses"].is_monotonic_increasing
    assert df["minute"].iloc[-1] == m.scenario.horizon_minutes
    assert df["Packing"].iloc[-1] == m.a.model.queues[3].n


def test_a_bad_setting_is_reported_not_raised() -> None:
    m = PlannerTwin(strategy="no-such-strategy", compare=NO_COMPARE)
    assert m.error is not None and "unknown strategy" in m.error
    assert not m.running
    m.step()  # nothing to do, nothing raised
    assert m.steps == 1 and m.minute == 0.0


def test_advice_is_worded_by_the_servers_message_function() -> None:
    m = PlannerTwin(strategy="static", compare=NO_COMPARE, advisor="threshold", seed=1)
    for _ in range(10 * 60 // STEP_MINUTES):  # to 10:00, when the picking queue is long
        m.step()
    snap = m.a.model.snapshot()
    threshold = make_controller("threshold", m.scenario, 1)
    advice = advise(threshold, snap, AdviceOptions(impact=False), scenario=m.scenario).sectors
    assert any(a.changes for a in advice)
    for a in advice:
        assert a.message == message(m.scenario, snap, a.sector, a.action, a.in_force)
    with_impact = m.advice()
    assert [a.action for a in with_impact] == [a.action for a in advice]
    assert any("over the next 90 min" in a.message for a in with_impact if a.changes)


def test_staffing_accounts_for_every_worker_on_shift() -> None:
    model = OperationModel(load_scenario("default"), rng=0)
    model.run_minutes(9 * 60)
    snap = model.snapshot()
    staff = staffing(snap)
    present = sum(g.count for g in snap.workers if g.state in ("idle", "busy", "overtime", "break"))
    assert sum(s.own + s.borrowed_in + s.flex for s in staff.values()) == present
    assert clock(630) == "Day 1 · 10:30"


@pytest.mark.filterwarnings("ignore:.*found despite early return:UserWarning")  # Mesa's own
def test_the_page_offers_every_sector_and_builds_its_model() -> None:
    from experiments.dashboard.app import initial_kwargs, model_params

    sc = load_scenario("claims")
    params = model_params("claims", sc)
    assert {f"headcount_{s}" for s in sc.sector_names} <= params.keys()
    assert params["breakdown_sector"]["values"] == ["none"]  # claims has no stations
    m = PlannerTwin(**initial_kwargs(params))
    assert m.error is None and m.base.name == "claims"


def test_the_twin_never_imports_the_dashboard() -> None:
    for path in (ROOT / "twin").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "dashboard" not in text and "solara" not in text, path


def test_cli_rejects_an_unknown_scenario_before_serving() -> None:
    proc = subprocess.run(
        [*SYNCTWIN, "dashboard", "--scenario", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in proc.stderr


# --------------------------------------------------------------------------- in the browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"synctwin dashboard exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {seconds:.0f} s")


@pytest.fixture(scope="module")
def dashboard_url() -> Iterator[str]:
    """``synctwin dashboard`` on a free port of 127.0.0.1."""
    port = _free_port()
    proc = subprocess.Popen(
        [*SYNCTWIN, "dashboard", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc)
        yield url
    finally:
        proc.terminate()  # the command stops its Solara server with it
        proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's ``chromium`` and ``chromium-driver``)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing or shutil.which(str(CHROMEDRIVER)) is None:
        pytest.fail(
            f"headless Chromium is not installed ({', '.join(missing)} missing): "
            "run `make browser` (make test does it first)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1600,1300", "--hide-scrollbars"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _until(check: Callable[[], object], what: str, seconds: float = 30) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # the page re-renders under us: try again
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def _button(driver, label: str):
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(By.TAG_NAME, "button"):
        if b.text.strip().upper() == label and b.is_displayed():
            return b
    return None


def _chart_images(driver) -> list[str]:
    """The ``src`` of every chart (a blob URL per PNG: a new picture is a new src)."""
    from selenium.webdriver.common.by import By

    srcs = [img.get_attribute("src") or "" for img in driver.find_elements(By.CSS_SELECTOR, "img")]
    return [s for s in srcs if s.startswith(("blob:", "data:image"))]


def _choose(driver, label: str, value: str) -> None:
    """Pick ``value`` in the Vuetify select labelled ``label``."""
    from selenium.webdriver.common.by import By

    field = driver.find_element(
        By.XPATH, f"//label[normalize-space()='{label}']/ancestor::div[contains(@class,'v-select')]"
    )
    field.find_element(By.CSS_SELECTOR, ".v-select__slot").click()
    item = _until(
        lambda: next(
            e
            for e in driver.find_elements(
                By.CSS_SELECTOR, ".menuable__content__active .v-list-item"
            )
            if e.text.strip() == value
        ),
        f"option {value!r} of {label!r}",
    )
    item.click()


def _open(driver, url: str) -> None:
    driver.get(url)
    _until(lambda: _button(driver, "STEP"), "the page to load", seconds=60)
    _until(lambda: "Day 1 · 00:00" in _text(driver, ".synctwin-clock"), "the clock")


def _press(driver, label: str) -> None:
    """Click the sidebar button ``label`` from script (a click no overlay can take)."""

    def click() -> bool:  # a re-render can swap the button between finding and clicking
        driver.execute_script("arguments[0].click()", _button(driver, label))
        return True

    _until(click, f"the {label} button to take a click")


def _play_then_step_to(driver, pause_from: str, target: str) -> None:
    """Play to about ``pause_from``, pause, then step onto ``target`` exactly.

    On a loaded machine a pause can land late, even past ``target`` (the day's end stops
    play by itself): then the run is reset and stepped from the start instead, so the
    page always reaches ``target`` by the model's own steps.
    """
    _press(driver, "▶")
    _until(lambda: _text(driver, ".synctwin-clock") >= pause_from, "playing", seconds=240)
    _press(driver, "❚❚")  # disabled, so a no-op, once the day's end has stopped play

    def stopped() -> bool:  # ▶ is back, or play ended by itself (❚❚ stays, disabled)
        pause = _button(driver, "❚❚")
        return _button(driver, "▶") is not None or not pause.is_enabled()

    _until(stopped, "the play to stop", seconds=60)
    time.sleep(1)
    if _text(driver, ".synctwin-clock") > target:  # the pause overshot: start over
        _press(driver, "RESET")
        _until(lambda: "Day 1 · 00:00" in _text(driver, ".synctwin-clock"), "the reset")
    for _ in range(24 * 60 // STEP_MINUTES):
        now = _text(driver, ".synctwin-clock")
        if now >= target:
            break
        _press(driver, "STEP")
        _until(lambda now=now: _text(driver, ".synctwin-clock") != now, f"a step past {now}")


@pytest.mark.slow
def test_page_loads_runs_and_charts_update(browser, dashboard_url) -> None:
    d = browser
    _open(d, dashboard_url)
    assert "SyncTwin planner" in d.find_element("css selector", "header, .v-app-bar").text
    assert "Step 0" in _text(d, ".synctwin-step")
    charts = _until(lambda: _chart_images(d) if len(_chart_images(d)) >= 3 else None, "charts")
    for _ in range(3):
        _button(d, "STEP").click()
        time.sleep(0.5)
    _until(lambda: "Day 1 · 00:45" in _text(d, ".synctwin-clock"), "three steps (45 minutes)")
    assert "Step 3" in _text(d, ".synctwin-step")
    _until(lambda: _chart_images(d) != charts, "a chart to change")
    _until(lambda: "Advice from threshold at Day 1 · 00:45" in _text(d, ".synctwin-advice"),
           "advice at the new time")  # fmt: skip
    tabs = [t.text.strip().lower() for t in d.find_elements("css selector", ".v-tab")]
    assert tabs == ["live", "side by side"]  # named tabs, not "Page 0" and "Page 1"
    headline = _text(d, ".synctwin-headline")
    assert headline.startswith(("Hold: nothing worth changing now", "No ranked advice")) or (
        "saves about" in headline
    )
    _until(lambda: "Risk ahead" in _text(d, ".synctwin-risk"), "the risk panel")
    assert "Total" in _text(d, ".synctwin-risk")

    # The README's picture: the default run at 11:15, when picking's queue has grown and
    # the threshold advisor acts (switch picking to earliest-due-first, move a worker).
    acting = "Day 1 · 11:15"
    _play_then_step_to(d, "Day 1 · 08:00", acting)
    assert _text(d, ".synctwin-clock") == acting
    _until(lambda: f"Advice from threshold at {acting}" in _text(d, ".synctwin-advice"),
           "advice at 11:15", seconds=60)  # fmt: skip
    headline = _text(d, ".synctwin-headline")
    assert "saves about" in headline, headline
    actions = d.find_elements("css selector", ".synctwin-actions li")
    assert actions and "saves about" in actions[0].text
    assert "Risk ahead" in _text(d, ".synctwin-risk")
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1)
    d.save_screenshot(str(ARTIFACTS / "dashboard.png"))


@pytest.mark.slow
def test_a_strategy_change_takes_effect_on_reset(browser, dashboard_url) -> None:
    d = browser
    _open(d, dashboard_url)
    assert "A: static" in _text(d, ".synctwin-status")
    _choose(d, "Strategy A", "lookahead")
    _choose(d, "Strategy B (side by side)", "none")
    _button(d, "RESET").click()
    _until(lambda: "A: lookahead" in _text(d, ".synctwin-status"), "strategy A to change")
    assert "B:" not in _text(d, ".synctwin-status")
    _button(d, "STEP").click()
    _until(lambda: "Step 1" in _text(d, ".synctwin-step"), "a step under the new strategy")
    d.find_element(
        "xpath", "//div[contains(@class,'v-tab') and normalize-space()='Side by side']"
    ).click()
    _until(lambda: "Choose a strategy B" in d.find_element("tag name", "body").text,
           "the side-by-side page to ask for a strategy B")  # fmt: skip


def test_a_policy_bundle_drives_and_advises(policy_bundle) -> None:
    """``policy:DIR`` runs as strategy A and as the advisor, with the bundle's confidence."""
    strategy = f"policy:{policy_bundle}"
    m = PlannerTwin(strategy=strategy, compare="static", advisor=strategy, seed=2)
    assert m.error is None and m.is_policy
    for _ in range(13 * 60 // STEP_MINUTES):  # to 13:00, picking's queue is long by then
        m.step()
    assert m.a is not None and m.a.kpis() != m.b.kpis()  # the policy acted
    advice = m.advice()
    assert {a.sector for a in advice} == set(m.scenario.sector_names)
    for a in advice:
        assert a.confidence is not None and 0.0 < a.confidence <= 1.0
        assert a.message


def test_the_risk_panel_is_the_servers_forecast() -> None:
    """The risk panel's forecast is policies.impact.forecast, as POST /v1/forecast runs it."""
    from experiments.dashboard.session import RISK_HOURS, RISK_SAMPLES
    from policies.impact import forecast

    m = PlannerTwin(strategy="static", compare=NO_COMPARE, advisor="threshold", seed=1)
    for _ in range(11 * 60 // STEP_MINUTES):
        m.step()
    assert m.risk_key == 11
    shown = m.risk()
    direct = forecast(
        m.scenario,
        m.a.model.snapshot(),
        make_controller("threshold", m.scenario, 1),
        hours=RISK_HOURS,
        samples=RISK_SAMPLES,
        seed=1,
    )
    assert shown == direct
    assert [h.hours for h in shown.no_action] == list(RISK_HOURS)
    assert set(shown.no_action[0].sectors) == set(m.scenario.sector_names)
