"""Which advice a floor trusts: accepted and rejected feedback per kind of advice.

A recommendation's *kind of advice* is what its headline asked for: the kinds of its
top-ranked action joined by ``+`` (``lend``, ``priority``, ``overtime+priority``, ...),
``hold`` when nothing was worth changing, ``unranked`` without an impact estimate
(:func:`advice_kind`). The server counts feedback by it in ``/metrics``
(``synctwin_feedback_by_advice_total{advice,accepted}``) and :func:`feedback_report`
tallies a decision log (``synctwin feedback-report LOG``): per kind, how many
recommendations were given, how many got feedback, and the share accepted with its
Wilson 95% interval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.stats import Interval, wilson_interval


def advice_kind(status: str, top_kinds: Sequence[str] = ()) -> str:
    """The kind of advice of an answer with ``status`` and its top action's ``top_kinds``."""
    if status == "act" and top_kinds:
        return "+".join(dict.fromkeys(top_kinds))
    return status


def advice_kind_of(recommendation: Mapping[str, Any]) -> str:
    """The kind of advice of a ``POST /v1/recommend`` response body (as logged)."""
    actions = recommendation.get("actions") or []
    top = actions[0].get("kinds", []) if actions else []
    return advice_kind(str(recommendation.get("status", "unranked")), top)


@dataclass(frozen=True)
class KindFeedback:
    """Feedback on one kind of advice."""

    kind: str
    recommendations: int
    accepted: int
    rejected: int

    @property
    def answered(self) -> int:
        return self.accepted + self.rejected

    @property
    def acceptance(self) -> Interval:
        """The share of answered recommendations accepted, with its Wilson 95% interval."""
        return wilson_interval(self.accepted, self.answered)


@dataclass(frozen=True)
class FeedbackReport:
    """Per kind of advice (most recommended first), and feedback on unknown ids."""

    kinds: tuple[KindFeedback, ...]
    unmatched_feedback: int  # feedback lines whose recommendation is not in the log
    bad_lines: int  # lines that are not JSON objects of a known type


def feedback_report(path: Path) -> FeedbackReport:
    """Tally the decision log at ``path`` (JSON Lines, :mod:`policies.decision_log`).

    The last feedback given for a recommendation counts. Raises ``OSError`` if the
    file cannot be read.
    """
    kinds: dict[str, str] = {}
    answers: dict[str, bool] = {}
    bad = 0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(row, dict):
                bad += 1
            elif row.get("type") == "recommendation" and isinstance(
                row.get("recommendation"), dict
            ):
                kinds[str(row.get("id"))] = advice_kind_of(row["recommendation"])
            elif row.get("type") == "feedback" and isinstance(row.get("accepted"), bool):
                answers[str(row.get("recommendation_id"))] = row["accepted"]
            else:
                bad += 1
    given: dict[str, int] = {}
    for kind in kinds.values():
        given[kind] = given.get(kind, 0) + 1
    accepted = dict.fromkeys(given, 0)
    rejected = dict.fromkeys(given, 0)
    unmatched = 0
    for rec_id, ok in answers.items():
        found = kinds.get(rec_id)
        if found is None:
            unmatched += 1
        elif ok:
            accepted[found] += 1
        else:
            rejected[found] += 1
    rows = tuple(
        KindFeedback(kind=k, recommendations=n, accepted=accepted[k], rejected=rejected[k])
        for k, n in sorted(given.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return FeedbackReport(kinds=rows, unmatched_feedback=unmatched, bad_lines=bad)
