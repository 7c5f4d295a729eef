"""``twin.rollout``: the one decision grid, rollout twins that never record, ``close``;
``twin.live``: snapshot errors carry a location."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from twin.actions import SectorAction
from twin.live import SnapshotError, check_snapshot
from twin.model import OperationModel
from twin.rollout import close, rollout_twin, run_for
from twin.scenario import load_scenario
from twin.snapshot import OperationSnapshot


class Recorder:
    """A controller that keeps the plan and notes when it was asked."""

    def __init__(self) -> None:
        self.minutes: list[float] = []

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        self.minutes.append(snapshot.minute)
        return {}


@pytest.fixture(scope="module")
def snap_at_615() -> OperationSnapshot:
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(3))
    model.run_minutes(615)
    return model.snapshot()


def test_fresh_twin_decides_on_the_grid_from_minute_zero() -> None:
    scenario = load_scenario("default")
    assert scenario.decision_interval_minutes == 30
    model = OperationModel(scenario, rng=0, record_every_minutes=None)
    c = Recorder()
    run_for(model, 95, c)
    assert c.minutes == [0.0, 30.0, 60.0, 90.0]
    assert model.minute == 95.0


@pytest.mark.parametrize(
    ("decide_at_start", "expected"),
    [(None, [630.0, 660.0]), (False, [630.0, 660.0]), (True, [615.0, 630.0, 660.0])],
)
def test_off_grid_start_keeps_the_grid(
    snap_at_615: OperationSnapshot, decide_at_start: bool | None, expected: list[float]
) -> None:
    scenario = load_scenario("default")
    model = rollout_twin(scenario, snap_at_615, 1)
    c = Recorder()
    run_for(model, 60, c, decide_at_start=decide_at_start)
    assert c.minutes == expected
    close(model)
    assert not model.__dict__


def test_on_grid_start_decides_there_unless_held(snap_at_615: OperationSnapshot) -> None:
    scenario = load_scenario("default")
    model = rollout_twin(scenario, snap_at_615, 1)
    run_for(model, 15)  # to 630, a grid point
    held, default = Recorder(), Recorder()
    a = OperationModel.from_snapshot(scenario, model.snapshot(), rng=2)
    b = OperationModel.from_snapshot(scenario, model.snapshot(), rng=2)
    run_for(a, 31, held, decide_at_start=False)
    run_for(b, 31, default)
    assert held.minutes == [660.0] and default.minutes == [630.0, 660.0]


def test_rollout_twins_never_record(snap_at_615: OperationSnapshot) -> None:
    scenario = load_scenario("default")
    model = rollout_twin(scenario, snap_at_615, 1)
    run_for(model, 60)
    assert model.timeseries().empty
    recorded = OperationModel.from_snapshot(scenario, snap_at_615, rng=1)
    run_for(recorded, 60)
    assert len(recorded.timeseries()) == 5  # 10:15 .. 11:15 every 15 minutes
    assert model.kpis() == recorded.kpis()  # recording reads, never draws


def test_snapshot_error_carries_its_location(snap_at_615: OperationSnapshot) -> None:
    scenario = load_scenario("default")
    doc = snap_at_615.model_dump(mode="json")
    doc["sectors"][3]["action"]["lend_to"] = "roof"
    with pytest.raises(SnapshotError) as err:
        check_snapshot(scenario, OperationSnapshot.model_validate(doc))
    e = err.value
    name = doc["sectors"][3]["name"]
    assert e.loc == ("sectors", 3, "action", "lend_to") and e.msg == "unknown sector 'roof'"
    assert str(e) == f"snapshot sectors.{name}.action.lend_to: unknown sector 'roof'"
    again = pickle.loads(pickle.dumps(e))  # crosses process pools
    assert (again.loc, again.msg, str(again)) == (e.loc, e.msg, str(e))
    doc = snap_at_615.model_dump(mode="json")
    doc["workers"][2]["shift"] = "night"
    doc["workers"][2]["flex"] = False
    with pytest.raises(SnapshotError) as err:
        check_snapshot(scenario, OperationSnapshot.model_validate(doc))
    assert err.value.loc[:2] == ("workers", 2)
    assert str(err.value).startswith("snapshot workers[2]")


def test_checked_snapshots_skip_the_check(snap_at_615: OperationSnapshot) -> None:
    scenario = load_scenario("default")
    wrong = snap_at_615.model_copy(update={"scenario": "claims"})
    with pytest.raises(SnapshotError):
        rollout_twin(scenario, wrong, 0)
    model = rollout_twin(scenario, wrong, 0, checked=True)  # the caller vouches for it
    assert model.minute == 615.0
