"""The fixed, named feature list: what each entry of a sector's vector means.

Its own module so the list (which a policy bundle's manifest records, and the README's
feature table shows) can be read without the featurizer's computation; the notation is
explained in :mod:`twin.features`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Feature:
    """One entry of the feature table."""

    name: str
    meaning: str
    low: float
    high: float
    range: str
    unit: str


_N = "sq(n / cap)"  # items, in hours of nominal capacity, squashed
_H = "sq(n/h / cap)"  # items per hour, as a share of nominal capacity, squashed
_W = "n / staff"  # workers, as a share of nominal staff, clipped at 2
_ITEMS, _RATE, _WORKERS = (0, 1, "[0, 1)", _N), (0, 1, "[0, 1)", _H), (0, 2, "[0, 2]", _W)
_FLAG, _FRACTION = (0, 1, "{0, 1}", "flag"), (0, 1, "[0, 1]", "fraction")

FEATURES: tuple[Feature, ...] = tuple(
    Feature(name, meaning, *spec)
    for name, meaning, spec in (
        ("queue_overdue", "items waiting, already past due", _ITEMS),
        ("queue_due_0_30", "items waiting, due in 0-30 min", _ITEMS),
        ("queue_due_30_60", "items waiting, due in 30-60 min", _ITEMS),
        ("queue_due_60_120", "items waiting, due in 60-120 min", _ITEMS),
        ("queue_due_120_240", "items waiting, due in 120-240 min", _ITEMS),
        ("queue_due_240_480", "items waiting, due in 240-480 min", _ITEMS),
        ("queue_due_480_plus", "items waiting, due in 480+ min", _ITEMS),
        ("due_within_30", "work due within 30 min, not yet late", _ITEMS),
        ("due_within_60", "work due within 60 min, not yet late", _ITEMS),
        ("due_within_120", "work due within 120 min, not yet late", _ITEMS),
        ("staff_present", "workers here, idle or working (any home, flex)", _WORKERS),
        ("staff_busy", "workers here working (busy or overtime)", _WORKERS),
        ("staff_absent", "own workers absent from their shift", _WORKERS),
        ("staff_lent_out", "own workers at (or walking to) another sector", _WORKERS),
        ("staff_borrowed_in", "other sectors' workers here (not walking)", _WORKERS),
        ("staff_in_transfer", "workers walking here (back home, lent, flex)", _WORKERS),
        ("staff_flex", "agency workers called here (arriving or present)", _WORKERS),
        ("staff_overtime", "workers here in overtime", _WORKERS),
        ("utilization", "working / (idle + working) here; 0 if nobody", _FRACTION),
        ("overtime_budget_used", "mean share of OT limit used (workers in OT)", _FRACTION),
        ("arrival_rate", "observed smoothed arrivals", _RATE),
        ("completion_rate", "observed smoothed completions", _RATE),
        (
            "arrivals_vs_plan",
            "(observed - plan) / max(observed, plan, 0.1 cap)",
            (-1, 1, "[-1, 1]", "ratio"),
        ),
        ("forecast_next_hour", "mean planned inflow over the next 60 min", _RATE),
        (
            "shift_end_in",
            "to end of the running shift staffing it; 0 if none",
            (0, 1, "[0, 1]", "min / 720"),
        ),
        ("next_shift_in", "to next start of a shift staffing it", (0, 1, "[0, 1]", "min / 720")),
        (
            "stations_down",
            "stations out of order (failures + outages)",
            (0, 1, "[0, 1]", "n / stations"),
        ),
        ("upstream_pressure", "work at predecessors x their share sent here", _ITEMS),
        (
            "downstream_pressure",
            "queues of successors x share sent",
            (0, 1, "[0, 1)", "sq(n / their cap)"),
        ),
        ("time_of_day_sin", "sin(2 pi minute_of_day / 1440)", (-1, 1, "[-1, 1]", "-")),
        ("time_of_day_cos", "cos(2 pi minute_of_day / 1440)", (-1, 1, "[-1, 1]", "-")),
        ("horizon_left", "share of the scenario horizon still to run", _FRACTION),
        ("action_lending", "action in force lends workers to another sector", _FLAG),
        ("action_lend_count", "workers the action in force lends", (0, 1, "[0, 1]", _W)),
        (
            "action_flex_count",
            "flex workers the action in force requests",
            (0, 1, "[0, 1]", "n / flex pool"),
        ),
        ("action_overtime", "action in force authorises overtime", _FLAG),
        ("action_priority_edd", "action in force serves earliest-due-first", _FLAG),
    )
)

#: The fixed, named feature list (the policy bundle's manifest records it).
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
N_FEATURES = len(FEATURES)
FEATURE_LOW = np.array([f.low for f in FEATURES], dtype=np.float32)
FEATURE_HIGH = np.array([f.high for f in FEATURES], dtype=np.float32)


def feature_table() -> str:
    """The feature table as markdown (index, name, meaning, range, unit)."""
    rows = ["| index | name | meaning | range | unit |", "|---|---|---|---|---|"]
    rows += [
        f"| {i} | {f.name} | {f.meaning} | {f.range} | {f.unit} |" for i, f in enumerate(FEATURES)
    ]
    return "\n".join(rows)
