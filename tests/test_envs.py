"""The env wrappers pass the field's own checkers, on every built-in scenario.

- Gymnasium ``check_env`` (OperationEnv, SectorEnv) and SB3 ``check_env``, with no
  warnings at all;
- PettingZoo ``parallel_api_test`` (a full episode) and ``parallel_seed_test``;
- RLlib ``check_multiagent_environments`` on the adapter (no Ray cluster needed);
- same seed -> identical rollouts; pickle round trips; the featurizer gives the same
  vector from a live twin and from a twin rebuilt from its snapshot;
- the action encoding's illegal combinations and the reward identities.
"""

from __future__ import annotations

import copy
import importlib
import logging
import pickle
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pytest

import twin.env
from agents.static import StaticController
from twin import features as features_module
from twin.actions import SectorAction
from twin.env import EnvConfig, OperationEnv, SectorEnv
from twin.features import (
    FEATURE_HIGH,
    FEATURE_LOW,
    FEATURE_NAMES,
    N_FEATURES,
    feature_table,
    features,
    featurizer,
)
from twin.model import OperationModel
from twin.multi_agent import OperationParallelEnv
from twin.rewards import REWARD_KINDS, cost_scale
from twin.runner import simulate
from twin.scenario import Scenario, builtin_names, load_scenario, scenario_from_dict
from twin.spaces import ActionCodec

SCENARIOS = builtin_names()


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return load_scenario(request.param)


@contextmanager
def no_warnings() -> Iterator[None]:
    """Fail if anything inside warns (Gymnasium's and SB3's checkers warn, not raise)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not messages, "\n".join(messages)


def rollout(env: gym.Env, seed: int, steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Observations and rewards of an episode under seeded random actions."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    done, n = False, 0
    while not done and (steps is None or n < steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        done, n = terminated or truncated, n + 1
    return np.array(observations), np.array(rewards)


# --------------------------------------------------------------------------- the field's checkers


@pytest.mark.parametrize("env_id", ["synctwin/Operation-v0", "synctwin/Sector-v0"])
def test_gymnasium_check_env(scenario: Scenario, env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, scenario=scenario.name).unwrapped  # has a spec: render modes checked
    with no_warnings():
        check_env(env)


@pytest.mark.parametrize("make", [OperationEnv, SectorEnv], ids=["Operation", "Sector"])
def test_sb3_check_env(scenario: Scenario, make: Callable[..., gym.Env]) -> None:
    from stable_baselines3.common import env_checker

    env = make(scenario)
    with no_warnings():
        env_checker.check_env(env, warn=True)


def test_pettingzoo_parallel_api(scenario: Scenario) -> None:
    from pettingzoo.test import parallel_api_test

    env = OperationParallelEnv(scenario)
    with no_warnings():
        parallel_api_test(env, num_cycles=env.core.episode_steps + 1)  # reaches truncation
    assert env.agents == []


def test_pettingzoo_parallel_seed(scenario: Scenario) -> None:
    from pettingzoo.test import parallel_seed_test

    with no_warnings():
        parallel_seed_test(lambda: OperationParallelEnv(scenario))


def test_rllib_check_multiagent_environments(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    from training.rllib_env import SyncTwinMultiAgentEnv

    env = SyncTwinMultiAgentEnv({"scenario": scenario.name, "team_weight": 0.25})
    with caplog.at_level(logging.WARNING), no_warnings():
        check_multiagent_environments(env)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert env.possible_agents == list(scenario.sector_names)
    assert set(env.observation_spaces) == set(env.action_spaces) == set(env.possible_agents)


def test_rllib_adapter_episode_end_and_config() -> None:
    from pydantic import ValidationError

    from training.rllib_env import SyncTwinMultiAgentEnv

    env = SyncTwinMultiAgentEnv({"scenario": "default"})
    obs, _ = env.reset(seed=1)
    assert set(obs) == set(env.possible_agents)
    for step in range(env.par_env.core.episode_steps):
        actions = {a: env.action_spaces[a].sample() for a in env.agents}
        obs, rewards, terminateds, truncateds, _ = env.step(actions)
        assert terminateds["__all__"] is False
        assert truncateds["__all__"] is (step == env.par_env.core.episode_steps - 1)
    assert set(rewards) == set(env.possible_agents)
    with pytest.raises(ValidationError, match="team_wieght"):
        SyncTwinMultiAgentEnv({"team_wieght": 0.5})
    assert pickle.loads(pickle.dumps(env)).possible_agents == env.possible_agents


# --------------------------------------------------------------------------- determinism, pickling


def test_same_seed_same_rollout(scenario: Scenario) -> None:
    obs_a, rew_a = rollout(OperationEnv(scenario), seed=5)
    obs_b, rew_b = rollout(OperationEnv(scenario), seed=5)
    assert np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)
    obs_c, _ = rollout(OperationEnv(scenario), seed=6)
    assert not np.array_equal(obs_a, obs_c)
    env = OperationEnv(scenario)
    assert len(rew_a) == env.core.episode_steps  # truncated exactly at the horizon


def test_reset_seed_matches_simulate() -> None:
    """``reset(seed=s)`` builds the twin ``OperationModel(rng=default_rng(s))`` would."""
    scenario = load_scenario("default")
    env = OperationEnv(scenario)
    env.reset(seed=11)
    plan = StaticController(scenario).decide(env.core.live)
    action = np.concatenate([env.core.codecs[s].encode(plan[s]) for s in env.sectors])
    assert env.decode(action) == plan
    truncated = False
    while not truncated:
        _, _, _, truncated, _ = env.step(action)
    reference = simulate(scenario, StaticController(scenario), seed=11)
    assert env.core.model is not None
    assert env.core.model.kpis() == reference.kpis()


@pytest.mark.parametrize(
    "make",
    [OperationEnv, SectorEnv, OperationParallelEnv],
    ids=["Operation", "Sector", "Parallel"],
)
def test_pickle_round_trip(make: Callable[..., object]) -> None:
    env = make("default")
    if isinstance(env, OperationParallelEnv):
        env.reset(seed=3)
        rng = np.random.default_rng(0)

        def act() -> dict[str, np.ndarray]:
            return {a: rng.integers(env.action_space(a).nvec) for a in env.possible_agents}

        step = env.step
    else:
        assert isinstance(env, gym.Env)
        env.reset(seed=3)
        env.action_space.seed(0)
        act, step = env.action_space.sample, env.step
    for _ in range(5):
        step(act())
    clone, deep = pickle.loads(pickle.dumps(env)), copy.deepcopy(env)
    for _ in range(5):
        action = act()
        out, out_clone, out_deep = step(action), clone.step(action), deep.step(action)  # type: ignore[attr-defined]
        assert gym.utils.env_checker.data_equivalence(out, out_clone, exact=True)
        assert gym.utils.env_checker.data_equivalence(out, out_deep, exact=True)


def test_sector_env_static_controller_equals_plan() -> None:
    """Letting the static controller drive the others = leaving the plan in force."""
    scenario = load_scenario("default")
    sector = scenario.sector_names[2]
    plain = SectorEnv(scenario, sector)
    driven = SectorEnv(scenario, sector, controller=StaticController(scenario))
    obs_a, rew_a = rollout(plain, seed=2)
    obs_b, rew_b = rollout(driven, seed=2)
    assert obs_a.shape == (plain.core.episode_steps + 1, N_FEATURES)
    assert np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)


def test_registration_is_idempotent() -> None:
    importlib.reload(twin.env)  # registers again: must not raise or warn twice
    for env_id in twin.env.ENV_IDS:
        assert env_id in gym.registry
    env = gym.make("synctwin/Sector-v0", scenario="default", sector="packing")
    assert env.unwrapped.sector == "packing"  # type: ignore[attr-defined]


def test_reset_from_snapshot_option() -> None:
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(0))
    model.run_minutes(600)
    snap = model.snapshot()
    env = OperationEnv("default")
    obs, info = env.reset(seed=0, options={"snapshot": snap.model_dump(mode="json")})
    assert info["minute"] == 600
    assert np.array_equal(obs.reshape(-1, N_FEATURES), featurizer(env.scenario).matrix(snap))
    steps = 0
    truncated = False
    while not truncated:
        _, _, _, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == (1440 - 600) // 30


# --------------------------------------------------------------------------- the featurizer


def _exercised_model(scenario: Scenario, seed: int) -> Iterator[OperationModel]:
    """A twin under a changing mix of lending, flex, overtime and EDD; yields it now and then."""
    model = OperationModel(scenario, rng=np.random.default_rng(seed))
    codecs = {s: ActionCodec(scenario, s) for s in scenario.sector_names}
    rng = np.random.default_rng(seed + 100)
    stops = [0.0, 333.0, 615.0, 871.0, 1095.0, 1310.0]  # night, breaks, overtime, evening
    for stop in stops:
        while model.minute < min(stop, scenario.horizon_minutes - 1):
            model.apply({s: c.decode(rng.integers(c.nvec)) for s, c in codecs.items()})
            model.run_minutes(min(30.0, stop - model.minute))
        yield model


def test_features_same_from_live_and_rebuilt_twin(scenario: Scenario) -> None:
    fz = featurizer(scenario)
    for model in _exercised_model(scenario, seed=4):
        snap = model.snapshot()
        rebuilt = OperationModel.from_snapshot(scenario, snap, rng=np.random.default_rng(9))
        live, again = fz.matrix(snap), fz.matrix(rebuilt.snapshot())
        assert live.dtype == np.float32 and live.shape == (len(scenario.sector_names), N_FEATURES)
        assert np.array_equal(live, again), f"minute {snap.minute}: {np.argwhere(live != again)}"
        for i, sector in enumerate(scenario.sector_names):
            assert np.array_equal(features(snap, sector), live[i])  # built-in looked up by name
            assert np.array_equal(features(rebuilt.snapshot(), sector, scenario), live[i])


def test_features_stay_in_bounds(scenario: Scenario) -> None:
    observations, _ = rollout(OperationEnv(scenario), seed=8)
    per_feature = observations.reshape(-1, N_FEATURES)
    assert np.all(per_feature >= FEATURE_LOW) and np.all(per_feature <= FEATURE_HIGH)
    assert np.isfinite(per_feature).all()


def test_feature_list_is_documented() -> None:
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == N_FEATURES
    table = feature_table()
    assert table in (features_module.__doc__ or "")
    doc = "\n".join(line.strip() for line in (OperationEnv.__doc__ or "").splitlines())
    assert table in doc


def test_arrivals_track_the_plan_on_a_normal_day() -> None:
    """Known answer: with the plan smoothed like the twin's rates, entry sectors read ~0."""
    scenario = load_scenario("default")
    fz = featurizer(scenario)
    model = OperationModel(scenario, rng=np.random.default_rng(0))
    i = FEATURE_NAMES.index("arrivals_vs_plan")
    entry = [scenario.sector_names.index(c.entry) for c in scenario.item_classes]
    values = []
    for minute in range(9 * 60, 18 * 60, 30):
        model.run_minutes(minute - model.minute)
        values.append(fz.matrix(model.snapshot())[sorted(set(entry)), i])
    assert float(np.mean(np.abs(values))) < 0.15


def test_features_reject_a_changed_scenario() -> None:
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(0))
    snap = model.snapshot().model_copy(update={"scenario_digest": "0" * 16})
    with pytest.raises(ValueError, match="pass the scenario explicitly"):
        features(snap, "picking")
    with pytest.raises(KeyError, match="unknown sector"):
        features(model.snapshot(), "nowhere")


# --------------------------------------------------------------------------- actions and rewards


def test_action_decoding_makes_illegal_combinations_legal() -> None:
    scenario = load_scenario("default")
    c = ActionCodec(scenario, "putaway", max_lend=5, max_flex=5)
    t = {name: i + 1 for i, name in enumerate(scenario.sector_names)}
    assert c.decode([t["putaway"], 3, 0, 0, 0]) == SectorAction()  # to itself
    assert c.decode([t["shipping"], 3, 0, 0, 0]) == SectorAction()  # not trained there
    assert c.decode([0, 4, 0, 0, 0]) == SectorAction()  # a count without a target
    assert c.decode([t["picking"], 0, 0, 0, 0]) == SectorAction()  # a target without a count
    legal = c.decode([t["picking"], 2, 1, 1, 1])
    assert legal == SectorAction(
        lend_to="picking", lend_count=2, flex_count=1, overtime=True, priority="edd"
    )
    assert c.decode([99, 99, 99, 9, 9]).lend_count == 0  # clipped into the space first
    assert np.array_equal(c.encode(legal), [t["picking"], 2, 1, 1, 1])
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = rng.integers(c.nvec)
        assert c.decode(c.encode_canonical(v)) == c.decode(v)
        assert c.space().contains(c.encode(c.decode(v)))


def test_flex_dimension_follows_the_pool() -> None:
    data = load_scenario("default").model_dump(mode="json")
    data["workforce"]["flex"]["max_workers"] = 0
    no_flex = scenario_from_dict(data)
    c = ActionCodec(no_flex, "picking", max_flex=5)
    assert c.nvec[2] == 1
    with no_warnings():
        from gymnasium.utils.env_checker import check_env

        check_env(OperationEnv(no_flex), skip_render_check=True)


def test_rewards_mean_is_the_operation_reward_and_costs_add_up() -> None:
    scenario = load_scenario("default")
    single = OperationEnv(scenario)
    multis = {w: OperationParallelEnv(scenario, team_weight=w) for w in (0.0, 0.3, 1.0)}
    single.reset(seed=4)
    for env in multis.values():
        env.reset(seed=4)
    rng = np.random.default_rng(1)
    total_cost = 0.0
    truncated = False
    while not truncated:
        action = rng.integers(single.action_space.nvec)
        _, reward, _, truncated, info = single.step(action)
        total_cost += info["cost"]
        per_sector = dict(zip(single.sectors, np.split(action, len(single.sectors)), strict=True))
        for w, env in multis.items():
            _, rewards, _, _, _ = env.step(per_sector)
            r = np.array([rewards[a] for a in env.possible_agents])
            assert np.mean(r) == pytest.approx(reward, abs=1e-9)
            if w == 1.0:
                assert np.allclose(r, r[0])
    assert single.core.model is not None
    assert total_cost == pytest.approx(single.core.model.kpis().total.total_cost)
    # scale: one average sector's nominal crew for one interval at the regular rate
    assert cost_scale(scenario) == pytest.approx(25.0 * 0.5 * (9 + 8 + 20 + 16 + 9) / 5)


def test_avoidable_reward_leaves_out_regular_pay_only() -> None:
    """The two rewards of the same course differ by each sector's regular pay of the
    interval, and the avoidable costs add up to the KPIs' ``avoidable_cost``."""
    scenario = load_scenario("absenteeism")  # absences: the regular pay varies
    envs = {k: OperationParallelEnv(scenario, team_weight=0.0, reward=k) for k in REWARD_KINDS}
    for env in envs.values():
        env.reset(seed=7)
    rng = np.random.default_rng(2)
    scale = cost_scale(scenario)
    sums = dict.fromkeys(scenario.sector_names, 0.0)
    regular_before = dict.fromkeys(scenario.sector_names, 0.0)
    gaps = []
    done = False
    while not done:
        actions = {
            a: rng.integers(envs["cost"].action_space(a).nvec) for a in scenario.sector_names
        }
        out = {k: env.step(actions) for k, env in envs.items()}
        model = envs["cost"].core.model
        assert model is not None
        kpis = model.kpis()
        for a in scenario.sector_names:
            avoidable = out["avoidable"][4][a]["cost"]
            sums[a] += avoidable
            regular = kpis.sectors[a].regular_cost - regular_before[a]
            regular_before[a] = kpis.sectors[a].regular_cost
            assert out["cost"][4][a]["cost"] == pytest.approx(avoidable + regular, abs=1e-6)
            # team_weight 0: a sector's reward is minus its own cost over the scale
            assert out["avoidable"][1][a] == pytest.approx(-avoidable / scale, abs=1e-9)
            gaps.append(out["avoidable"][1][a] - out["cost"][1][a])
        done = all(out["cost"][3].values())
    for a in scenario.sector_names:
        assert sums[a] == pytest.approx(kpis.sectors[a].avoidable_cost, abs=1e-6)
    # regular pay came out (none at night), and it varied
    assert min(gaps) >= 0 and len({round(g, 9) for g in gaps if g > 0}) > 1
    with pytest.raises(ValueError, match="reward"):
        EnvConfig.from_mapping({"reward": "profit"})


def test_blind_features_are_zero_and_the_rest_unchanged() -> None:
    """An ablation's env (``blind``) observes exactly the full env's features, with the
    blinded columns at 0, along the same course."""
    names = ("due_within_60", "arrivals_vs_plan")
    full, blind = (
        OperationParallelEnv("peak-surge"),
        OperationParallelEnv("peak-surge", blind=names),
    )
    cols = [FEATURE_NAMES.index(n) for n in names]
    keep = [i for i in range(len(FEATURE_NAMES)) if i not in cols]
    obs_full, _ = full.reset(seed=3)
    obs_blind, _ = blind.reset(seed=3)
    rng = np.random.default_rng(0)
    seen = 0.0
    for _ in range(40):
        for a in full.possible_agents:
            assert not obs_blind[a][cols].any()
            assert np.array_equal(obs_blind[a][keep], obs_full[a][keep])
            seen += float(np.abs(obs_full[a][cols]).sum())
        actions = {a: rng.integers(full.action_space(a).nvec) for a in full.possible_agents}
        obs_full, *_ = full.step(actions)
        obs_blind, *_ = blind.step(actions)
    assert seen > 0  # the full env did see something there
    with pytest.raises(ValueError, match="due_soon"):
        EnvConfig.from_mapping({"blind": ["due_soon"]})


def test_env_config_validates_at_the_border() -> None:
    cfg = EnvConfig.from_mapping({"scenario": "claims", "team_weight": 1})
    assert cfg.team_weight == 1.0 and cfg.max_lend == 5
    with pytest.raises(ValueError, match="team_weight"):
        EnvConfig.from_mapping({"team_weight": 2})


# --------------------------------------------------------------------------- layering, bench


def test_import_direction() -> None:
    """``twin/`` never imports ray, torch or the web stack; the model never imports gymnasium."""
    code = (
        "import sys\n"
        "import twin.model, twin.runner, twin.features, twin.rewards\n"
        "assert 'gymnasium' not in sys.modules, 'the model imported gymnasium'\n"
        "import twin.env, twin.multi_agent, twin.spaces\n"
        "bad = {m.split('.')[0] for m in sys.modules} & {'ray', 'torch', 'fastapi', 'uvicorn'}\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bench_envs_smoke() -> None:
    from experiments.bench.envs import bench_envs

    result = bench_envs("default", steps=10, seed=0)
    names = [row["env"] for row in result["envs"]]
    assert names == ["OperationEnv", "OperationParallelEnv", "twin_only"]
    assert all(row["env_steps_per_second"] > 0 for row in result["envs"])
    obs = result["observation"]
    assert obs["snapshot_ms"] > 0 and obs["features_ms"] > 0
    assert obs["ms_per_sector"] == pytest.approx((obs["snapshot_ms"] + obs["features_ms"]) / 5)
