"""Which event core the twin runs: the compiled one (:mod:`twin._core`) or the reference.

The reference is the Python event loop of :class:`~twin.model.OperationModel`; the
compiled core (``twin/_core.py`` with the C types of ``twin/_core.pxd``, its event
heap ``twin/_core_heap.pyx``, and work items, queues and workers' hot fields as
extension types, ``twin/queues.py`` and ``twin/worker_record.py`` with their ``.pxd``
files, built by Cython) does the same on the same state, several times faster;
``tests/test_core_diff.py`` keeps the two identical. ``pip install -e .`` builds it
where a C compiler is present; where none is, the install still succeeds and the
reference runs, with a warning. The environment variable ``SYNCTWIN_CORE`` chooses,
read once at import:

- unset or ``compiled``: the compiled core if it is built, else the reference (warned);
- ``python``: the reference, always.

A twin keeps the core it was built with (its event heap is the core's); tests build
twins on either by setting :data:`USE_COMPILED`.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

#: the environment variable that chooses the core
ENV_VAR = "SYNCTWIN_CORE"
CHOICES = ("compiled", "python")


def _load() -> tuple[ModuleType, type] | None:
    """The compiled core and its event heap's type, if they are built; else None."""
    from twin import queues, worker_record

    # the compiled core reads items and workers as C structs: it must never meet the plain
    # Python classes (a build where only some extensions compiled), so check first
    if any(str(m.__file__).endswith(".py") for m in (queues, worker_record)):
        return None
    try:
        from twin import _core, _core_heap  # type: ignore[attr-defined]
    except ImportError:  # the heap has no Python source: not built
        return None
    if str(_core.__file__).endswith(".py"):
        return None
    return _core, _core_heap.EventHeap


def _use(choice: str | None, built: bool) -> bool:
    """Whether new twins run the compiled core, for a value of ``SYNCTWIN_CORE``."""
    choice = (choice or "compiled").strip().lower()
    if choice not in CHOICES:
        warnings.warn(
            f"{ENV_VAR}={choice!r} is none of {', '.join(CHOICES)}: using 'compiled'",
            RuntimeWarning,
            stacklevel=3,
        )
    if choice == "python":
        return False
    if not built:
        warnings.warn(
            "the twin's compiled event core is not built (no C compiler or Cython at "
            "install time): the reference Python core runs, several times slower; "
            "build it with `pip install -e .`",
            RuntimeWarning,
            stacklevel=3,
        )
    return built


_built = _load()
#: the compiled core module, and the type of its event heap, if they are built
COMPILED: ModuleType | None = _built[0] if _built else None
EventHeap: type | None = _built[1] if _built else None
#: whether twins built from now on run the compiled core
USE_COMPILED: bool = _use(os.environ.get(ENV_VAR), _built is not None)
