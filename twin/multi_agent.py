"""The twin as a PettingZoo ``ParallelEnv``: one agent per sector, all acting at once.

Same dynamics, observations, action encoding and rewards as the Gymnasium envs
(:mod:`twin.env`); each sector is an agent with its own cached spaces, so RLlib
(through ``training.rllib_env``) can train one policy per sector.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from twin.env import PickleByValue
from twin.env_core import EnvCore, ScenarioArg, resolve_scenario
from twin.features import FEATURE_HIGH, FEATURE_LOW
from twin.rewards import DEFAULT_TEAM_WEIGHT, RewardKind
from twin.spaces import DEFAULT_MAX_FLEX, DEFAULT_MAX_LEND


class OperationParallelEnv(PickleByValue, ParallelEnv[str, np.ndarray, np.ndarray]):
    """One agent per sector; every agent acts at every decision interval.

    - **Agents**: ``possible_agents`` = the scenario's sector names, in scenario order;
      all of them act until the horizon.
    - **Action space** (per agent): ``MultiDiscrete([n_sectors + 1, max_lend + 1,
      min(max_flex, pool) + 1, 2, 2])`` (int64), the sector's action vector (see
      :mod:`twin.spaces`); an agent left out of ``actions`` keeps its action in force.
    - **Observation space** (per agent): ``Box(float32, (37,))``, the sector's feature
      vector (the table in :class:`twin.env.OperationEnv` and :mod:`twin.features`).
      ``state()`` is all sectors' features concatenated (``state_space``), for
      centralised critics.
    - **Rewards**: :mod:`twin.rewards` with ``team_weight`` (0 = each sector pays its own
      cost, 1 = every sector gets an equal share of the total); the mean of the
      agents' rewards is always the whole operation's reward.
    - **Start**: a fresh twin seeded from ``seed`` (same as
      ``OperationModel(scenario, rng=np.random.default_rng(seed))``), or
      ``options={"snapshot": ...}``; ``reset()`` without a seed continues the stream.
    - **End**: never terminated; every agent is truncated when the horizon is reached,
      and ``agents`` becomes empty.

    Args:
        scenario: built-in name, YAML path or :class:`~twin.scenario.Scenario`.
        team_weight: see above (default 0.5).
        reward: ``"cost"`` (default) or ``"avoidable"`` (regular pay left out; see
            :mod:`twin.rewards`).
        max_lend: largest lend count per sector (default 5).
        max_flex: largest flex count per sector (default 5, capped at the flex pool).
        blind: features held at 0 (an ablation; see :class:`twin.env_core.EnvConfig`).
        render_mode: ``None`` or ``"ansi"``.

    ``infos[agent]`` holds ``minute`` and, after a step, ``cost``: the sector's own cost
    over the interval (currency).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "synctwin_operation_v0",
        "render_modes": ["ansi"],
        "render_fps": 4,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        scenario: ScenarioArg = "default",
        *,
        team_weight: float = DEFAULT_TEAM_WEIGHT,
        max_lend: int = DEFAULT_MAX_LEND,
        max_flex: int = DEFAULT_MAX_FLEX,
        reward: RewardKind = "cost",
        blind: tuple[str, ...] = (),
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.scenario = resolve_scenario(scenario)
        self.core = EnvCore(
            self.scenario,
            team_weight=team_weight,
            max_lend=max_lend,
            max_flex=max_flex,
            reward=reward,
            blind=blind,
        )
        self.render_mode = render_mode
        self.possible_agents: list[str] = list(self.core.sectors)
        self.agents: list[str] = []
        self._observation_spaces = {
            a: spaces.Box(low=FEATURE_LOW, high=FEATURE_HIGH, dtype=np.float32)
            for a in self.possible_agents
        }
        self._action_spaces = {a: self.core.codecs[a].space() for a in self.possible_agents}
        n = len(self.possible_agents)
        self.state_space = spaces.Box(
            low=np.tile(FEATURE_LOW, n), high=np.tile(FEATURE_HIGH, n), dtype=np.float32
        )
        self._np_random: np.random.Generator | None = None
        self._features: np.ndarray | None = None

    def observation_space(self, agent: str) -> spaces.Box:
        """The agent's observation space (the same object at every call)."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.MultiDiscrete:
        """The agent's action space (the same object at every call)."""
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        self._features = self.core.reset(self._np_random, (options or {}).get("snapshot"))
        self.agents = list(self.possible_agents)
        minute = self.core.live.minute
        return self._split(self._features), {a: {"minute": minute} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        if not self.agents:
            raise RuntimeError("the episode is over (horizon reached): call reset()")
        decided = {a: self.core.decode(a, act) for a, act in actions.items() if a in self.agents}
        self._features, cost, rewards, _, truncated = self.core.step(decided)
        minute = self.core.live.minute
        index = {a: i for i, a in enumerate(self.possible_agents)}
        agents = self.agents
        obs = {a: self._features[index[a]] for a in agents}
        rew = {a: float(rewards[index[a]]) for a in agents}
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, truncated)
        infos = {a: {"minute": minute, "cost": float(cost[index[a]])} for a in agents}
        if truncated:
            self.agents = []
        return obs, rew, terminations, truncations, infos

    def _split(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        return {a: matrix[i] for i, a in enumerate(self.possible_agents)}

    def state(self) -> np.ndarray:
        """All sectors' features, concatenated in scenario order."""
        if self._features is None:
            raise RuntimeError("call reset() first")
        return self._features.reshape(-1)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.core.render_text()
        return None

    def close(self) -> None:
        pass
