"""Due rules per item class, recovered from a ``due`` column when the log has one.

The scenario states how an item's due time follows from its arrival: a fixed lead
time (``within_minutes``), or the first carrier cut-off at least ``lead_minutes``
after arrival. :func:`fit_due` finds the rule that reproduces the logged due times
and says how well it does; :func:`fit_due_part` does so for every class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.calibration.common import clock
from experiments.calibration.data import parse_timestamps
from twin.scenario import MINUTES_PER_DAY, Scenario

# --------------------------------------------------------------------------- one class


@dataclass(frozen=True)
class DueFit:
    """A due rule recovered from a ``due`` column."""

    item_class: str
    rule: dict[str, Any]
    items: int
    match: float  # share of items whose due time the rule reproduces within a minute
    how: str


def fit_due(arrive: np.ndarray, due: np.ndarray, item_class: str) -> DueFit | None:
    """Recover a due rule from arrival and due times (minutes since the origin).

    - If every lead time ``due - arrive`` lies within one minute of the median:
      ``within_minutes`` = the median (rounded).
    - Otherwise, if the due times fall on a few times of day (each used by at
      least 1% of items, together at least 99%): ``cutoffs`` at those times, and
      ``lead_minutes`` from the rule "due at the first cut-off at least ``lead``
      after arrival": every item bounds the lead from above by its own lead time
      and from below by the gap to the cut-off before its due time; the midpoint of
      the tightest bounds is used.
    - Otherwise ``within_minutes`` = the median lead time (the fit says how well it matches).
    """
    ok = np.isfinite(arrive) & np.isfinite(due) & (due >= arrive)
    a, d = arrive[ok], due[ok]
    if len(a) == 0:
        return None
    lead = d - a
    med = float(np.median(lead))
    if np.all(np.abs(lead - med) <= 1.0):
        rule = {"within_minutes": max(1, round(med))}
        return DueFit(item_class, rule, len(a), _due_match(rule, a, d), "constant lead time")
    tod = np.round(d % MINUTES_PER_DAY).astype(int) % MINUTES_PER_DAY
    share = pd.Series(tod).value_counts(normalize=True)
    frequent = share[share >= 0.01]
    if frequent.sum() >= 0.99 and len(frequent) <= 48:
        cutoffs = sorted(int(c) for c in frequent.index)
        cut = np.asarray(cutoffs)
        upper = float(lead.min())
        # the cut-off before each item's due time (the rule skipped it: too soon)
        idx = np.searchsorted(cut, tod, side="left") - 1
        prev_abs = np.where(
            idx >= 0,
            (d // MINUTES_PER_DAY) * MINUTES_PER_DAY + cut[np.maximum(idx, 0)],
            (d // MINUTES_PER_DAY - 1) * MINUTES_PER_DAY + cut[-1],
        )
        lower = float(np.max(prev_abs - a))
        lead_min = (max(lower, 0.0) + upper) / 2 if lower < upper else upper
        lead_min = int(min(max(round(lead_min), 0), MINUTES_PER_DAY - 1))
        rule = {
            "cutoffs": [clock(c) for c in cutoffs],
            "lead_minutes": lead_min,
        }
        return DueFit(item_class, rule, len(a), _due_match(rule, a, d), "due at carrier cut-offs")
    rule = {"within_minutes": max(1, round(med))}
    return DueFit(item_class, rule, len(a), _due_match(rule, a, d), "median lead time")


def _due_match(rule: Mapping[str, Any], arrive: np.ndarray, due: np.ndarray) -> float:
    from twin.scenario import Due

    r = Due.model_validate(dict(rule))
    pred = np.array([r.due_minute(float(x)) for x in arrive])
    return float(np.mean(np.abs(pred - due) <= 1.0))


def due_times(events: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """Per item, the first parseable ``due`` value (minutes since ``origin``)."""
    if "due" not in events.columns:
        return pd.DataFrame(columns=["item_id", "due"])
    raw = events[["item_id", "due"]]
    raw = raw[raw["due"].astype(str).str.strip() != ""]
    parsed, _ = parse_timestamps(raw["due"].reset_index(drop=True))
    out = pd.DataFrame(
        {"item_id": raw["item_id"].to_numpy(), "due": (parsed - origin) / pd.Timedelta(minutes=1)}
    ).dropna()
    return out.drop_duplicates("item_id")


# --------------------------------------------------------------------------- every class


@dataclass(frozen=True)
class DuePart:
    """The due-rule part of a calibration.

    Attributes:
        fits: the fit of every class with due times (its ``rule`` goes into the scenario).
        notes: why due rules were kept from the base, if they were.
    """

    fits: dict[str, DueFit]
    notes: tuple[str, ...]

    @property
    def rules(self) -> dict[str, dict[str, Any]]:
        """Per fitted class, its scenario ``due`` mapping."""
        return {name: fit.rule for name, fit in self.fits.items()}


def fit_due_part(
    events: pd.DataFrame, origin: pd.Timestamp, arrivals: pd.DataFrame, base: Scenario
) -> DuePart:
    """:func:`fit_due` for every class of ``base``, from the ``due`` column of ``events``.

    ``arrivals`` are the entry arrivals (:func:`~experiments.calibration.arrivals.entry_arrivals`):
    a due time is set when an item arrives.
    """
    if "due" not in events.columns:
        return DuePart(fits={}, notes=("the log has no 'due' column: due rules kept from base",))
    first_arr = arrivals.merge(due_times(events, origin), on="item_id")
    fits: dict[str, DueFit] = {}
    for cls in base.item_classes:
        sel = first_arr[first_arr["item_class"] == cls.name]
        fit = fit_due(sel["t"].to_numpy(float), sel["due"].to_numpy(float), cls.name)
        if fit is not None:
            fits[cls.name] = fit
    return DuePart(fits=fits, notes=())
