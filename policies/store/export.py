"""The JSON Lines decision log, written from the store.

One object per line, in time order, of two types (what ``synctwin feedback-report``
and ``pandas.read_json(lines=True)`` read)::

    {"type": "recommendation", "id": "...", "time": "...", "policy": {"name", "version"},
     "snapshot": {...}, "recommendation": {...}}
    {"type": "feedback", "recommendation_id": "...", "time": "...", "accepted": true,
     "comment": "..."}

:func:`export_jsonl` writes a whole file atomically (a temporary file, fsynced, then
renamed), so a reader never sees a partial export.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from policies.store.base import FeedbackRow, RecommendationRow, Store, pages


def recommendation_line(row: RecommendationRow) -> str:
    """A recommendation's line; the stored JSON texts are embedded as they are."""
    head = json.dumps(
        {
            "type": "recommendation",
            "id": row.id,
            "time": row.time,
            "policy": {"name": row.policy_name, "version": row.policy_version},
        },
        separators=(",", ":"),
    )
    return f'{head[:-1]},"snapshot":{row.snapshot},"recommendation":{row.recommendation}}}\n'


def feedback_line(row: FeedbackRow) -> str:
    """A feedback line."""
    record = {
        "type": "feedback",
        "recommendation_id": row.recommendation_id,
        "time": row.time,
        "accepted": row.accepted,
        "comment": row.comment,
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def export_lines(store: Store) -> Iterator[str]:
    """Every line of the log: recommendations and feedback merged by time (a
    recommendation before feedback of the same millisecond), read page by page."""
    recs = ((r.time, 0, r.seq, recommendation_line(r)) for r in pages(store.recommendations))
    fbs = ((f.time, 1, f.seq, feedback_line(f)) for f in pages(store.feedback))
    for *_, line in heapq.merge(recs, fbs):
        yield line


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    path: Path
    recommendations: int
    feedback: int


def export_jsonl(store: Store, path: Path) -> ExportSummary:
    """Write the whole log to ``path`` atomically (replacing it); the counts.

    Raises:
        OSError: ``path`` cannot be written.
        StoreError: the store cannot be read.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    counts = [0, 0]
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in export_lines(store):
                counts[0 if line.startswith('{"type":"recommendation"') else 1] += 1
                fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return ExportSummary(path=path, recommendations=counts[0], feedback=counts[1])


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening folders)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_jsonl` found in a log (``imported`` False: done before)."""

    imported: bool
    recommendations: int
    feedback: int
    bad_lines: int


def import_jsonl(store: Store, path: Path) -> ImportSummary:
    """Store the records of a JSON Lines decision log once (the log of a server from
    before the store), so feedback on them keeps working; lines that are not whole
    records are counted and skipped. A missing file is remembered as imported: the
    copy the server then writes there holds only what the store has.

    Raises:
        OSError: ``path`` cannot be read.
        StoreError: the store cannot write.
    """
    counts = {"rec": 0, "fb": 0, "bad": 0}
    feedback: list[tuple[str, str, bool, str | None]] = []

    def recommendations() -> Iterator[tuple[str, str, str, str, str, str]]:
        if not path.exists():  # nothing to import: remembered, so its copy never is
            return
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw) if raw.endswith(b"\n") else None
                except ValueError:
                    row = None
                kind = row.get("type") if isinstance(row, dict) else None
                if kind == "recommendation" and isinstance(row, dict) and "id" in row:
                    policy = row.get("policy") or {}
                    counts["rec"] += 1
                    yield (
                        str(row["id"]),
                        str(row.get("time", "")),
                        str(policy.get("name", "")),
                        str(policy.get("version", "")),
                        json.dumps(row.get("snapshot"), separators=(",", ":")),
                        json.dumps(row.get("recommendation"), separators=(",", ":")),
                    )
                elif kind == "feedback" and isinstance(row, dict) and "recommendation_id" in row:
                    counts["fb"] += 1
                    comment = row.get("comment")
                    feedback.append(
                        (
                            str(row.get("recommendation_id")),
                            str(row.get("time", "")),
                            bool(row.get("accepted")),
                            None if comment is None else str(comment),
                        )
                    )
                else:
                    counts["bad"] += 1

    done = store.import_once(f"jsonl:{path.resolve()}", recommendations(), feedback)
    return ImportSummary(done, counts["rec"], counts["fb"], counts["bad"])
