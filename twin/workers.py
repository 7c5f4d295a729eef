"""Workers: the Mesa agents of the twin.

A worker is in exactly one :class:`WorkerState` at any moment. The model moves
workers between states (shift start and end, breaks, transfers, service), and
every move goes through :func:`twin.staffing.move` so the per-state worker-minute
accounts always add up.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

import mesa

from twin.worker_record import WorkerRecord

if TYPE_CHECKING:
    from twin.model import OperationModel
    from twin.queues import Item


class WorkerState(IntEnum):
    OFF_SHIFT = 0  # not scheduled now (flex workers: in the agency pool)
    ABSENT = 1  # scheduled but did not come in
    IDLE = 2  # present, waiting for work
    BUSY = 3  # serving an item within the shift
    BREAK = 4  # on a scheduled break
    TRANSFER = 5  # walking to another sector (flex: on the way in)
    OVERTIME = 6  # serving an item past the end of the shift


N_STATES = len(WorkerState)
WORKING = (WorkerState.BUSY, WorkerState.OVERTIME)
PRESENT = (WorkerState.IDLE, WorkerState.BUSY, WorkerState.OVERTIME)
#: states paid at the regular rate (regular staff) or the flex rate (flex staff, no TRANSFER)
PAID_REGULAR = (WorkerState.IDLE, WorkerState.BUSY, WorkerState.BREAK, WorkerState.TRANSFER)
PAID_FLEX = (WorkerState.IDLE, WorkerState.BUSY, WorkerState.BREAK)


class _WorkerIds:
    """Hands out ``1, 2, 3, ...``: the unique ids of one model's workers."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def __next__(self) -> int:
        self.last += 1
        return self.last


class _IdsKeptOnTheModel:
    """Stands in for Mesa's class-level id registry: each model keeps its own counter.

    Mesa 3.3's ``Agent.__init__`` numbers agents with ``next(self._ids[model])``, where
    ``Agent._ids`` is a class-level ``defaultdict`` keyed by the model. That dict holds
    a strong reference to every model that ever created an agent, so no twin (with its
    workers, queues and event heap) was ever freed: a comparison, a lookahead
    controller or a policy server building thousands of rollouts grew without bound.
    Serving ``_ids[model]`` from an attribute of the model itself keeps the same
    numbering (1, 2, ... per model) with no global state, so a twin is freed as soon
    as nothing else refers to it.
    """

    def __getitem__(self, model: object) -> _WorkerIds:
        ids = model.__dict__.get("_worker_ids")
        if ids is None:
            ids = model.__dict__["_worker_ids"] = _WorkerIds()
        return ids


class Worker(WorkerRecord, mesa.Agent):
    """A member of staff: a home sector, a shift (none for flex), and a current state.

    Unique ids count from 1 within each model, as in Mesa, but the counter lives on the
    model rather than in Mesa's class-level registry (see :class:`_IdsKeptOnTheModel`).

    Attributes:
        home: index of the home sector (flex workers: the sector they were called to).
        shift: index of the shift, or -1 for flex staff.
        flex: whether this is an agency worker.
        state: the current :class:`WorkerState`.
        sector: index of the sector the worker is in or walking to (the pool for idle flex).
        since: minute the current state began.
        ready: minute a transfer or break ends.
        overtime_used: overtime minutes already worked this shift (excluding the current spell).
        item: the item being served, if any.
        token: bumped whenever a scheduled event for this worker becomes void.
    """

    _ids = _IdsKeptOnTheModel()

    def __init__(self, model: OperationModel, home: int, shift: int, flex: bool) -> None:
        super().__init__(model)
        self.home = home
        self.shift = shift
        self.flex = flex
        self.state = WorkerState.OFF_SHIFT
        self.sector = home if not flex else model.pool_index
        self.since = 0.0
        self.ready = 0.0
        self.overtime_used = 0.0
        self.item: Item | None = None
        self.token = 0
