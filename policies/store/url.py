"""Store URLs: which backend, where, with which options; parsed without connecting.

::

    sqlite:///decisions.db               a file, relative to the working directory
    sqlite:////var/lib/synctwin/st.db    an absolute path (four slashes)
    decisions.db                         a plain path is a SQLite file too
    sqlite://                            in memory (nothing survives a restart)
    sqlite:///st.db?synchronous=NORMAL&busy_timeout=500
    postgresql://user:secret@db.example:5432/synctwin   (postgres:// too)

SQLite options: ``synchronous`` (``NORMAL``, the default, or ``FULL``) and
``busy_timeout`` (milliseconds a write waits for another process, default 5000).
A PostgreSQL URL goes to libpq as given (its own options, e.g. ``sslmode``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

SQLITE_OPTIONS = ("synchronous", "busy_timeout")


class StoreUrlError(ValueError):
    """A store URL that names no known backend or has a bad option."""


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL: ``kind``, and the backend's arguments."""

    kind: Literal["sqlite", "postgresql"]
    path: Path | None = None  # SQLite; None: in memory
    synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
    busy_timeout_ms: int = 5000
    conninfo: str = ""  # PostgreSQL, as given

    @property
    def safe(self) -> str:
        """The URL for messages and logs: no password."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}" if self.path is not None else "sqlite://"
        parts = urlsplit(self.conninfo)
        if parts.password is None:
            return self.conninfo
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def parse_store_url(url: str) -> StoreUrl:
    """Parse ``url`` (see the module for the forms).

    Raises:
        StoreUrlError: an unknown scheme, an unknown or bad SQLite option, an empty URL.
    """
    if not url.strip():
        raise StoreUrlError("empty store URL: use sqlite:///PATH or postgresql://...")
    if url.startswith(("postgresql://", "postgres://")):
        return StoreUrl(kind="postgresql", conninfo=url)
    if url in ("sqlite://", ":memory:"):
        return StoreUrl(kind="sqlite")
    if "://" not in url:
        return StoreUrl(kind="sqlite", path=Path(url).expanduser())
    if not url.startswith("sqlite:///"):
        scheme = url.split("://", 1)[0]
        raise StoreUrlError(
            f"unknown store URL scheme {scheme!r}: use sqlite:///PATH or postgresql://..."
        )
    rest = url[len("sqlite:///") :]
    path_text, _, query = rest.partition("?")
    if not path_text:
        raise StoreUrlError(f"store URL {url!r} has no file path (in memory: sqlite://)")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - set(SQLITE_OPTIONS))
    if unknown:
        raise StoreUrlError(
            f"unknown SQLite store option(s) {', '.join(unknown)}: "
            f"known are {', '.join(SQLITE_OPTIONS)}"
        )
    sync = options.get("synchronous", "NORMAL").upper()
    if sync not in ("FULL", "NORMAL"):
        raise StoreUrlError(f"synchronous must be FULL or NORMAL, not {options['synchronous']!r}")
    try:
        busy = int(options.get("busy_timeout", "5000"))
    except ValueError:
        raise StoreUrlError(
            f"busy_timeout must be milliseconds (an integer), not {options['busy_timeout']!r}"
        ) from None
    if busy < 0:
        raise StoreUrlError(f"busy_timeout must be >= 0 milliseconds, not {busy}")
    return StoreUrl(
        kind="sqlite",
        path=Path(path_text).expanduser(),
        synchronous="FULL" if sync == "FULL" else "NORMAL",
        busy_timeout_ms=busy,
    )


def store_url_for_log(log: Path) -> str:
    """The SQLite file that holds what a ``--log`` JSONL file exports: beside it,
    ``decisions.jsonl`` -> ``decisions.sqlite``."""
    db = log.with_suffix(".sqlite")
    if db == log:
        db = log.with_name(log.name + ".sqlite")
    return f"sqlite:///{db}"
