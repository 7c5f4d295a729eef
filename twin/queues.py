"""Work items, the per-sector queue, and the routing table between queues.

Items are light records, not Mesa agents: a day of a fulfilment centre moves
thousands of them. A queue serves FIFO or earliest-due-first on demand, so a
controller can switch discipline at any decision without re-sorting: both
orders are kept, and entries taken through one are skipped lazily in the other.

Where the compiled event core is built, this module is compiled too (Cython, with the
C fields of ``twin/queues.pxd``): an item is then a C record with no object fields, so
the cyclic garbage collector does not track the thousands alive at once, and the core
reads and writes items and queues as C structs. An item's ``state`` is read back as a
plain ``int`` there (an :class:`ItemState` in plain Python): compare it with ``==``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from twin.scenario import EXIT

if TYPE_CHECKING:
    from twin.scenario import Scenario

#: per item class and sector: where an item goes next, ``(targets, cumulative
#: probabilities)`` with target -1 for the exit, or None where the class never is
RoutingTable = list[list[tuple[list[int], list[float]] | None]]


class ItemState(IntEnum):
    QUEUED = 0
    IN_SERVICE = 1
    DONE = 2


class Item:
    """One unit of work (an order, a pallet, a claim)."""

    __slots__ = ("arrive", "cls", "due", "id", "late", "qtoken", "sector", "sector_arrive", "state")

    def __init__(self, item_id: int, cls: int, arrive: float, due: float, sector: int) -> None:
        self.id = item_id
        self.cls = cls
        self.arrive = arrive  # minute it entered the operation
        self.due = due  # minute it is due out of the operation
        self.sector = sector
        self.sector_arrive = arrive  # minute it entered its current sector
        self.late = False  # its due time passed before it left
        self.state = ItemState.QUEUED
        self.qtoken = 0  # bumped on every enqueue; older queue entries are stale


class SectorQueue:
    """Items waiting in one sector, served FIFO or earliest-due-first."""

    __slots__ = ("_edd", "_fifo", "_seq", "n")

    def __init__(self) -> None:
        self._fifo: deque[tuple[int, Item]] = deque()
        self._edd: list[tuple[float, int, int, Item]] = []
        self._seq = 0
        self.n = 0

    def push(self, item: Item, front: bool = False) -> None:
        """Enqueue ``item``; ``front`` puts a handed-back item at the head of the FIFO order."""
        item.qtoken += 1
        item.state = ItemState.QUEUED
        entry = (item.qtoken, item)
        if front:
            self._fifo.appendleft(entry)
        else:
            self._fifo.append(entry)
        self._seq += 1
        heapq.heappush(self._edd, (item.due, self._seq, item.qtoken, item))
        self.n += 1

    def pop(self, priority: str) -> Item:
        """Take the next item by ``priority`` ("fifo" or "edd"). The queue must not be empty."""
        if priority == "edd":
            while True:
                _, _, token, item = heapq.heappop(self._edd)
                if item.state == ItemState.QUEUED and item.qtoken == token:
                    break
        else:
            while True:
                token, item = self._fifo.popleft()
                if item.state == ItemState.QUEUED and item.qtoken == token:
                    break
        item.state = ItemState.IN_SERVICE
        self.n -= 1
        return item

    def items(self) -> list[Item]:
        """The queued items in FIFO order (for snapshots and checks).

        Served earliest-due-first, the FIFO order keeps the entries EDD took as stale
        ones; when they outnumber the live ones they are dropped here (same order, so
        nothing observable changes), or every snapshot of a long EDD run would walk
        the whole history of the queue."""
        live = [it for tok, it in self._fifo if it.state == ItemState.QUEUED and it.qtoken == tok]
        if len(self._fifo) > 2 * len(live) + 64:
            self._fifo = deque((it.qtoken, it) for it in live)
        return live


def routing_table(scenario: Scenario, sector_index: Mapping[str, int]) -> RoutingTable:
    """``[cls][sector] -> (targets, cumulative probabilities)``; target -1 = exit."""
    table: RoutingTable = []
    for c in scenario.item_classes:
        row: list[tuple[list[int], list[float]] | None] = []
        for s in scenario.sector_names:
            targets = c.routing.get(s, {})
            if not targets:
                row.append(None)
                continue
            idx = [-1 if t == EXIT else sector_index[t] for t in targets]
            cum = np.cumsum(list(targets.values())).tolist()
            row.append((idx, cum))
        table.append(row)
    return table
