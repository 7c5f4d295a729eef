"""Gymnasium environments of the twin: the whole operation, or one sector learning.

The wrappers hold an :class:`~twin.model.OperationModel` (composition: the model
knows nothing of Gymnasium). Each ``step`` is one decision interval: the actions
are put in force with ``model.apply`` and the model advances
``decision_interval_minutes`` of simulated time (:func:`twin.rollout.run_for`).
Observations come from :mod:`twin.features`, actions are decoded by :mod:`twin.spaces`, rewards come
from :mod:`twin.rewards`; the PettingZoo env (:mod:`twin.multi_agent`) and the
RLlib adapter (``training.rllib_env``) share the same :class:`EnvCore`, which lives
in the Gymnasium-free :mod:`twin.env_core` (re-exported here with :class:`EnvConfig`).

Importing this module registers ``synctwin/Operation-v0`` and ``synctwin/Sector-v0``
with Gymnasium::

    import gymnasium as gym
    import twin.env  # noqa: F401  (registers the ids)

    env = gym.make("synctwin/Operation-v0", scenario="default")
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import gymnasium
import numpy as np
from gymnasium import spaces

from twin.actions import Controller, SectorAction
from twin.env_core import EnvConfig, EnvCore, ScenarioArg, resolve_scenario
from twin.features import FEATURE_HIGH, FEATURE_LOW, N_FEATURES
from twin.rewards import DEFAULT_TEAM_WEIGHT, RewardKind
from twin.spaces import DEFAULT_MAX_FLEX, DEFAULT_MAX_LEND


class PickleByValue:
    """Pickles the instance's state with cloudpickle (a Gymnasium dependency).

    The Mesa model's DataCollector holds lambdas, which the standard pickle cannot
    serialise; cloudpickle can. The whole ``__dict__`` goes in one blob, so objects
    shared inside the env (its ``np_random`` is also the model's master generator)
    stay shared after a round trip.
    """

    def __getstate__(self) -> dict[str, bytes]:
        return {"cloudpickled_state": cloudpickle.dumps(self.__dict__)}

    def __setstate__(self, state: dict[str, bytes]) -> None:
        self.__dict__.update(pickle.loads(state["cloudpickled_state"]))


def _observation_box(n_sectors: int) -> spaces.Box:
    return spaces.Box(
        low=np.tile(FEATURE_LOW, n_sectors),
        high=np.tile(FEATURE_HIGH, n_sectors),
        dtype=np.float32,
    )


def _options_snapshot(options: dict[str, Any] | None) -> Any:
    return (options or {}).get("snapshot")


class OperationEnv(PickleByValue, gymnasium.Env[np.ndarray, np.ndarray]):
    """The whole operation as one agent: one action per sector at every decision.

    ## Description

    A Mesa twin of an operation (sectors, workers on shifts, SLA-bound work items;
    see ``twin.model``). Every decision interval (``decision_interval_minutes`` of
    the scenario, 30 by default) the agent sets each sector's
    :class:`~twin.actions.SectorAction`: lend workers to another sector, call
    agency (flex) staff, authorise overtime, choose FIFO or earliest-due-first.

    ## Action space

    ``MultiDiscrete`` (int64), the sectors' action vectors concatenated in scenario
    order, five entries per sector (see :mod:`twin.spaces`)::

        [lend_to (0 = nobody, j = sector j-1), lend_count (0..max_lend),
         flex_count (0..min(max_flex, flex pool)), overtime (0/1), priority (0 fifo, 1 edd)]

    Illegal parts decode to the nearest legal action: lending to itself or to a sector
    its workers are not trained for, or a count without a target, lends nobody.

    ## Observation space

    ``Box(float32, shape=(n_sectors * 37,))``: the feature vectors of the sectors
    (:mod:`twin.features`) concatenated in scenario order; entry ``37 * s + i`` is
    feature ``i`` of sector ``s``. Per-feature bounds are the ranges below; notation:
    ``staff`` = a sector's largest shift headcount, ``cap`` = its nominal capacity in
    items per hour, ``sq(x) = x / (1 + x)``.

    | index | name | meaning | range | unit |
    |---|---|---|---|---|
    | 0 | queue_overdue | items waiting, already past due | [0, 1) | sq(n / cap) |
    | 1 | queue_due_0_30 | items waiting, due in 0-30 min | [0, 1) | sq(n / cap) |
    | 2 | queue_due_30_60 | items waiting, due in 30-60 min | [0, 1) | sq(n / cap) |
    | 3 | queue_due_60_120 | items waiting, due in 60-120 min | [0, 1) | sq(n / cap) |
    | 4 | queue_due_120_240 | items waiting, due in 120-240 min | [0, 1) | sq(n / cap) |
    | 5 | queue_due_240_480 | items waiting, due in 240-480 min | [0, 1) | sq(n / cap) |
    | 6 | queue_due_480_plus | items waiting, due in 480+ min | [0, 1) | sq(n / cap) |
    | 7 | due_within_30 | work due within 30 min, not yet late | [0, 1) | sq(n / cap) |
    | 8 | due_within_60 | work due within 60 min, not yet late | [0, 1) | sq(n / cap) |
    | 9 | due_within_120 | work due within 120 min, not yet late | [0, 1) | sq(n / cap) |
    | 10 | staff_present | workers here, idle or working (any home, flex) | [0, 2] | n / staff |
    | 11 | staff_busy | workers here working (busy or overtime) | [0, 2] | n / staff |
    | 12 | staff_absent | own workers absent from their shift | [0, 2] | n / staff |
    | 13 | staff_lent_out | own workers at (or walking to) another sector | [0, 2] | n / staff |
    | 14 | staff_borrowed_in | other sectors' workers here (not walking) | [0, 2] | n / staff |
    | 15 | staff_in_transfer | workers walking here (back home, lent, flex) | [0, 2] | n / staff |
    | 16 | staff_flex | agency workers called here (arriving or present) | [0, 2] | n / staff |
    | 17 | staff_overtime | workers here in overtime | [0, 2] | n / staff |
    | 18 | utilization | working / (idle + working) here; 0 if nobody | [0, 1] | fraction |
    | 19 | overtime_budget_used | mean share of OT limit used (workers in OT) | [0, 1] | fraction |
    | 20 | arrival_rate | observed smoothed arrivals | [0, 1) | sq(n/h / cap) |
    | 21 | completion_rate | observed smoothed completions | [0, 1) | sq(n/h / cap) |
    | 22 | arrivals_vs_plan | (observed - plan) / max(observed, plan, 0.1 cap) | [-1, 1] | ratio |
    | 23 | forecast_next_hour | mean planned inflow over the next 60 min | [0, 1) | sq(n/h / cap) |
    | 24 | shift_end_in | to end of the running shift staffing it; 0 if none | [0, 1] | min / 720 |
    | 25 | next_shift_in | to next start of a shift staffing it | [0, 1] | min / 720 |
    | 26 | stations_down | stations out of order (failures + outages) | [0, 1] | n / stations |
    | 27 | upstream_pressure | work at predecessors x their share sent here | [0, 1) | sq(n / cap) |
    | 28 | downstream_pressure | queues of successors x share sent | [0, 1) | sq(n / their cap) |
    | 29 | time_of_day_sin | sin(2 pi minute_of_day / 1440) | [-1, 1] | - |
    | 30 | time_of_day_cos | cos(2 pi minute_of_day / 1440) | [-1, 1] | - |
    | 31 | horizon_left | share of the scenario horizon still to run | [0, 1] | fraction |
    | 32 | action_lending | action in force lends workers to another sector | {0, 1} | flag |
    | 33 | action_lend_count | workers the action in force lends | [0, 1] | n / staff |
    | 34 | action_flex_count | flex workers the action in force requests | [0, 1] | n / flex pool |
    | 35 | action_overtime | action in force authorises overtime | {0, 1} | flag |
    | 36 | action_priority_edd | action in force serves earliest-due-first | {0, 1} | flag |

    ## Rewards

    Minus the whole operation's cost increase over the interval (labour: regular,
    overtime, flex, transfers; plus SLA-miss penalties), divided by
    ``n_sectors * scale``, where ``scale`` is one average sector's nominal staff at the
    regular rate for one interval (:func:`twin.rewards.cost_scale`). An ordinary
    interval with everyone on shift is about -1; each SLA miss adds
    ``-penalty / (n_sectors * scale)``.

    ## Starting state

    A fresh twin at minute 0 (nobody on shift, empty queues, the plan's actions in
    force), seeded from the env's ``np_random``: ``reset(seed=s)`` gives the same twin
    as ``OperationModel(scenario, rng=np.random.default_rng(s))`` and
    ``synctwin simulate --seed s``. ``reset(options={"snapshot": snap})`` starts from a
    live state instead (an :class:`~twin.snapshot.OperationSnapshot` or its JSON dict).

    ## Episode end

    Never terminated (the operation goes on); truncated when the scenario's horizon
    is reached: ``horizon_minutes / decision_interval_minutes`` steps from minute 0
    (48 for a one-day scenario with 30-minute decisions).

    ## Arguments

    - ``scenario``: built-in name, YAML path or :class:`~twin.scenario.Scenario`
      (default ``"default"``).
    - ``max_lend``: largest lend count per sector (default 5).
    - ``max_flex``: largest flex count per sector (default 5, capped at the pool).
    - ``render_mode``: ``None`` or ``"ansi"`` (a text table).

    ``info`` holds ``minute`` and, after a step, ``cost``: the interval's cost
    (currency) of the whole operation.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 (gymnasium's attribute)

    def __init__(
        self,
        scenario: ScenarioArg = "default",
        *,
        max_lend: int = DEFAULT_MAX_LEND,
        max_flex: int = DEFAULT_MAX_FLEX,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.scenario = resolve_scenario(scenario)
        self.core = EnvCore(self.scenario, max_lend=max_lend, max_flex=max_flex)
        self.render_mode = render_mode
        self.sectors = self.core.sectors
        self.observation_space = _observation_box(len(self.sectors))
        self.action_space = spaces.MultiDiscrete(
            np.concatenate([self.core.codecs[s].nvec for s in self.sectors]), dtype=np.int64
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs = self.core.reset(self.np_random, _options_snapshot(options))
        return obs.reshape(-1), {"minute": self.core.live.minute}

    def decode(self, action: Any) -> dict[str, SectorAction]:
        """The per-sector actions a flat action vector stands for."""
        parts = np.asarray(action, dtype=np.int64).reshape(len(self.sectors), -1)
        return {s: self.core.decode(s, p) for s, p in zip(self.sectors, parts, strict=True)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, cost, _, reward, truncated = self.core.step(self.decode(action))
        info = {"minute": self.core.live.minute, "cost": float(cost.sum())}
        return obs.reshape(-1), float(reward), False, truncated, info

    # gymnasium's render returns a type variable bound by nothing: no override can match it
    def render(self) -> str | None:  # type: ignore[override]
        if self.render_mode == "ansi":
            return self.core.render_text()
        return None


class SectorEnv(PickleByValue, gymnasium.Env[np.ndarray, np.ndarray]):
    """One sector learns; the other sectors follow a controller (default: the plan).

    ## Action space

    ``MultiDiscrete([n_sectors + 1, max_lend + 1, min(max_flex, pool) + 1, 2, 2])``
    (int64): the learning sector's action vector (see :class:`OperationEnv` and
    :mod:`twin.spaces`; illegal parts decode to "lend nobody").

    ## Observation space

    ``Box(float32, shape=(37,))``: the learning sector's feature vector, the table of
    :class:`OperationEnv` (and :mod:`twin.features`).

    ## Rewards

    The sector's reward of :mod:`twin.rewards`: minus its own cost increase over the
    interval, mixed with an equal share of the operation's by ``team_weight``, over
    ``scale``. The other sectors' actions are part of the environment.

    ## Starting state and episode end

    As :class:`OperationEnv`: a fresh twin seeded from ``np_random`` (or
    ``options={"snapshot": ...}``); never terminated, truncated at the horizon.

    ## Arguments

    - ``scenario``: built-in name, YAML path or :class:`~twin.scenario.Scenario`.
    - ``sector``: the learning sector (default: the scenario's first sector).
    - ``controller``: a :class:`~twin.actions.Controller` deciding for the other
      sectors at every step from the current snapshot; ``None`` keeps the scenario's
      plan in force for them (what ``agents.static.StaticController`` returns).
    - ``team_weight``: 0 = only the sector's own cost, 1 = an equal share of the
      total (default 0.5).
    - ``reward``: ``"cost"`` (default) or ``"avoidable"`` (regular pay left out).
    - ``max_lend``, ``max_flex``, ``render_mode``: as :class:`OperationEnv`.

    ``info`` holds ``minute`` and, after a step, ``cost`` (the sector's own cost over
    the interval) and ``operation_cost``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 (gymnasium's attribute)

    def __init__(
        self,
        scenario: ScenarioArg = "default",
        sector: str | None = None,
        *,
        controller: Controller | None = None,
        team_weight: float = DEFAULT_TEAM_WEIGHT,
        max_lend: int = DEFAULT_MAX_LEND,
        max_flex: int = DEFAULT_MAX_FLEX,
        reward: RewardKind = "cost",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.scenario = resolve_scenario(scenario)
        self.sector = sector if sector is not None else self.scenario.sector_names[0]
        if self.sector not in self.scenario.sector_names:
            raise KeyError(
                f"unknown sector {self.sector!r} (sectors: {', '.join(self.scenario.sector_names)})"
            )
        self.controller = controller
        self.core = EnvCore(
            self.scenario,
            team_weight=team_weight,
            max_lend=max_lend,
            max_flex=max_flex,
            reward=reward,
        )
        self._i = self.core.sectors.index(self.sector)
        self.render_mode = render_mode
        self.observation_space = _observation_box(1)
        self.action_space = self.core.codecs[self.sector].space()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs = self.core.reset(self.np_random, _options_snapshot(options))
        return obs[self._i], {"minute": self.core.live.minute}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        actions: dict[str, SectorAction] = {}
        if self.controller is not None:
            actions.update(self.controller.decide(self.core.live))
        actions[self.sector] = self.core.decode(self.sector, action)
        obs, cost, rewards, _, truncated = self.core.step(actions)
        info = {
            "minute": self.core.live.minute,
            "cost": float(cost[self._i]),
            "operation_cost": float(cost.sum()),
        }
        return obs[self._i], float(rewards[self._i]), False, truncated, info

    # gymnasium's render returns a type variable bound by nothing: no override can match it
    def render(self) -> str | None:  # type: ignore[override]
        if self.render_mode == "ansi":
            return self.core.render_text()
        return None


#: Gymnasium ids registered on import, and their entry points.
ENV_IDS: dict[str, str] = {
    "synctwin/Operation-v0": "twin.env:OperationEnv",
    "synctwin/Sector-v0": "twin.env:SectorEnv",
}


def register_envs() -> None:
    """Register :data:`ENV_IDS` with Gymnasium (a no-op for ids already registered)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


register_envs()

__all__ = [
    "ENV_IDS",
    "N_FEATURES",
    "EnvConfig",
    "EnvCore",
    "OperationEnv",
    "PickleByValue",
    "ScenarioArg",
    "SectorEnv",
    "register_envs",
    "resolve_scenario",
]
