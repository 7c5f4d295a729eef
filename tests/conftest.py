"""Fixtures shared by several test modules.

``policy_bundle``: a real policy bundle of the built-in ``default`` scenario, made
once per test session. The shipped ``policies/default`` bundle when it is there;
otherwise a tiny RLlib training run (in its own process, so Ray leaves nothing
behind) exported with :func:`training.export.export_run`. Tests must not modify it:
copy it first.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SHIPPED_BUNDLE = Path(__file__).resolve().parent.parent / "policies" / "default"

TINY_RLLIB_RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from training.rllib_env import SyncTwinMultiAgentEnv
    from twin.scenario import load_scenario

    run = Path(sys.argv[1])
    sectors = list(load_scenario("default").sector_names)
    ray.init(num_cpus=1, include_dashboard=False)
    algo = (
        PPOConfig()
        .environment(SyncTwinMultiAgentEnv, env_config={"scenario": "default"})
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=96, minibatch_size=48, num_epochs=1)
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={s: RLModuleSpec() for s in sectors}),
            model_config={"fcnet_hiddens": [32, 32]},
        )
        .multi_agent(policies=set(sectors), policy_mapping_fn=lambda aid, ep, **kw: aid)
        .build_algo()
    )
    algo.train()
    algo.save_to_path(str((run / "checkpoints" / "iter_000001").resolve()))
    (run / "checkpoints" / "latest").write_text("iter_000001")
    (run / "run.json").write_text(json.dumps({
        "backend": "rllib", "scenarios": ["default"], "policy_mode": "per_sector",
        "env_config": {"team_weight": 0.5, "max_lend": 5, "max_flex": 5},
    }))
    ray.shutdown()
    """
)


@pytest.fixture(scope="session")
def policy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real policy bundle of ``default`` (read-only: copy it to change it)."""
    if (SHIPPED_BUNDLE / "manifest.json").is_file():
        return SHIPPED_BUNDLE
    run = tmp_path_factory.mktemp("tiny-rllib-run")
    subprocess.run([sys.executable, "-c", TINY_RLLIB_RUN, str(run)], check=True, timeout=900)
    from training.export import export_run

    out = tmp_path_factory.mktemp("session-bundle") / "tiny"
    export_run(run, out, name="tiny", version="1")
    return out
