"""Kinds of the twin's scheduled events, and their order at equal times.

An event on the model's heap is ``(time, priority, sequence, kind, a, b)``; at equal
times shift ends come before shift starts, and both before everything else, then
events run in the order they were scheduled.
"""

from __future__ import annotations

SHIFT_END, SHIFT_START, BREAK_START, BREAK_END = 0, 1, 2, 3
COMPLETE, TRANSFER_DONE, OT_LIMIT, DUE, FAIL, REPAIR, OUTAGE = 4, 5, 6, 7, 8, 9, 10
N_KINDS = 11
#: at equal times: shift ends before shift starts before everything else
PRIORITY = {SHIFT_END: 0, SHIFT_START: 1}
OTHER_PRIORITY = 2
