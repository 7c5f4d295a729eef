"""Which processes belong to a server: its children from any thread, and below.

The benches read their CPU time and memory from ``/proc``; the server starts its
rollout host from a background thread, and the host starts the rollout workers.
"""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` started by any of its threads (the rollout host is
    started from a background thread, which lists it, not the main one)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: children, their children, and so on."""
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return sorted(out)


def spawned(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"spawn_main" in fh.read()
    except FileNotFoundError:
        return False


def rollout_processes(pid: int) -> tuple[list[int], list[int]]:
    """The rollout host of server ``pid`` (:mod:`policies.rollout_host`) and its workers
    (:mod:`policies.rollout_pool`)."""
    hosts = [c for c in children(pid) if spawned(c)]
    return hosts, [w for h in hosts for w in children(h) if spawned(w)]
