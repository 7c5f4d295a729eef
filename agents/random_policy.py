"""``random``: a seeded random controller, the sanity floor every baseline must beat.

Each decision, each sector independently: with probability ``p_lend`` lends 1..3
workers to a random sector it is trained for (else lends nobody), asks for 0..2
flex workers, authorises overtime with probability 1/2 and picks FIFO or EDD at
random. Same seed, same decisions.
"""

from __future__ import annotations

import numpy as np

from twin.actions import SectorAction
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot


class RandomController:
    """Random legal actions from its own generator.

    Args:
        scenario: the scenario (for sector names and cross-training).
        rng: the generator (or a seed) the decisions are drawn from.
        p_lend: probability a sector lends workers at a decision.
        max_lend: most workers lent at once.
        max_flex: most flex workers a sector asks for.
    """

    name = "random"

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator | int | None = None,
        *,
        p_lend: float = 0.3,
        max_lend: int = 3,
        max_flex: int = 2,
    ) -> None:
        self._rng = np.random.default_rng(rng)
        self._names = scenario.sector_names
        self._targets = {
            s: [t for t in self._names if t != s and scenario.efficiency(s, t) > 0]
            for s in self._names
        }
        self._p_lend = p_lend
        self._max_lend = max_lend
        self._max_flex = max_flex

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        rng = self._rng
        actions = {}
        for s in self._names:
            targets = self._targets[s]
            lend_to, lend_count = None, 0
            if targets and rng.random() < self._p_lend:
                lend_to = targets[int(rng.integers(len(targets)))]
                lend_count = int(rng.integers(1, self._max_lend + 1))
            actions[s] = SectorAction(
                lend_to=lend_to,
                lend_count=lend_count,
                flex_count=int(rng.integers(0, self._max_flex + 1)),
                overtime=bool(rng.random() < 0.5),
                priority="edd" if rng.random() < 0.5 else "fifo",
            )
        return actions
