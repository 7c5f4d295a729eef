"""The live twin: replaying the twin's own event log gives the twin's own snapshots, exactly.

The known answer is the twin itself. A run records its floor events and, at every
decision, the snapshot the twin reports and how many events it had logged by then;
a :class:`LiveTwin` fed those events must give that snapshot, compared with ``==``
(floats included: timestamps carry as many digits of a second as the twin's minutes
need). Runs cover every built-in scenario under the tuned threshold strategy (lends,
overtime, flex where it pays, breakdowns and outages) and under a scripted strategy
that changes every lever at every decision (lends and recalls, flex calls and
releases, overtime on and off, queue priority), so every event kind is replayed.

Then the rules for a live stream: duplicates change nothing, events out of order
within the tolerance give the same state, later ones are rejected, bad input is
rejected per event with its reason while the rest is kept, and the wall clock maps
onto the scenario's calendar on any start date. Last, ``synctwin simulate
--log-events`` run as a user runs it writes a log that replays to its final state.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from conftest import run as run_cli

from agents import make_controller
from twin.actions import Controller, SectorAction
from twin.eventlog import EventLog, log_start
from twin.floor_events import FLOOR_EVENTS_FILE, KINDS, read_jsonl, records
from twin.live_twin import LiveTwin
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import Scenario, load_scenario, scenario_from_dict
from twin.snapshot import OperationSnapshot

BUILTINS = (
    "default",
    "breakdowns",
    "absenteeism",
    "claims",
    "lean-week",
    "peak-surge",
    "volatile-peak",
)


def scenario(name: str, days: int = 1, **changes: object) -> Scenario:
    """A built-in scenario cut to ``days`` (as ``simulate --days`` does), with ``changes``."""
    sc = load_scenario(name)
    data = sc.model_dump(mode="json") | {"horizon_days": days, **changes}
    return scenario_from_dict(data, f"{name} for {days} days")


class Churn:
    """Changes every lever at every decision, so a run moves workers every way there is.

    Sector ``i`` at decision ``k`` is in phase ``(k + i) % 4``: lend 2 workers to a
    sector it is trained for, call 3 flex workers, overtime on, earliest-due-first;
    lend 1, keep 1 flex, overtime off; lend nobody, release every flex worker; lend
    3, 2 flex, overtime on, first-in-first-out.
    """

    PHASES = (
        (2, 3, True, "edd"),
        (1, 1, False, "edd"),
        (0, 0, False, "fifo"),
        (3, 2, True, "fifo"),
    )

    def __init__(self, sc: Scenario) -> None:
        self.k = 0
        self.targets = {
            s: next((t for t in sc.sector_names if t != s and sc.efficiency(s, t) > 0), None)
            for s in sc.sector_names
        }

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        out = {}
        for i, (s, target) in enumerate(self.targets.items()):
            lend, flex, overtime, priority = self.PHASES[(self.k + i) % 4]
            out[s] = SectorAction(
                lend_to=target if lend else None,
                lend_count=lend if target else 0,
                flex_count=flex,
                overtime=overtime,
                priority=priority,
            )
        self.k += 1
        return out


class Recording:
    """Wraps a controller; at each decision keeps the twin's snapshot and the log's length."""

    def __init__(self, inner: Controller, log: EventLog) -> None:
        self.inner, self.log = inner, log
        self.seen: list[tuple[OperationSnapshot, int]] = []

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        self.seen.append((snapshot, len(self.log.floor)))
        return self.inner.decide(snapshot)


@lru_cache(maxsize=24)  # every default case, for the coverage test
def _run(
    name: str, strategy: str, seed: int, days: int = 1, tick: int | None = None
) -> tuple[Scenario, list[tuple], list[tuple[OperationSnapshot, int]]]:
    """A run's scenario, its floor log (the twin's tuples) and its decisions."""
    sc = scenario(name, days, **({"tick_minutes": tick} if tick else {}))
    controller = Churn(sc) if strategy == "churn" else make_controller(strategy, sc, seed)
    log = EventLog()
    model = OperationModel(sc, np.random.default_rng(seed), event_log=log)
    rec = Recording(controller, log)
    run_for(model, None, rec)
    rec.seen.append((model.snapshot(), len(log.floor)))  # the end of the run, too
    return sc, log.floor, rec.seen


@lru_cache(maxsize=2)
def recorded(
    name: str, strategy: str, seed: int, days: int = 1, tick: int | None = None
) -> tuple[Scenario, list[dict], list[tuple[OperationSnapshot, int]]]:
    """A run's scenario, its floor events (as written to the file) and its decisions."""
    sc, floor, seen = _run(name, strategy, seed, days, tick)
    return sc, list(records(floor, sc, log_start(sc))), seen


def assert_same(got: OperationSnapshot, want: OperationSnapshot) -> None:
    """Field by field, so a failure names what differs; then the whole."""
    assert got.minute == want.minute
    for g, w in zip(got.sectors, want.sectors, strict=True):
        assert g == w, f"minute {want.minute}: sector {w.name}"
    assert got.workers == want.workers, f"minute {want.minute}: workers"
    assert got == want


def replay(sc: Scenario, events: list[dict], seen: list, twin: LiveTwin | None = None) -> None:
    """Feed ``events`` decision by decision; every snapshot must be the twin's."""
    twin = twin or LiveTwin(sc, log_start(sc))
    done = 0
    for want, n in seen:
        result = twin.ingest(events[done:n])
        assert result.rejected == []
        assert result.accepted == n - done
        done = n
        assert_same(twin.snapshot(want.minute), want)


CASES = [
    *((name, "threshold", 0) for name in BUILTINS),
    *((name, "churn", 1) for name in BUILTINS),
    ("default", "static", 2),
]


@pytest.mark.parametrize(("name", "strategy", "seed"), CASES)
def test_replay_gives_the_twins_snapshot_at_every_decision(
    name: str, strategy: str, seed: int
) -> None:
    sc, events, seen = recorded(name, strategy, seed)
    assert len(seen) >= 24
    replay(sc, events, seen)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("strategy", ["threshold", "churn", "static"])
@pytest.mark.parametrize("name", BUILTINS)
def test_replay_more_seeds(name: str, strategy: str, seed: int) -> None:
    replay(*recorded(name, strategy, seed))


@pytest.mark.slow
def test_replay_under_lookahead() -> None:
    replay(*recorded("default", "lookahead", 0))


def test_replay_with_longer_ticks_bins_rates_per_tick() -> None:
    """5-minute ticks: the smoothed rates count events per tick, not per minute."""
    sc, events, seen = recorded("default", "churn", 5, tick=5)
    assert sc.tick_minutes == 5
    replay(sc, events, seen)


def test_the_replayed_runs_cover_every_event_kind() -> None:
    kinds = {event[0] for case in CASES for event in _run(*case, 1, None)[1]}
    assert kinds == set(KINDS)


def test_several_days_on_any_start_date_with_an_offset() -> None:
    """Two days of a week-long scenario, written for a site that starts on another date
    (same weekday as the scenario's day 0) in UTC+02:00, replay exactly."""
    sc, floor, seen = _run("lean-week", "threshold", 0, days=2)
    assert sc.start_weekday == 1 and seen[-1][0].minute == 2 * 1440
    zero = datetime(2027, 6, 1, tzinfo=timezone(timedelta(hours=2)))  # a Tuesday
    events = list(records(floor, sc, zero))
    last = events[-1]["timestamp"]
    assert last.startswith("2027-06-02T") and last.endswith("+02:00")
    replay(sc, events, seen, LiveTwin(sc, zero))


# --------------------------------------------------------------------------- the calendar


def test_wall_clock_maps_onto_the_scenario_calendar() -> None:
    sc = scenario("claims", days=7)  # day 0 is a Monday
    twin = LiveTwin(sc, datetime(2026, 3, 11, 10, 0))  # a Wednesday, 10:00
    assert twin.zero == datetime(2026, 3, 9)  # that week's Monday
    assert twin.minute("2026-03-11T10:00:00") == 2 * 1440 + 600
    assert twin.minute("2026-03-13T08:00:30.5") == 4 * 1440 + 480 + 30.5 / 60
    assert twin.minute(datetime(2026, 3, 16, 6)) == 7 * 1440 + 360  # the next Monday
    aware = LiveTwin(sc, datetime(2026, 3, 9, 1, 0, tzinfo=timezone(timedelta(hours=1))))
    assert aware.minute("2026-03-09T00:00:00Z") == 60.0  # 01:00 at +01:00 is 00:00 UTC
    snap = twin.snapshot("2026-03-13T08:00:00")
    assert snap.day == 4 and snap.minute_of_day == 480


# --------------------------------------------------------------------------- stream rules


def _prefix(k: int) -> tuple[Scenario, list[dict], OperationSnapshot]:
    """The events before the ``k``-th decision of a churn run and that decision's snapshot."""
    sc, events, seen = recorded("volatile-peak", "churn", 1)
    want, n = seen[k]
    return sc, events[:n], want


def test_duplicates_change_nothing() -> None:
    sc, events, want = _prefix(20)
    twin = LiveTwin(sc, log_start(sc))
    first = twin.ingest(events)
    assert (first.accepted, first.duplicate, first.rejected) == (len(events), 0, [])
    again = twin.ingest(events[-500:] + events[:100])
    assert (again.accepted, again.duplicate, again.rejected) == (0, 600, [])
    within = LiveTwin(sc, log_start(sc)).ingest(events[:50] + events[:50])
    assert (within.accepted, within.duplicate) == (50, 50)
    assert_same(twin.snapshot(want.minute), want)


def test_events_out_of_order_within_the_tolerance_are_reordered() -> None:
    sc, events, want = _prefix(24)
    rng = np.random.default_rng(7)
    # delay each timestamp by up to 1.9 minutes (events at one timestamp together, in
    # their order), then send in order of arrival, in batches of 300
    delay = {t: rng.uniform(0, 1.9) for t in sorted({e["timestamp"] for e in events})}
    twin = LiveTwin(sc, log_start(sc))
    arrival = sorted(
        range(len(events)),
        key=lambda i: twin.minute(events[i]["timestamp"]) + delay[events[i]["timestamp"]],
    )
    shuffled = [events[i] for i in arrival]
    assert shuffled != events
    for i in range(0, len(shuffled), 300):
        result = twin.ingest(shuffled[i : i + 300])
        assert result.rejected == [] and result.accepted == len(shuffled[i : i + 300])
    assert_same(twin.snapshot(want.minute), want)


def test_events_later_than_the_tolerance_are_rejected_with_the_reason() -> None:
    sc, events, want = _prefix(20)
    twin = LiveTwin(sc, log_start(sc))
    twin.ingest(events)
    latest = twin.minute(events[-1]["timestamp"])
    stale = dict(events[-1], id="late-1")
    stale["timestamp"] = (log_start(sc) + timedelta(minutes=latest - 2.5)).isoformat()
    ok = {
        "id": "ok-1",
        "timestamp": (log_start(sc) + timedelta(minutes=latest - 1.5)).isoformat(),
        "kind": "action",
        "sector": sc.sector_names[0],
        "action": {"overtime": True},
    }
    result = twin.ingest([stale])
    assert result.accepted == 0
    [(rid, reason)] = result.rejected
    assert rid == "late-1"
    assert "too late" in reason and "at most 2 minutes" in reason
    assert_same(twin.snapshot(want.minute), want)  # nothing changed
    assert twin.ingest([ok]).accepted == 1  # within the tolerance: taken


def test_bad_input_is_rejected_per_event_and_the_rest_is_kept() -> None:
    sc, events, want = _prefix(16)
    t = events[10]["timestamp"]
    arrive = next(e for e in events if e["kind"] == "item_arrive")
    start = next(e for e in events if e["kind"] == "item_start")
    bad = [
        dict(arrive, id="b-sector", timestamp=t, sector="moon"),
        dict(arrive, id="b-class", timestamp=t, item_class="parcel"),
        dict(start, id="b-worker", timestamp=t, worker_id="w-404"),
        dict(arrive, id="b-stamp", timestamp="yesterday at noon"),
        dict(arrive, id="b-month", timestamp="2026-13-01T08:00:00"),
        dict(arrive, id="b-early", timestamp=(log_start(sc) - timedelta(hours=1)).isoformat()),
        {
            "id": "b-finish",
            "timestamp": t,
            "kind": "item_finish",
            "item_id": "nope",
            "sector": start["sector"],
            "worker_id": start["worker_id"],
        },
        {"id": "b-kind", "timestamp": t, "kind": "teleport"},
        {"id": "b-missing", "timestamp": t, "kind": "item_arrive", "item_id": "x1"},
        {
            "id": "b-lend",
            "timestamp": t,
            "kind": "action",
            "sector": arrive["sector"],
            "action": {"lend_to": "moon", "lend_count": 1},
        },
        "not an event",
    ]
    batch = events[:11] + bad + events[11:]
    twin = LiveTwin(sc, log_start(sc))
    result = twin.ingest(batch)
    # b-finish fits the scenario, so it is taken in, then refused when applied
    assert result.accepted == len(events) + 1
    reasons = dict(result.rejected)
    assert len(result.rejected) == len(bad)
    expected = {
        "b-sector": "unknown sector 'moon'",
        "b-class": "unknown item class 'parcel'",
        "b-worker": "unknown worker 'w-404'",
        "b-stamp": "not an ISO 8601 timestamp",
        "b-month": "month must be in 1..12",
        "b-early": "before the site's start",
        "b-finish": "not in the operation",
        "b-kind": "does not match any of the expected tags",
        "b-missing": "item_arrive.item_class: Field required",
        "b-lend": "unknown sector 'moon'",
        None: "valid dictionary or object",
    }
    for rid, text in expected.items():
        assert text in reasons[rid], (rid, reasons[rid])
    assert_same(twin.snapshot(want.minute), want)


def test_state_contradictions_are_rejected_when_applied() -> None:
    sc, events, want = _prefix(30)
    started = {e["item_id"] for e in events if e["kind"] == "item_start"}
    queued = next(
        e for e in reversed(events) if e["kind"] == "item_arrive" and e["item_id"] not in started
    )
    ins = [e["worker_id"] for e in events if e["kind"] == "clock_in"]
    outs = {e["worker_id"] for e in events if e["kind"] == "clock_out"}
    on_shift = next(w for w in ins if w not in outs)
    intact = next(st.name for st in want.sectors if st.stations_down == 0)
    t = events[-1]["timestamp"]
    wrong = [
        {
            "id": "s-finish",
            "timestamp": t,
            "kind": "item_finish",
            "item_id": queued["item_id"],
            "sector": queued["sector"],
            "worker_id": on_shift,
        },
        {"id": "s-in", "timestamp": t, "kind": "clock_in", "worker_id": on_shift},
        {"id": "s-repair", "timestamp": t, "kind": "equipment_repair", "sector": intact},
        {"id": "s-walk", "timestamp": t, "kind": "transfer_end", "worker_id": "1"},
        {"id": "s-flex", "timestamp": t, "kind": "flex_release", "worker_id": on_shift},
    ]
    twin = LiveTwin(sc, log_start(sc))
    twin.ingest(events)
    accepted = twin.ingest(wrong)
    assert accepted.accepted == len(wrong)  # they fit the scenario: refused when applied
    reasons = dict(twin.flush().rejected)
    assert reasons.keys() == {"s-finish", "s-in", "s-repair", "s-walk", "s-flex"}
    assert reasons["s-finish"].startswith("finish without a start")
    assert "not off_shift" in reasons["s-in"]
    assert reasons["s-repair"] == f"no station of {intact!r} is down to repair"
    assert "not transfer" in reasons["s-walk"]
    assert "not agency staff" in reasons["s-flex"]
    # refused events changed nothing: the state is still the twin's at that minute
    assert_same(twin.snapshot(want.minute), want)


def test_snapshot_refuses_the_past() -> None:
    sc, events, want = _prefix(16)
    twin = LiveTwin(sc, log_start(sc))
    twin.ingest(events)
    twin.flush()
    with pytest.raises(ValueError, match="not after the last applied event"):
        twin.snapshot(want.minute - 60)


# --------------------------------------------------------------------------- the command


def test_simulate_writes_a_log_that_replays_to_the_final_state(tmp_path: Path) -> None:
    run_cli(
        tmp_path,
        "simulate",
        "--scenario",
        "claims",
        "--strategy",
        "threshold",
        "--seed",
        "0",
        "--log-events",
        "logs",
    )
    logs = tmp_path / "logs"
    assert {p.name for p in logs.iterdir()} >= {"events.csv", FLOOR_EVENTS_FILE}
    events = read_jsonl(logs / FLOOR_EVENTS_FILE)
    assert all(json.dumps(e) for e in events) and events[0]["id"] == "e1"
    sc = load_scenario("claims")
    _, same, seen = recorded("claims", "threshold", 0)
    assert events == same  # the file is the log the twin made
    twin = LiveTwin(sc, log_start(sc))
    result = twin.ingest(events)
    assert result.rejected == [] and result.accepted == len(events)
    twin.flush()
    final = seen[-1][0]
    assert final.minute == sc.horizon_minutes
    assert_same(twin.snapshot(final.minute), final)


def test_timestamps_round_trip_exactly() -> None:
    from twin.wallclock import format_timestamp, minute_of

    zero = datetime(2026, 1, 6)
    minutes = [0.0, 480.0, 1e-9, 1439.9999999999998, 0.1 + 0.2, 5000.123456789, 90.5]
    minutes += list(np.random.default_rng(0).uniform(0, 30 * 1440, 2000))
    for m in minutes:
        assert minute_of(format_timestamp(float(m), zero), zero) == m
    assert format_timestamp(480.0, zero) == "2026-01-06T08:00:00"
    assert format_timestamp(480.5, zero.replace(tzinfo=UTC)) == "2026-01-06T08:00:30+00:00"
