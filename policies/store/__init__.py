"""The durable store of the policy server: recommendations, feedback, live events, alerts.

:func:`open_store` opens one by URL (:mod:`policies.store.url`): SQLite in WAL mode
by default, PostgreSQL for a shared server. Every write is committed before its
call returns; :mod:`policies.store.export` writes the JSON Lines decision log from it.
"""

from __future__ import annotations

from policies.store.base import (
    AlertRow,
    EventRow,
    FeedbackRow,
    RecommendationRow,
    Store,
    StoreError,
    now,
    pages,
)
from policies.store.url import StoreUrl, StoreUrlError, parse_store_url, store_url_for_log

__all__ = [
    "AlertRow",
    "EventRow",
    "FeedbackRow",
    "RecommendationRow",
    "Store",
    "StoreError",
    "StoreUrl",
    "StoreUrlError",
    "now",
    "open_store",
    "pages",
    "parse_store_url",
    "store_url_for_log",
]


def open_store(url: str | StoreUrl) -> Store:
    """Open (and create the tables of) the store at ``url``.

    Raises:
        StoreUrlError: a URL that names no backend.
        StoreError: the database cannot be opened or reached.
    """
    parsed = parse_store_url(url) if isinstance(url, str) else url
    if parsed.kind == "postgresql":
        from policies.store.postgres import PostgresStore

        return PostgresStore(parsed.conninfo, parsed.safe)
    from policies.store.sqlite import SqliteStore

    return SqliteStore(parsed.path, parsed.busy_timeout_ms, parsed.synchronous)
