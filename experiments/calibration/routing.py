"""Routing probabilities per item class, from the order of each item's stays.

Every finished stay hands the item to its next stay's sector, or out of the
operation (:func:`fit_routing`, the multinomial MLE per sector). The log may end
between a finish and the next arrival, so stays finishing within the usual handoff
gap (:func:`handoff_gap`) of the end are not counted as exits. A scenario's routing
must be acyclic: rework loops are broken at their rarest handoff and reported.
:func:`fit_routing_part` fits every class of the base scenario.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.calibration.common import Window, visits
from twin.scenario import EXIT, Scenario

# --------------------------------------------------------------------------- one class


@dataclass(frozen=True)
class RoutingFit:
    """Observed handoffs of one item class: counts (as observed) and probabilities per sector
    (after dropping handoffs that closed a cycle, listed in ``removed``)."""

    item_class: str
    counts: dict[str, dict[str, int]]
    probabilities: dict[str, dict[str, float]]
    unfinished: int  # stays whose next step the log does not show
    removed: list[str] = field(default_factory=list)  # edges dropped to break cycles


def fit_routing(
    stays: pd.DataFrame, item_class: str, window: Window, handoff_gap: float = 0.0
) -> RoutingFit:
    """Routing probabilities of one class: the share of each next sector (or exit).

    For every finished stay the next stay of the same item is the target; a stay
    with no next stay is an exit, unless it finished within ``handoff_gap``
    minutes of the end of the log (its next arrival may lie beyond the log) or
    never finished. Probabilities are counts / total per sector (the maximum
    likelihood estimate of a multinomial). Routing must be a DAG: if the data
    contain a cycle (rework), the rarest handoff on it is dropped and reported.
    """
    st = stays[stays["item_class"] == item_class].sort_values(["item_id", "order"])
    nxt = st.groupby("item_id", sort=False)["sector"].shift(-1)
    finished = st["finish"].notna()
    has_next = nxt.notna()
    exit_ok = finished & ~has_next & (st["finish"] <= window.end - handoff_gap)
    target = nxt.where(has_next, EXIT)
    used = has_next | exit_ok
    unfinished = int((~used).sum())
    tab = (
        pd.DataFrame({"src": st.loc[used, "sector"], "dst": target[used]})
        .value_counts()
        .sort_index()
    )
    counts: dict[str, dict[str, int]] = {}
    for (src, dst), c in tab.items():
        counts.setdefault(str(src), {})[str(dst)] = int(c)
    kept = {src: dict(dsts) for src, dsts in counts.items()}
    removed = _break_cycles(kept)
    probs = {src: _rounded_shares(dsts) for src, dsts in kept.items()}
    return RoutingFit(item_class, counts, probs, unfinished, removed)


def _rounded_shares(counts: Mapping[str, int], digits: int = 4) -> dict[str, float]:
    """Shares rounded to ``digits``; the sum never exceeds 1 (the schema's rule)."""
    total = sum(counts.values())
    shares = {k: round(v / total, digits) for k, v in counts.items()}
    excess = sum(shares.values()) - 1.0
    if excess > 0:
        k = max(shares, key=lambda key: shares[key])
        shares[k] = round(shares[k] - excess, digits + 2)
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def _break_cycles(counts: dict[str, dict[str, int]]) -> list[str]:
    """Drop the rarest edge of each cycle until the handoffs form a DAG."""
    removed = []
    while (cycle := _find_cycle(counts)) is not None:
        edges = list(itertools.pairwise(cycle))
        a, b = min(edges, key=lambda e: counts[e[0]][e[1]])
        removed.append(f"{a} -> {b} ({counts[a][b]} items; on cycle {' -> '.join(cycle)})")
        del counts[a][b]
        if not counts[a]:
            del counts[a]
    return removed


def _find_cycle(counts: Mapping[str, Mapping[str, int]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in counts.get(node, {}):
            if nxt == EXIT:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])) is not None:
                return found
        state[node] = 2
        return None

    for node in list(counts):
        if node not in state and (found := visit(node, [node])) is not None:
            return found
    return None


def handoff_gap(stays: pd.DataFrame) -> float:
    """Minutes between finishing one sector and arriving at the next (99th percentile).

    The twin hands off instantly (0); real systems may record the next arrival a
    little later. Stays that finish this close to the end of the log are not
    counted as exits, since their next arrival may not be in the log.
    """
    st = stays.sort_values(["item_id", "order"])
    nxt_arrive = st.groupby("item_id", sort=False)["arrive"].shift(-1)
    gap = (nxt_arrive - st["finish"]).dropna()
    gap = gap[gap >= 0]
    return float(np.percentile(gap, 99)) if len(gap) else 0.0


# --------------------------------------------------------------------------- every class


@dataclass(frozen=True)
class RoutingPart:
    """The routing part of a calibration.

    Attributes:
        fits: the fit of every class with stays in the log.
        routing: per fitted class, its scenario ``routing``: the base's, with every
            observed sector's shares replaced (a sector everything leaves from is
            dropped: exit is the schema's default).
        notes: handoffs dropped to break routing cycles.
    """

    fits: dict[str, RoutingFit]
    routing: dict[str, dict[str, dict[str, float]]]
    notes: tuple[str, ...]


def fit_routing_part(events: pd.DataFrame, window: Window, base: Scenario) -> RoutingPart:
    """:func:`fit_routing` for every class of ``base`` with stays in ``events``."""
    stays = visits(events)
    gap = handoff_gap(stays)
    fits: dict[str, RoutingFit] = {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    notes: list[str] = []
    for cls in base.item_classes:
        if not (stays["item_class"] == cls.name).any():
            continue
        rf = fit_routing(stays, cls.name, window, gap)
        fits[cls.name] = rf
        routing = dict(cls.model_dump(mode="json").get("routing") or {})
        for src, shares in rf.probabilities.items():
            if set(shares) == {EXIT}:
                routing.pop(src, None)  # everything leaves from here: the schema's default
            else:
                routing[src] = shares
        out[cls.name] = routing
        for r in rf.removed:
            notes.append(f"class {cls.name!r}: routing cycle broken by dropping {r}")
    return RoutingPart(fits=fits, routing=out, notes=tuple(notes))
