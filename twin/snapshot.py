"""The live-state schema: what a live system sends and what a what-if rollout starts from.

One schema serves the twin (``OperationModel.snapshot()`` /
``OperationModel.from_snapshot()``, implemented in :mod:`twin.live` with the
check against a scenario) and the policy server's request body, so there is no
second idea of "the state of the operation".

Work is summarised, not listed: per sector and item class, counts of items by
*due bucket* (minutes until due, relative to the snapshot's clock). Workers are
summarised as groups of identical workers (home sector, current sector, shift,
state). Both are what a warehouse or back-office system can report, and small
enough to send every minute.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twin.actions import SectorAction

SCHEMA_VERSION: Final = 1

#: Time constant (minutes) of the exponential smoothing behind ``arrival_rate_per_hour``
#: and ``completion_rate_per_hour``.
RATE_TIME_CONSTANT_MINUTES = 30.0

#: Upper edges (minutes until due) of the due buckets; the first bucket holds overdue work.
DUE_BUCKET_EDGES: tuple[float, ...] = (0.0, 30.0, 60.0, 120.0, 240.0, 480.0, math.inf)
DUE_BUCKET_LABELS: tuple[str, ...] = (
    "overdue",
    "0-30",
    "30-60",
    "60-120",
    "120-240",
    "240-480",
    "480+",
)
#: Minutes until due given to an item rebuilt from a bucket (inside the bucket, so the
#: rebuilt twin reports the same buckets).
DUE_BUCKET_REPRESENTATIVE: tuple[float, ...] = (-1.0, 15.0, 45.0, 90.0, 180.0, 360.0, 600.0)
N_BUCKETS = len(DUE_BUCKET_EDGES)

StateName = Literal["off_shift", "absent", "idle", "busy", "break", "transfer", "overtime"]


def due_bucket(minutes_to_due: float) -> int:
    """Index of the due bucket for an item due in ``minutes_to_due`` minutes.

    The first bucket whose upper edge lies above it (a binary search in C: a snapshot
    calls this for every item in the operation); infinity and NaN go to the last.
    """
    i = bisect_right(DUE_BUCKET_EDGES, minutes_to_due)
    return i if i < N_BUCKETS else N_BUCKETS - 1


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class WorkerGroup(_Strict):
    """``count`` workers who share home, location, shift and state.

    ``sector`` is where they are (or are walking to, in ``transfer``); ``None`` only
    for flex workers in the agency pool. ``home`` is ``None`` for flex workers not
    called to any sector. ``ready_minute`` is when a transfer ends.
    """

    home: str | None
    sector: str | None
    shift: str | None
    flex: bool = False
    state: StateName
    count: int = Field(ge=1)
    overtime_minutes: float = Field(0.0, ge=0, description="overtime already worked this shift")
    ready_minute: float | None = Field(None, ge=0)


class SectorState(_Strict):
    """One sector's work, equipment, flow rates and the action in force."""

    name: str
    queue: dict[str, list[int]] = Field(
        description="per item class: items waiting, by due bucket (see DUE_BUCKET_LABELS)"
    )
    in_service: dict[str, list[int]] = Field(
        description="per item class: items being worked on, by due bucket"
    )
    stations_down: int = Field(0, ge=0, description="stations out of order (failures + outages)")
    outage_stations: int = Field(0, ge=0, description="of which scheduled outages")
    arrival_rate_per_hour: float = Field(0.0, ge=0, description="smoothed observed arrivals")
    completion_rate_per_hour: float = Field(0.0, ge=0, description="smoothed observed completions")
    action: SectorAction = SectorAction()

    @field_validator("queue", "in_service")
    @classmethod
    def _buckets(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for item_class, counts in v.items():
            if len(counts) != N_BUCKETS:
                raise ValueError(
                    f"{item_class}: needs {N_BUCKETS} due-bucket counts "
                    f"({', '.join(DUE_BUCKET_LABELS)}), got {len(counts)}"
                )
            if any(c < 0 for c in counts):
                raise ValueError(f"{item_class}: counts must be >= 0")
        return v

    @property
    def queued(self) -> int:
        return sum(sum(c) for c in self.queue.values())

    @property
    def serving(self) -> int:
        return sum(sum(c) for c in self.in_service.values())


class OperationSnapshot(_Strict):
    """The state of the whole operation at one minute."""

    schema_version: Literal[1] = SCHEMA_VERSION
    scenario: str = Field(description="scenario name")
    scenario_digest: str | None = Field(None, description="scenario content hash, if known")
    minute: float = Field(ge=0, description="minutes since the start of day 0")
    sectors: list[SectorState]
    workers: list[WorkerGroup]

    @property
    def day(self) -> int:
        return int(self.minute // 1440)

    @property
    def minute_of_day(self) -> float:
        return self.minute % 1440

    def sector(self, name: str) -> SectorState:
        for s in self.sectors:
            if s.name == name:
                return s
        raise KeyError(name)
