"""Streaming a log into a site, paced at N times the log's own clock, and what it did.

At ``speed`` N, the event logged at minute ``m`` is sent ``(m - m0) / N`` minutes
after the replay began (``m0``: the first event's minute), so an hour of the floor
takes a minute at 60x. Events due together go in one batch (up to ``batch``); while
nothing is due the sender waits, and the log's clock keeps moving on the progress
line. At ``speed=None`` ("max") batches go back to back, as fast as the server takes
them. Paced requests go at most every 0.1 s (what falls due meanwhile waits for the
next one). A log may be out of order within the live twin's tolerance: an event is due at
the latest time logged up to it, so the log's order is kept.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from experiments.replay.client import SiteClient
from experiments.replay.log import ReplayLog

FIRST_REASONS = 3  # reasons kept per kind of rejection
IDLE_STEP_SECONDS = 0.5  # longest wait before the progress line moves on
SEND_EVERY_SECONDS = 0.1  # paced: at most ten requests a second (events due meanwhile wait)


@dataclass
class Summary:
    """What a replay sent and what the server made of it.

    ``rejected`` counts refusals by kind (``schema``, ``scenario``, ``late``, ``state``),
    ``reasons`` keeps the first few ``(id, reason)`` of each kind. A refusal of kind
    ``state`` can be reported by a later batch than the event's own (the twin applies an
    event once the reorder tolerance has passed).
    """

    in_log: int
    sent: int = 0
    batches: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, list[tuple[str | None, str]]] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0
    last_minute: float | None = None

    def add(self, answer: dict[str, Any], size: int) -> None:
        """Count one batch's answer (``POST /v1/sites/{site}/events``)."""
        self.sent += size
        self.batches += 1
        self.accepted += int(answer.get("accepted", 0))
        self.duplicate += int(answer.get("duplicate", 0))
        for r in answer.get("rejected", []):
            kind = str(r.get("kind", "?"))
            self.rejected[kind] += 1
            kept = self.reasons.setdefault(kind, [])
            if len(kept) < FIRST_REASONS:
                kept.append((r.get("id"), str(r.get("reason", ""))))


def stream(
    log: ReplayLog,
    client: SiteClient,
    *,
    count: int,
    speed: float | None,
    batch: int,
    progress: Callable[[int, float], None] = lambda sent, minute: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Send the first ``count`` events of ``log`` to ``client``'s site.

    Args:
        speed: times real time (``None``: as fast as the server takes them).
        batch: most events in one request.
        progress: called with the events sent so far and the log's clock (minutes).

    Raises:
        ReplayError: the server refused a batch or cannot be reached (what was sent
            before stays; sending again is safe).
    """
    summary = Summary(in_log=len(log.events))
    due = list(accumulate(log.minutes[:count], max))  # the log's clock at each event
    start = last_sent = clock()
    i = 0
    while i < count:
        if speed is None:
            j = min(i + batch, count)
        else:
            if (gap := SEND_EVERY_SECONDS - (clock() - last_sent)) > 0:
                sleep(gap)
            now = due[0] + (clock() - start) * speed / 60.0
            j = min(bisect_right(due, now, lo=i), i + batch)
            if j == i:  # nothing due yet
                progress(i, now)
                sleep(min((due[i] - now) * 60.0 / speed, IDLE_STEP_SECONDS))
                continue
        summary.add(client.post(log.events[i:j]), j - i)
        last_sent = clock()
        summary.last_minute = due[j - 1]
        i = j
        progress(i, due[i - 1])
    summary.retries = client.retries
    summary.seconds = clock() - start
    return summary
