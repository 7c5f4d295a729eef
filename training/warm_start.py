"""Warm start: imitate a baseline controller before PPO (behaviour cloning + value fit).

PPO from random weights spends most of a short CPU budget rediscovering what the tuned
``threshold`` floor manager already does (lend to the bottleneck, call flex, overtime at
shift end). Starting from a policy that imitates it, and a value function fitted to the
returns it earns, lets PPO spend the budget on *improving* it instead.

Data: the baseline drives the twin on training seeds through :class:`twin.env.EnvCore`
(the training env's own core, so features, action encoding and rewards are the
training env's); each decision gives, per sector, the features, the baseline's action
encoded as the policy's action vector (:meth:`twin.spaces.ActionCodec.encode`), and
the sector's reward. Policy heads learn the actions by cross-entropy per action
field; value heads learn the discounted returns by mean squared error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import torch

from agents import make_controller
from twin.actions import Controller, SectorAction, TwinAware
from twin.env_core import EnvCore
from twin.rewards import RewardKind
from twin.scenario import Scenario


@dataclass
class Demonstrations:
    """Per policy id: observations, action vectors, discounted returns."""

    obs: dict[str, np.ndarray]
    actions: dict[str, np.ndarray]
    returns: dict[str, np.ndarray]


@dataclass(frozen=True)
class Labelling:
    """How a round labels its episodes: the teacher and the training env's settings."""

    baseline: str
    team_weight: float
    max_lend: int
    max_flex: int
    reward: RewardKind = "cost"
    blind: tuple[str, ...] = ()  # features held at 0 (an ablation)


@dataclass(frozen=True)
class Episode:
    """One labelled episode, decision by decision: the features ``(T, sectors, f)``, the
    teacher's action vectors ``(T, sectors, fields)`` and the driven course's sector
    rewards ``(T, sectors)``."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray


#: Runs a round's episodes, given as ``(scenario index, seed)``, wherever it likes (e.g.
#: as tasks on a Ray cluster); gives them back in the order asked.
EpisodeMap = Callable[
    [Sequence[Scenario], Sequence[tuple[int, int]], Labelling, Sequence[Controller] | None],
    list[Episode],
]


def label_episode(
    scenario: Scenario,
    seed: int,
    labelling: Labelling,
    actor: Controller | None = None,
    pool: Executor | None = None,
) -> Episode:
    """Drive one episode of ``scenario`` on ``seed`` and label every decision.

    The teacher (``labelling.baseline``) drives, or, with ``actor``, only labels the
    states the actor drives into (DAgger). A teacher that must see the twin itself
    (``hindsight``) is attached to the training twin, and re-attached at every decision
    when another controller drives, so it judges each state afresh. ``pool`` is lent
    to teachers that spread their rollouts (``lookahead``, ``hindsight``); the labels
    are the same with or without it (common random numbers per seed).
    """
    core = EnvCore(
        scenario,
        team_weight=labelling.team_weight,
        max_lend=labelling.max_lend,
        max_flex=labelling.max_flex,
        reward=labelling.reward,
        blind=labelling.blind,
    )
    teacher = make_controller(labelling.baseline, scenario, seed)
    if pool is not None and hasattr(teacher, "use_pool"):
        teacher.use_pool(pool)
    feats = core.reset(np.random.default_rng(seed))
    aware = isinstance(teacher, TwinAware)
    ep_obs: list[np.ndarray] = []
    ep_act: list[np.ndarray] = []
    ep_rew: list[np.ndarray] = []
    done = False
    try:
        while not done:
            if aware and (actor is not None or not ep_obs):
                assert core.model is not None
                teacher.attach(core.model)  # type: ignore[union-attr]
            taught = _vectors(core, teacher.decide(core.live))
            driven = taught if actor is None else _vectors(core, actor.decide(core.live))
            actions = {s: core.decode(s, v) for s, v in zip(core.sectors, driven, strict=True)}
            ep_obs.append(feats.astype(np.float32))
            ep_act.append(taught)
            feats, _, rewards, _, done = core.step(actions)
            ep_rew.append(rewards)
    finally:
        close = getattr(teacher, "close", None)
        if close is not None:
            close()
    return Episode(np.asarray(ep_obs), np.asarray(ep_act), np.asarray(ep_rew))


def label_on_cluster(
    scenarios: Sequence[Scenario],
    jobs: Sequence[tuple[int, int]],
    labelling: Labelling,
    actors: Sequence[Controller] | None,
) -> list[Episode]:
    """A round's episodes as one-CPU Ray tasks (the :data:`EpisodeMap`
    of a trainer that joined a cluster): an episode of a teacher that rolls out is some
    seconds of CPU, coarse enough for a task, and the episodes are independent. The
    scenarios and the students go to the object store once per round."""
    import ray

    task = ray.remote(num_cpus=1)(_label_task)
    scenario_refs = [ray.put(sc) for sc in scenarios]
    actor_refs = None if actors is None else [ray.put(a) for a in actors]
    refs = [
        task.remote(
            scenario_refs[k], seed, labelling, None if actor_refs is None else actor_refs[k]
        )
        for k, seed in jobs
    ]
    return list(ray.get(refs))


def _label_task(
    scenario: Scenario, seed: int, labelling: Labelling, actor: Controller | None
) -> Episode:
    from training.rllib_config import single_thread_torch

    single_thread_torch()
    return label_episode(scenario, seed, labelling, actor)


def collect(
    scenarios: Sequence[Scenario],
    seeds: Sequence[int],
    *,
    baseline: str = "threshold",
    team_weight: float,
    max_lend: int,
    max_flex: int,
    gamma: float,
    shared: bool,
    actors: Sequence[Controller] | None = None,
    pool: Executor | None = None,
    spread: EpisodeMap | None = None,
    reward: RewardKind = "cost",
    blind: tuple[str, ...] = (),
) -> Demonstrations:
    """Label every decision of every (scenario, seed) with ``baseline``'s action.

    ``baseline`` is the teacher. Without ``actors`` it also drives the twin (behaviour
    cloning); with ``actors`` (one controller per scenario, e.g. the student) the actor
    drives and the teacher only labels the states the actor visits (DAgger); see
    :func:`label_episode`. Episodes run here one after another, their teachers' rollouts
    on ``pool``, or wherever ``spread`` runs them (one task per episode on a cluster);
    either way they are assembled in the same order, so the data are the same.
    Returns the discounted returns of the driven course.
    """
    labelling = Labelling(baseline, team_weight, max_lend, max_flex, reward, blind)
    jobs = [(k, seed) for k in range(len(scenarios)) for seed in seeds]
    if spread is not None:
        episodes = spread(scenarios, jobs, labelling, actors)
    else:
        episodes = [
            label_episode(
                scenarios[k], seed, labelling, None if actors is None else actors[k], pool
            )
            for k, seed in jobs
        ]
    sectors = list(scenarios[0].sector_names)
    onehot = np.eye(len(sectors), dtype=np.float32)
    obs: dict[str, list[np.ndarray]] = {}
    acts: dict[str, list[np.ndarray]] = {}
    rets: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        returns = _discounted(ep.rewards, gamma)  # (T, n)
        for i, sector in enumerate(sectors):
            pid = "shared" if shared else sector
            x = ep.obs[:, i]
            if shared:
                x = np.concatenate([x, np.repeat(onehot[i : i + 1], len(x), axis=0)], axis=1)
            obs.setdefault(pid, []).append(x)
            acts.setdefault(pid, []).append(ep.actions[:, i])
            rets.setdefault(pid, []).append(returns[:, i])
    return Demonstrations(
        obs={k: np.concatenate(v) for k, v in obs.items()},
        actions={k: np.concatenate(v) for k, v in acts.items()},
        returns={k: np.concatenate(v).astype(np.float32) for k, v in rets.items()},
    )


def digest(data: Demonstrations) -> str:
    """A short fingerprint of ``data`` (every array's bytes, by policy id): two rounds
    labelled alike, wherever they ran, have the same one."""
    h = hashlib.sha256()
    for part in (data.obs, data.actions, data.returns):
        for pid in sorted(part):
            h.update(pid.encode())
            h.update(np.ascontiguousarray(part[pid]).tobytes())
    return h.hexdigest()[:16]


def merge(a: Demonstrations, b: Demonstrations) -> Demonstrations:
    """Both datasets in one (DAgger aggregates every round's labels)."""

    def cat(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([x[k], y[k]]) for k in x}

    return Demonstrations(cat(a.obs, b.obs), cat(a.actions, b.actions), cat(a.returns, b.returns))


def _vectors(core: EnvCore, decided: Mapping[str, SectorAction]) -> np.ndarray:
    """Per sector, the action vector of ``decided`` (the action in force where silent)."""
    return np.stack(
        [
            core.codecs[s].encode(decided[s]) if s in decided else _keep(core, s)
            for s in core.sectors
        ]
    )


def _keep(core: EnvCore, sector: str) -> np.ndarray:
    """The vector of the action in force (a controller that says nothing keeps it)."""
    state = next(st for st in core.live.sectors if st.name == sector)
    return core.codecs[sector].encode(state.action)


def _discounted(rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros_like(rewards, dtype=np.float64)
    acc = np.zeros(rewards.shape[1])
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def pretrain(
    modules: Mapping[str, torch.nn.Module],
    data: Demonstrations,
    nvec: np.ndarray,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Fit each module's policy head to the actions and its value head to the returns.

    Returns:
        Per policy id: final cross-entropy, value MSE and greedy action accuracy.
    """
    gen = torch.Generator().manual_seed(seed)
    splits = list(np.asarray(nvec).tolist())
    report = {}
    for pid, module in modules.items():
        x = torch.from_numpy(data.obs[pid])
        y = torch.from_numpy(data.actions[pid]).long()
        r = torch.from_numpy(data.returns[pid])
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        module.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), batch_size):
                idx = perm[start : start + batch_size]
                batch = {"obs": x[idx]}
                out = module.forward_train(batch)
                ce = _cross_entropy(out["action_dist_inputs"], y[idx], splits)
                values = module.compute_values(batch)
                vf = torch.nn.functional.mse_loss(values, r[idx])
                opt.zero_grad()
                (ce + 0.5 * vf).backward()
                opt.step()
        with torch.no_grad():
            out = module.forward_train({"obs": x})
            logits = out["action_dist_inputs"]
            ce = float(_cross_entropy(logits, y, splits))
            vf = float(torch.nn.functional.mse_loss(module.compute_values({"obs": x}), r))
            parts = torch.split(logits, splits, dim=-1)
            greedy = torch.stack([p.argmax(-1) for p in parts], dim=-1)
            acc = float((greedy == y).all(dim=-1).float().mean())
        report[pid] = {"cross_entropy": ce, "value_mse": vf, "action_accuracy": acc}
    return report


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor, splits: list[int]) -> torch.Tensor:
    parts = torch.split(logits, splits, dim=-1)
    return sum(torch.nn.functional.cross_entropy(p, y[:, j]) for j, p in enumerate(parts))  # type: ignore[return-value]
