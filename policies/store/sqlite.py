"""The embedded store: one SQLite file in WAL mode (stdlib ``sqlite3``).

WAL lets readers run while one writer commits, and lets several processes (uvicorn
workers) share the file: writers queue on SQLite's lock for up to ``busy_timeout``
milliseconds, then fail with :class:`~policies.store.base.StoreError`.

``synchronous=NORMAL`` (the default) commits to the WAL without an fsync per
commit (the WAL is synced at checkpoints): a recommendation that got its 200
survives a crashed or killed server, but the last commits can be lost if the
machine loses power. ``FULL`` fsyncs the WAL at every commit and survives a power
cut too, at one fsync per write: about 4 ms on the project's machines, against
0.07 ms, which would cap one store at about 200 writes a second and put the
server's recommendations without impact far past their 3 ms p99 (see the README).

Each thread gets its own connection (``sqlite3`` connections are not meant to be
shared), so a reader is never queued behind another thread's fsync; an in-memory
database (no file) has one connection behind a lock instead, since each connection
to ``:memory:`` would be a database of its own.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from policies.store.base import Store, StoreError

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS recommendations (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        time TEXT NOT NULL,
        policy_name TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        recommendation TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS feedback (
        seq INTEGER PRIMARY KEY,
        recommendation_id TEXT NOT NULL REFERENCES recommendations (id),
        time TEXT NOT NULL,
        accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
        comment TEXT)""",
    "CREATE INDEX IF NOT EXISTS feedback_by_recommendation ON feedback (recommendation_id)",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        event_id TEXT NOT NULL,
        time TEXT NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (site, event_id))""",
    "CREATE INDEX IF NOT EXISTS events_by_site ON events (site, seq)",
    """CREATE TABLE IF NOT EXISTS alerts (
        seq INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        id TEXT NOT NULL,
        time TEXT NOT NULL,
        payload TEXT NOT NULL,
        outcome TEXT,
        UNIQUE (site, id))""",
    "CREATE INDEX IF NOT EXISTS alerts_by_site ON alerts (site, seq)",
    "CREATE TABLE IF NOT EXISTS probe (k INTEGER PRIMARY KEY, time TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS imports (source TEXT PRIMARY KEY, time TEXT NOT NULL)",
)

Synchronous = Literal["FULL", "NORMAL"]


class SqliteStore(Store):
    """A store in the SQLite file ``path`` (created if missing), or in memory if ``None``.

    Args:
        path: the database file; its directory is created if missing.
        busy_timeout_ms: how long a write waits for another process's lock.
        synchronous: ``"FULL"`` (fsync every commit) or ``"NORMAL"`` (see the module).

    Raises:
        StoreError: the file cannot be opened or is not a SQLite database.
    """

    def __init__(
        self,
        path: Path | None,
        busy_timeout_ms: int = 5000,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        super().__init__()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = path
        self.url = f"sqlite:///{path}" if path is not None else "sqlite://"
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._shared_lock = threading.Lock()
        self._shared: sqlite3.Connection | None = None
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                self._shared = self._open()
            with self._transaction("create the schema", write=True) as cur:
                for statement in SCHEMA:
                    cur.execute(statement)
        except OSError as err:
            raise StoreError(f"open {self.url}", err) from err
        except StoreError:
            self.close()
            raise

    def _open(self) -> sqlite3.Connection:
        target = str(self.path) if self.path is not None else ":memory:"
        conn = sqlite3.connect(
            target,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,  # transactions are begun and committed explicitly
            check_same_thread=False,  # only for close(); each thread uses its own
        )
        try:
            if self.path is not None:
                (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                if mode.lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode {mode})")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        except sqlite3.Error:
            conn.close()
            raise
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._shared is not None:
            with self._shared_lock:
                yield self._shared
            return
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        yield conn

    @contextmanager
    def _transaction(self, operation: str, write: bool) -> Iterator[sqlite3.Cursor]:
        try:
            with self._connection() as conn:
                cur = conn.cursor()
                try:
                    if write:  # take the write lock now, not on the first write
                        cur.execute("BEGIN IMMEDIATE")
                    yield cur
                    if write:
                        cur.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.rollback()
                    raise
                finally:
                    cur.close()
        except sqlite3.Error as err:
            raise StoreError(operation, err) from err

    def query_plan(self, statement: str, params: tuple[object, ...] = ()) -> list[str]:
        """SQLite's plan for ``statement`` (``EXPLAIN QUERY PLAN``), one line per step."""
        with self._connection() as conn:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
        return [str(r[-1]) for r in rows]

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
        self._shared = None
