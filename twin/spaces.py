"""Action encoding: a :class:`~twin.actions.SectorAction` as a ``MultiDiscrete`` vector.

The codec is plain numpy; only :meth:`ActionCodec.space` needs gymnasium.

Every sector of a scenario gets the same space, so one policy architecture (or
one shared policy) fits every sector:

| index | field | values | meaning |
|---|---|---|---|
| 0 | lend_to | 0..n_sectors | 0 = lend nobody; ``j`` = sector ``j - 1`` in scenario order |
| 1 | lend_count | 0..max_lend | how many own workers should be at ``lend_to`` |
| 2 | flex_count | 0..max_flex | agency workers wanted (``max_flex`` <= the flex pool) |
| 3 | overtime | 0, 1 | workers may stay past shift end to clear work |
| 4 | priority | 0, 1 | 0 = FIFO, 1 = earliest-due-first (EDD) |

Illegal combinations decode to the nearest legal action, "lend nobody":

- lending to itself, or to a sector its workers are not cross-trained for
  (efficiency 0), lends nobody (``lend_to=None, lend_count=0``);
- a lend count with no target (``lend_to`` = 0) is dropped, and a target with a
  count of 0 is the same as no target (workers lent earlier come home either way).

Counts above what is available (workers on shift, the shared flex pool) are
capped by the twin when the action is applied. Values outside the space are
clipped into it first, so any integer vector decodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from twin.actions import Priority, SectorAction
from twin.scenario import Scenario

if TYPE_CHECKING:
    from gymnasium import spaces

#: The action vector's fields, in order.
ACTION_FIELDS: tuple[str, ...] = ("lend_to", "lend_count", "flex_count", "overtime", "priority")
PRIORITIES: tuple[Priority, ...] = ("fifo", "edd")
#: Defaults for the largest lend and flex counts a policy may ask for per sector.
DEFAULT_MAX_LEND = 5
DEFAULT_MAX_FLEX = 5


class ActionCodec:
    """Encodes and decodes one sector's actions.

    Args:
        scenario: the scenario (sectors and cross-training).
        sector: the sector whose actions this codec encodes.
        max_lend: largest ``lend_count`` in the space.
        max_flex: largest ``flex_count`` (capped at the flex pool's size).
    """

    def __init__(
        self,
        scenario: Scenario,
        sector: str,
        max_lend: int = DEFAULT_MAX_LEND,
        max_flex: int = DEFAULT_MAX_FLEX,
    ) -> None:
        if sector not in scenario.sector_names:
            raise KeyError(
                f"unknown sector {sector!r} (sectors: {', '.join(scenario.sector_names)})"
            )
        if max_lend < 0 or max_flex < 0:
            raise ValueError("max_lend and max_flex must be >= 0")
        self.sector = sector
        self.targets: tuple[str, ...] = scenario.sector_names
        self.max_lend = int(max_lend)
        self.max_flex = int(min(max_flex, scenario.workforce.flex.max_workers))
        #: which targets this sector may lend to (others decode to "lend nobody")
        self.legal_targets: tuple[bool, ...] = tuple(
            t != sector and scenario.efficiency(sector, t) > 0 for t in self.targets
        )
        self.nvec = np.array(
            [len(self.targets) + 1, self.max_lend + 1, self.max_flex + 1, 2, 2], dtype=np.int64
        )

    def space(self) -> spaces.MultiDiscrete:
        """A new ``MultiDiscrete`` space of this sector's actions (int64).

        Gymnasium is imported here, not at the top: encoding and decoding actions (the
        policy server's job) needs no gymnasium, so the serve extra does without it.
        """
        from gymnasium import spaces

        return spaces.MultiDiscrete(self.nvec, dtype=np.int64)

    def decode(self, action: Sequence[int] | np.ndarray) -> SectorAction:
        """The :class:`SectorAction` an action vector stands for (illegal parts made legal)."""
        a = np.asarray(action, dtype=np.int64).reshape(-1)
        if a.shape != (len(ACTION_FIELDS),):
            raise ValueError(f"expected {len(ACTION_FIELDS)} values {ACTION_FIELDS}, got {action}")
        a = np.clip(a, 0, self.nvec - 1)
        target, count, flex, overtime, priority = (int(x) for x in a)
        lend_to = None
        if target > 0 and count > 0 and self.legal_targets[target - 1]:
            lend_to = self.targets[target - 1]
        return SectorAction(
            lend_to=lend_to,
            lend_count=count if lend_to is not None else 0,
            flex_count=flex,
            overtime=bool(overtime),
            priority=PRIORITIES[priority],
        )

    def encode(self, action: SectorAction) -> np.ndarray:
        """The action vector closest to ``action`` (counts capped at the space's maxima)."""
        target = 0
        if action.lend_to is not None and action.lend_to in self.targets:
            target = self.targets.index(action.lend_to) + 1
        vec = np.array(
            [
                target,
                min(action.lend_count, self.max_lend),
                min(action.flex_count, self.max_flex),
                int(action.overtime),
                PRIORITIES.index(action.priority),
            ],
            dtype=np.int64,
        )
        return self.encode_canonical(vec)

    def encode_canonical(self, action: Sequence[int] | np.ndarray) -> np.ndarray:
        """The canonical vector of the legal action ``action`` decodes to."""
        decoded = self.decode(action)
        target = self.targets.index(decoded.lend_to) + 1 if decoded.lend_to else 0
        return np.array(
            [
                target,
                decoded.lend_count,
                decoded.flex_count,
                int(decoded.overtime),
                PRIORITIES.index(decoded.priority),
            ],
            dtype=np.int64,
        )

    def schema(self) -> dict:
        """A JSON-ready description of the encoding (for policy bundle manifests)."""
        return {
            "type": "MultiDiscrete",
            "fields": list(ACTION_FIELDS),
            "nvec": self.nvec.tolist(),
            "lend_to": [None, *self.targets],
            "legal_lend_to": [
                t for t, ok in zip(self.targets, self.legal_targets, strict=True) if ok
            ],
            "priority": list(PRIORITIES),
        }


def codecs(
    scenario: Scenario, max_lend: int = DEFAULT_MAX_LEND, max_flex: int = DEFAULT_MAX_FLEX
) -> dict[str, ActionCodec]:
    """One :class:`ActionCodec` per sector, in scenario order."""
    return {s: ActionCodec(scenario, s, max_lend, max_flex) for s in scenario.sector_names}
