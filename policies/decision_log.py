"""The decision log: every recommendation and its feedback, kept in the store.

:class:`DecisionLog` is what the server's routes call (``record``, ``feedback``,
``known``); the rows live in a :class:`~policies.store.Store` (SQLite or PostgreSQL),
committed before the call returns, so a recommendation that got its 200 is stored
and feedback on it finds it, from any worker process and after a restart. Feedback
on an unknown id is one index lookup, not a pass over a file.

With a ``path``, the log also appends each stored record to that JSON Lines file
(the format of :mod:`policies.store.export`) for tools that tail it. That file is a
*copy*: it is appended after the commit, whole lines only (under an ``flock``, every
byte written or an error), and a partial last line left by a killed process is cut
off when a log opens it. A process killed between commit and append leaves its last
record out of the copy; ``synctwin export-log`` writes the exact log from the store.
The first time a store meets a non-empty ``path`` (the log of a server from before
the store), it stores that log's records, so feedback on them keeps working.
Without a path or store the log lives in memory and nothing survives a restart.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from policies.store import FeedbackRow, RecommendationRow, Store, open_store, store_url_for_log
from policies.store.export import export_lines, feedback_line, import_jsonl, recommendation_line

log = logging.getLogger("synctwin.server")


class DecisionLog:
    """Recommendations and feedback, stored; optionally copied to a JSON Lines file.

    Args:
        path: the JSON Lines copy (created if missing, appended to if not); ``None``:
            no copy.
        store: the store or its URL; ``None``: a SQLite file beside ``path``
            (``decisions.jsonl`` -> ``decisions.sqlite``), or memory without a path.

    Raises:
        StoreUrlError: a bad store URL.
        StoreError: the store cannot be opened.
        OSError: the JSON Lines file cannot be opened.
    """

    def __init__(self, path: Path | None, store: Store | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if store is None:
            store = store_url_for_log(self.path) if self.path is not None else "sqlite://"
        self.store = open_store(store) if isinstance(store, str) else store
        if self.path is not None:
            found = import_jsonl(self.store, self.path)  # once: a log from before the store
            if found.imported and found.recommendations:
                log.info(
                    "stored %d recommendation(s) and %d feedback line(s) of %s",
                    found.recommendations,
                    found.feedback,
                    self.path,
                )
        self._copy = JsonlCopy(self.path) if self.path is not None else None

    def close(self) -> None:
        """Close the store and the copy."""
        if self._copy is not None:
            self._copy.close()
        self.store.close()

    def record(
        self, rec_id: str, policy: dict[str, str], snapshot_json: str, recommendation_json: str
    ) -> None:
        """Store one recommendation (committed when this returns).

        Args:
            rec_id: the recommendation's id.
            policy: ``{"name": ..., "version": ...}`` of the policy that produced it.
            snapshot_json: the request's snapshot, serialised as JSON.
            recommendation_json: the response body, serialised as JSON.

        Raises:
            StoreError: it was not stored.
        """
        name, version = policy["name"], policy["version"]
        stamp = self.store.record(rec_id, name, version, snapshot_json, recommendation_json)
        if self._copy is not None:
            row = RecommendationRow(
                0, rec_id, stamp, name, version, snapshot_json, recommendation_json
            )
            self._copy.append(recommendation_line(row))

    def known(self, rec_id: str) -> bool:
        """Whether a recommendation with this id is stored (by any process, ever)."""
        return self.store.known(rec_id)

    def feedback(self, rec_id: str, accepted: bool, comment: str | None) -> bool:
        """Store feedback on a stored recommendation; ``False`` if the id is unknown.

        Raises:
            StoreError: it was not stored.
        """
        stamp = self.store.add_feedback(rec_id, accepted, comment)
        if stamp is None:
            return False
        if self._copy is not None:
            self._copy.append(feedback_line(FeedbackRow(0, rec_id, stamp, accepted, comment)))
        return True

    def records(self) -> list[dict[str, Any]]:
        """Every record in the store, oldest first, as the JSON Lines export has them."""
        return [json.loads(line) for line in export_lines(self.store)]


class JsonlCopy:
    """A JSON Lines file that only ever receives whole lines, from several processes.

    Each append takes an exclusive ``flock`` and writes until every byte is written
    (``os.write`` may write less than asked), so lines of two processes never mix. A
    failed append (a full disk) is logged: the record is in the store regardless.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self.failures = 0
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            cut = _cut_partial_line(self._fd)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if cut:
            log.warning("cut a partial last line (%d bytes) off %s", cut, path)

    def append(self, line: str) -> None:
        data = memoryview(line.encode())
        with self._lock:
            if self._fd is None:
                return
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    while data:
                        data = data[os.write(self._fd, data) :]
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError as err:
                self.failures += 1
                log.error("cannot append to %s (the store has the record): %s", self.path, err)
                if data:  # a line cut short: end it so the next line is whole
                    self._end_line()

    def _end_line(self) -> None:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                _cut_partial_line(self._fd)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _cut_partial_line(fd: int) -> int:
    """Truncate the file after its last newline; how many bytes were cut."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    block = 65536
    while end > 0:
        start = max(0, end - block)
        chunk = os.pread(fd, end - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            keep = start + i + 1
            os.ftruncate(fd, keep)
            return size - keep
        end = start
    os.ftruncate(fd, 0)
    return size
