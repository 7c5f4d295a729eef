"""What the event loop reads and writes on a worker at every event, as one record.

:class:`twin.workers.Worker` (a Mesa agent) inherits these fields from
:class:`WorkerRecord`. Where the compiled event core is built, this module is compiled
too (Cython, with the C fields of ``twin/worker_record.pxd``): the fields are then C
struct members that the core reads and writes directly, instead of entries of the
agent's instance dict looked up by name at every use. In plain Python they are slots.
"""

from __future__ import annotations


class WorkerRecord:
    """A worker's home, shift, state, place, clocks, item and event token (see
    :class:`twin.workers.Worker` for their meaning)."""

    __slots__ = (
        "flex",
        "home",
        "item",
        "overtime_used",
        "ready",
        "sector",
        "shift",
        "since",
        "state",
        "token",
    )
