"""Candidate action sets around the threshold manager's decision.

The one owner of "what else could the floor do now", shared by the ``lookahead``
planner (a handful of variants, each judged on sampled futures) and the ``hindsight``
bound (a wider set, each judged on the realized future). The base decision always
comes first, so a search that keeps ties with the first candidate never does worse
than the threshold manager on what it measures.

Variants (``wide=False``): the plan as written; no loans; more help for the most
pressed sector from its best donor; more flex there; no flex; overtime switched for
sectors whose shift ends before the next decision. ``wide=True`` adds: help from each
of the three best donors and twice as much from the best; twice the flex; overtime
switched on and off separately; every loan recalled except to the most pressed sector.
"""

from __future__ import annotations

import math

import numpy as np

from agents.threshold import ThresholdController
from agents.view import FlowView
from twin.actions import SectorAction
from twin.snapshot import OperationSnapshot

Actions = dict[str, SectorAction]


def candidates(
    base: ThresholdController,
    snapshot: OperationSnapshot,
    decision: Actions,
    *,
    wide: bool = False,
) -> list[tuple[str, Actions]]:
    """``decision`` (the base manager's, first) and the variants, without duplicates."""
    f = base.facts
    p = base.params
    v = FlowView.read(f, snapshot, flow=p.flow_weight > 0)
    work = v.work_due(f, flow_weight=p.flow_weight)[:, : p.n_horizons]
    cap = v.capacity[:, : p.n_horizons]
    pressure = np.where(cap > 0, work / np.maximum(cap, 1e-9), np.where(work > 0, 9.0, 0.0))
    pressure = pressure.max(axis=1)
    hot = int(np.argmax(pressure))
    hot_name = f.names[hot]

    out: list[tuple[str, Actions]] = [("base", decision)]
    plan = {
        n: SectorAction(
            overtime=f.plan[n].overtime,
            priority=f.plan[n].priority,
            flex_count=f.plan[n].flex_workers,
        )
        for n in f.names
    }
    out.append(("plan", plan))
    no_loans = {"lend_to": None, "lend_count": 0}
    out.append(("no-loans", {n: a.model_copy(update=no_loans) for n, a in decision.items()}))
    if wide:
        out.append(
            (
                "loans-to-hot-only",
                {
                    n: a if a.lend_to == hot_name else a.model_copy(update=no_loans)
                    for n, a in decision.items()
                },
            )
        )

    # more help for the most pressed sector, from its best idle-ish donors
    donors = sorted(
        (
            d
            for d in range(f.n)
            if d != hot and f.eff[d, hot] > 0 and v.own_home[d] >= 2 and pressure[d] < pressure[hot]
        ),
        key=lambda d: (-f.eff[d, hot] * v.own_home[d], d),
    )

    def more_help(d: int, scale: int) -> Actions:
        a = decision[f.names[d]]
        have = a.lend_count if a.lend_to == hot_name else 0
        extra = scale * max(1, math.ceil(0.25 * v.own_home[d]))
        out_ = dict(decision)
        out_[f.names[d]] = a.model_copy(update={"lend_to": hot_name, "lend_count": have + extra})
        return out_

    for rank, d in enumerate(donors[: 3 if wide else 1]):
        out.append(("more-help" if rank == 0 else f"more-help-{f.names[d]}", more_help(d, 1)))
    if wide and donors:
        out.append(("much-more-help", more_help(donors[0], 2)))

    # more flex where it is hot, or none at all
    if v.flex_free > 0:
        k = max(1, math.ceil(f.flex_max / 3))
        for scale in (1, 2) if wide else (1,):
            more_flex = dict(decision)
            a = decision[hot_name]
            more_flex[hot_name] = a.model_copy(
                update={"flex_count": a.flex_count + min(scale * k, v.flex_free)}
            )
            out.append(("more-flex" if scale == 1 else "much-more-flex", more_flex))
    if any(a.flex_count for a in decision.values()):
        out.append(
            ("no-flex", {n: a.model_copy(update={"flex_count": 0}) for n, a in decision.items()})
        )

    # overtime switched where a shift ends before the next decision
    ending = [
        f.names[s] for s in range(f.n) if v.shift_end[s] <= base.interval or v.overtime[s] > 0
    ]
    if ending:
        flipped = dict(decision)
        for n in ending:
            flipped[n] = decision[n].model_copy(update={"overtime": not decision[n].overtime})
        out.append(("overtime-switched", flipped))
        if wide:
            for name, value in (("overtime-on", True), ("overtime-off", False)):
                switched = dict(decision)
                for n in ending:
                    switched[n] = decision[n].model_copy(update={"overtime": value})
                out.append((name, switched))

    unique: list[tuple[str, Actions]] = []
    seen: list[Actions] = []
    for name, actions in out:
        if actions not in seen:
            seen.append(actions)
            unique.append((name, actions))
    return unique
