"""The decision log: an append-only JSON Lines audit of every recommendation and its feedback.

One JSON object per line, of two types::

    {"type": "recommendation", "id": "...", "time": "...", "policy": {"name", "version"},
     "snapshot": {...}, "recommendation": {...}}
    {"type": "feedback", "recommendation_id": "...", "time": "...", "accepted": true,
     "comment": "..."}

Lines are only ever appended, each with a single ``write`` on a file opened with
``O_APPEND``, so several server processes can share one log and a reader (``jq``,
pandas ``read_json(lines=True)``) sees whole lines. Feedback refers to a
recommendation by id; an id this process has not seen is looked up in the file
(new lines first, then the whole file), so feedback works across workers and
restarts. Without a file the log lives in memory: the last ``memory_limit``
recommendations can receive feedback, and nothing survives a restart.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_REC_PREFIX = b'{"type":"recommendation","id":"'


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DecisionLog:
    """Append-only audit of recommendations and feedback.

    Args:
        path: the JSONL file (created if missing, appended to if not); ``None``
            keeps the log in memory.
        memory_limit: how many recent recommendation ids are indexed in memory.
    """

    def __init__(self, path: Path | None, memory_limit: int = 100_000) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = memory_limit
        self._memory: deque[str] = deque(maxlen=memory_limit)
        self._fd: int | None = None
        self._scanned = 0  # bytes of the file already indexed
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._scan()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _append(self, line: str) -> None:
        if self._fd is None:
            self._memory.append(line)
            return
        os.write(self._fd, line.encode())

    def _index(self, rec_id: str) -> None:
        self._ids[rec_id] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def record(
        self, rec_id: str, policy: dict[str, str], snapshot_json: str, recommendation_json: str
    ) -> None:
        """Append one recommendation.

        Args:
            rec_id: the recommendation's id.
            policy: ``{"name": ..., "version": ...}`` of the policy that produced it.
            snapshot_json: the request's snapshot, serialised as JSON.
            recommendation_json: the response body, serialised as JSON.
        """
        head = json.dumps(
            {"type": "recommendation", "id": rec_id, "time": _now(), "policy": policy},
            separators=(",", ":"),
        )
        line = f'{head[:-1]},"snapshot":{snapshot_json},"recommendation":{recommendation_json}}}\n'
        with self._lock:
            self._append(line)
            self._index(rec_id)

    def known(self, rec_id: str) -> bool:
        """Whether a recommendation with this id was logged (here, by another process, before)."""
        with self._lock:
            if rec_id in self._ids:
                return True
            if self._fd is None:
                return False
            self._scan()
            if rec_id in self._ids:
                return True
            return self._find_in_file(rec_id)

    def feedback(self, rec_id: str, accepted: bool, comment: str | None) -> bool:
        """Append feedback on a logged recommendation; ``False`` if the id is unknown."""
        if not self.known(rec_id):
            return False
        record = {
            "type": "feedback",
            "recommendation_id": rec_id,
            "time": _now(),
            "accepted": accepted,
            "comment": comment,
        }
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self._append(line)
        return True

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first: the file's, or the in-memory log's without a file."""
        with self._lock:
            if self.path is None:
                return [json.loads(line) for line in self._memory]
        with self.path.open("rb") as fh:
            return [json.loads(line) for line in fh if line.endswith(b"\n")]

    # ------------------------------------------------------------------ reading the file

    def _scan(self) -> None:
        """Index the recommendation ids in the part of the file not read yet."""
        assert self.path is not None
        with self.path.open("rb") as fh:
            fh.seek(self._scanned)
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # a line another process is still writing: read it next time
                self._scanned += len(line)
                rec_id = _id_of(line)
                if rec_id is not None:
                    self._index(rec_id)

    def _find_in_file(self, rec_id: str) -> bool:
        """Look for an id older than the in-memory index (a full pass over the file)."""
        assert self.path is not None
        head = _REC_PREFIX + rec_id.encode() + b'"'
        with self.path.open("rb") as fh:
            return any(line.startswith(head) for line in fh)


def _id_of(line: bytes) -> str | None:
    if not line.startswith(_REC_PREFIX):
        return None
    end = line.find(b'"', len(_REC_PREFIX))
    return line[len(_REC_PREFIX) : end].decode() if end > 0 else None
