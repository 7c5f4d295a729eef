"""The ``synctwin`` command run as users run it: a subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from twin.kpis import KPI_NAMES
from twin.scenario import load_scenario
from twin.snapshot import OperationSnapshot

CLI = [str(Path(sys.executable).with_name("synctwin"))]  # the installed console command


def synctwin(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": ""},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_scenarios_lists_builtins() -> None:
    out = synctwin("scenarios").stdout
    assert "default" in out
    assert "receiving" in out


def test_simulate_writes_kpis_timeseries_and_event_log(tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "log"
    proc = synctwin(
        "simulate",
        "--scenario",
        "default",
        "--seed",
        "3",
        "--out",
        str(out),
        "--log-events",
        str(log),
    )
    assert "total_cost" in proc.stdout
    kpis = json.loads((out / "kpis.json").read_text())
    for name in KPI_NAMES:
        assert name in kpis
        for sector in load_scenario("default").sector_names:
            assert f"{sector}.{name}" in kpis
    assert kpis["items_completed"] > 1000
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert len(ts) == 24 * 4 + 1  # every 15 minutes, both ends included
    assert ts["minute"].is_monotonic_increasing
    assert ts["items_completed"].iloc[-1] == kpis["items_completed"]
    run = json.loads((out / "run.json").read_text())
    assert run == {
        "scenario": "default",
        "scenario_digest": load_scenario("default").digest,
        "strategy": "static",
        "seed": 3,
        "horizon_days": 1,
    }
    events = pd.read_csv(log / "events.csv")
    assert set(events["event"]) == {"arrive", "start", "finish"}
    finished = events[(events["event"] == "finish")]
    assert len(finished) == sum(
        kpis[f"{s}.items_completed"] for s in load_scenario("default").sector_names
    )


def test_simulate_same_seed_same_kpis(tmp_path: Path) -> None:
    for name in ("a", "b"):
        synctwin("simulate", "--seed", "11", "--out", str(tmp_path / name))
    a = (tmp_path / "a" / "kpis.json").read_text()
    assert a == (tmp_path / "b" / "kpis.json").read_text()


def test_snapshot_prints_valid_json() -> None:
    proc = synctwin("snapshot", "--scenario", "default", "--seed", "1", "--at", "630")
    snap = OperationSnapshot.model_validate_json(proc.stdout)
    assert snap.minute == 630
    assert {s.name for s in snap.sectors} == set(load_scenario("default").sector_names)
    assert sum(g.count for g in snap.workers) >= load_scenario("default").total_headcount


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["simulate", "--scenario", "nope"], "not a file, and not a built-in (built-ins: "),
        (["simulate", "--strategy", "magic"], "valid: "),
        (["snapshot", "--at", "99999"], "--at must be within"),
    ],
)
def test_user_errors_are_clear(args: list[str], needle: str) -> None:
    proc = synctwin(*args, ok=False)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_invalid_scenario_file_names_the_field(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(
        (Path(__file__).parents[1] / "twin" / "scenarios" / "default.yaml").read_text()
    )
    data["item_classes"][1]["hourly_rates"] = data["item_classes"][1]["hourly_rates"][:23]
    data["workforce"]["transfer_minutes"] = -5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    proc = synctwin("simulate", "--scenario", str(bad), ok=False)
    assert proc.returncode == 2
    assert "item_classes.1.hourly_rates" in proc.stderr
    assert "got 23" in proc.stderr
    assert "workforce.transfer_minutes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_twin_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = synctwin(
        "bench", "twin", "--repeats", "1", "--env-steps", "50", "--json", "--out", str(out)
    )
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text())
    rows = printed["twin"]
    assert [r["scale"] for r in rows] == [1, 2, 10]
    assert rows[2]["workers"] > 9 * rows[0]["workers"]
    assert all(r["sim_minutes_per_wall_second"] > 0 for r in rows)
    envs = {r["env"]: r for r in printed["envs"]}
    assert set(envs) == {"OperationEnv", "OperationParallelEnv", "twin_only"}
    assert envs["OperationParallelEnv"]["agent_steps_per_second"] == pytest.approx(
        5 * envs["OperationParallelEnv"]["env_steps_per_second"]
    )
    assert printed["observation"]["ms_per_sector"] > 0
