"""The server store: a PostgreSQL database by URL (``postgresql://user@host:port/db``).

Uses psycopg 3 (the ``postgres`` extra), imported only when such a URL is opened.
One connection per store, behind a lock: PostgreSQL commits are durable when
``COMMIT`` returns (``synchronous_commit`` on, the server's default), and the lock
keeps a connection from being used by two threads at once. A broken connection
(the server restarted) is replaced on the next call; the call that saw it break
fails with :class:`~policies.store.base.StoreError`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from policies.store.base import Store, StoreError

if TYPE_CHECKING:
    import psycopg

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS recommendations (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        time TEXT NOT NULL,
        policy_name TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        recommendation TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS feedback (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        recommendation_id TEXT NOT NULL REFERENCES recommendations (id),
        time TEXT NOT NULL,
        accepted BOOLEAN NOT NULL,
        comment TEXT)""",
    "CREATE INDEX IF NOT EXISTS feedback_by_recommendation ON feedback (recommendation_id)",
    """CREATE TABLE IF NOT EXISTS events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        site TEXT NOT NULL,
        event_id TEXT NOT NULL,
        time TEXT NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (site, event_id))""",
    "CREATE INDEX IF NOT EXISTS events_by_site ON events (site, seq)",
    """CREATE TABLE IF NOT EXISTS alerts (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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

#: Serialises schema creation of processes starting at once (CREATE ... IF NOT EXISTS
#: is not safe against a concurrent CREATE of the same table).
_SCHEMA_LOCK_KEY = 0x5379_6E63


class PostgresStore(Store):
    """A store in the PostgreSQL database at ``conninfo`` (a libpq URL or key=value string).

    Args:
        conninfo: where to connect (passed to libpq as given).
        url: the same without a password, for messages.
        connect_timeout_s: how long a connection attempt may take.

    Raises:
        StoreError: psycopg is missing, or the server cannot be reached or refuses.
    """

    _placeholder = "%s"

    def __init__(self, conninfo: str, url: str, connect_timeout_s: int = 5) -> None:
        super().__init__()
        try:
            import psycopg  # noqa: F401  (the postgres extra)
        except ImportError:
            raise StoreError(
                f"open {url}", "psycopg is not installed (pip install 'synctwin[postgres]')"
            ) from None
        self.url = url
        self._conninfo = conninfo
        self._timeout = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._transaction("create the schema", write=True) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in SCHEMA:
                cur.execute(statement)

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            conn = self._conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._timeout
            )
        return conn

    @contextmanager
    def _transaction(self, operation: str, write: bool) -> Iterator[psycopg.Cursor[Any]]:
        import psycopg

        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.Error as err:
                raise StoreError(operation, err) from err

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
