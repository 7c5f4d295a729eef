"""A live twin: the operation's state kept in step with the floor's event stream.

:class:`LiveTwin` takes batches of events (:mod:`twin.floor_events`) and gives the
snapshot (:class:`~twin.snapshot.OperationSnapshot`) of the operation at any moment,
the same one a twin that made those events happen reports.

Rules, in the order an event meets them:

1. **Schema.** An event that does not parse (unknown kind, missing field, bad
   timestamp) is rejected with the reason.
2. **Duplicates.** An id already accepted is counted as a duplicate and changes
   nothing, so a sender may retry a batch.
3. **The scenario.** Unknown sectors, item classes or workers, and events before the
   site's start, are rejected.
4. **Order.** Events may arrive out of order by up to ``tolerance_minutes`` (2 by
   default): they wait in a buffer and are applied in timestamp order (equal
   timestamps in the order received) once the latest timestamp seen is more than the
   tolerance past them. An event older than that is rejected as too late.
5. **The state.** Applied in order, an event the state contradicts (a finish
   without a start, a clock-in of a worker already in) is rejected and changes
   nothing. This check runs when the event is applied, so its rejection is reported
   by the :meth:`LiveTwin.ingest` (or :meth:`LiveTwin.flush`) call that applied it.

What was observed is kept beside the state: SLA misses per sector and external
arrivals per item class, with their minutes (:meth:`LiveTwin.observed`,
:meth:`LiveTwin.misses`, :meth:`LiveTwin.miss_minutes`, :meth:`LiveTwin.arrivals`),
counted as the twin counts them; alerts check their forecasts against the misses,
and adaptive planning (:mod:`twin.adaptive`) learns demand from the arrivals.

Bad events are data, never exceptions: each rejection carries the event's id and
the reason, and the valid rest of a batch is kept.

The calendar: minute 0 is midnight of day 0, the latest midnight at or before
``start`` that falls on the scenario's start weekday (:func:`twin.wallclock.day_zero`),
so several days and weekday factors line up with the wall clock.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any, NamedTuple

from pydantic import ValidationError

from twin.floor_events import FLOOR_EVENT
from twin.live_state import FloorState, Refused, Resolved
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot
from twin.wallclock import TimestampError, day_zero, minute_of

DEFAULT_TOLERANCE_MINUTES = 2.0


class RosterEntry(NamedTuple):
    """A worker the live twin knows: ``shift`` ``None`` for agency (flex) staff."""

    worker_id: str
    home: str | None
    shift: str | None


def default_roster(scenario: Scenario) -> list[RosterEntry]:
    """The scenario's staff, numbered as the twin numbers its workers (``"1"``, ``"2"``, ...):
    regular staff by sector and shift in the scenario's order, then the flex pool."""
    wf = scenario.workforce
    out = [
        (sector, shift)
        for sector in scenario.sector_names
        for shift, n in wf.headcount.get(sector, {}).items()
        for _ in range(n)
    ]
    regular = [RosterEntry(str(i), h, sh) for i, (h, sh) in enumerate(out, start=1)]
    flex = [RosterEntry(str(len(out) + i), None, None) for i in range(1, wf.flex.max_workers + 1)]
    return regular + flex


class Rejection(NamedTuple):
    """An event refused: its id (``None`` if it had none) and why."""

    id: str | None
    reason: str


@dataclass
class IngestResult:
    """What one :meth:`LiveTwin.ingest` call did.

    ``accepted`` counts events of the batch taken in (buffered or applied),
    ``duplicate`` those whose id was already taken in; ``rejected`` lists each refusal
    with its reason, including events of earlier batches refused when applied now.
    """

    accepted: int = 0
    duplicate: int = 0
    rejected: list[Rejection] = field(default_factory=list)


class _Pending(NamedTuple):
    minute: float
    seq: int
    kind: str
    event: Any
    resolved: Resolved


class LiveTwin:
    """The live state of one site, from its events.

    Args:
        scenario: the scenario the site runs (sectors, classes, shifts, transfer times).
        start: when the site starts; events before it are rejected. Naive, or with a
            UTC offset (then every timestamp needs one too).
        tolerance_minutes: how far out of order events may arrive.
        roster: the workers (default: :func:`default_roster`, the twin's numbering).

    Raises:
        ValueError: a roster entry names an unknown sector or shift.
    """

    def __init__(
        self,
        scenario: Scenario,
        start: datetime,
        *,
        tolerance_minutes: float = DEFAULT_TOLERANCE_MINUTES,
        roster: Sequence[RosterEntry] | None = None,
    ) -> None:
        self.scenario = scenario
        self.zero = day_zero(scenario.start_weekday, start)
        self.start = start
        self.start_minute = minute_of(start.isoformat(), self.zero)
        self.tolerance_minutes = tolerance_minutes
        self._sectors = {n: i for i, n in enumerate(scenario.sector_names)}
        self._classes = {n: i for i, n in enumerate(scenario.class_names)}
        self._state = FloorState(scenario, self._roster(roster or default_roster(scenario)))
        self._buffer: list[_Pending] = []
        self._seq = count()
        self._seen: set[str] = set()
        self._latest = self.start_minute
        self.rejections: list[Rejection] = []
        self.accepted = 0
        self.duplicates = 0

    def _roster(self, roster: Sequence[RosterEntry]) -> list[tuple[str, int, int, bool]]:
        shifts = {s.name: i for i, s in enumerate(self.scenario.workforce.shifts)}
        pool = len(self._sectors)
        out = []
        for wid, home, shift in roster:
            if shift is None:
                out.append((wid, pool, -1, True))
                continue
            if home not in self._sectors or shift not in shifts:
                raise ValueError(f"roster: worker {wid!r} has home {home!r}, shift {shift!r}")
            out.append((wid, self._sectors[home], shifts[shift], False))
        return out

    # ------------------------------------------------------------------ in

    @property
    def watermark(self) -> float:
        """Minute before which no event is accepted any more (latest seen minus tolerance)."""
        return self._latest - self.tolerance_minutes

    def ingest(
        self, batch: Iterable[Any], before_take: Callable[[float], None] | None = None
    ) -> IngestResult:
        """Take a batch of events (mappings as sent, or :data:`FloorEvent` models).

        Args:
            batch: the events, in the order they came.
            before_take: called with an event's minute once it has passed every check,
                just before it is taken in (a site hands on the states at the grid
                points it finalises: only an accepted event moves the watermark).

        Returns:
            counts of accepted and duplicate events, and each rejection with its reason.
        """
        result = IngestResult()
        for raw in batch:
            self._take(raw, result, before_take)
        self._apply_until(self.watermark, result)
        self.accepted += result.accepted
        self.duplicates += result.duplicate
        self.rejections.extend(result.rejected)
        return result

    def flush(self) -> IngestResult:
        """Apply every buffered event (the stream has ended, or is known complete)."""
        result = IngestResult()
        self._apply_until(float("inf"), result)
        self.rejections.extend(result.rejected)
        return result

    def _take(
        self, raw: Any, result: IngestResult, before_take: Callable[[float], None] | None
    ) -> None:
        eid = raw.get("id") if isinstance(raw, dict) else getattr(raw, "__dict__", {}).get("id")
        eid = eid if isinstance(eid, str) else None
        try:
            ev = FLOOR_EVENT.validate_python(raw)
        except ValidationError as err:
            result.rejected.append(Rejection(eid, _schema_reason(err)))
            return
        if ev.id in self._seen:
            result.duplicate += 1
            return
        try:
            r = self._resolve(ev)
        except (Refused, TimestampError) as err:
            result.rejected.append(Rejection(ev.id, str(err)))
            return
        if r.minute < self.watermark:
            late = self._latest - r.minute
            result.rejected.append(
                Rejection(
                    ev.id,
                    f"too late: {ev.timestamp} is {late:g} minutes before the latest event; "
                    f"events may arrive out of order by at most {self.tolerance_minutes:g} "
                    "minutes",
                )
            )
            return
        if before_take is not None:
            before_take(r.minute)
        self._seen.add(ev.id)
        heapq.heappush(self._buffer, _Pending(r.minute, next(self._seq), ev.kind, ev, r))
        self._latest = max(self._latest, r.minute)
        result.accepted += 1

    def _resolve(self, ev: Any) -> Resolved:
        """The event's minutes and indices; :class:`Refused` for what the scenario lacks."""
        r = Resolved(minute_of(ev.timestamp, self.zero))
        if r.minute < self.start_minute:
            raise Refused(f"{ev.timestamp} is before the site's start ({self.start.isoformat()})")
        fields = ev.__dict__  # the event's fields (kinds differ in which they have)
        sector = fields.get("sector") or fields.get("to_sector")
        if sector is not None:
            r.sector = self._sector(sector)
        item_class = fields.get("item_class")
        if item_class is not None:
            if item_class not in self._classes:
                known = ", ".join(self._classes)
                raise Refused(f"unknown item class {item_class!r} (classes: {known})")
            r.cls = self._classes[item_class]
        due = fields.get("due")
        if due is not None:
            r.due = minute_of(due, self.zero)
        worker = fields.get("worker_id")
        if worker is not None:
            if worker not in self._state.workers:
                raise Refused(f"unknown worker {worker!r} (not on the roster)")
            r.worker = worker
        action = fields.get("action")
        if action is not None and action.lend_to is not None:
            self._sector(action.lend_to)
        return r

    def _sector(self, name: str) -> int:
        if name not in self._sectors:
            raise Refused(f"unknown sector {name!r} (sectors: {', '.join(self._sectors)})")
        return self._sectors[name]

    def _apply_until(self, minute: float, result: IngestResult) -> None:
        while self._buffer and self._buffer[0].minute < minute:
            p = heapq.heappop(self._buffer)
            try:
                self._state.apply(p.kind, p.event, p.resolved)
            except Refused as err:
                self._seen.discard(p.event.id)
                result.rejected.append(Rejection(p.event.id, str(err)))

    # ------------------------------------------------------------------ out

    def minute(self, at: float | datetime | str) -> float:
        """The twin's minute of ``at`` (a minute already, a datetime or a timestamp)."""
        if isinstance(at, datetime):
            at = at.isoformat()
        if isinstance(at, str):
            return minute_of(at, self.zero)
        return float(at)

    def snapshot(self, at: float | datetime | str | None = None) -> OperationSnapshot:
        """The operation's state at ``at`` (default: now, by the wall clock).

        Every event before ``at`` counts, the buffered ones too (the buffer stays, so a
        late event within the tolerance still enters later snapshots); events at or
        after ``at`` do not.

        Raises:
            ValueError: ``at`` is not after every event already applied (the past of a
                live twin is not kept).
        """
        now = self.minute(datetime.now(self.start.tzinfo) if at is None else at)
        if now <= self._state.last_minute or now < 0:
            raise ValueError(
                f"minute {now:g} is not after the last applied event "
                f"(minute {self._state.last_minute:g})"
            )
        return self._state_at(now).snapshot(now)

    def _state_at(self, now: float) -> FloorState:
        """The state with the buffered events before ``now`` applied too (a copy if any)."""
        pending = sorted(p for p in self._buffer if p.minute < now)
        state = self._state
        if pending:
            state = state.copy()
            for p in pending:
                try:
                    state.apply(p.kind, p.event, p.resolved)
                except Refused:
                    pass  # reported when it is applied for good
        return state

    # ------------------------------------------------------------------ observed

    def observed(self, at: float | datetime | str | None = None) -> Observed:
        """What happened before ``at``: SLA misses per sector, external arrivals per class.

        ``at`` (default: the latest event's minute) follows :meth:`snapshot`: events
        before it count, the buffered ones too. Unlike the state, this history is kept,
        so ``at`` may be any minute: a question about the past is answered from it.

        Misses are counted as the twin counts them (:mod:`twin.live_state`): once per
        item, at its due minute, in the sector where it is then. One at a due minute
        after the last applied event is tentative until the events before it are in:
        an event still within the reorder tolerance can show the item left in time.
        """
        now = self._latest if at is None else self.minute(at)
        misses, arrivals = self._state_at(now).observed(now)
        sc = self.scenario
        return Observed(
            minute=now,
            misses={n: misses[s] for s, n in enumerate(sc.sector_names)},
            arrivals={c: arrivals[k] for k, c in enumerate(sc.class_names)},
        )

    def misses(
        self,
        sector: str | None = None,
        since: float | datetime | str | None = None,
        until: float | datetime | str | None = None,
    ) -> int:
        """SLA misses in ``sector`` (default: every sector) at minutes in ``[since, until)``
        (defaults: the start, and the latest event's minute; see :meth:`observed`).

        Raises:
            KeyError: an unknown sector.
        """
        return self.observed(until).count("misses", sector, self._since(since))

    def miss_minutes(self, at: float | datetime | str | None = None) -> dict[str, list[float]]:
        """Per sector, the minutes of its SLA misses before ``at``, in order (the first
        is the sector's first miss); see :meth:`observed`."""
        return self.observed(at).misses

    def arrivals(
        self,
        item_class: str | None = None,
        since: float | datetime | str | None = None,
        until: float | datetime | str | None = None,
    ) -> int:
        """Items of ``item_class`` (default: every class) that entered the operation at
        minutes in ``[since, until)`` (handoffs between sectors are not arrivals).

        Raises:
            KeyError: an unknown item class.
        """
        return self.observed(until).count("arrivals", item_class, self._since(since))

    def _since(self, since: float | datetime | str | None) -> float:
        return -math.inf if since is None else self.minute(since)


@dataclass(frozen=True)
class Observed:
    """What a live twin saw before ``minute`` (:meth:`LiveTwin.observed`).

    Attributes:
        minute: the twin's minute the view is taken at (exclusive).
        misses: per sector (every sector of the scenario), the minutes of its SLA
            misses, in order.
        arrivals: per item class (every class), the minutes its items entered the
            operation, in order.
    """

    minute: float
    misses: dict[str, list[float]]
    arrivals: dict[str, list[float]]

    def count(self, what: str, key: str | None = None, since: float = -math.inf) -> int:
        """How many ``misses`` or ``arrivals`` (of one sector or class, or all) at or
        after ``since``.

        Raises:
            KeyError: ``key`` is not a sector (class) of the scenario.
        """
        table: dict[str, list[float]] = getattr(self, what)
        if key is not None and key not in table:
            raise KeyError(f"unknown {'sector' if what == 'misses' else 'item class'} {key!r}")
        lists = table.values() if key is None else [table[key]]
        return sum(len(m) - bisect_left(m, since) for m in lists)


def _schema_reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)
