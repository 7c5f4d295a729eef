"""The floor's event stream: what a live system sends to keep a live twin in step.

A warehouse or back office cannot build an :class:`~twin.snapshot.OperationSnapshot`
itself; its systems record events. This module is the schema of those events (one
pydantic model per ``kind``, a union discriminated on ``kind``), and the writer of
the twin's own log in that schema (``floor_events.jsonl``, one JSON object a line,
written by ``synctwin simulate --log-events DIR`` beside the calibration files of
:mod:`twin.eventlog`). :class:`twin.live_twin.LiveTwin` consumes the stream.

Fields every event has:

``id``
    unique per event (any string); an event sent twice is applied once.
``timestamp``
    wall clock, ISO 8601 (``2026-01-05T08:03:12.250``; ``Z`` or ``+01:00`` only if
    the live twin's start has an offset too). Any number of digits of a second: the
    twin writes as many as make its float minutes exact (:mod:`twin.wallclock`).
``kind``
    one of the kinds below.

Work (an *item* is an order, a pallet, a claim; ids are the floor's own):

``item_arrive``: ``item_id``, ``item_class``, ``sector``, ``due`` (timestamp)
    the item entered ``sector``'s queue (from outside, or handed on by the sector
    before it: a finish followed by an arrive at the next sector).
``item_start``: ``item_id``, ``sector``, ``worker_id``
    the worker, present in ``sector`` and free, began the item.
``item_finish``: ``item_id``, ``sector``, ``worker_id``
    the worker completed it; with no ``item_arrive`` after it the item left the
    operation. Work a worker drops (break, transfer, clock-out, release) goes back to
    the head of the queue without an event of its own.

People (``worker_id`` as the roster names them; see ``LiveTwin``'s ``roster``):

``clock_in``: ``worker_id``, ``sector`` (optional: the home sector)
    a rostered worker began the shift, free, in ``sector``.
``absence``: ``worker_id``, ``sector`` (optional)
    a rostered worker did not come in for the shift.
``clock_out``: ``worker_id``
    the worker's shift (or overtime) ended; an absence ends with it too.
``break_start`` / ``break_end``: ``worker_id``
    the worker went on (came back from) a break.
``transfer_start``: ``worker_id``, ``to_sector``
    the worker left for ``to_sector`` (lent there, or called home); expected there
    after the scenario's ``transfer_minutes``.
``transfer_end``: ``worker_id``
    the worker arrived and is free in the sector they walked to.
``overtime_start``: ``worker_id``
    a busy worker stayed past the end of the shift (paid as overtime until clock-out).
``flex_request``: ``worker_id``, ``sector``
    an agency worker was called to ``sector``; expected after the flex ``lead_minutes``.
``flex_arrive``: ``worker_id``
    the agency worker arrived, free, in the sector they were called to.
``flex_release``: ``worker_id``
    the agency worker went back to the agency.

Equipment and decisions:

``equipment_failure`` / ``equipment_repair``: ``sector``
    one station of ``sector`` broke down (was repaired).
``outage_start`` / ``outage_end``: ``sector``, ``stations``
    a scheduled (or unplanned) outage took ``stations`` stations out (gave them back).
``action``: ``sector``, ``action`` (a :class:`~twin.actions.SectorAction`)
    the decision now in force for ``sector`` (lends, flex, overtime, queue priority).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter

from twin.actions import SectorAction
from twin.scenario import Scenario
from twin.wallclock import check_timestamp, format_timestamp

FLOOR_EVENTS_FILE = "floor_events.jsonl"


def _from_datetime(v: object) -> object:
    return v.isoformat() if isinstance(v, datetime) else v


#: an ISO 8601 timestamp, kept as text so no digit of a second is lost
Timestamp = Annotated[str, BeforeValidator(_from_datetime), AfterValidator(check_timestamp)]
Id = Annotated[str, Field(min_length=1, max_length=200)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    timestamp: Timestamp


class ItemArrive(_Event):
    kind: Literal["item_arrive"]
    item_id: Id
    item_class: str
    sector: str
    due: Timestamp


class ItemStart(_Event):
    kind: Literal["item_start"]
    item_id: Id
    sector: str
    worker_id: Id


class ItemFinish(_Event):
    kind: Literal["item_finish"]
    item_id: Id
    sector: str
    worker_id: Id


class ClockIn(_Event):
    kind: Literal["clock_in"]
    worker_id: Id
    sector: str | None = None


class Absence(_Event):
    kind: Literal["absence"]
    worker_id: Id
    sector: str | None = None


class WorkerEvent(_Event):
    """An event about one worker with no other field."""

    kind: Literal[
        "clock_out",
        "break_start",
        "break_end",
        "transfer_end",
        "overtime_start",
        "flex_arrive",
        "flex_release",
    ]
    worker_id: Id


class TransferStart(_Event):
    kind: Literal["transfer_start"]
    worker_id: Id
    to_sector: str


class FlexRequest(_Event):
    kind: Literal["flex_request"]
    worker_id: Id
    sector: str


class Equipment(_Event):
    kind: Literal["equipment_failure", "equipment_repair"]
    sector: str


class Outage(_Event):
    kind: Literal["outage_start", "outage_end"]
    sector: str
    stations: int = Field(ge=1)


class ActionInForce(_Event):
    kind: Literal["action"]
    sector: str
    action: SectorAction


FloorEvent = Annotated[
    ItemArrive
    | ItemStart
    | ItemFinish
    | ClockIn
    | Absence
    | WorkerEvent
    | TransferStart
    | FlexRequest
    | Equipment
    | Outage
    | ActionInForce,
    Field(discriminator="kind"),
]
FLOOR_EVENT: TypeAdapter[FloorEvent] = TypeAdapter(FloorEvent)

#: payload fields of the twin's log tuples ``(kind, minute, *payload)``, by kind
PAYLOAD: dict[str, tuple[str, ...]] = {
    "item_arrive": ("item_id", "item_class", "sector", "due"),
    "item_start": ("item_id", "sector", "worker_id"),
    "item_finish": ("item_id", "sector", "worker_id"),
    "clock_in": ("worker_id", "sector"),
    "absence": ("worker_id", "sector"),
    "transfer_start": ("worker_id", "to_sector"),
    "flex_request": ("worker_id", "sector"),
    "equipment_failure": ("sector",),
    "equipment_repair": ("sector",),
    "outage_start": ("sector", "stations"),
    "outage_end": ("sector", "stations"),
    "action": ("sector", "action"),
    **{
        k: ("worker_id",)
        for k in (
            "clock_out",
            "break_start",
            "break_end",
            "transfer_end",
            "overtime_start",
            "flex_arrive",
            "flex_release",
        )
    },
}
KINDS: tuple[str, ...] = tuple(PAYLOAD)


def records(log: Iterable[tuple[Any, ...]], scenario: Scenario, zero: datetime) -> Iterator[dict]:
    """The twin's log tuples as event records (JSON-ready dicts, ids ``e1, e2, ...``)."""
    sectors, classes = scenario.sector_names, scenario.class_names
    convert: dict[str, Callable[[Any], Any]] = {
        "item_id": str,
        "worker_id": str,
        "item_class": classes.__getitem__,
        "sector": sectors.__getitem__,
        "to_sector": sectors.__getitem__,
        "due": lambda m: format_timestamp(m, zero),
        "stations": int,
        "action": lambda a: a.model_dump(mode="json"),
    }
    for n, (kind, minute, *payload) in enumerate(log, start=1):
        rec = {"id": f"e{n}", "timestamp": format_timestamp(minute, zero), "kind": kind}
        for field, value in zip(PAYLOAD[kind], payload, strict=True):
            rec[field] = convert[field](value)
        yield rec


def write_jsonl(path: Path, recs: Iterable[dict]) -> Path:
    """Write event records, one JSON object a line."""
    with path.open("w") as f:
        for rec in recs:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a ``floor_events.jsonl`` file (blank lines skipped)."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]
