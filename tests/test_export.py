"""Export to ONNX bundles and the onnxruntime policy: equal to torch, refusing bad bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from policies.bundle import BundleError, read_manifest
from policies.runtime import BundlePolicy
from training.export import ExportError, export_run
from twin.features import FEATURE_NAMES
from twin.model import OperationModel
from twin.runner import run, simulate
from twin.scenario import load_scenario

TINY_RUN = textwrap.dedent(
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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) RLlib training run, in its own process so Ray leaves nothing behind."""
    path = tmp_path_factory.mktemp("run")
    subprocess.run([sys.executable, "-c", TINY_RUN, str(path)], check=True, timeout=600)
    return path


@pytest.fixture(scope="module")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_run(run_dir, out, name="tiny", version="1")
    return out


def _snapshots(n: int) -> list:
    scenario = load_scenario("default")
    model = OperationModel(scenario, rng=np.random.default_rng(5))
    shots = []
    for _ in range(n):
        run(model, None, minutes=1440 / n)
        shots.append(model.snapshot())
    return shots


def test_bundle_layout_and_manifest(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    sectors = list(load_scenario("default").sector_names)
    assert manifest.sectors == sectors
    assert manifest.feature_names == list(FEATURE_NAMES)
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        ["manifest.json", *(f"{s}.onnx" for s in sectors)]
    )
    for check in manifest.training["export_checks"].values():
        assert check["action_agreement"] == 1.0
        assert check["max_abs_logit_diff"] < 1e-4


def test_onnxruntime_actions_equal_the_trained_modules(run_dir: Path, bundle: Path) -> None:
    """On real states from the twin, onnxruntime's greedy actions equal torch's."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    policy = BundlePolicy(bundle)
    root = run_dir / "checkpoints" / "iter_000001" / "learner_group" / "learner" / "rl_module"
    modules = {s: RLModule.from_checkpoint(root / s) for s in policy.manifest.sectors}
    for snap in _snapshots(24):
        decisions = policy.decisions(snap)
        for sector, decision in decisions.items():
            obs = torch.from_numpy(decision.features[None, :])
            with torch.no_grad():
                logits = modules[sector].forward_inference({"obs": obs})["action_dist_inputs"][0]
            fields = np.split(logits.numpy(), np.cumsum(policy.codecs[sector].nvec)[:-1])
            assert [int(f.argmax()) for f in fields] == decision.vector.tolist()
            assert 0.0 < decision.confidence <= 1.0


def test_policy_strategy_runs_the_twin(bundle: Path) -> None:
    scenario = load_scenario("default")
    a = simulate(scenario, BundlePolicy(bundle), seed=3).kpis()
    b = simulate(scenario, BundlePolicy(bundle), seed=3).kpis()
    assert a == b
    assert a.total.items_completed > 1000


def test_corrupt_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "picking.onnx").write_bytes(b"not onnx")
    with pytest.raises(BundleError, match=r"checksum mismatch for picking\.onnx"):
        BundlePolicy(copy)


def test_missing_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "packing.onnx").unlink()
    with pytest.raises(BundleError, match=r"missing file packing\.onnx"):
        BundlePolicy(copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(schema_version=99), "schema_version 99 is not supported"),
        (lambda m: m["feature_names"].reverse(), "feature list differs"),
        (lambda m: m["feature_names"].pop(), "missing \\['"),
        (
            lambda m: m["action_schema"]["sectors"]["picking"]["nvec"].__setitem__(0, 2),
            "action encoding of 'picking' differs",
        ),
        (lambda m: m.pop("files"), "files: Field required"),
    ],
)
def test_incompatible_manifest_is_refused(bundle: Path, tmp_path: Path, edit, message) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        BundlePolicy(copy)


def test_not_a_run_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no run\.json"):
        export_run(tmp_path, tmp_path / "out")


def test_a_blind_ablation_run_is_not_exported(tmp_path: Path) -> None:
    """A run trained with features held at 0 would be served every feature: refused."""
    run = {"backend": "rllib", "scenarios": ["default"], "env_config": {"blind": ["due_within_60"]}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(ExportError, match="blind to due_within_60"):
        export_run(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_runtime_imports_neither_torch_nor_ray(bundle: Path) -> None:
    code = (
        "import sys; from policies.runtime import BundlePolicy; "
        f"BundlePolicy({str(bundle)!r}); "
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_only_decisive_observations_must_agree() -> None:
    """float32 rounding may flip an argmax between two logits that are equal to the last
    bit; that is a tie, not an export error. A decisive difference is one."""
    from training.export import _greedy, _near_tie

    nvec = np.array([3, 2])
    tie = np.array([[1.0, 1.0 + 1e-8, 0.0, 0.5, -0.5]], dtype=np.float32)
    clear = np.array([[2.0, 1.0, 0.0, 0.5, -0.5]], dtype=np.float32)
    assert _near_tie(tie, nvec, margin=1e-6).tolist() == [True]
    assert _near_tie(clear, nvec, margin=1e-6).tolist() == [False]
    assert _greedy(clear, nvec).tolist() == [[0, 0]]
