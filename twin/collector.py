"""The cyclic garbage collector, paused while the event loop runs.

A twin's event loop allocates a container or two per event (items, queue entries,
heap tuples), and Python's cyclic collector runs whenever enough of them pile up,
each full pass walking every object the process holds. So the loop's cost grew
faster than its events: ten times ``default``'s workers and demand took 13.1-13.6
times as long as ``default`` with the collector on, and 8.8-9.0 times with it off
(median of 3-5 runs each, one core). The loop makes no reference cycles: with the
collector off for a whole 10x day, a collection afterwards found 0 unreachable
objects. (The model itself is cyclic, Mesa's agents and their model, and is freed
by the collector once dropped, which pausing does not prevent.)
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off inside, on again after if it was on before.

    Process-wide: another thread's collections wait too, for as long as the block
    runs (one call of :meth:`twin.model.OperationModel.run_minutes`). Nested or
    concurrent blocks only ever re-enable what they found enabled.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
