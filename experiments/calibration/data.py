"""Reading an operation's log files and checking every row, for calibration.

The event log (``item_id, item_class, sector, event, timestamp``, optionally
``worker_id`` and ``due``) is read as text, every row is checked, and the rows that
pass are returned with the number and reason of every row that did not
(:func:`clean_events`): nothing is dropped silently. Attendance and equipment files
get the same treatment in a lighter form. A file that cannot be used at all raises
:class:`CalibrationError`; the CLI turns it into a message and exit code 2.

Times: timestamps are read as local wall-clock times; checked events carry ``t``,
minutes since midnight of the log's first day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twin.scenario import Scenario

REQUIRED_COLUMNS = ("item_id", "item_class", "sector", "event", "timestamp")
OPTIONAL_COLUMNS = ("worker_id", "due")
EVENT_TYPES = ("arrive", "start", "finish")
# order of events at the same instant: within one stay in a sector, and across an item's stays
# (the finish in one sector comes before the arrival in the next, which comes before its start)
STAY_ORDER = {"arrive": 0, "start": 1, "finish": 2}
ITEM_ORDER = {"finish": 0, "arrive": 1, "start": 2}

ATTENDANCE_COLUMNS = ("date", "shift", "sector", "worker_id", "status")
ROSTER_COLUMNS = ("shift", "start", "end", "sector", "headcount")
EQUIPMENT_COLUMNS = ("sector", "event", "timestamp")


class CalibrationError(ValueError):
    """A file cannot be used at all; the message says which file and why."""


# --------------------------------------------------------------------------- reading


def read_table(
    path: Path, what: str = "event log", columns: Iterable[str] = ()
) -> tuple[pd.DataFrame, str]:
    """Read a CSV (optionally compressed) or Parquet file as text columns.

    Column names are stripped and lower-cased. Every value is a string ("" when
    missing), except datetime columns of a Parquet file, which are kept. The file
    must have ``columns`` and at least one row.

    Returns:
        The table and how its rows are numbered in messages: ``"line"`` for CSV
        (the line in the file, header = line 1), ``"row"`` for Parquet (1-based).

    Raises:
        CalibrationError: the file is missing, not a readable table, lacks one of
            ``columns`` or has no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{what} not found (or not a file): {path}")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            frame = pd.read_parquet(path)
            label = "row"
            for col in frame.columns:
                if not pd.api.types.is_datetime64_any_dtype(frame[col]):
                    frame[col] = frame[col].astype("string").fillna("").astype(object)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
            label = "line"
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise CalibrationError(f"cannot read {what} {path}: {err}") from None
    except Exception as err:  # pyarrow raises its own types on a corrupt file
        raise CalibrationError(f"cannot read {what} {path}: {err}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    require_columns(frame, columns, what, path)
    if frame.empty:
        raise CalibrationError(f"{what} {path} has no rows")
    return frame, label


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str, path: Path) -> None:
    """Raise :class:`CalibrationError` naming every required column the file lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CalibrationError(
            f"{what} {path} is missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} (found: {', '.join(map(str, frame.columns))}; "
            f"needed: {', '.join(columns)})"
        )


def parse_timestamps(values: pd.Series) -> tuple[pd.Series, str | None]:
    """Parse timestamps to naive wall-clock ``datetime64``; unparseable values become NaT.

    ISO 8601 is tried first (fast); values it cannot read are retried with pandas'
    per-value parser. Time-zone offsets are dropped (the local wall-clock time is
    what hourly rates are about); if offsets differ between rows the times are
    converted to UTC first and a note says so.

    Returns:
        The parsed series and a note (or ``None``).
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
        return out.astype("datetime64[ns]"), None
    text = values.astype(str).str.strip()
    note = None

    def parse(s: pd.Series, fmt: str) -> pd.Series:
        nonlocal note
        try:
            out = pd.to_datetime(s, errors="coerce", format=fmt)
        except (ValueError, TypeError):  # mixed offsets
            out = pd.to_datetime(s, errors="coerce", format=fmt, utc=True)
            note = "timestamps carry different UTC offsets: converted to UTC"
        if not pd.api.types.is_datetime64_any_dtype(out):
            out = pd.to_datetime(s, errors="coerce", format=fmt, utc=True)
            note = "timestamps carry different UTC offsets: converted to UTC"
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
        return out.astype("datetime64[ns]")

    parsed = parse(text, "ISO8601")
    retry = parsed.isna() & (text != "")
    if retry.any():
        parsed.loc[retry] = parse(text[retry], "mixed")
    return parsed, note


# --------------------------------------------------------------------------- cleaning


@dataclass
class EventTable:
    """The rows of an event log that passed every check, and why the others did not.

    Attributes:
        events: kept rows, sorted by time, with ``t`` (minutes since ``origin``) and
            ``row`` (the row's number in the file).
        rejected: one row per rejected file row: ``row``, ``reason`` (a category),
            ``detail``.
        rows_read: data rows in the file.
        origin: midnight of the first day of the log (the twin's minute 0).
        row_label: ``"line"`` (CSV, header = line 1) or ``"row"`` (Parquet, 1-based).
        source: the file.
        notes: remarks about the file as a whole (ignored columns, time zones).
    """

    events: pd.DataFrame
    rejected: pd.DataFrame
    rows_read: int
    origin: pd.Timestamp
    row_label: str = "line"
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def rows_used(self) -> int:
        return len(self.events)

    @property
    def rows_rejected(self) -> int:
        return len(self.rejected)

    def reason_counts(self) -> pd.Series:
        """Rejected rows per reason, most frequent first."""
        if self.rejected.empty:
            return pd.Series(dtype=int)
        return self.rejected["reason"].value_counts()

    def first_rejected(self, n: int = 20) -> pd.DataFrame:
        """The first ``n`` rejected rows in file order."""
        return self.rejected.sort_values("row").head(n)


def clean_events(
    raw: pd.DataFrame,
    base: Scenario,
    row_label: str = "line",
    source: str = "",
    path: Path | None = None,
) -> EventTable:
    """Check every row of a raw event log; keep the usable ones, explain the others.

    Row checks, in this order (a row is rejected for the first that fails):

    1. a required value is empty (``missing item_id`` ...);
    2. ``event`` is not one of arrive/start/finish (after trimming and lower-casing);
    3. ``timestamp`` cannot be parsed;
    4. ``sector`` or ``item_class`` is not in the base scenario;
    5. the row repeats an earlier row exactly (``duplicate row``);
    6. the item's class differs from the class on the item's first row.

    Sequence checks, per item and sector in time order:

    7. a ``finish`` earlier than its ``start`` (both rows: ``negative duration``);
    8. a ``finish`` and its ``start`` at the same instant (both rows: ``zero duration``);
    9. a ``finish`` with no open ``start`` although the item was seen before
       (``finish without a start``). A ``finish`` that is the item's very first
       event is kept: the item was in progress when the log began.

    Raises:
        CalibrationError: required columns are missing, or no row survives.
    """
    where = Path(path) if path is not None else Path(source or "<events>")
    require_columns(raw, REQUIRED_COLUMNS, "event log", where)
    n = len(raw)
    offset = 2 if row_label == "line" else 1
    notes = []
    extra = [c for c in raw.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if extra:
        notes.append(f"ignored columns: {', '.join(extra)}")
    df = pd.DataFrame({"row": np.arange(n) + offset})
    for col in ("item_id", "item_class", "sector", "event", "worker_id", "due"):
        if col in raw.columns:
            values = raw[col]
            if pd.api.types.is_datetime64_any_dtype(values):
                df[col] = values.to_numpy()
            else:
                df[col] = values.astype(str).str.strip().to_numpy()
        elif col == "worker_id":
            df[col] = ""
    df["item_class"] = df["item_class"].str.lower()
    df["sector"] = df["sector"].str.lower()
    df["event"] = df["event"].str.lower()
    reason = pd.Series("", index=df.index, dtype=object)
    detail = pd.Series("", index=df.index, dtype=object)

    def reject(mask: pd.Series, why: str, what: pd.Series | str = "") -> None:
        mask = mask & (reason == "")
        reason[mask] = why
        detail[mask] = what[mask] if isinstance(what, pd.Series) else what

    for col in REQUIRED_COLUMNS:
        if col == "timestamp":
            empty = raw[col].isna() if not _is_text(raw[col]) else raw[col].str.strip() == ""
            reject(pd.Series(np.asarray(empty), index=df.index), "missing timestamp")
        else:
            reject(df[col] == "", f"missing {col}")
    reject(~df["event"].isin(EVENT_TYPES), "unknown event", "'" + df["event"] + "'")
    ts, tz_note = parse_timestamps(raw["timestamp"].reset_index(drop=True))
    if tz_note:
        notes.append(tz_note)
    df["timestamp"] = ts.to_numpy()
    raw_ts = raw["timestamp"].astype(str).reset_index(drop=True)
    reject(df["timestamp"].isna(), "unparseable timestamp", "'" + raw_ts + "'")
    sectors, classes = set(base.sector_names), set(base.class_names)
    reject(
        ~df["sector"].isin(sectors),
        "unknown sector",
        "'" + df["sector"] + f"' (base '{base.name}' has {', '.join(base.sector_names)})",
    )
    reject(
        ~df["item_class"].isin(classes),
        "unknown item_class",
        "'" + df["item_class"] + f"' (base '{base.name}' has {', '.join(base.class_names)})",
    )
    key = ["item_id", "item_class", "sector", "event", "timestamp", "worker_id"]
    ok = reason == ""
    dup = df[ok].duplicated(subset=key, keep="first")
    first_row = df[ok].groupby(key, sort=False, dropna=False)["row"].transform("first")
    dup_mask = pd.Series(False, index=df.index)
    dup_mask[dup.index[dup.to_numpy()]] = True
    reject(
        dup_mask,
        "duplicate row",
        f"same as {row_label} "
        + first_row.reindex(df.index).map(lambda r: "" if pd.isna(r) else str(int(r))),
    )
    ok = reason == ""
    sub = df[ok].sort_values(["timestamp", "row"], kind="stable")
    first_class = sub.groupby("item_id", sort=False)["item_class"].transform("first")
    bad_class = pd.Series(False, index=df.index)
    bad_class[sub.index[(sub["item_class"] != first_class).to_numpy()]] = True
    reject(
        bad_class,
        "class changes within item",
        "item " + df["item_id"] + " is '" + first_class.reindex(df.index).fillna("") + "' earlier",
    )
    _sequence_checks(df, reason, detail, row_label)

    kept = df[reason == ""].copy()
    rejected = pd.DataFrame({"row": df["row"], "reason": reason, "detail": detail})[
        reason != ""
    ].reset_index(drop=True)
    if kept.empty:
        counts = rejected["reason"].value_counts()
        summary = "; ".join(f"{k}: {v}" for k, v in counts.head(5).items())
        raise CalibrationError(f"event log {where}: no usable rows ({n} read; {summary})")
    origin = kept["timestamp"].min().normalize()
    kept["t"] = (kept["timestamp"] - origin) / pd.Timedelta(minutes=1)
    kept = time_order(kept.sort_values("row", kind="stable"))
    return EventTable(
        events=kept,
        rejected=rejected,
        rows_read=n,
        origin=origin,
        row_label=row_label,
        source=source,
        notes=notes,
    )


def time_order(events: pd.DataFrame) -> pd.DataFrame:
    """Events sorted by time; at the same instant a finish comes before the next arrival,
    and an arrival before its start (ties otherwise keep their order)."""
    key = events["event"].map(ITEM_ORDER)
    order = np.lexsort((key.to_numpy(), events["t"].to_numpy()))
    return events.iloc[order].reset_index(drop=True)


def _is_text(s: pd.Series) -> bool:
    return not pd.api.types.is_datetime64_any_dtype(s)


def _sequence_checks(
    df: pd.DataFrame, reason: pd.Series, detail: pd.Series, row_label: str
) -> None:
    """Checks 7-9 of :func:`clean_events` (mutates ``reason`` and ``detail``)."""
    ok = reason == ""
    s = df[ok].assign(rank=df["event"].map(STAY_ORDER))
    s = s.sort_values(["item_id", "sector", "timestamp", "rank", "row"], kind="stable")
    same_prev = (s["item_id"] == s["item_id"].shift(1)) & (s["sector"] == s["sector"].shift(1))
    same_next = (s["item_id"] == s["item_id"].shift(-1)) & (s["sector"] == s["sector"].shift(-1))
    prev_ev = s["event"].shift(1).where(same_prev)
    next_ev = s["event"].shift(-1).where(same_next)
    next2_same = same_next & same_next.shift(-1, fill_value=False)
    next2_ev = s["event"].shift(-2).where(next2_same)
    next_row = s["row"].shift(-1)
    next_t = s["timestamp"].shift(-1)
    is_f = s["event"] == "finish"
    is_s = s["event"] == "start"
    # 7. finish, then (later) its start, which nothing finishes: the pair is reversed
    neg = is_f & (prev_ev != "start") & (next_ev == "start") & (next2_ev != "finish")
    neg_start_idx = s.index[neg.shift(1, fill_value=False).to_numpy()]
    neg_idx = s.index[neg.to_numpy()]
    minutes = (next_t - s["timestamp"]) / pd.Timedelta(minutes=1)
    _set(reason, detail, neg_idx, "negative duration",
         [f"finish {m:.1f} min before its start ({row_label} {int(r)})"
          for m, r in zip(minutes[neg], next_row[neg], strict=True)])  # fmt: skip
    prev_row = s["row"].shift(1)
    _set(reason, detail, neg_start_idx, "negative duration",
         [f"start after its finish ({row_label} {int(r)})"
          for r in prev_row[neg.shift(1, fill_value=False)]])  # fmt: skip
    # 8. zero duration: a start finished at the same instant
    zero = is_s & (next_ev == "finish") & (next_t == s["timestamp"])
    zero_f = zero.shift(1, fill_value=False)
    same = "at the same instant"
    _set(reason, detail, s.index[zero.to_numpy()], "zero duration",
         [f"finished {same} ({row_label} {int(r)})" for r in next_row[zero]])  # fmt: skip
    _set(reason, detail, s.index[zero_f.to_numpy()], "zero duration",
         [f"started {same} ({row_label} {int(r)})" for r in prev_row[zero_f]])  # fmt: skip
    # 9. a finish nothing started, though the item was already seen
    in_time = s.assign(item_rank=s["event"].map(ITEM_ORDER))
    in_time = in_time.sort_values(["timestamp", "item_rank", "row"], kind="stable")
    first_row_item = in_time.groupby("item_id")["row"].first()
    is_first_event = s["row"].to_numpy() == s["item_id"].map(first_row_item).to_numpy()
    orphan = is_f & (prev_ev != "start") & ~neg & ~pd.Series(is_first_event, index=s.index)
    _set(reason, detail, s.index[orphan.to_numpy()], "finish without a start",
         "no open start for this item in this sector")  # fmt: skip


def _set(reason: pd.Series, detail: pd.Series, idx: pd.Index, why: str, what) -> None:
    if len(idx) == 0:
        return
    fresh = reason.loc[idx] == ""
    idx_fresh = idx[fresh.to_numpy()]
    reason.loc[idx_fresh] = why
    if isinstance(what, str):
        detail.loc[idx_fresh] = what
    else:
        detail.loc[idx_fresh] = np.asarray(what, dtype=object)[fresh.to_numpy()]


def load_events(path: Path, base: Scenario) -> EventTable:
    """Read and check an event log file (CSV, CSV.gz or Parquet); see :func:`clean_events`."""
    raw, label = read_table(path, "event log", REQUIRED_COLUMNS)
    return clean_events(raw, base, row_label=label, source=str(path), path=path)


# --------------------------------------------------------------------------- side files


def load_attendance(path: Path, base: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read attendance rows ``date, shift, sector, worker_id, status``.

    Rows with an unparseable date, an unknown sector or a status other than
    present/absent are returned separately (``row, reason, detail``).
    """
    raw, label = read_table(path, "attendance file", ATTENDANCE_COLUMNS)
    offset = 2 if label == "line" else 1
    df = pd.DataFrame({c: raw[c].astype(str).str.strip() for c in ATTENDANCE_COLUMNS})
    df["status"] = df["status"].str.lower()
    df["sector"] = df["sector"].str.lower()
    df["row"] = np.arange(len(df)) + offset
    df["date"] = pd.to_datetime(df["date"], errors="coerce", format="mixed")
    reason = pd.Series("", index=df.index, dtype=object)
    reason[df["date"].isna()] = "unparseable date"
    reason[(reason == "") & ~df["sector"].isin(base.sector_names)] = "unknown sector"
    reason[(reason == "") & ~df["status"].isin(["present", "absent"])] = "unknown status"
    rejected = df.loc[reason != "", ["row"]].assign(reason=reason[reason != ""], detail="")
    return df[reason == ""].drop(columns="row"), rejected.reset_index(drop=True)


def load_equipment(path: Path, origin: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read equipment events ``sector, event, timestamp`` (event failure/repair).

    Returns the usable rows (with ``t``, minutes since ``origin``) and the rejected
    ones (``row, reason, detail``).
    """
    raw, label = read_table(path, "equipment file", EQUIPMENT_COLUMNS)
    offset = 2 if label == "line" else 1
    df = pd.DataFrame(
        {
            "sector": raw["sector"].astype(str).str.strip().str.lower(),
            "event": raw["event"].astype(str).str.strip().str.lower(),
            "row": np.arange(len(raw)) + offset,
        }
    )
    ts, _ = parse_timestamps(raw["timestamp"].reset_index(drop=True))
    df["t"] = ((ts - origin) / pd.Timedelta(minutes=1)).to_numpy()
    reason = pd.Series("", index=df.index, dtype=object)
    reason[df["t"].isna()] = "unparseable timestamp"
    reason[(reason == "") & ~df["event"].isin(["failure", "repair"])] = "unknown event"
    rejected = df.loc[reason != "", ["row"]].assign(reason=reason[reason != ""], detail="")
    return df[reason == ""].sort_values("t", kind="stable"), rejected.reset_index(drop=True)
