"""Strategy comparisons: statistics, reproducibility, the report, and the commands."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import astuple
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.comparison.compare import run_compare, summarize, write_comparison
from experiments.comparison.silo import downstream_of
from twin.kpis import KPI_NAMES
from twin.scenario import load_scenario
from twin.stats import t_interval

CLI = [str(Path(sys.executable).with_name("synctwin"))]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synctwin(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"COLUMNS": "200", "PATH": ""},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


# --------------------------------------------------------------------------- statistics


def test_t_interval_known_answer():
    mean, lo, hi, _ = astuple(t_interval(np.array([1.0, 2.0, 3.0, 4.0])))
    half = stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert mean == 2.5
    assert (lo, hi) == pytest.approx((2.5 - half, 2.5 + half))
    m1, lo1, hi1, _ = astuple(t_interval(np.array([5.0])))
    assert m1 == 5.0 and np.isnan(lo1) and np.isnan(hi1)


def test_summary_pairs_by_seed_and_normalises_to_static():
    frame = pd.DataFrame(
        {
            "scenario": ["s"] * 6,
            "strategy": ["static"] * 3 + ["better"] * 3,
            "seed": [0, 1, 2, 2, 1, 0],  # out of order on purpose
            "total_cost": [100.0, 200.0, 300.0, 290.0, 190.0, 90.0],
        }
    )
    out = summarize(frame, ["static", "better"], columns=["total_cost"]).set_index("strategy")
    better = out.loc["better"]
    assert better["mean"] == pytest.approx(190.0)
    # unpaired the spread is huge; paired, every seed saves exactly 10
    assert better["diff_mean"] == pytest.approx(-10.0)
    assert better["diff_ci95_low"] == pytest.approx(-10.0)
    assert better["diff_ci95_high"] == pytest.approx(-10.0)
    assert better["ci95_low"] < 0 < better["ci95_high"] - 300
    assert better["normalized"] == pytest.approx(0.95)
    assert out.loc["static", "normalized"] == 1.0
    assert out.loc["static", "diff_mean"] == 0.0


def test_downstream_follows_the_routing():
    sc = load_scenario("default")
    assert downstream_of(sc, "picking") == ["packing", "shipping"]
    assert downstream_of(sc, "receiving") == ["putaway"]
    assert downstream_of(sc, "shipping") == []


# --------------------------------------------------------------------------- runs and files


class _Checker(HTMLParser):
    """Collects image sources and checks that non-void tags are closed in order."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.errors: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        elif tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def comparison_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp")
    cmp = run_compare(["default"], ["static", "threshold", "random"], 3, workers=1)
    write_comparison(cmp, out)
    return out


def test_compare_writes_results_summary_and_timing(comparison_dir):
    res = pd.read_parquet(comparison_dir / "results.parquet")
    assert len(res) == 9
    assert list(res[["strategy", "seed"]].itertuples(index=False, name=None))[:3] == [
        ("static", 0),
        ("static", 1),
        ("static", 2),
    ]
    for k in KPI_NAMES:
        assert k in res.columns
        assert f"packing.{k}" in res.columns
    # common random numbers: seed k brings every strategy the same inbound pallets
    inbound = res["receiving.items_completed"] + res["receiving.backlog_end"]
    assert (inbound.groupby(res["seed"]).nunique() == 1).all()
    assert inbound.nunique() == 3
    summary = pd.read_csv(comparison_dir / "summary.csv")
    for col in ("scenario", "strategy", "kpi", "mean", "ci95_low", "ci95_high"):
        assert col in summary.columns
    for col in ("diff_mean", "diff_ci95_low", "diff_ci95_high", "normalized"):
        assert col in summary.columns
    row = summary[(summary.strategy == "threshold") & (summary.kpi == "total_cost")].iloc[0]
    mine = res[res.strategy == "threshold"]["total_cost"].mean()
    assert row["mean"] == pytest.approx(mine)
    assert row["normalized"] == pytest.approx(
        mine / res[res.strategy == "static"]["total_cost"].mean()
    )
    assert row["ci95_low"] <= row["mean"] <= row["ci95_high"]
    timing = pd.read_csv(comparison_dir / "timing.csv")
    assert set(timing["strategy"]) == {"static", "threshold", "random"}
    assert (timing["decisions_per_run"] == 48).all()
    ts = pd.read_parquet(comparison_dir / "timeseries.parquet")
    assert set(ts["strategy"]) == {"static", "threshold", "random"}
    assert "picking.queue" in ts.columns


def test_compare_is_reproducible(comparison_dir, tmp_path):
    again = run_compare(["default"], ["static", "threshold", "random"], 3, workers=2)
    write_comparison(again, tmp_path, report=False)
    assert (tmp_path / "summary.csv").read_bytes() == (comparison_dir / "summary.csv").read_bytes()


def test_report_is_html_with_embedded_png_images(comparison_dir):
    text = (comparison_dir / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:3]
    assert not checker.stack, f"unclosed tags: {checker.stack}"
    assert {"html", "head", "body", "table", "img"} <= checker.tags
    assert len(checker.images) >= 5
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in text and "https://" not in text  # self-contained
    for word in ("threshold", "normalised", "95%", "per decision"):
        assert word in text


# --------------------------------------------------------------------------- the commands


def test_cli_compare_smoke(tmp_path):
    out = tmp_path / "cmp"
    proc = synctwin(
        "compare", "--scenario", "claims", "--strategies", "static,threshold",
        "--seeds", "2", "--workers", "2", "--out", str(out),
    )  # fmt: skip
    for name in ("results.parquet", "summary.csv", "report.html", "timing.csv"):
        assert (out / name).is_file(), name
    assert len(pd.read_parquet(out / "results.parquet")) == 4
    assert "claims" in proc.stdout and "threshold" in proc.stdout
    assert "Δ paired vs static" in proc.stdout
    meta = json.loads((out / "compare.json").read_text())
    assert meta["strategies"] == ["static", "threshold"] and meta["seeds"] == [0, 1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["compare", "--strategies", "static,bogus", "--seeds", "1"], "unknown strategy 'bogus'"),
        (["compare", "--scenario", "nowhere", "--seeds", "1"], "unknown scenario 'nowhere'"),
        (["simulate", "--strategy", "bogus"], "unknown strategy 'bogus'"),
        (["experiment", "silo", "--scenario", "nowhere", "--seeds", "1"], "unknown scenario"),
        (["tune-baseline", "--scenario", "nowhere"], "unknown scenario"),
        (["bench", "strategies", "--strategies", "bogus"], "unknown strategy"),
    ],
)
def test_cli_bad_names_exit_2_listing_valid_ones(args, expected, tmp_path):
    proc = synctwin(*args, "--out", str(tmp_path / "x"), ok=False)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    if "strategy" in expected:
        for name in ("static", "threshold", "lookahead", "random"):
            assert name in proc.stderr
    else:
        assert "default" in proc.stderr  # the built-ins are listed


def test_cli_simulate_threshold(tmp_path):
    synctwin("simulate", "--strategy", "threshold", "--seed", "1", "--out", str(tmp_path))
    kpis = json.loads((tmp_path / "kpis.json").read_text())
    assert json.loads((tmp_path / "run.json").read_text())["strategy"] == "threshold"
    assert kpis["items_completed"] > 1000


def test_cli_tune_baseline_smoke(tmp_path):
    out = tmp_path / "claims.json"
    proc = synctwin(
        "tune-baseline", "--scenario", "claims", "--seeds", "1", "--budget", "2",
        "--workers", "1", "--out", str(out),
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["scenario"] == "claims"
    assert data["search"]["budget"] == 2
    assert "tuned" in proc.stdout
    # and the tuned file is usable by path
    synctwin("simulate", "--scenario", "claims", "--strategy", f"threshold:{out}")


def test_cli_experiment_silo_smoke(tmp_path):
    proc = synctwin(
        "experiment", "silo", "--scenario", "default", "--seeds", "2", "--workers", "2",
        "--out", str(tmp_path),
    )  # fmt: skip
    text = (tmp_path / "silo.md").read_text()
    assert "bottleneck `picking`" in text
    assert "synchronized" in proc.stdout
    table = pd.read_csv(tmp_path / "silo.csv")
    assert set(table["arm"]) == {"static", "silo", "threshold"}
    assert set(table[table.role == "downstream"]["sector"]) == {"packing", "shipping"}
    assert (tmp_path / "silo.html").read_text().count("data:image/png;base64,") >= 2


def test_cli_bench_strategies_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = synctwin("bench", "strategies", "--strategies", "static,threshold", "--out", str(out))
    data = json.loads(out.read_text())
    rows = {r["strategy"]: r for r in data["strategies"]}
    assert set(rows) == {"static", "threshold"}
    assert rows["threshold"]["decisions_per_run"] == 48
    assert rows["threshold"]["ms_per_decision_mean"] > rows["static"]["ms_per_decision_mean"]
    assert "ms mean" in proc.stdout


@pytest.mark.slow
def test_cli_compare_with_lookahead(tmp_path):
    synctwin(
        "compare", "--strategies", "static,threshold,lookahead", "--seeds", "2",
        "--workers", "2", "--out", str(tmp_path),
    )  # fmt: skip
    timing = pd.read_csv(tmp_path / "timing.csv").set_index("strategy")
    assert timing.loc["lookahead", "decide_ms_mean"] > timing.loc["threshold", "decide_ms_mean"]
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["strategy"]) == {"static", "threshold", "lookahead"}


def test_compare_accepts_policy_bundles(policy_bundle, tmp_path):
    """``policy:DIR`` runs the exported bundle with onnxruntime beside the baselines."""
    cmp = run_compare(["default"], ["static", f"policy:{policy_bundle}"], 2, workers=1)
    res = cmp.results
    assert len(res) == 4
    mine = res[res.strategy == f"policy:{policy_bundle}"]
    assert (mine["decisions"] == 48).all()
    # a policy acts: it cannot reproduce the plan's KPIs exactly on every seed
    static = res[res.strategy == "static"].set_index("seed")["total_cost"]
    assert not np.allclose(mine.set_index("seed")["total_cost"], static)
