"""Regenerate the sample event log here: ``python experiments/data/make_sample_log.py``.

The sample is a small fulfilment centre (the built-in ``default`` at 15% of its
demand, with its own small roster) over one working week, Monday 2026-01-05 to
Friday, simulated by the twin with seed 7 under the static plan. Its true scenario
is written to ``sample_truth.yaml``, so calibration results can be checked against it.

The log is then lightly roughened the way real exports are: a few rows with an
unparseable timestamp, an unknown event type or sector, a missing class, exact
duplicates, and two start/finish pairs whose finish was stamped before the start;
plus some harmless noise (upper-case events, padded sector names) that the reader
accepts. ``synctwin calibrate`` reports every bad row by line number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from twin.eventlog import EventLog
from twin.runner import simulate
from twin.scenario import Scenario, load_scenario, scenario_from_dict

HERE = Path(__file__).resolve().parent
SEED = 7  # the twin's seed
ROUGHEN_SEED = 2026  # which rows get spoiled
HEADCOUNT = {
    "receiving": {"early": 2, "late": 1},
    "putaway": {"early": 1, "late": 1},
    "picking": {"early": 4, "late": 3},
    "packing": {"early": 3, "late": 2},
    "shipping": {"early": 1, "late": 1},
}


def truth() -> Scenario:
    """The sample operation: ``default`` at 15% demand, a Monday-to-Friday week."""
    data = load_scenario("default").scaled(0.15).model_dump(mode="json")
    data |= {
        "name": "sample-truth",
        "description": "The operation behind experiments/data's sample log (default at 15%).",
        "horizon_days": 5,
        "start_weekday": 0,
    }
    data["workforce"]["headcount"] = HEADCOUNT
    return scenario_from_dict(data, "sample truth")


def roughen(events: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Spoil a few rows of a clean log, as a real export might (see the module docstring)."""
    ev = events.copy()
    arrive = ev.index[ev["event"] == "arrive"].to_numpy()
    starts = ev.index[ev["event"] == "start"].to_numpy()
    finish = ev.index[ev["event"] == "finish"].to_numpy()
    for i, bad in zip(
        rng.choice(arrive, 3, replace=False),
        ["2026-01-07 25:61:00", "n/a", "07.01.2026 kl. 8"],
        strict=True,
    ):
        ev.loc[i, "timestamp"] = bad
    # two finishes stamped 2.5 minutes before their start
    key = ["item_id", "sector"]
    pairs = (
        ev.loc[starts, key]
        .reset_index()
        .merge(ev.loc[finish, key].reset_index(), on=key, suffixes=("_s", "_f"))
    )
    for _, p in pairs.sample(2, random_state=rng).iterrows():
        t = pd.Timestamp(ev.loc[p["index_s"], "timestamp"]) - pd.Timedelta(minutes=2.5)
        ev.loc[p["index_f"], "timestamp"] = str(t.round("ms"))
    ev.loc[rng.choice(finish, 1), "item_class"] = ""
    # harmless noise the reader accepts
    ev.loc[rng.choice(finish, 40, replace=False), "event"] = "FINISH"
    picking = ev.index[(ev["event"] == "arrive") & (ev["sector"] == "picking")].to_numpy()
    ev.loc[rng.choice(picking, 40, replace=False), "sector"] = " Picking "
    extra = []
    for i in rng.choice(len(ev), 2, replace=False):
        extra.append(ev.iloc[i].copy())  # exact duplicates
    for i, (col, value) in zip(
        rng.choice(len(ev), 4, replace=False),
        [("event", "pause"), ("event", "resume"), ("sector", "returns"), ("sector", "returns")],
        strict=True,
    ):
        row = ev.iloc[i].copy()
        row[col] = value
        extra.append(row)
    positions = rng.choice(len(ev), len(extra), replace=False)
    parts, last = [], 0
    for pos, row in sorted(zip(positions, extra, strict=True), key=lambda x: x[0]):
        parts += [ev.iloc[last : pos + 1], row.to_frame().T]
        last = pos + 1
    parts.append(ev.iloc[last:])
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    sc = truth()
    log = EventLog()
    simulate(sc, None, SEED, event_log=log)
    tmp = HERE / "_clean"
    log.write(tmp, sc)
    events = pd.read_csv(tmp / "events.csv", dtype=str, keep_default_na=False)
    rough = roughen(events, np.random.default_rng(ROUGHEN_SEED))
    rough.to_csv(
        HERE / "sample_events.csv.gz",
        index=False,
        compression={"method": "gzip", "mtime": 0},
    )
    for name in ("attendance", "roster", "equipment"):
        (tmp / f"{name}.csv").replace(HERE / f"sample_{name}.csv")
    (tmp / "events.csv").unlink()
    tmp.rmdir()
    (HERE / "sample_truth.yaml").write_text(
        "# The true scenario behind the sample log (written by make_sample_log.py).\n"
        + yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False, width=100),
        encoding="utf-8",
    )
    print(f"{len(events):,} clean rows, {len(rough):,} after roughening -> {HERE}")


if __name__ == "__main__":
    main()
