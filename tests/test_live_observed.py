"""The live twin's observations: SLA misses per sector and arrivals per class, exactly.

The known answer is the twin itself, as in :mod:`test_live_twin`: a run records at
every decision the twin's per-sector ``misses`` and, through a model that notes each
arrival as ``_arrive`` makes it, the minutes of its external arrivals per class; a
:class:`LiveTwin` fed the run's floor events must count the same at every decision,
with the events in order, or delayed within the reorder tolerance and buffered.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
from test_live_twin import Churn, scenario

from agents import make_controller
from twin import _core_select
from twin.actions import SectorAction
from twin.eventlog import EventLog, log_start
from twin.floor_events import records
from twin.live_twin import LiveTwin
from twin.model import OperationModel
from twin.rollout import run_for
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot


class Noting(OperationModel):
    """The twin, noting the minute and class of every arrival it makes.

    It runs the reference event core, whose ``_arrive`` is the Python method noted
    here (the compiled core makes the same arrivals in C: tests/test_core_diff.py).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        before = _core_select.USE_COMPILED
        _core_select.USE_COMPILED = False
        try:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            _core_select.USE_COMPILED = before
        self.noted: list[tuple[int, float]] = []

    def _arrive(self, cls: int, t: float) -> None:
        self.noted.append((cls, t))
        super()._arrive(cls, t)


class Decisions:
    """Wraps a controller; at each decision keeps the minute, the log's length, the
    twin's misses per sector and its arrivals so far."""

    def __init__(self, inner: object, model: Noting, log: EventLog) -> None:
        self.inner, self.model, self.log = inner, model, log
        self.seen: list[tuple[float, int, list[int], int]] = []

    def note(self) -> None:
        m = self.model
        self.seen.append((m.minute, len(self.log.floor), list(m.misses), len(m.noted)))

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        self.note()
        return self.inner.decide(snapshot)  # type: ignore[attr-defined]


@lru_cache(maxsize=4)
def run(name: str, strategy: str, seed: int) -> tuple[Scenario, list[dict], Decisions, Noting]:
    sc = scenario(name)
    controller = Churn(sc) if strategy == "churn" else make_controller(strategy, sc, seed)
    log = EventLog()
    model = Noting(sc, np.random.default_rng(seed), event_log=log)
    rec = Decisions(controller, model, log)
    run_for(model, None, rec)
    rec.note()
    return sc, list(records(log.floor, sc, log_start(sc))), rec, model


def check(sc: Scenario, twin: LiveTwin, rec: Decisions, model: Noting, k: int) -> None:
    """The live twin's observations before the ``k``-th decision are the twin's."""
    minute, _, misses, n_arrived = rec.seen[k]
    seen = twin.observed(minute)
    assert [len(seen.misses[s]) for s in sc.sector_names] == misses, f"minute {minute}"
    for s in sc.sector_names:
        assert twin.misses(s, until=minute) == len(seen.misses[s])
        assert all(m < minute for m in seen.misses[s])
        assert seen.misses[s] == sorted(seen.misses[s])
    want = [[t for c, t in model.noted[:n_arrived] if c == k] for k in range(len(sc.class_names))]
    assert [seen.arrivals[c] for c in sc.class_names] == want, f"minute {minute}"


CASES = [
    ("volatile-peak", "threshold", 0),
    ("peak-surge", "churn", 1),
    ("breakdowns", "static", 2),
    ("claims", "threshold", 3),
]


@pytest.mark.parametrize(("name", "strategy", "seed"), CASES)
def test_misses_and_arrivals_at_every_decision_are_the_twins(
    name: str, strategy: str, seed: int
) -> None:
    sc, events, rec, model = run(name, strategy, seed)
    assert sum(rec.seen[-1][2]) > 0, "a run with misses, so the count is tested"
    twin = LiveTwin(sc, log_start(sc))
    done = 0
    for k, (_, n, _, _) in enumerate(rec.seen):
        result = twin.ingest(events[done:n])
        assert result.rejected == []
        done = n
        check(sc, twin, rec, model, k)
    # the past is kept: every earlier decision is answered again, from the history
    for k in range(0, len(rec.seen), 7):
        check(sc, twin, rec, model, k)
    twin.flush()
    assert twin.arrivals(until=rec.seen[-1][0]) == model.arrived


def test_buffered_events_within_the_tolerance_count_the_same() -> None:
    """Timestamps delayed by up to 1.9 minutes and sent in order of arrival: at every
    decision (asked once everything before it has come in) the counts are the twin's."""
    sc, events, rec, model = run("volatile-peak", "threshold", 0)
    rng = np.random.default_rng(11)
    twin = LiveTwin(sc, log_start(sc))
    delay = {t: rng.uniform(0, 1.9) for t in sorted({e["timestamp"] for e in events})}
    due = [twin.minute(e["timestamp"]) + delay[e["timestamp"]] for e in events]
    order = sorted(range(len(events)), key=due.__getitem__)
    i = 0
    for k, (minute, _, _, _) in enumerate(rec.seen):
        batch = []
        while i < len(order) and due[order[i]] < minute + 1.9:
            batch.append(events[order[i]])
            i += 1
        assert twin.ingest(batch).rejected == []
        check(sc, twin, rec, model, k)


def test_counts_by_sector_class_and_window() -> None:
    sc, events, rec, model = run("peak-surge", "churn", 1)
    twin = LiveTwin(sc, log_start(sc))
    twin.ingest(events)
    twin.flush()
    end = rec.seen[-1][0]
    by_sector = twin.miss_minutes(end)
    assert sum(len(v) for v in by_sector.values()) == sum(model.misses) == twin.misses(until=end)
    first = {s: v[0] for s, v in by_sector.items() if v}
    assert first, "some sector missed"
    for s, t in first.items():
        assert twin.misses(s, until=t) == 0 and twin.misses(s, until=math.nextafter(t, 1e9)) >= 1
    s, t = next(iter(first.items()))
    later = by_sector[s][-1]
    in_window = len(by_sector[s]) - by_sector[s].count(later)
    assert twin.misses(s, since=t, until=later) == in_window
    assert twin.arrivals(until=end) == model.arrived
    n_express = sum(1 for c, _ in model.noted if sc.class_names[c] == "express")
    assert twin.arrivals("express", until=end) == n_express > 0
    assert twin.arrivals("express", since=600, until=840) == sum(
        1 for c, t in model.noted if sc.class_names[c] == "express" and 600 <= t < 840
    )
    with pytest.raises(KeyError, match="unknown sector 'nowhere'"):
        twin.misses("nowhere")
    with pytest.raises(KeyError, match="unknown item class 'pallet'"):
        twin.arrivals("pallet")
