"""Calibration from event logs: recover a known scenario end to end, and refuse bad data clearly.

The known answer: simulate the built-in ``default`` for a week with its own event log,
calibrate from that log, and compare the fitted numbers with the scenario's. Then the
recalibrated twin must reproduce the original's KPIs (Welch intervals of the difference
contain zero). Bad-data tests build small logs row by row, so every line number is known.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.calibration import data as D
from experiments.calibration import fit as C
from experiments.calibration.common import Window, visits
from experiments.calibration.durations import fit_durations
from experiments.calibration.output import write_scenario
from experiments.calibration.routing import fit_routing
from experiments.calibration.service import fit_service, interruption_weights
from experiments.calibration.validation import holdout_split, validate
from experiments.reporting.calibration import write_report
from twin.eventlog import EventLog
from twin.runner import simulate
from twin.scenario import Due, Scenario, load_scenario, scenario_from_dict

ROOT = Path(__file__).parents[1]
DATA = ROOT / "experiments" / "data"
CLI = [str(Path(sys.executable).with_name("synctwin"))]
TRUTH_DAYS = 7
TRUTH_SEED = 0


@dataclass
class Known:
    truth: Scenario
    log_dir: Path
    cal: C.Calibration


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Known:
    """``default`` run for a week (Tuesday to Monday), its log, and the fit from that log."""
    base = load_scenario("default")
    truth = scenario_from_dict(base.model_dump(mode="json") | {"horizon_days": TRUTH_DAYS})
    log = EventLog()
    simulate(truth, None, TRUTH_SEED, event_log=log)
    out = tmp_path_factory.mktemp("truth-log")
    log.write(out, truth)
    inputs = C.load_inputs(
        out / "events.csv", base, out / "roster.csv", out / "attendance.csv", out / "equipment.csv"
    )
    return Known(truth, out, C.calibrate_inputs(inputs, base, "recovered"))


def _rel(fitted: float, true: float) -> float:
    return abs(fitted - true) / true


# --------------------------------------------------------------------------- recovery


def test_log_is_read_whole(known: Known) -> None:
    s = known.cal.stats
    assert s["rows_rejected"] == 0
    assert s["rows_used"] == s["rows_read"] == len(pd.read_csv(known.log_dir / "events.csv"))
    assert s["in_progress_at_start"] == 0  # the twin starts empty at midnight
    assert known.cal.scenario.horizon_days == TRUTH_DAYS
    assert known.cal.scenario.start_weekday == known.truth.start_weekday


def test_recovers_daily_arrival_rates_within_5_percent(known: Known) -> None:
    for c in known.truth.item_classes:
        fit = known.cal.arrivals[c.name]
        assert fit.entry == c.entry
        assert fit.entry_share == 1.0
        assert len(fit.observed_weekdays) == 7
        for w in range(7):
            true_daily = sum(c.hourly_rates) * c.weekday_factors[w]
            assert _rel(fit.daily_rate(w), true_daily) < 0.05, (c.name, w)
        # the shape over the day, too
        assert np.corrcoef(fit.hourly_rates, c.hourly_rates)[0, 1] > 0.99
    # weekday factors are fitted where the truth has them and only there
    assert known.cal.arrivals["standard"].weekday_fitted
    assert not known.cal.arrivals["inbound"].weekday_fitted
    assert not known.cal.arrivals["express"].weekday_fitted


def test_recovers_service_time_means_and_families(known: Known) -> None:
    for sector in known.truth.sectors:
        fit = known.cal.service[sector.name]
        assert fit.chosen is not None
        assert fit.chosen.family == sector.service.dist, sector.name
        assert _rel(fit.chosen.mean, sector.service.mean_minutes) < 0.05, sector.name
        fitted = known.cal.scenario.sectors[known.cal.scenario.sector_names.index(sector.name)]
        assert fitted.service.mean_minutes == pytest.approx(fit.chosen.mean)
    ln = known.cal.service["picking"].chosen
    assert ln is not None
    assert ln.params["cv"] == pytest.approx(0.5, abs=0.03)


def test_interruption_weights_undo_the_length_bias() -> None:
    """Known answer: services cut with probability c*s; the weighted mean is the true mean."""
    rng = np.random.default_rng(5)
    true_mean, cv, c = 4.0, 0.5, 0.02
    s2 = np.log1p(cv**2)
    s = rng.lognormal(np.log(true_mean) - s2 / 2, np.sqrt(s2), 200_000)
    cut = rng.random(len(s)) < c * s
    done = s[~cut]
    w = interruption_weights(done, int(cut.sum()))
    assert _rel(done.mean(), true_mean) > 0.015  # the naive mean is biased ...
    assert _rel(np.average(done, weights=w), true_mean) < 0.004  # ... the weighted one is not


def test_recovers_routing_absence_and_breakdowns(known: Known) -> None:
    r = known.cal.routing["standard"].probabilities
    assert r["picking"]["packing"] == pytest.approx(0.85, abs=0.02)
    assert r["picking"]["shipping"] == pytest.approx(0.15, abs=0.02)
    assert r["packing"] == {"shipping": 1.0}
    assert known.cal.routing["express"].probabilities["picking"] == {"packing": 1.0}
    assert known.cal.routing["inbound"].probabilities["putaway"] == {"exit": 1.0}
    sc = known.cal.scenario
    standard = sc.item_classes[sc.class_names.index("standard")]
    assert "shipping" not in standard.routing  # everything exits from shipping

    wf = known.cal.workforce
    assert wf.absence_ci is not None
    assert wf.absence_ci[0] < known.truth.workforce.absence_rate < wf.absence_ci[1]
    assert wf.headcount == known.truth.workforce.headcount

    packing = sc.sectors[sc.sector_names.index("packing")]
    assert packing.breakdowns is not None
    assert _rel(packing.breakdowns.time_to_failure.mean_minutes, 900) < 0.2  # ~220 failures
    assert _rel(packing.breakdowns.repair.mean_minutes, 25) < 0.15
    receiving = sc.sectors[sc.sector_names.index("receiving")]
    assert receiving.breakdowns is None  # stations, but no failures in the log


def test_unfitted_parts_come_from_the_base(known: Known) -> None:
    sc, base = known.cal.scenario, known.cal.base
    assert sc.costs == base.costs
    assert sc.workforce.cross_training == base.workforce.cross_training
    assert sc.plan == base.plan
    for c, b in zip(sc.item_classes, base.item_classes, strict=True):
        assert c.due == b.due  # the log has no due column


def test_yaml_round_trip(known: Known, tmp_path: Path) -> None:
    path = write_scenario(known.cal, tmp_path / "recovered.yaml")
    text = path.read_text()
    assert text.startswith("# Calibrated by `synctwin calibrate`")
    assert load_scenario(path).digest == known.cal.scenario.digest


def _kpis(sc: Scenario, seeds: range) -> dict[str, np.ndarray]:
    runs = [simulate(sc, None, s).kpis().total for s in seeds]
    names = ("items_completed", "mean_cycle_minutes")
    return {k: np.array([getattr(r, k) for r in runs]) for k in names}


def _welch_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95% Welch interval of mean(a) - mean(b)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    d = a.mean() - b.mean()
    return d - half, d + half


def test_recalibrated_twin_reproduces_kpis(known: Known) -> None:
    """One-day runs of the original and the recalibrated twin on fresh seeds agree."""
    original = load_scenario("default")
    recovered = scenario_from_dict(
        known.cal.scenario.model_dump(mode="json")
        | {"horizon_days": 1, "start_weekday": original.start_weekday}
    )
    seeds = range(100, 110)
    a, b = _kpis(original, seeds), _kpis(recovered, seeds)
    for kpi in a:
        lo, hi = _welch_interval(a[kpi], b[kpi])
        assert lo < 0 < hi, (kpi, a[kpi].mean(), b[kpi].mean(), lo, hi)
        assert _rel(b[kpi].mean(), a[kpi].mean()) < 0.1


def test_due_column_recovers_due_rules(known: Known) -> None:
    """A log with each item's due time gives back within_minutes and cut-offs + lead."""
    raw = pd.read_csv(known.log_dir / "events.csv", dtype=str, keep_default_na=False)
    ts = pd.to_datetime(raw["timestamp"])
    origin = ts.min().normalize()
    minutes = (ts - origin) / pd.Timedelta(minutes=1)
    first = minutes.groupby(raw["item_id"]).transform("min")
    rules = {c.name: c.due for c in known.truth.item_classes}
    due_min = [rules[c].due_minute(t) for c, t in zip(raw["item_class"], first, strict=True)]
    raw["due"] = (origin + pd.to_timedelta(due_min, unit="min")).astype(str)
    base = load_scenario("default")
    table = D.clean_events(raw, base)
    cal = C.calibrate(table, base)
    for c in known.truth.item_classes:
        fit = cal.due[c.name]
        assert fit.match > 0.999, c.name
        got = cal.scenario.item_classes[cal.scenario.class_names.index(c.name)].due
        assert got == c.due, (c.name, fit.rule)
    assert isinstance(Due.model_validate(cal.due["standard"].rule), Due)


# --------------------------------------------------------------------------- bad data

HEADER = "item_id,item_class,sector,event,timestamp,worker_id"
GOOD = [  # one express order through picking, packing and shipping
    "1,express,picking,arrive,2026-01-06 08:00:00,",
    "1,express,picking,start,2026-01-06 08:01:00,7",
    "1,express,picking,finish,2026-01-06 08:05:00,7",
    "1,express,packing,arrive,2026-01-06 08:05:00,",
    "1,express,packing,start,2026-01-06 08:06:00,9",
    "1,express,packing,finish,2026-01-06 08:08:30,9",
    "1,express,shipping,arrive,2026-01-06 08:08:30,",
    "1,express,shipping,start,2026-01-06 08:09:00,3",
    "1,express,shipping,finish,2026-01-06 08:10:00,3",
]
BAD = {  # line in the file -> (row, expected reason); lines start at 11 (header + 9 good rows)
    11: ("2,standard,picking,arrive,2026-13-45 99:00,", "unparseable timestamp"),
    12: ("3,standard,picking,teleport,2026-01-06 09:00:00,", "unknown event"),
    13: ("4,standard,returns,arrive,2026-01-06 09:00:00,", "unknown sector"),
    14: ("5,bulky,picking,arrive,2026-01-06 09:00:00,", "unknown item_class"),
    15: ("6,,picking,arrive,2026-01-06 09:00:00,", "missing item_class"),
    16: ("1,express,shipping,finish,2026-01-06 08:10:00,3", "duplicate row"),
    # item 7: its finish is stamped before its start (both rows go)
    17: ("7,standard,picking,arrive,2026-01-06 10:00:00,", None),
    18: ("7,standard,picking,start,2026-01-06 10:05:00,4", "negative duration"),
    19: ("7,standard,picking,finish,2026-01-06 10:02:00,4", "negative duration"),
    # item 8: finished at the same instant it started (both rows go)
    20: ("8,standard,picking,arrive,2026-01-06 11:00:00,", None),
    21: ("8,standard,picking,start,2026-01-06 11:01:00,4", "zero duration"),
    22: ("8,standard,picking,finish,2026-01-06 11:01:00,4", "zero duration"),
    # item 9: a finish nothing started
    23: ("9,standard,picking,arrive,2026-01-06 12:00:00,", None),
    24: ("9,standard,picking,finish,2026-01-06 12:04:00,4", "finish without a start"),
    # item 10 changes class half-way
    25: ("10,standard,picking,arrive,2026-01-06 13:00:00,", None),
    26: ("10,express,picking,start,2026-01-06 13:01:00,4", "class changes within item"),
    # item 11 was in service when the log began: kept
    27: ("11,standard,packing,finish,2026-01-06 00:03:00,5", None),
    28: ("11,standard,shipping,arrive,2026-01-06 00:03:00,", None),
    29: ("12,standard,picking,arrive,,", "missing timestamp"),
}


def _write_log(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_each_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = _write_log(tmp_path / "events.csv", [*GOOD, *(row for row, _ in BAD.values())])
    table = D.load_events(path, load_scenario("default"))
    assert table.rows_read == len(GOOD) + len(BAD)
    assert table.rows_used + table.rows_rejected == table.rows_read
    got = dict(zip(table.rejected["row"], table.rejected["reason"], strict=True))
    expected = {line: why for line, (_, why) in BAD.items() if why is not None}
    assert got == expected
    assert table.row_label == "line"
    counts = table.reason_counts()
    assert counts["negative duration"] == 2
    assert counts.sum() == table.rows_rejected
    detail = table.rejected.set_index("row")["detail"]
    assert "line 18" in detail[19] and "3.0 min before" in detail[19]
    assert "'2026-13-45 99:00'" in detail[11]
    assert "same as line 10" in detail[16]
    kept = set(table.events["row"])
    assert {27, 28}.issubset(kept)  # in progress at the start of the log


def test_rejections_reach_the_report(tmp_path: Path) -> None:
    path = _write_log(tmp_path / "events.csv", [*GOOD, *(row for row, _ in BAD.values())])
    base = load_scenario("default")
    cal = C.calibrate(D.load_events(path, base), base)
    md = write_report(cal, tmp_path / "fit.md").read_text()
    assert f"{len(GOOD) + len(BAD)} rows read" in md
    assert "| 19 | negative duration |" in md
    assert (tmp_path / "fit_files" / "arrivals_by_hour.png").stat().st_size > 1000
    assert "sector 'putaway': only 0 completed services: kept from base" in md


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    csv = _write_log(tmp_path / "e.csv", [*GOOD, BAD[12][0]])
    frame = pd.read_csv(csv, dtype={"worker_id": "Int64"})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame.to_parquet(tmp_path / "e.parquet")
    table = D.load_events(tmp_path / "e.parquet", load_scenario("default"))
    assert table.row_label == "row"
    assert table.rejected[["row", "reason"]].values.tolist() == [[10, "unknown event"]]
    assert table.rows_used == len(GOOD)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("item_id,item_class,sector,event\n1,express,picking,arrive\n", "'timestamp'"),
        ("item_id,kind,sector,event,timestamp\n", "'item_class'"),
        (HEADER + "\n", "has no rows"),
        ("", "cannot read"),
        (HEADER + "\n" + BAD[12][0] + "\n", "no usable rows"),
    ],
)
def test_unusable_files_raise_a_clear_error(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(content)
    with pytest.raises(D.CalibrationError, match=needle.replace("(", r"\(")):
        D.load_events(path, load_scenario("default"))


def test_routing_cycles_are_broken_and_reported() -> None:
    """Rework (packing back to picking) cannot be a scenario: the rarest handoff goes."""
    rows = []
    for i in range(10):
        path = ["picking", "packing", "shipping"]
        if i >= 8:
            path = ["picking", "packing", "picking", "packing", "shipping"]
        for k, sector in enumerate(path):
            for j, event in enumerate(("arrive", "start", "finish")):
                rows.append((str(i), "standard", sector, event, 10.0 * k + 3 * j))
    events = pd.DataFrame(rows, columns=["item_id", "item_class", "sector", "event", "t"])
    stays = visits(events)
    assert stays.groupby("item_id").size().to_dict() == {
        str(i): 3 if i < 8 else 5 for i in range(10)
    }
    fit = fit_routing(stays, "standard", Window(0, 1000))
    assert fit.counts["packing"] == {"picking": 2, "shipping": 10}
    assert len(fit.removed) == 1 and fit.removed[0].startswith("packing -> picking (2 items")
    assert fit.probabilities["packing"] == {"shipping": 1.0}
    assert fit.probabilities["picking"] == {"packing": 1.0}


def test_service_by_other_sectors_staff_is_left_out() -> None:
    """The scenario's service time is a home worker's; borrowed staff are slower."""
    pairs = pd.DataFrame(
        {
            "sector": "packing",
            "worker_id": ["1"] * 30 + ["2"] * 10 + ["flex-9"] * 5,
            "minutes": [2.0, 3.0] * 15 + [4.0] * 10 + [5.0] * 5,
        }
    )
    fit = fit_service(pairs, "packing", worker_home={"1": "packing", "2": "picking"})
    assert fit.n == 30
    assert fit.excluded_other == 15
    assert fit.other_mean == pytest.approx((40 + 25) / 15)
    assert fit.chosen is not None and fit.chosen.mean == pytest.approx(2.5, rel=0.02)
    everyone = fit_service(pairs, "packing")
    assert everyone.n == 45 and everyone.excluded_other == 0


def test_duration_families_known_answers() -> None:
    rng = np.random.default_rng(1)
    fixed, _, rule = fit_durations(np.full(50, 3.0) + rng.normal(0, 0.001, 50))
    assert fixed is not None and fixed.family == "deterministic"
    assert fixed.params["value"] == pytest.approx(3.0, abs=0.01)
    assert "deterministic" in rule
    two_humps = np.concatenate([rng.normal(2, 0.1, 500), rng.normal(8, 0.1, 500)])
    emp, cands, rule = fit_durations(two_humps)
    assert emp is not None and emp.family == "empirical"
    assert "fails KS" in rule
    assert {c.family for c in cands} == {"deterministic", "exponential", "lognormal", "empirical"}
    assert emp.mean == pytest.approx(5.0, abs=0.05)


# --------------------------------------------------------------------------- sample & validation


def test_sample_log_is_small_and_roughened() -> None:
    path = DATA / "sample_events.csv.gz"
    assert path.stat().st_size < 2_000_000
    with gzip.open(path, "rt") as f:
        assert f.readline().strip() == HEADER
    table = D.load_events(path, load_scenario(DATA / "sample_base.yaml"))
    assert table.rows_rejected == 14
    assert set(table.reason_counts().index) == {
        "negative duration",
        "unparseable timestamp",
        "unknown sector",
        "unknown event",
        "duplicate row",
        "missing item_class",
    }


def test_validation_agrees_with_a_well_calibrated_twin(known: Known) -> None:
    """Held-out days of the known week fall inside the recalibrated twin's intervals."""
    base = load_scenario("default")
    inputs = C.load_inputs(known.log_dir / "events.csv", base)
    fit_w, test_w = holdout_split(inputs.table)  # a quarter: the last 2 of 7 days
    assert (fit_w.days, test_w.days) == (5, 2)
    cal = C.calibrate_inputs(inputs, base, "week", fit_w)
    assert cal.scenario.horizon_days == 5
    v = validate(cal.scenario, inputs.table, fit_w, test_w, seeds=5)
    table = v.table.set_index("metric")
    assert table.loc[["throughput.day1", "throughput.day2"], "within"].all()
    assert v.share_within >= 0.8
    assert len(v.runs) == 5
    with pytest.raises(D.CalibrationError, match="at least one whole day"):
        holdout_split(inputs.table, 7)


def test_validation_flags_a_miscalibrated_twin() -> None:
    """Negative control: with 40% more demand than the data, throughput falls outside."""
    base = load_scenario(DATA / "sample_base.yaml")
    inputs = C.load_inputs(DATA / "sample_events.csv.gz", base, DATA / "sample_roster.csv")
    fit_w, test_w = holdout_split(inputs.table, 1)
    cal = C.calibrate_inputs(inputs, base, "sample", fit_w)
    data = cal.scenario.model_dump(mode="json")
    for c in data["item_classes"]:
        c["hourly_rates"] = [1.4 * r for r in c["hourly_rates"]]
    wrong = scenario_from_dict(data)
    v = validate(wrong, inputs.table, fit_w, test_w, seeds=4)
    assert not v.table.set_index("metric").loc["throughput.day1", "within"]


# --------------------------------------------------------------------------- the command


def synctwin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300,
        env={"COLUMNS": "200", "PATH": ""},
    )  # fmt: skip


def test_cli_calibrates_the_sample_log(tmp_path: Path) -> None:
    out, report = tmp_path / "site.yaml", tmp_path / "fit.html"
    proc = synctwin(
        "calibrate", str(DATA / "sample_events.csv.gz"), "--out", str(out),
        "--base", str(DATA / "sample_base.yaml"),
        "--roster", str(DATA / "sample_roster.csv"),
        "--attendance", str(DATA / "sample_attendance.csv"),
        "--equipment", str(DATA / "sample_equipment.csv"),
        "--report", str(report), "--validate", "--validate-seeds", "4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "29,692 used, 14 rejected" in proc.stdout
    assert "negative duration" in proc.stdout
    assert "validation:" in proc.stdout
    sc = load_scenario(out)
    assert sc.name == "site"
    assert sc.sectors[sc.sector_names.index("packing")].stations == 3
    html = report.read_text()
    assert "Validation on held-out days" in html
    assert html.count("<img") >= 4


def test_cli_missing_column_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "events.csv"
    bad.write_text("item_id,item_class,sector,event,worker_id\n1,express,picking,arrive,\n")
    proc = synctwin("calibrate", str(bad), "--out", str(tmp_path / "x.yaml"))
    assert proc.returncode == 2
    assert "'timestamp'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "x.yaml").exists()
