"""``synctwin bench twin --vs-simpy`` as users run it: the twin and its SimPy peer agree.

A correctness check, not a timing one: both models simulate the same Jackson tandem line
with the same replication design, so their mean waits per station must agree within
their standard errors and lie near theory. Speeds are only checked to be reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import run

REPLICATIONS, DAYS, WARMUP_MINUTES = 3, 2, 240


def test_vs_simpy_waits_agree(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        "bench",
        "twin",
        "--vs-simpy",
        "--replications",
        str(REPLICATIONS),
        "--days",
        str(DAYS),
        "--warmup-minutes",
        str(WARMUP_MINUTES),
        "--json",
        "--out",
        "out/vs.json",
    )
    result = json.loads(proc.stdout)
    assert result == json.loads((tmp_path / "out" / "vs.json").read_text())
    assert result["design"] == {
        "replications": REPLICATIONS,
        "horizon_days": DAYS,
        "warmup_minutes": WARMUP_MINUTES,
        "seeds": list(range(REPLICATIONS)),
    }
    net = result["network"]
    assert abs(net["theory_wait_minutes"] - 4.0) < 1e-9  # ρ / (μ − λ) = 0.8 / (1 − 0.8)
    expected_events = (
        REPLICATIONS * (1 + net["stations"]) * net["arrivals_per_minute"] * DAYS * 1440
    )
    for model in ("twin", "simpy"):
        r = result[model]
        assert r["sim_days_per_wall_second"] > 0 and r["sim_days_per_cpu_second"] > 0
        assert r["us_per_event"] > 0
        # the same network: arrivals plus completions within 3% of λ·horizon·(1 + stations)
        assert abs(r["events"] / expected_events - 1) < 0.03, (model, r["events"])
        assert [s["station"] for s in r["stations"]] == ["station_1", "station_2", "station_3"]
        for s in r["stations"]:
            assert s["wait_se_minutes"] > 0
            assert s["mean_time_in_station_minutes"] > s["mean_wait_minutes"] > 0
    ratio = result["twin"]["sim_days_per_wall_second"] / result["simpy"]["sim_days_per_wall_second"]
    assert abs(result["speed_ratio_twin_over_simpy"] - ratio) < 1e-9
    assert result["speed_ratio_median_of_pairs"] > 0
    for s, a, b in zip(
        result["stations"], result["twin"]["stations"], result["simpy"]["stations"], strict=True
    ):
        diff = a["mean_wait_minutes"] - b["mean_wait_minutes"]
        se = (a["wait_se_minutes"] ** 2 + b["wait_se_minutes"] ** 2) ** 0.5
        assert abs(diff) <= 2 * se, (s["station"], diff, se)
        for m in (a, b):
            assert abs(m["mean_wait_minutes"] - 4.0) <= 3 * m["wait_se_minutes"], m
        assert s["agree"] and s["twin_close_to_theory"] and s["simpy_close_to_theory"]
    assert result["all_agree"] and result["all_close_to_theory"]


def test_vs_simpy_table_and_mistakes(tmp_path: Path) -> None:
    proc = run(tmp_path, "bench", "twin", "--vs-simpy", "--replications", "2", "--days", "1")
    assert "twin / SimPy speed" in proc.stdout and "station_3" in proc.stdout
    assert (tmp_path / "reports" / "bench-twin-vs-simpy.json").is_file()
    bad = run(
        tmp_path, "bench", "twin", "--vs-simpy", "--days", "1", "--warmup-minutes", "1440", ok=False
    )
    assert bad.returncode == 2 and "nothing of 1 day(s)" in bad.stderr


def test_vs_simpy_without_simpy_says_how_to_install(tmp_path: Path) -> None:
    """Python refuses to import a module whose ``sys.modules`` entry is None: as without simpy."""
    code = (
        "import sys; sys.modules['simpy'] = None; "
        "sys.argv = ['synctwin', 'bench', 'twin', '--vs-simpy']; "
        "from experiments.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "needs simpy" in proc.stderr and 'pip install -c constraints.txt -e ".[dev]"' in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "reports").exists()
