"""The twin as an RLlib ``MultiAgentEnv`` (new API stack): one agent per sector.

A thin adapter around :class:`twin.multi_agent.OperationParallelEnv` (``twin/``
never imports ray). RLlib builds it from a plain ``env_config`` dict, validated on
the first line into :class:`twin.env.EnvConfig` (unknown keys fail, naming them)::

    from ray.rllib.algorithms.ppo import PPOConfig
    from training.rllib_env import SyncTwinMultiAgentEnv

    config = (
        PPOConfig()
        .environment(SyncTwinMultiAgentEnv, env_config={"scenario": "default", "team_weight": 0.5})
        .multi_agent(
            policies=set(sectors),
            policy_mapping_fn=lambda agent_id, episode, **kw: agent_id,
        )
    )

Spaces are the per-sector spaces of the PettingZoo env, exposed as the new stack
expects: ``observation_spaces`` / ``action_spaces`` dicts keyed by agent id, with
``possible_agents`` = ``agents`` = the sector names (every sector acts at every
step; the end of an episode is signalled by ``truncateds["__all__"]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.rllib.env.multi_agent_env import MultiAgentEnv

from twin.env_core import EnvConfig
from twin.multi_agent import OperationParallelEnv


class SyncTwinMultiAgentEnv(MultiAgentEnv):
    """RLlib multi-agent env: :class:`~twin.multi_agent.OperationParallelEnv` underneath.

    Args:
        config: RLlib's ``env_config`` (an ``EnvContext`` or any mapping) with the keys
            of :class:`twin.env.EnvConfig`: ``scenario``, ``team_weight``, ``max_lend``,
            ``max_flex``, ``reward``, ``blind``. ``None`` uses the defaults.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        args = EnvConfig.from_mapping(config)
        super().__init__()
        self.config = args
        self.par_env = OperationParallelEnv(
            args.scenario,
            team_weight=args.team_weight,
            max_lend=args.max_lend,
            max_flex=args.max_flex,
            reward=args.reward,
            blind=args.blind,
        )
        self.possible_agents = list(self.par_env.possible_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {
            a: self.par_env.observation_space(a) for a in self.possible_agents
        }
        self.action_spaces = {a: self.par_env.action_space(a) for a in self.possible_agents}

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return obs, infos

    def step(
        self, action_dict: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        obs, rewards, terminateds, truncateds, infos = self.par_env.step(action_dict)
        terminateds["__all__"] = False
        truncateds["__all__"] = bool(truncateds) and all(truncateds.values())
        return obs, rewards, terminateds, truncateds, infos

    def render(self) -> str | None:  # type: ignore[override]
        return self.par_env.render()

    def close(self) -> None:
        self.par_env.close()
