"""Check a calibrated twin against held-out days of the log it was fitted to.

The log's last days are held out; the scenario is fitted on the days before them
(:func:`holdout_split`). The fitted twin then runs from the start of the fitting
days (at most ``MAX_WARMUP_DAYS`` before the held-out ones), so that it enters the
held-out days with a backlog built up the way the operation's was, and on through
the held-out days, over several seeds, recording its own event log. The same function
(:func:`log_metrics`) measures the data and each twin run: items leaving the
operation per day, and per sector the mean queue length, the mean time in the
sector and the items finished per day. A data value is "within" when it lies inside
the twin's 95% prediction interval for one more run (mean +- t * sd * sqrt(1 + 1/n)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.calibration.common import Window, observed_window, visits
from experiments.calibration.data import CalibrationError, EventTable
from twin.eventlog import EventLog
from twin.runner import simulate
from twin.scenario import MINUTES_PER_DAY, Scenario, scenario_from_dict
from twin.stats import prediction_interval

MAX_WARMUP_DAYS = 7  # the twin starts empty this many days before the held-out ones (at most)


class HoldoutError(CalibrationError):
    """The log is too short to hold days out."""


def holdout_split(table: EventTable, holdout_days: int | None = None) -> tuple[Window, Window]:
    """Split the observed window into fitting days and the last ``holdout_days`` days.

    The default holds out a quarter of the days (at least one). The held-out part
    starts at a midnight; at least one day must remain for fitting.

    Raises:
        HoldoutError: the log does not span enough days.
    """
    full = observed_window(table.events)
    last_day = math.ceil(full.end / MINUTES_PER_DAY)
    span = last_day - full.first_day
    n = holdout_days if holdout_days is not None else max(1, round(span / 4))
    split = (last_day - n) * MINUTES_PER_DAY
    if n < 1 or split - full.start < MINUTES_PER_DAY - 1e-9:
        raise HoldoutError(
            f"cannot hold out {n} day(s): the log spans {span} day(s), and at least one "
            "whole day must remain for fitting"
        )
    return Window(full.start, float(split)), Window(float(split), full.end)


def log_metrics(events: pd.DataFrame, window: Window, sectors: tuple[str, ...]) -> dict[str, float]:
    """What the validation compares, measured on an event log over ``window``.

    ``events`` may start before the window (earlier events give items' arrival
    times); events from the window's end on are ignored. Metrics:

    - ``throughput.day<k>``: items leaving the operation on day ``k`` of the window
      (the finish of an item's last stay, with no later stay);
    - ``cycle_minutes``: mean arrival-to-exit time of items that arrived and left
      inside the window;
    - ``<sector>.queue``: time-average number of items waiting (arrival in the sector
      to its last start there), over the window;
    - ``<sector>.minutes``: mean arrival-to-finish time of stays inside the window;
    - ``<sector>.finished_per_day``: finishes in the sector per day.
    """
    ev = events[events["t"] < window.end]
    st = visits(ev)
    out: dict[str, float] = {}
    last = st.groupby("item_id", sort=False)["order"].transform("max") == st["order"]
    exits = st[last & st["finish"].notna()]
    first = st[st["order"] == 0].set_index("item_id")["arrive"]
    days = max(1, round(window.minutes / MINUTES_PER_DAY))
    for k in range(days):
        lo = window.start + k * MINUTES_PER_DAY
        hi = min(lo + MINUTES_PER_DAY, window.end)
        out[f"throughput.day{k + 1}"] = float(
            ((exits["finish"] >= lo) & (exits["finish"] < hi)).sum()
        )
    arr = exits["item_id"].map(first)
    inside = (arr >= window.start) & (exits["finish"] >= window.start)
    cyc = (exits["finish"] - arr)[inside]
    out["cycle_minutes"] = float(cyc.mean()) if len(cyc) else float("nan")
    for s in sectors:
        sub = st[st["sector"] == s]
        start = sub["arrive"]
        stop = sub["last_start"].fillna(sub["finish"]).fillna(window.end)
        lo = np.maximum(start.to_numpy(float), window.start)
        hi = np.minimum(stop.to_numpy(float), window.end)
        waiting = np.nansum(np.clip(hi - lo, 0, None))
        out[f"{s}.queue"] = float(waiting / window.minutes)
        done = sub[(sub["arrive"] >= window.start) & sub["finish"].notna()]
        out[f"{s}.minutes"] = (
            float((done["finish"] - done["arrive"]).mean()) if len(done) else float("nan")
        )
        fin = sub["finish"]
        n_fin = ((fin >= window.start) & (fin < window.end)).sum()
        out[f"{s}.finished_per_day"] = float(n_fin / (window.minutes / MINUTES_PER_DAY))
    return out


def twin_events(log: EventLog, scenario: Scenario, offset_minutes: float) -> pd.DataFrame:
    """The twin's recorded item events as a frame like a checked log (``t`` shifted)."""
    ev = pd.DataFrame(log.items, columns=["item_id", "cls", "sec", "event", "t", "worker_id"])
    ev["item_class"] = np.asarray(scenario.class_names, dtype=object)[ev["cls"].to_numpy()]
    ev["sector"] = np.asarray(scenario.sector_names, dtype=object)[ev["sec"].to_numpy()]
    ev["t"] = ev["t"] + offset_minutes
    ev["item_id"] = ev["item_id"].astype(str)
    return ev.drop(columns=["cls", "sec"])


@dataclass
class Validation:
    """Twin vs data on held-out days.

    Attributes:
        table: one row per metric: ``metric, data, twin_mean, twin_low, twin_high, within``
            (``twin_low``/``twin_high``: the 95% prediction interval of one twin run).
        runs: the metrics of every twin run (one row per seed).
        fit_window, test_window: the fitting and held-out periods.
        seeds: the twin's seeds.
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    fit_window: Window
    test_window: Window
    seeds: list[int]

    @property
    def share_within(self) -> float:
        ok = self.table["within"].dropna()
        return float(ok.mean()) if len(ok) else float("nan")


def validate(
    scenario: Scenario,
    table: EventTable,
    fit_window: Window,
    test_window: Window,
    seeds: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Validation:
    """Run the fitted twin over the held-out days and compare it with the data.

    Args:
        scenario: the scenario fitted on ``fit_window``.
        table: the checked log (all of it; the held-out days are read from it).
        fit_window, test_window: from :func:`holdout_split`.
        seeds: twin runs (seeds 0..seeds-1).
        progress: called with 1 after each run.
    """
    warm_day = max(
        int(test_window.start // MINUTES_PER_DAY) - MAX_WARMUP_DAYS, fit_window.first_day
    )
    test_days = math.ceil(test_window.end / MINUTES_PER_DAY) - warm_day
    weekday0 = int(table.origin.weekday())
    sc = scenario_from_dict(
        scenario.model_dump(mode="json")
        | {"horizon_days": test_days, "start_weekday": (weekday0 + warm_day) % 7},
        f"{scenario.name} over the held-out days",
    )
    sectors = scenario.sector_names
    data = log_metrics(table.events, test_window, sectors)
    runs = []
    for seed in range(seeds):
        log = EventLog()
        simulate(sc, None, seed, event_log=log, record_every_minutes=60)
        ev = twin_events(log, sc, warm_day * MINUTES_PER_DAY)
        runs.append({"seed": seed, **log_metrics(ev, test_window, sectors)})
        if progress is not None:
            progress(1)
    runs_df = pd.DataFrame(runs)
    rows = []
    for metric, value in data.items():
        band = prediction_interval(runs_df[metric].to_numpy(), lower=0.0)  # every metric >= 0
        mean, lo, hi = band.mean, band.low, band.high
        within = bool(lo <= value <= hi) if np.isfinite(lo) and np.isfinite(value) else None
        rows.append(
            {
                "metric": metric,
                "data": value,
                "twin_mean": mean,
                "twin_low": lo,
                "twin_high": hi,
                "within": within,
            }
        )
    return Validation(pd.DataFrame(rows), runs_df, fit_window, test_window, list(range(seeds)))
