"""The training env: the twin's RLlib env with domain randomisation and a shared-policy view.

:class:`~training.rllib_env.SyncTwinMultiAgentEnv` runs one scenario; training wants
more: every episode draws a scenario from a list and a twin seed from a pool of
*training* seeds, so the policies see varied demand, absences and breakdowns and the
held-out evaluation seeds stay unseen. Per-sector policies need every training
scenario to have the same sectors and the same action encoding, which is checked
here, once, with a message naming the scenario that differs.

Shared mode (one policy for every sector) appends a one-hot of the sector's index in
scenario order to its features: the same input :class:`policies.runtime.BundlePolicy`
builds for a ``shared`` bundle, so training and serving agree.

``env_config`` keys (a plain dict, as RLlib passes it):

- ``scenarios``: list of built-in names or YAML paths (default ``["default"]``).
- ``team_weight``, ``max_lend``, ``max_flex``, ``reward``, ``blind``: as
  :class:`twin.env.EnvConfig`.
- ``seed_base``, ``seed_count``: twin seeds are drawn from
  ``seed_base .. seed_base + seed_count - 1``.
- ``shared``: append the sector one-hot (shared policy mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from training.rllib_env import SyncTwinMultiAgentEnv
from training.scenarios import (
    EVAL_SEED_BASE,
    TRAIN_SEED_BASE,
    TRAIN_SEED_COUNT,
    IncompatibleScenarios,
    check_compatible,
    load_training_scenarios,
)

_OWN_KEYS = ("scenarios", "seed_base", "seed_count", "shared")


def sector_onehot(n_sectors: int) -> np.ndarray:
    """Row ``i``: the shared policy's sector-id suffix for sector ``i``."""
    return np.eye(n_sectors, dtype=np.float32)


class TrainingEnv(MultiAgentEnv):
    """Episodes over random (scenario, seed) pairs; optional sector one-hot for sharing.

    Args:
        config: RLlib's ``env_config`` (see the module docstring).
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = dict(config or {})
        names = list(cfg.get("scenarios") or ["default"])
        env_keys = {k: v for k, v in cfg.items() if k not in _OWN_KEYS}
        self.envs = [SyncTwinMultiAgentEnv({**env_keys, "scenario": n}) for n in names]
        scenarios = [e.par_env.scenario for e in self.envs]
        ec = self.envs[0].config
        self.sectors = check_compatible(scenarios, ec.max_lend, ec.max_flex)
        self.seed_base = int(cfg.get("seed_base", TRAIN_SEED_BASE))
        self.seed_count = int(cfg.get("seed_count", TRAIN_SEED_COUNT))
        self.shared = bool(cfg.get("shared", False))
        self.possible_agents = list(self.sectors)
        self.agents = list(self.possible_agents)
        self.action_spaces = dict(self.envs[0].action_spaces)
        base = self.envs[0].observation_spaces
        if self.shared:
            n = len(self.sectors)
            self.observation_spaces = {
                a: spaces.Box(
                    low=np.concatenate([base[a].low, np.zeros(n, np.float32)]),
                    high=np.concatenate([base[a].high, np.ones(n, np.float32)]),
                    dtype=np.float32,
                )
                for a in self.possible_agents
            }
        else:
            self.observation_spaces = dict(base)
        self._onehot = {
            a: row for a, row in zip(self.sectors, sector_onehot(len(self.sectors)), strict=True)
        }
        self._rng: np.random.Generator | None = None
        self._env = self.envs[0]

    def _view(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.shared:
            return obs
        return {a: np.concatenate([o, self._onehot[a]]) for a, o in obs.items()}

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A fresh episode: a random training scenario and a random training seed.

        ``seed`` (given once by RLlib per env runner and sub-env) seeds the *draws*, so
        a run is reproducible while every episode still sees another twin.
        """
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        self._env = self.envs[int(self._rng.integers(len(self.envs)))]
        twin_seed = self.seed_base + int(self._rng.integers(self.seed_count))
        obs, infos = self._env.reset(seed=twin_seed, options=options)
        for info in infos.values():
            info["twin_seed"] = twin_seed
        self.agents = list(self.possible_agents)
        return self._view(obs), infos

    def step(
        self, action_dict: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        obs, rewards, terminateds, truncateds, infos = self._env.step(action_dict)
        return self._view(obs), rewards, terminateds, truncateds, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()


__all__ = [
    "EVAL_SEED_BASE",
    "TRAIN_SEED_BASE",
    "TRAIN_SEED_COUNT",
    "IncompatibleScenarios",
    "TrainingEnv",
    "check_compatible",
    "load_training_scenarios",
    "sector_onehot",
]
