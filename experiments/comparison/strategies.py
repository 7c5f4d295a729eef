"""Strategy names as the command line knows them: the baselines and ``policy:BUNDLE_DIR``.

``agents`` may not import ``policies`` (imports flow one way), so the one place that
knows both lives here, in ``experiments``.
"""

from __future__ import annotations

from agents import make_controller, strategy_names
from twin.actions import Controller
from twin.scenario import Scenario

POLICY_PREFIX = "policy:"


def controller_for(name: str, scenario: Scenario, seed: int = 0) -> Controller:
    """A baseline by name, or an exported policy bundle as ``policy:BUNDLE_DIR``.

    Raises:
        agents.StrategyError: an unknown baseline name (the message lists the valid ones).
        policies.bundle.BundleError: a bundle that is missing, corrupt or incompatible.
    """
    if name.startswith(POLICY_PREFIX):
        from policies.runtime import BundlePolicy

        return BundlePolicy(name.removeprefix(POLICY_PREFIX), scenario)
    return make_controller(name, scenario, seed)


def valid_strategies() -> str:
    return ", ".join([*strategy_names(), f"{POLICY_PREFIX}BUNDLE_DIR"])
