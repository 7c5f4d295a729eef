"""``synctwin bench live`` with a tiny budget, run as a user runs it: the report holds
every number, and the numbers are of what they claim (the whole day taken in, the
resend all duplicates, the state read at each time of day with work waiting)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SHIPPED_BUNDLE
from conftest import run as run_cli

from experiments.bench.live import BATCHES, GOALS, STATE_TIMES


@pytest.mark.slow
def test_bench_live_smoke(tmp_path: Path) -> None:
    shutil.copytree(SHIPPED_BUNDLE, tmp_path / "bundle")
    proc = run_cli(tmp_path, "bench", "live", "--policy", "bundle", "--repeats", "1",
                   "--state-requests", "10", "--out", "reports/live.json")  # fmt: skip
    assert "wrote reports/live.json" in proc.stdout
    result = json.loads((tmp_path / "reports" / "live.json").read_text())
    n = result["log"]["events"]
    assert n > 10_000 and result["in_process"]["events"] == n
    for key in ("ingest_whole_day", "ingest_batches_of_1000", "schema_validation_only"):
        r = result["in_process"][key]
        assert r["events_per_second"] > 0 and r["events_per_cpu_second"] > 0
    server = result["server"]
    assert [r["batch"] for r in server["ingest"]] == list(BATCHES)
    assert all(r["events"] == n and r["server_cpu_seconds"] > 0 for r in server["ingest"])
    assert server["resend"]["duplicate"] == n
    assert [r["time"] for r in server["state"]] == list(STATE_TIMES)
    for r in server["state"]:
        assert r["requests"] == 10 and 0 < r["p50_ms"] <= r["p99_ms"]
    noon = server["state"][STATE_TIMES.index("12:00")]
    assert noon["items_waiting"] > 0 and 0 < noon["events_before"] < n
    assert server["with_alerts"]["events"] == n
    assert server["with_alerts"]["cpu_seconds_with_assessments"] > 0
    assert server["with_alerts"]["alerts_raised"] >= 1  # default's morning has a picking risk
    assert result["goals"] == GOALS
    assert set(result["met"]) == {
        "in_process_events_per_second",
        *(f"server_events_per_server_cpu_second (batch {b})" for b in BATCHES),
        "state_p99_ms",
    }
