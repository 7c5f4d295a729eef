"""RLlib run settings, the Ray connection and the ``PPOConfig`` a run trains with.

Split from :mod:`training.rllib` (the training loop, evaluation and checkpoints), which
re-exports every name here: ``from training.rllib import RLlibSettings, build_config``
keeps working.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields
from typing import Any

from training.runs import TrainingError
from training.scenarios import EVAL_SEED_BASE, TRAIN_SEED_BASE, TRAIN_SEED_COUNT
from twin.env_core import check_feature_names
from twin.rewards import REWARD_KINDS

POLICY_MODES = ("per_sector", "shared")


@dataclass
class RLlibSettings:
    """Everything that defines an RLlib training run (stored in ``run.json`` as ``config``).

    ``timesteps``, ``num_env_runners``, ``envs_per_runner`` and the evaluation cadence may
    change on ``--resume``; the rest is taken from the run being resumed.
    """

    scenarios: list[str] = field(default_factory=lambda: ["default"])
    timesteps: int = 100_000  # env steps to train in this invocation
    policy_mode: str = "per_sector"
    seed: int = 0
    num_env_runners: int = 0
    envs_per_runner: int = 8
    team_weight: float = 0.5
    #: "cost" or "avoidable": the rewards count regular pay, or leave it out (twin.rewards)
    reward: str = "cost"
    #: features held at 0 in every observation: an ablation (twin.env_core.EnvConfig.blind)
    blind: list[str] = field(default_factory=list)
    #: lends a sector cannot make masked out of its policy's logits (training.masking)
    mask_actions: bool = False
    max_lend: int = 5
    max_flex: int = 5
    lr: float = 3e-4
    gamma: float = 0.99
    lambda_: float = 0.95
    entropy_coeff: float = 0.01
    clip_param: float = 0.2
    train_batch_size: int = 4000
    minibatch_size: int = 500
    num_epochs: int = 6
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    warm_start: str | None = None  # a baseline to imitate first (training.warm_start)
    warm_start_seeds: int = 40
    warm_start_epochs: int = 30
    #: DAgger rounds after the warm start: the student drives, the teacher labels
    dagger_rounds: int = 0
    dagger_seeds: int = 20  # training episodes per scenario per round
    checkpoint_every: int = 5
    eval_every: int = 5
    eval_seeds: int = 4
    train_seed_base: int = TRAIN_SEED_BASE
    train_seed_count: int = TRAIN_SEED_COUNT
    eval_seed_base: int = EVAL_SEED_BASE

    #: fields that a resumed run may override
    RUNTIME = ("timesteps", "num_env_runners", "envs_per_runner", "checkpoint_every", "eval_every")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLlibSettings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainingError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)

    def check(self) -> None:
        if self.policy_mode not in POLICY_MODES:
            raise TrainingError(
                f"policy mode {self.policy_mode!r} is not one of {', '.join(POLICY_MODES)}"
            )
        if self.timesteps < 0 or self.train_batch_size < 1 or self.minibatch_size < 1:
            raise TrainingError("timesteps must be >= 0, train_batch_size and minibatch_size >= 1")
        if self.timesteps == 0 and self.warm_start is None:
            raise TrainingError("--timesteps 0 trains nothing without --warm-start")
        if self.num_env_runners < 0 or self.envs_per_runner < 1:
            raise TrainingError("num_env_runners must be >= 0 and envs_per_runner >= 1")
        if self.dagger_rounds < 0 or self.dagger_seeds < 1 or self.warm_start_seeds < 1:
            raise TrainingError("dagger rounds must be >= 0, dagger and warm-start seeds >= 1")
        if self.reward not in REWARD_KINDS:
            raise TrainingError(f"reward {self.reward!r} is not one of {', '.join(REWARD_KINDS)}")
        try:
            check_feature_names(self.blind)
        except ValueError as err:
            raise TrainingError(f"--blind: {err}") from None
        if self.mask_actions and self.policy_mode != "per_sector":
            raise TrainingError("--mask-actions needs --policy-mode per_sector")
        if self.dagger_rounds and self.warm_start is None:
            raise TrainingError("--dagger-rounds needs a teacher: give --warm-start NAME")
        if self.warm_start is not None:
            from agents import StrategyError, check_strategy

            try:
                check_strategy(self.warm_start)
            except StrategyError as err:
                raise TrainingError(f"--warm-start: {err}") from None

    @property
    def env_config(self) -> dict[str, Any]:
        return {
            "scenarios": list(self.scenarios),
            "team_weight": self.team_weight,
            "reward": self.reward,
            "blind": tuple(self.blind),
            "max_lend": self.max_lend,
            "max_flex": self.max_flex,
            "seed_base": self.train_seed_base,
            "seed_count": self.train_seed_count,
            "shared": self.policy_mode == "shared",
        }

    @property
    def eval_seed_list(self) -> list[int]:
        return list(range(self.eval_seed_base, self.eval_seed_base + self.eval_seeds))


# --------------------------------------------------------------------------- ray


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast with a clear message when nothing listens at ``host:port``.

    ``ray.init(address=...)`` retries for a long time before giving up; a plain TCP
    connect answers in milliseconds.
    """
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise TrainingError(f"--address {address!r}: expected HOST:PORT (e.g. 127.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise TrainingError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); "
            "start one with `ray start --head` or drop --address"
        ) from None


def connect_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` or start a local Ray; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_address(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ray.exceptions.RayError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TrainingError(
                f"cannot join the Ray cluster at {address}: {first[:200]} (a cluster started "
                "with token auth needs RAY_AUTH_MODE=token and its token here too)"
            ) from None
        return False
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    return True


def single_thread_torch() -> None:
    """One torch thread in this process: the networks are tiny, and on a busy CPU torch's
    thread pool spins against the env runners (measured: ~10x slower iterations). Ray
    already gives its worker processes one thread each."""
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------- config


def policy_ids(sectors: tuple[str, ...] | list[str], mode: str) -> list[str]:
    return ["shared"] if mode == "shared" else list(sectors)


def _module_specs(settings: RLlibSettings, ids: list[str]) -> dict[str, Any]:
    """One RLlib module spec per policy: the default PPO module, or with
    ``mask_actions`` the masked one (:mod:`training.masking`), each with its mask."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    if not settings.mask_actions:
        return {i: RLModuleSpec() for i in ids}
    from training.masking import MaskedPPOTorchRLModule, logit_mask
    from training.scenarios import load_training_scenarios

    scenarios = load_training_scenarios(settings.scenarios, settings.max_lend, settings.max_flex)
    base = {"fcnet_hiddens": list(settings.hidden), "vf_share_layers": False}
    return {
        i: RLModuleSpec(
            module_class=MaskedPPOTorchRLModule,
            model_config={
                **base,
                "logit_mask": logit_mask(scenarios, i, settings.max_lend, settings.max_flex),
            },
        )
        for i in ids
    }


def build_config(settings: RLlibSettings, sectors: list[str]) -> Any:
    """The ``PPOConfig`` of a run (new API stack, one learner on the driver)."""
    import logging

    # RLlib warns at every config that PPO runs on the new API stack: that is the point
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

    from training.envs import TrainingEnv

    ids = policy_ids(sectors, settings.policy_mode)
    shared = settings.policy_mode == "shared"

    def mapping(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
        return "shared" if shared else agent_id

    return (
        PPOConfig()
        .environment(TrainingEnv, env_config=settings.env_config, disable_env_checking=True)
        .env_runners(
            num_env_runners=settings.num_env_runners,
            num_envs_per_env_runner=settings.envs_per_runner,
            num_cpus_per_env_runner=1,
            rollout_fragment_length="auto",
        )
        .learners(num_learners=0)
        .training(
            lr=settings.lr,
            gamma=settings.gamma,
            lambda_=settings.lambda_,
            entropy_coeff=settings.entropy_coeff,
            clip_param=settings.clip_param,
            train_batch_size_per_learner=settings.train_batch_size,
            minibatch_size=settings.minibatch_size,
            num_epochs=settings.num_epochs,
        )
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs=_module_specs(settings, ids)),
            model_config={"fcnet_hiddens": list(settings.hidden), "vf_share_layers": False},
        )
        .multi_agent(policies=set(ids), policy_mapping_fn=mapping)
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=1000,
            delay_between_env_runner_restarts_s=1.0,
        )
        .debugging(seed=settings.seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=20)
    )
