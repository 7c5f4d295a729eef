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
from twin.actions import SectorAction
from twin.features import featurizer
from twin.runner import simulate
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
    """

    def __init__(
        self,
        scenario: Scenario,
        modules: Mapping[str, torch.nn.Module],
        *,
        shared: bool,
        max_lend: int,
        max_flex: int,
    ) -> None:
        self.sectors = list(scenario.sector_names)
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
        feats = self.featurizer.matrix(snapshot).astype(np.float32)
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


def mean_cost(controllers: Sequence, scenarios: Sequence[Scenario], seeds: Sequence[int]) -> float:
    """Mean total cost over ``scenarios x seeds``; ``controllers[i]`` acts on scenario ``i``."""
    costs = [
        simulate(sc, ctl, seed, record_every_minutes=sc.horizon_minutes).kpis().total.total_cost
        for sc, ctl in zip(scenarios, controllers, strict=True)
        for seed in seeds
    ]
    return float(np.mean(costs))


def threshold_cost(scenarios: Sequence[Scenario], seeds: Sequence[int]) -> float:
    """The tuned threshold baseline's mean total cost on the evaluation runs."""
    return mean_cost([make_controller("threshold", sc, 0) for sc in scenarios], scenarios, seeds)


def evaluate_modules(
    modules: Mapping[str, torch.nn.Module],
    scenarios: Sequence[Scenario],
    seeds: Sequence[int],
    *,
    shared: bool,
    max_lend: int,
    max_flex: int,
    baseline: float,
) -> Evaluation:
    """Run the current modules greedily on every (scenario, seed); compare with ``baseline``."""
    controllers = [
        ModuleController(sc, modules, shared=shared, max_lend=max_lend, max_flex=max_flex)
        for sc in scenarios
    ]
    cost = mean_cost(controllers, scenarios, seeds)
    return Evaluation(cost, baseline, len(scenarios) * len(seeds))


# --------------------------------------------------------------------------- bundles


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval (the statistics of ``synctwin compare``)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def compare_bundle(bundle: str, scenario: str = "default", seeds: int = 20) -> dict:
    """An exported bundle against ``static`` and ``threshold`` on seeds ``0..seeds-1``.

    Paired by seed (common random numbers); ``regular_payroll`` is the labour cost of
    the static plan, which no action lowers: the floor any controller can reach.
    """
    from policies.runtime import BundlePolicy
    from twin.scenario import load_scenario

    sc = load_scenario(scenario)
    makers = {
        "static": lambda s: make_controller("static", sc, s),
        "threshold": lambda s: make_controller("threshold", sc, s),
        "policy": lambda s: BundlePolicy(bundle, sc),
    }
    kpis = {
        k: [simulate(sc, make(s), s).kpis().total for s in range(seeds)]
        for k, make in makers.items()
    }
    cost = {k: np.array([r.total_cost for r in v]) for k, v in kpis.items()}
    out: dict = {"scenario": sc.name, "seeds": seeds, "bundle": str(bundle), "total_cost": {}}
    for k, v in cost.items():
        out["total_cost"][k] = t_interval(v)
    for ref in ("static", "threshold"):
        out[f"policy_vs_{ref}"] = t_interval(cost["policy"] / cost[ref] - 1.0)
    out["regular_payroll"] = float(np.mean([r.labor_cost for r in kpis["static"]]))
    return out


if __name__ == "__main__":  # python -m training.evaluate BUNDLE [SCENARIO] [SEEDS]
    import sys

    args = sys.argv[1:]
    res = compare_bundle(args[0], *(args[1:2] or ["default"]), *map(int, args[2:3]))
    for name, (m, lo, hi) in res["total_cost"].items():
        print(f"{name:10s} total cost {m:9,.0f}  95% CI [{lo:9,.0f}, {hi:9,.0f}]")
    for ref in ("static", "threshold"):
        m, lo, hi = res[f"policy_vs_{ref}"]
        print(f"policy vs {ref:9s} {m:+.2%}  95% CI [{lo:+.2%}, {hi:+.2%}]")
    print(f"regular payroll (floor) {res['regular_payroll']:,.0f}")
