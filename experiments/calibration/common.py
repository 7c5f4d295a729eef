"""What the fits (and the validation) share: the observed window, stays, clock times.

Every fit reads the same log in the same frame: times are minutes since midnight of
the log's first day (``t``), the fitted period is a :class:`Window`, and an item's
path through the operation is its sequence of stays (:func:`visits`). They are
defined once here, so that arrivals, routing, breakdowns and the held-out-days
validation cannot disagree about which events fall in a period or what a stay is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from experiments.calibration.data import time_order
from twin.scenario import MINUTES_PER_DAY

# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    """The observed period, in minutes since the log's origin: ``[start, end)``."""

    start: float
    end: float

    @property
    def minutes(self) -> float:
        return self.end - self.start

    @property
    def first_day(self) -> int:
        return int(self.start // MINUTES_PER_DAY)

    @property
    def days(self) -> int:
        """Calendar days the window touches."""
        return math.ceil(self.end / MINUTES_PER_DAY) - self.first_day

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` whose time ``t`` lies in the window."""
        return frame[(frame["t"] >= self.start) & (frame["t"] < self.end)]


def observed_window(events: pd.DataFrame) -> Window:
    """The period a log covers: first event floored, last event ceiled, to the hour.

    Operation logs are cut at whole hours or days; an hour-aligned window keeps
    the exposure of every hour of the day exact (each hour is in or out).
    """
    t = events["t"]
    return Window(float(math.floor(t.min() / 60) * 60), float(math.ceil(t.max() / 60 + 1e-9) * 60))


# --------------------------------------------------------------------------- visits


def visits(events: pd.DataFrame) -> pd.DataFrame:
    """One row per stay of an item in a sector, in the order the item made them.

    A stay is a run of consecutive events of one item in one sector (in time order),
    so an item sent back to a sector it left (rework) makes a second stay there;
    work handed back and restarted within a stay stays one stay.

    Columns: ``item_id, item_class, sector, order, arrive, first_start, last_start,
    finish`` (minutes; NaN when the log has no such event for the stay).
    """
    e = time_order(events)
    e = e.sort_values("item_id", kind="stable")  # time order within each item
    new_item = e["item_id"].ne(e["item_id"].shift())
    new_stay = new_item | e["sector"].ne(e["sector"].shift())
    e["stay"] = new_stay.cumsum()
    g = e.groupby("stay", sort=False)
    out = g.agg(
        item_id=("item_id", "first"), item_class=("item_class", "first"), sector=("sector", "first")
    )
    t = e["t"]
    out["arrive"] = t.where(e["event"] == "arrive").groupby(e["stay"]).min()
    starts = t.where(e["event"] == "start").groupby(e["stay"])
    out["first_start"] = starts.min()
    out["last_start"] = starts.max()
    out["finish"] = t.where(e["event"] == "finish").groupby(e["stay"]).max()
    out["order"] = out.groupby("item_id", sort=False).cumcount()
    return out.reset_index(drop=True)[
        [
            "item_id",
            "item_class",
            "sector",
            "order",
            "arrive",
            "first_start",
            "last_start",
            "finish",
        ]
    ]


# --------------------------------------------------------------------------- clock times


def clock(minute: int) -> str:
    """A minute of the day as a scenario clock time (``510`` -> ``"08:30"``)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"
