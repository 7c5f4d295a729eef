"""The simulation core of the envs: build a twin, apply actions, advance, reward.

:class:`EnvCore` is what every env shares: the Gymnasium wrappers (:mod:`twin.env`),
the PettingZoo env (:mod:`twin.multi_agent`), the RLlib adapter
(``training.rllib_env``), SB3 and plain Python loops (``training.warm_start``). It
imports no Gymnasium: spaces are built by the wrappers (:mod:`twin.spaces` builds
them only when asked). Each :meth:`EnvCore.step` is one decision interval: the
decoded actions are put in force with ``model.apply`` and the twin advances
``decision_interval_minutes`` with :func:`twin.rollout.run_for`, the one loop that
runs a twin forward. Observations come from :mod:`twin.features`, rewards from
:mod:`twin.rewards`. :class:`EnvConfig` is the envs' arguments as one validated object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from twin.actions import SectorAction
from twin.collector import collector_paused
from twin.feature_list import FEATURE_NAMES
from twin.features import Featurizer
from twin.model import OperationModel
from twin.rewards import DEFAULT_TEAM_WEIGHT, CostReward, RewardKind
from twin.rollout import run_for
from twin.scenario import MINUTES_PER_DAY, Scenario, load_scenario
from twin.snapshot import OperationSnapshot
from twin.spaces import DEFAULT_MAX_FLEX, DEFAULT_MAX_LEND, ActionCodec, codecs

__all__ = ["EnvConfig", "EnvCore", "ScenarioArg", "resolve_scenario"]

ScenarioArg = str | Path | Scenario


def resolve_scenario(scenario: ScenarioArg) -> Scenario:
    """A :class:`Scenario` from a built-in name, a YAML path, or a scenario object."""
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


class EnvConfig(BaseModel):
    """The envs' arguments as one validated object (RLlib's ``env_config`` becomes one).

    Attributes:
        scenario: built-in scenario name, YAML path, or a :class:`Scenario`.
        team_weight: sector rewards' share of the whole operation's cost (0 = silos,
            1 = fully shared); see :mod:`twin.rewards`.
        max_lend: largest lend count in the action space.
        max_flex: largest flex count in the action space (capped at the flex pool).
        reward: ``"cost"`` (every cost) or ``"avoidable"`` (regular pay left out); see
            :mod:`twin.rewards`.
        blind: features held at 0 in every observation (names of
            :data:`twin.feature_list.FEATURE_NAMES`): an ablation, to measure what
            a policy learns without them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario: str | Path | Scenario = "default"
    team_weight: float = Field(DEFAULT_TEAM_WEIGHT, ge=0.0, le=1.0)
    max_lend: int = Field(DEFAULT_MAX_LEND, ge=0)
    max_flex: int = Field(DEFAULT_MAX_FLEX, ge=0)
    reward: RewardKind = "cost"
    blind: tuple[str, ...] = ()

    @field_validator("blind")
    @classmethod
    def _known_features(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        check_feature_names(names)
        return names

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | None) -> EnvConfig:
        """Validate a plain mapping (e.g. RLlib's ``EnvContext``); unknown keys fail."""
        return cls.model_validate(dict(config or {}))


class EnvCore:
    """The twin driven one decision interval at a time: what every env wrapper shares.

    Args:
        scenario: the scenario.
        team_weight: see :class:`twin.rewards.CostReward`.
        max_lend: see :class:`twin.spaces.ActionCodec`.
        max_flex: see :class:`twin.spaces.ActionCodec`.
        reward: see :class:`twin.rewards.CostReward` (``kind``).
        blind: features held at 0 (see :class:`EnvConfig`).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        team_weight: float = DEFAULT_TEAM_WEIGHT,
        max_lend: int = DEFAULT_MAX_LEND,
        max_flex: int = DEFAULT_MAX_FLEX,
        reward: RewardKind = "cost",
        blind: tuple[str, ...] = (),
    ) -> None:
        self.scenario = scenario
        self.blind = blind_columns(blind)
        self.sectors: tuple[str, ...] = scenario.sector_names
        self.codecs: dict[str, ActionCodec] = codecs(scenario, max_lend, max_flex)
        self.featurizer = Featurizer(scenario)
        self.reward = CostReward(scenario, team_weight, reward)
        self.interval_minutes = scenario.decision_interval_minutes
        #: decision steps in an episode started at minute 0
        self.episode_steps = math.ceil(scenario.horizon_minutes / self.interval_minutes)
        self.model: OperationModel | None = None
        self.snapshot: OperationSnapshot | None = None

    @property
    def done(self) -> bool:
        return self.model is None or self.model.done

    @property
    def live(self) -> OperationSnapshot:
        """The snapshot behind the latest observation."""
        if self.snapshot is None:
            raise RuntimeError("call reset() first")
        return self.snapshot

    def reset(
        self,
        rng: np.random.Generator,
        snapshot: OperationSnapshot | Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """A fresh twin seeded by ``rng`` (or rebuilt from ``snapshot``); its feature matrix.

        The twin's DataCollector records only at the start and at the horizon (the
        envs do not need its time series, and recording costs ~15% of a step).
        """
        record = self.scenario.horizon_minutes
        if snapshot is None:
            self.model = OperationModel(self.scenario, rng, record_every_minutes=record)
        else:
            if not isinstance(snapshot, OperationSnapshot):
                snapshot = OperationSnapshot.model_validate(snapshot)
            self.model = OperationModel.from_snapshot(
                self.scenario, snapshot, rng, record_every_minutes=record
            )
        self.reward.reset(self.model.kpis())
        return self._observe()

    def decode(self, sector: str, action: Any) -> SectorAction:
        """The :class:`SectorAction` a sector's action vector stands for."""
        return self.codecs[sector].decode(action)

    def step(
        self, actions: Mapping[str, SectorAction]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]:
        """Apply ``actions``, run one decision interval.

        Returns:
            ``(features, cost, rewards, operation_reward, truncated)``: the feature
            matrix, each sector's cost over the interval (currency), each sector's
            reward, the whole operation's reward, and whether the horizon was reached.
        """
        if self.model is None:
            raise RuntimeError("call reset() before step()")
        if self.model.done:
            raise RuntimeError("the episode is over (horizon reached): call reset()")
        # the whole step, observation and reward too, makes no reference cycles
        # (tests/test_collector.py), so the collector's passes can wait until it is done
        with collector_paused():
            # ``apply`` first, then ``run_for`` without ``actions``: run_for skips an empty
            # mapping, while ``apply({})`` still dispatches every sector, as always here
            self.model.apply(actions)
            run_for(self.model, self.interval_minutes)
            cost, rewards, operation_reward = self.reward.step(self.model.kpis())
            return self._observe(), cost, rewards, operation_reward, self.model.done

    def _observe(self) -> np.ndarray:
        assert self.model is not None
        self.snapshot = self.model.snapshot()
        return blinded(self.featurizer.matrix(self.snapshot), self.blind)

    def render_text(self) -> str:
        """A plain-text picture of the operation now (the ``ansi`` render mode)."""
        if self.model is None or self.snapshot is None:
            return "(not reset)"
        snap = self.snapshot
        day, minute = divmod(int(snap.minute), MINUTES_PER_DAY)
        total = self.model.kpis().total
        present = dict.fromkeys(self.sectors, 0)
        for g in snap.workers:
            if g.sector in present and g.state in ("idle", "busy", "overtime"):
                present[g.sector] += g.count
        lines = [
            f"day {day} {minute // 60:02d}:{minute % 60:02d}  cost {total.total_cost:,.0f}  "
            f"SLA misses {total.sla_misses}  overtime {total.overtime_hours:.1f} h",
            f"{'sector':<14}{'queue':>7}{'serving':>9}{'staff':>7}  action",
        ]
        for st in snap.sectors:
            a = st.action
            lend = f"lend {a.lend_count}->{a.lend_to}, " if a.lend_to and a.lend_count else ""
            lines.append(
                f"{st.name:<14}{st.queued:>7}{st.serving:>9}{present[st.name]:>7}  "
                f"{lend}flex {a.flex_count}, overtime {'on' if a.overtime else 'off'}, "
                f"{a.priority}"
            )
        return "\n".join(lines)


def check_feature_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming any entry of ``names`` that is not a feature."""
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown feature(s) {', '.join(map(repr, unknown))}; the features are listed "
            "in the README's feature table"
        )


def blind_columns(names: Sequence[str]) -> np.ndarray:
    """The feature matrix's column indices of ``names`` (checked)."""
    check_feature_names(names)
    return np.array([FEATURE_NAMES.index(n) for n in names], dtype=np.intp)


def blinded(features: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``features`` (``(..., f)``) with ``columns`` set to 0, in place; the same array."""
    if columns.size:
        features[..., columns] = 0.0
    return features
