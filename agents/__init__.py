"""Decision makers that are not learned: the baselines every policy must beat.

:func:`make_controller` turns a strategy name from the command line into a
:class:`twin.actions.Controller`:

==============  ==================================================================
static          the plan as written (:mod:`agents.static`)
threshold       the coordinated reactive floor manager, thresholds tuned per
                scenario (:mod:`agents.threshold`); ``threshold:PATH`` uses the
                tuned parameters in PATH
silo            sector-local floor managers, each seeing only its own queue
                (:mod:`agents.silo`); ``silo:PATH`` as above
lookahead       model-predictive control: twin rollouts of a few candidate action
                sets around the threshold manager's (:mod:`agents.lookahead`)
hindsight       a bound, not a controller: rollouts on the realized future around
                the threshold manager (:mod:`agents.hindsight`); never worse than it
random          seeded random actions, a sanity floor (:mod:`agents.random_policy`)
==============  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from twin.actions import Controller
from twin.scenario import Scenario


def _static(scenario: Scenario, seed: int, arg: str | None = None) -> Controller:
    from agents.static import StaticController

    return StaticController(scenario)


def _threshold(scenario: Scenario, seed: int, arg: str | None = None) -> Controller:
    from agents.threshold import ThresholdController

    return ThresholdController(scenario, arg)


def _silo(scenario: Scenario, seed: int, arg: str | None = None) -> Controller:
    from agents.silo import SiloController

    return SiloController(scenario, arg)


def _lookahead(scenario: Scenario, seed: int, arg: str | None = None) -> Controller:
    from agents.lookahead import LookaheadController

    return LookaheadController(scenario, seed=seed, base_params=arg)


def _hindsight(scenario: Scenario, seed: int, arg: str | None = None) -> Controller:
    from agents.hindsight import HindsightBound

    return HindsightBound(scenario, seed, base_params=arg)


def _random(scenario: Scenario, seed: int, arg: str | None = None) -> Controller:
    from agents.random_policy import RandomController

    return RandomController(scenario, seed)


#: controller name -> factory(scenario, seed[, argument after "name:"]) -> Controller
CONTROLLERS: dict[str, Callable[..., Controller]] = {
    "static": _static,
    "threshold": _threshold,
    "silo": _silo,
    "lookahead": _lookahead,
    "random": _random,
}
#: yardsticks that run like a controller in comparisons but need the realized future
#: (they decide only beside the twin that runs reality; never from a snapshot)
BOUNDS: dict[str, Callable[..., Controller]] = {"hindsight": _hindsight}
#: every name ``make_controller`` accepts
STRATEGIES: dict[str, Callable[..., Controller]] = {**CONTROLLERS, **BOUNDS}
#: strategies that accept ``name:ARG`` (a tuned-parameters file)
WITH_ARGUMENT = frozenset({"threshold", "silo", "lookahead", "hindsight"})


class StrategyError(ValueError):
    """An unknown strategy name; the message lists the valid ones."""


def strategy_names() -> list[str]:
    """The controllers (strategies that decide from a snapshot); bounds are not among them."""
    return sorted(CONTROLLERS)


def check_strategy(name: str) -> None:
    """Raise :class:`StrategyError` unless ``name`` is a known strategy (``name:ARG`` too)."""
    base, sep, arg = name.partition(":")
    valid = (
        f"valid: {', '.join(strategy_names())}, and the bound {', '.join(sorted(BOUNDS))}; "
        f"{', '.join(sorted(WITH_ARGUMENT))} also take ':PATH' to a tuned-parameters file"
    )
    if base not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r} ({valid})")
    if sep and (base not in WITH_ARGUMENT or not arg):
        raise StrategyError(f"strategy {name!r} takes no argument here ({valid})")


def make_controller(name: str, scenario: Scenario, seed: int = 0) -> Controller:
    """Build the controller named ``name`` for ``scenario``; ``seed`` seeds any randomness.

    Raises:
        StrategyError: ``name`` is not a strategy (the message lists the valid ones), or
            its tuned-parameters file is missing or malformed.
    """
    check_strategy(name)
    base, _, arg = name.partition(":")
    from agents.threshold import TunedFileError

    try:
        return STRATEGIES[base](scenario, seed, arg or None)
    except TunedFileError as err:
        raise StrategyError(str(err)) from None


def tuning_of(controller: Controller) -> str | None:
    """Whether a baseline's threshold parameters were tuned for its scenario.

    ``tuned`` (a tuned file for this scenario, shipped or given as ``name:PATH``), ``stale``
    (a tuned file for an earlier version of the scenario), ``untuned`` (no file: the
    documented defaults, which can be far from the scenario's best), or ``None`` for
    strategies without thresholds. Lookahead reports its base manager's.
    """
    source = getattr(controller, "params_source", None)
    if source is None:  # lookahead: its base manager's
        source = getattr(getattr(controller, "base", None), "params_source", None)
    if source is None:
        return None
    if source == "defaults":
        return "untuned"
    return "stale" if source.endswith("(stale)") else "tuned"
