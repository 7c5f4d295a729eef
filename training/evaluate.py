"""Evaluation during training: the current policies against the tuned ``threshold`` baseline.

The current torch modules are wrapped as a :class:`~twin.actions.Controller` and run
in the twin on held-out seeds (never drawn for training), greedily, exactly as an
exported bundle would act: the same features (:mod:`twin.features`), the same argmax
per action field, the same decoding (:mod:`twin.spaces`). That costs a few twin
runs (a fraction of a second each) instead of an ONNX export per evaluation.

The threshold baseline's costs on the same seeds are computed once per run and
reused (common random numbers: seed ``k`` gives both the same arrivals and absences).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from agents import make_controller
from agents.evaluation import costs, grid_costs
from twin.actions import Controller, SectorAction
from twin.env_core import blind_columns, blinded
from twin.features import featurizer
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot
from twin.spaces import codecs


class ModuleController:
    """Greedy actions of RLlib torch modules: per sector, or one shared module.

    Args:
        scenario: the scenario to act on.
        modules: policy id -> RLModule (``forward_inference`` gives ``action_dist_inputs``).
        shared: one module ``"shared"`` for every sector, fed the sector one-hot too.
        max_lend: as the training env.
        max_flex: as the training env.
        blind: features held at 0, as the training env (an ablation).
    """

    def __init__(
        self,
        scenario: Scenario,
        modules: Mapping[str, torch.nn.Module],
        *,
        shared: bool,
        max_lend: int,
        max_flex: int,
        blind: tuple[str, ...] = (),
    ) -> None:
        self.sectors = list(scenario.sector_names)
        self.blind = blind_columns(blind)
        self.modules = modules
        self.shared = shared
        self.codecs = codecs(scenario, max_lend, max_flex)
        self.featurizer = featurizer(scenario)
        self._splits = {s: np.cumsum(c.nvec)[:-1] for s, c in self.codecs.items()}

    def _logits(self, feats: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            if self.shared:
                obs = np.concatenate([feats, np.eye(len(self.sectors), dtype=np.float32)], axis=1)
                out = self.modules["shared"].forward_inference({"obs": torch.from_numpy(obs)})
                logits = out["action_dist_inputs"].numpy()
                return {s: logits[i] for i, s in enumerate(self.sectors)}
            result = {}
            for i, s in enumerate(self.sectors):
                obs = torch.from_numpy(feats[i : i + 1])
                out = self.modules[s].forward_inference({"obs": obs})
                result[s] = out["action_dist_inputs"].numpy()[0]
            return result

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        feats = blinded(self.featurizer.matrix(snapshot).astype(np.float32), self.blind)
        actions = {}
        for s, logits in self._logits(feats).items():
            vector = [int(np.argmax(f)) for f in np.split(logits, self._splits[s])]
            actions[s] = self.codecs[s].decode(vector)
        return actions


@dataclass(frozen=True)
class Evaluation:
    """Mean total cost of the policies and of ``threshold`` over the same held-out runs."""

    policy_cost: float
    threshold_cost: float
    runs: int

    @property
    def vs_threshold(self) -> float:
        """Relative change in total cost against threshold (negative = cheaper)."""
        return self.policy_cost / self.threshold_cost - 1.0


def _given(controller: Controller):
    return lambda scenario, seed: controller


def mean_cost(controllers: Sequence, scenarios: Sequence[Scenario], seeds: Sequence[int]) -> float:
    """Mean total cost over ``scenarios x seeds``; ``controllers[i]`` acts on scenario ``i``
    (on every seed: :func:`agents.evaluation.grid_costs` runs them here, in order)."""
    rows = [(_given(ctl), sc) for sc, ctl in zip(scenarios, controllers, strict=True)]
    return float(grid_costs(rows, seeds).mean())


def _threshold(scenario: Scenario, seed: int) -> Controller:
    return make_controller("threshold", scenario, 0)


def threshold_cost(scenarios: Sequence[Scenario], seeds: Sequence[int]) -> float:
    """The tuned threshold baseline's mean total cost on the evaluation runs."""
    return float(costs(_threshold, scenarios, seeds).mean())


def evaluate_modules(
    modules: Mapping[str, torch.nn.Module],
    scenarios: Sequence[Scenario],
    seeds: Sequence[int],
    *,
    shared: bool,
    max_lend: int,
    max_flex: int,
    baseline: float,
    blind: tuple[str, ...] = (),
) -> Evaluation:
    """Run the current modules greedily on every (scenario, seed); compare with ``baseline``."""
    controllers = [
        ModuleController(
            sc, modules, shared=shared, max_lend=max_lend, max_flex=max_flex, blind=blind
        )
        for sc in scenarios
    ]
    cost = mean_cost(controllers, scenarios, seeds)
    return Evaluation(cost, baseline, len(scenarios) * len(seeds))
