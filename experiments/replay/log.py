"""A recorded floor-event log, checked whole before anything is sent.

The log is what ``synctwin simulate --log-events DIR`` writes (``floor_events.jsonl``,
one event a line, :mod:`twin.floor_events`), or a floor system's export in that
format. Every line is parsed and checked against the event schema first, so a replay
never stops half-way on a typo: the first bad line is reported with its number.
Each event keeps its minute on the log's clock (minutes since midnight of the first
event's day), which paces the replay and places ``--until``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from twin.floor_events import FLOOR_EVENT, FLOOR_EVENTS_FILE
from twin.wallclock import TimestampError, minute_of, parse_timestamp

_HH_MM = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})$")


class LogError(ValueError):
    """A log that cannot be replayed: missing, unreadable, or a bad line (named)."""


@dataclass(frozen=True)
class ReplayLog:
    """The events of a log, as sent, and their minutes on the log's clock.

    ``zero`` is midnight of the first event's day (with its UTC offset, if any);
    ``minutes[i]`` is event ``i``'s time in minutes since then.
    """

    path: Path
    events: list[dict[str, Any]]
    minutes: list[float]
    zero: datetime

    def clock(self, minute: float) -> str:
        """``HH:MM`` of a minute on the log's clock (``day N HH:MM`` after the first day)."""
        day, m = divmod(int(minute), 24 * 60)
        return (f"day {day + 1} " if day else "") + f"{m // 60:02d}:{m % 60:02d}"

    def until(self, text: str) -> int:
        """How many events come before ``text`` (``HH:MM`` of the first day, or a timestamp).

        Raises:
            LogError: ``text`` is neither.
        """
        minute = until_minute(text, self.zero)
        return next((i for i, m in enumerate(self.minutes) if m >= minute), len(self.minutes))


def until_minute(text: str, zero: datetime) -> float:
    """The log-clock minute of ``--until``: ``HH:MM`` on the first day, or an ISO timestamp.

    Raises:
        LogError: neither form, an impossible time, or an offset that the log lacks.
    """
    m = _HH_MM.match(text.strip())
    if m is not None:
        hours, minutes = int(m["h"]), int(m["m"])
        if hours > 23 or minutes > 59:
            raise LogError(f"--until {text!r}: not a time of day (HH:MM, 00:00 to 23:59)")
        return hours * 60.0 + minutes
    try:
        return minute_of(text, zero)
    except TimestampError as err:
        raise LogError(
            f"--until {text!r}: expected HH:MM or an ISO 8601 timestamp ({err})"
        ) from None


def read_log(log_dir: Path) -> ReplayLog:
    """The events of ``LOG_DIR/floor_events.jsonl``, every line checked.

    Blank lines are skipped (as :func:`twin.floor_events.read_jsonl` does). Events must
    come in time order within the live twin's reorder tolerance; the log's order is
    kept, and pacing follows the latest time seen so far.

    Raises:
        LogError: no such directory or file, or the first line that is not JSON or not a
            floor event (with the file and line number, and what is wrong).
    """
    if not log_dir.is_dir():
        raise LogError(f"no log directory {log_dir}")
    path = log_dir / FLOOR_EVENTS_FILE
    if not path.is_file():
        raise LogError(
            f"no {FLOOR_EVENTS_FILE} in {log_dir} (`synctwin simulate --log-events DIR` writes one)"
        )
    events: list[dict[str, Any]] = []
    minutes: list[float] = []
    zero: datetime | None = None
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                event = _event(line, path, number)
                if zero is None:
                    first, _ = parse_timestamp(event["timestamp"])
                    zero = first.replace(hour=0, minute=0, second=0, microsecond=0)
                try:
                    minutes.append(minute_of(event["timestamp"], zero))
                except TimestampError as err:
                    raise LogError(f"{path} line {number}: timestamp: {err}") from None
                events.append(event)
    except (OSError, UnicodeDecodeError) as err:
        raise LogError(f"cannot read {path}: {err}") from None
    if zero is None:
        raise LogError(f"{path} holds no events")
    return ReplayLog(path, events, minutes, zero)


def _event(line: str, path: Path, number: int) -> dict[str, Any]:
    """One line's event, or a :class:`LogError` naming the line and the problem."""
    where = f"{path} line {number}"
    try:
        raw = json.loads(line.strip())
    except json.JSONDecodeError as err:
        raise LogError(f"{where}: not JSON ({err.msg}, column {err.colno})") from None
    if not isinstance(raw, dict):
        raise LogError(f"{where}: expected a JSON object (one event), got {type(raw).__name__}")
    try:
        FLOOR_EVENT.validate_python(raw)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise LogError(f"{where}: {loc + ': ' if loc else ''}{e['msg']}{more}") from None
    return raw
