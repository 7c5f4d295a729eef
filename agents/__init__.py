"""Decision makers that are not learned: the baselines every policy must beat.

:func:`make_controller` turns a strategy name from the command line into a
:class:`twin.actions.Controller`.
"""

from __future__ import annotations

from collections.abc import Callable

from agents.static import StaticController
from twin.actions import Controller
from twin.scenario import Scenario

#: strategy name -> factory(scenario, seed) -> Controller
STRATEGIES: dict[str, Callable[[Scenario, int], Controller]] = {
    "static": lambda scenario, seed: StaticController(scenario),
}


class StrategyError(ValueError):
    """An unknown strategy name; the message lists the valid ones."""


def strategy_names() -> list[str]:
    return sorted(STRATEGIES)


def make_controller(name: str, scenario: Scenario, seed: int = 0) -> Controller:
    """Build the controller named ``name`` for ``scenario``."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise StrategyError(
            f"unknown strategy {name!r} (valid: {', '.join(strategy_names())})"
        ) from None
    return factory(scenario, seed)
