"""What a sector controller may do each decision interval, and who decides it.

A :class:`SectorAction` is a *target level*, not an increment: "have 3 of my
workers in packing", "have 2 flex workers here". Applying the same action twice
changes nothing, which is what both planners (a plan as written) and learned
policies (one action per interval) want.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from twin.model import OperationModel
    from twin.snapshot import OperationSnapshot

Priority = Literal["fifo", "edd"]


class SectorAction(BaseModel):
    """One sector's decision for the next interval.

    Attributes:
        lend_to: sector that should hold ``lend_count`` of this sector's own workers
            (``None``: lend nobody; workers lent earlier come home).
        lend_count: how many of this sector's workers should be at ``lend_to``.
        flex_count: how many agency (flex) workers this sector wants.
        overtime: whether workers in this sector may stay past shift end to clear work.
        priority: queue discipline: first-in-first-out or earliest-due-first.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lend_to: str | None = None
    lend_count: int = Field(0, ge=0, le=10_000)
    flex_count: int = Field(0, ge=0, le=10_000)
    overtime: bool = False
    priority: Priority = "fifo"


Actions = Mapping[str, SectorAction]


@runtime_checkable
class Controller(Protocol):
    """Anything that turns the live state into one action per sector.

    Baselines (``agents/``) and exported policy bundles (``policies/``) implement it,
    so the twin, comparisons and the server treat them alike.
    """

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        """Return the action for each sector (sectors left out keep their current action)."""
        ...


@runtime_checkable
class TwinAware(Protocol):
    """A controller that must see the twin itself, not only its snapshots.

    Only the ``hindsight`` bound is one: it forks the twin that runs reality, future
    random draws included. :func:`twin.rollout.run_for` attaches the twin before the
    first decision.
    """

    def attach(self, model: OperationModel) -> None:
        """Run beside ``model`` (raise if it cannot, e.g. a twin rebuilt from a snapshot)."""
        ...
