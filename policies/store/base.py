"""What every store backend shares: the rows, the error, and the SQL of each operation.

A backend (:mod:`policies.store.sqlite`, :mod:`policies.store.postgres`) supplies only a
connection, its schema and a transaction; the statements below are written once with
``?`` placeholders and run unchanged on both (PostgreSQL's ``%s`` is substituted).
Every write runs in its own transaction that is committed before the method returns,
so a caller that answers "stored" after the call tells the truth.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

#: Rows fetched per query when paging through a table (export, replay).
PAGE_ROWS = 1000


class StoreError(RuntimeError):
    """The store cannot do what was asked (cannot write, locked, unreachable, full).

    Carries the operation that failed; the HTTP layer turns it into a 503.
    """

    def __init__(self, operation: str, cause: BaseException | str) -> None:
        super().__init__(f"store cannot {operation}: {cause}")
        self.operation = operation
        self.cause = str(cause)


class Cursor(Protocol):
    """The part of a DB-API cursor the statements need (sqlite3's and psycopg's)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Sequence[Any] = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class RecommendationRow:
    """One stored recommendation; ``snapshot`` and ``recommendation`` are JSON text."""

    seq: int
    id: str
    time: str
    policy_name: str
    policy_version: str
    snapshot: str
    recommendation: str


@dataclass(frozen=True)
class FeedbackRow:
    """One answer to a recommendation (several may exist; the last one counts)."""

    seq: int
    recommendation_id: str
    time: str
    accepted: bool
    comment: str | None


@dataclass(frozen=True)
class EventRow:
    """One event of a live site's stream, stored once per ``(site, event_id)``."""

    seq: int
    site: str
    event_id: str
    time: str
    payload: str


@dataclass(frozen=True)
class AlertRow:
    """An alert pushed to a live site and, once known, what came of it."""

    seq: int
    site: str
    id: str
    time: str
    payload: str
    outcome: str | None


def now() -> str:
    """The time stamp of a stored row: UTC, milliseconds, ISO 8601 (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_REC_COLUMNS = "seq, id, time, policy_name, policy_version, snapshot, recommendation"
_FB_COLUMNS = "seq, recommendation_id, time, accepted, comment"


class Store(ABC):
    """Recommendations, feedback, live events and alerts in one database.

    Safe to share between threads; several processes may open the same database.
    Every method raises :class:`StoreError` when the database fails.
    """

    #: where the data lives, for messages (no password)
    url: str
    #: ``?`` or ``%s``
    _placeholder = "?"

    def __init__(self) -> None:
        self._sql_cache: dict[str, str] = {}
        self._sql_lock = threading.Lock()

    # ---------------------------------------------------------------- backend hooks

    @abstractmethod
    def _transaction(self, operation: str, write: bool) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction: committed on exit, rolled back on error.

        Database errors leave as :class:`StoreError` naming ``operation``.
        """

    @abstractmethod
    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""

    def _sql(self, statement: str) -> str:
        if self._placeholder == "?":
            return statement
        with self._sql_lock:
            out = self._sql_cache.get(statement)
            if out is None:
                out = self._sql_cache[statement] = statement.replace("?", self._placeholder)
        return out

    def _run(self, operation: str, statement: str, params: Sequence[Any] = ()) -> int:
        """One write statement in its own committed transaction; its row count."""
        with self._transaction(operation, write=True) as cur:
            cur.execute(self._sql(statement), params)
            return cur.rowcount

    def _rows(self, operation: str, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._transaction(operation, write=False) as cur:
            cur.execute(self._sql(statement), params)
            return cur.fetchall()

    # ---------------------------------------------------------------- recommendations

    def record(
        self,
        rec_id: str,
        policy_name: str,
        policy_version: str,
        snapshot_json: str,
        recommendation_json: str,
        time: str | None = None,
    ) -> str:
        """Store one recommendation; its time stamp.

        Raises:
            StoreError: it was not stored (including an id that is already stored).
        """
        stamp = time or now()
        self._run(
            "record a recommendation",
            "INSERT INTO recommendations"
            " (id, time, policy_name, policy_version, snapshot, recommendation)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (rec_id, stamp, policy_name, policy_version, snapshot_json, recommendation_json),
        )
        return stamp

    def known(self, rec_id: str) -> bool:
        """Whether a recommendation with this id is stored (an index lookup)."""
        rows = self._rows(
            "look up a recommendation", "SELECT 1 FROM recommendations WHERE id = ?", (rec_id,)
        )
        return bool(rows)

    def recommendation(self, rec_id: str) -> RecommendationRow | None:
        """The stored recommendation with this id, if any."""
        rows = self._rows(
            "read a recommendation",
            f"SELECT {_REC_COLUMNS} FROM recommendations WHERE id = ?",
            (rec_id,),
        )
        return RecommendationRow(*rows[0]) if rows else None

    def recommendations(self, after: int = 0, limit: int = PAGE_ROWS) -> list[RecommendationRow]:
        """Up to ``limit`` recommendations stored after ``seq`` ``after``, oldest first."""
        rows = self._rows(
            "read recommendations",
            f"SELECT {_REC_COLUMNS} FROM recommendations WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [RecommendationRow(*r) for r in rows]

    # ---------------------------------------------------------------- feedback

    def add_feedback(
        self, rec_id: str, accepted: bool, comment: str | None, time: str | None = None
    ) -> str | None:
        """Store feedback on a stored recommendation; its time stamp, ``None`` if the id
        is unknown (one statement: the check and the insert cannot be separated)."""
        if not self.known(rec_id):  # a read: an unknown id never waits for the write lock
            return None
        stamp = time or now()
        count = self._run(
            "record feedback",
            "INSERT INTO feedback (recommendation_id, time, accepted, comment)"
            " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM recommendations WHERE id = ?)",
            (rec_id, stamp, accepted, comment, rec_id),
        )
        return stamp if count == 1 else None

    def feedback(self, after: int = 0, limit: int = PAGE_ROWS) -> list[FeedbackRow]:
        """Up to ``limit`` feedback rows stored after ``seq`` ``after``, oldest first."""
        rows = self._rows(
            "read feedback",
            f"SELECT {_FB_COLUMNS} FROM feedback WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [FeedbackRow(s, r, t, bool(a), c) for s, r, t, a, c in rows]

    def feedback_for(self, rec_id: str) -> list[FeedbackRow]:
        """Every answer to one recommendation, oldest first."""
        rows = self._rows(
            "read feedback",
            f"SELECT {_FB_COLUMNS} FROM feedback WHERE recommendation_id = ? ORDER BY seq",
            (rec_id,),
        )
        return [FeedbackRow(s, r, t, bool(a), c) for s, r, t, a, c in rows]

    def counts(self) -> dict[str, int]:
        """Rows per table: ``{"recommendations": n, "feedback": n, "events": n, "alerts": n}``."""
        out = {}
        for table in ("recommendations", "feedback", "events", "alerts"):
            (n,) = self._rows("count rows", f"SELECT count(*) FROM {table}")[0]
            out[table] = int(n)
        return out

    # ---------------------------------------------------------------- live sites

    def add_events(self, site: str, events: Sequence[tuple[str, str, str]]) -> list[bool]:
        """Store a site's events ``(event_id, time, payload_json)`` in one transaction.

        An event id the site already sent is ignored (a retried batch is harmless).

        Returns:
            Per event, whether it was new.
        """
        statement = self._sql(
            "INSERT INTO events (site, event_id, time, payload) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (site, event_id) DO NOTHING"
        )
        new = []
        with self._transaction("record events", write=True) as cur:
            for event_id, stamp, payload in events:
                cur.execute(statement, (site, event_id, stamp, payload))
                new.append(cur.rowcount == 1)
        return new

    def events(self, site: str, after: int = 0, limit: int = PAGE_ROWS) -> list[EventRow]:
        """Up to ``limit`` of a site's events stored after ``seq`` ``after``, oldest first."""
        rows = self._rows(
            "read events",
            "SELECT seq, site, event_id, time, payload FROM events"
            " WHERE site = ? AND seq > ? ORDER BY seq LIMIT ?",
            (site, after, limit),
        )
        return [EventRow(*r) for r in rows]

    def add_alert(
        self, site: str, alert_id: str, payload_json: str, time: str | None = None
    ) -> bool:
        """Store an alert; ``False`` if the site already has one with this id."""
        count = self._run(
            "record an alert",
            "INSERT INTO alerts (site, id, time, payload) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (site, id) DO NOTHING",
            (site, alert_id, time or now(), payload_json),
        )
        return count == 1

    def set_alert_outcome(self, site: str, alert_id: str, outcome: str) -> bool:
        """Record what came of an alert; ``False`` if there is no such alert."""
        count = self._run(
            "record an alert's outcome",
            "UPDATE alerts SET outcome = ? WHERE site = ? AND id = ?",
            (outcome, site, alert_id),
        )
        return count == 1

    def alerts(self, site: str, after: int = 0, limit: int = PAGE_ROWS) -> list[AlertRow]:
        """Up to ``limit`` of a site's alerts stored after ``seq`` ``after``, oldest first."""
        rows = self._rows(
            "read alerts",
            "SELECT seq, site, id, time, payload, outcome FROM alerts"
            " WHERE site = ? AND seq > ? ORDER BY seq LIMIT ?",
            (site, after, limit),
        )
        return [AlertRow(*r) for r in rows]

    # ---------------------------------------------------------------- importing

    def import_once(
        self,
        source: str,
        recommendations: Iterable[tuple[str, str, str, str, str, str]],
        feedback: Iterable[tuple[str, str, bool, str | None]],
    ) -> bool:
        """Store old records once per ``source``, in one transaction; ``False`` if
        ``source`` was imported before (by this or another process).

        Args:
            source: names what is imported (a JSONL log), remembered in ``imports``.
            recommendations: ``(id, time, policy_name, policy_version, snapshot_json,
                recommendation_json)``; an id already stored is skipped.
            feedback: ``(recommendation_id, time, accepted, comment)``, read after every
                recommendation; only feedback on a recommendation this import stored is
                kept (the store's own feedback on the others is already there).
        """
        rec_sql = self._sql(
            "INSERT INTO recommendations"
            " (id, time, policy_name, policy_version, snapshot, recommendation)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        )
        fb_sql = self._sql(
            "INSERT INTO feedback (recommendation_id, time, accepted, comment)"
            " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM recommendations WHERE id = ?)"
        )
        with self._transaction("import old records", write=True) as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO imports (source, time) VALUES (?, ?) ON CONFLICT DO NOTHING"
                ),
                (source, now()),
            )
            if cur.rowcount != 1:
                return False
            added = set()
            for rec in recommendations:
                cur.execute(rec_sql, rec)
                if cur.rowcount == 1:
                    added.add(rec[0])
            for rec_id, stamp, accepted, comment in feedback:
                if rec_id in added:
                    cur.execute(fb_sql, (rec_id, stamp, accepted, comment, rec_id))
        return True

    # ---------------------------------------------------------------- health

    def probe(self) -> None:
        """Commit a tiny write (one row of ``probe``), as a recommendation would.

        Raises:
            StoreError: the store cannot write now (locked, read-only, full, unreachable).
        """
        self._run(
            "write (probe)",
            "INSERT INTO probe (k, time) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET time = ?",
            (now(), now()),
        )


def pages(fetch: Any, after: int = 0, limit: int = PAGE_ROWS) -> Iterator[Any]:
    """Every row of a paged reader (``store.recommendations``, ``store.feedback``), in
    order, ``limit`` rows per query (no read transaction is held between pages)."""
    while True:
        batch = fetch(after=after, limit=limit)
        yield from batch
        if len(batch) < limit:
            return
        after = batch[-1].seq
