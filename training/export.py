"""Export a training run (RLlib or SB3) to a policy bundle: ONNX files + manifest.

Follows SB3's export guide: a deterministic wrapper ``nn.Module`` that maps
``obs`` to the policy's action logits, a pinned opset, named inputs with a dynamic
batch axis, ``onnx.checker.check_model``, and a check that onnxruntime gives the
same greedy actions as torch on real and random observations before the bundle
is written. Each ONNX file carries in its metadata the sectors it serves and the
policy mode, which loading checks against the manifest.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from policies.bundle import (
    MODE_METADATA,
    SECTORS_METADATA,
    Manifest,
    ScenarioRef,
    file_entries,
    write_manifest,
)
from twin.env_core import EnvConfig
from twin.features import FEATURE_HIGH, FEATURE_LOW, FEATURE_NAMES
from twin.scenario import Scenario, load_scenario
from twin.spaces import codecs

OPSET = 17
CHECK_OBSERVATIONS = 1000


class ExportError(ValueError):
    """A run directory that cannot be exported; the message says why."""


class _RLlibLogits(nn.Module):
    """obs -> action logits of an RLlib (new API stack) RLModule, deterministic."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.module.forward_inference({"obs": obs})["action_dist_inputs"]


class _SB3Logits(nn.Module):
    """obs -> action logits of an SB3 ActorCriticPolicy (MultiDiscrete)."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.policy.pi_features_extractor(obs)  # Box observations: no preprocessing
        latent_pi = self.policy.mlp_extractor.forward_actor(features)
        return self.policy.action_net(latent_pi)


def _greedy(logits: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Argmax per MultiDiscrete field for a batch of concatenated logits."""
    parts = np.split(logits, np.cumsum(nvec)[:-1], axis=-1)
    return np.stack([p.argmax(axis=-1) for p in parts], axis=-1)


def _near_tie(logits: np.ndarray, nvec: np.ndarray, margin: float) -> np.ndarray:
    """Rows where some field's two best logits lie within ``margin``: there float32
    rounding alone may flip the greedy action, in any runtime."""
    parts = np.split(logits, np.cumsum(nvec)[:-1], axis=-1)
    ties = np.zeros(len(logits), dtype=bool)
    for p in parts:
        if p.shape[-1] < 2:
            continue
        top2 = np.sort(p, axis=-1)[:, -2:]
        ties |= (top2[:, 1] - top2[:, 0]) <= margin
    return ties


#: onnxruntime and torch may differ by float32 rounding, never by more than this per logit
LOGIT_TOLERANCE = 1e-4


def _check_observations(
    dim: int, n_sectors: int, mode: str, rng: np.random.Generator
) -> np.ndarray:
    """Observations for the equivalence check: uniform within the features' documented range."""
    low = np.tile(FEATURE_LOW, dim // len(FEATURE_NAMES) if mode == "centralised" else 1)
    high = np.tile(FEATURE_HIGH, dim // len(FEATURE_NAMES) if mode == "centralised" else 1)
    obs = rng.uniform(low, high, size=(CHECK_OBSERVATIONS, low.size)).astype(np.float32)
    if mode == "shared":
        onehot = np.eye(n_sectors, dtype=np.float32)[rng.integers(0, n_sectors, CHECK_OBSERVATIONS)]
        obs = np.concatenate([obs, onehot], axis=1)
    return obs


def _export(wrapper: nn.Module, dummy: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(path),
        input_names=["obs"],
        output_names=["logits"],
        dynamic_axes={"obs": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def export_module(
    wrapper: nn.Module,
    obs_dim: int,
    nvec: np.ndarray,
    path: Path,
    check_obs: np.ndarray,
    metadata: dict[str, str] | None = None,
) -> dict[str, float]:
    """Write ``wrapper`` as ONNX to ``path`` and verify it against torch.

    ``metadata`` goes into the model's ``metadata_props`` (for a bundle: the sectors
    the file serves and the policy mode, see :mod:`policies.bundle`).

    Returns:
        ``{"max_abs_logit_diff": ..., "action_agreement": ..., "near_ties": ...}`` over
        ``check_obs``: agreement counts the observations whose greedy action is decisive
        (no two logits of a field within rounding of each other); ``near_ties`` how many
        were not (there either answer is the policy's).

    Raises:
        ExportError: a logit differs by more than :data:`LOGIT_TOLERANCE`, or
            onnxruntime's greedy action differs from torch's on a decisive observation.
    """
    wrapper.eval()
    dummy = torch.zeros(1, obs_dim, dtype=torch.float32)
    with warnings.catch_warnings():
        # the TorchScript exporter is chosen on purpose: the dynamo one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(wrapper, dummy, path)
    model = onnx.load(str(path))
    if metadata:
        onnx.helper.set_model_props(model, metadata)
        onnx.save(model, str(path))
    onnx.checker.check_model(model)
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(check_obs)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"obs": check_obs})[0]
    max_diff = float(np.abs(got - expected).max())
    if max_diff > LOGIT_TOLERANCE:
        raise ExportError(f"{path.name}: onnxruntime and torch logits differ by {max_diff:.1e}")
    same = np.all(_greedy(got, nvec) == _greedy(expected, nvec), axis=1)
    decisive = ~_near_tie(expected, nvec, margin=2 * max_diff + 1e-7)
    agreement = float(np.mean(same[decisive])) if decisive.any() else 1.0
    if agreement < 1.0:
        raise ExportError(f"{path.name}: onnxruntime and torch disagree on {1 - agreement:.1%}")
    return {
        "max_abs_logit_diff": max_diff,
        "action_agreement": agreement,
        "near_ties": int((~decisive).sum()),
    }


def _latest_checkpoint(run_dir: Path) -> Path:
    ckpts = run_dir / "checkpoints"
    latest = ckpts / "latest"
    if latest.is_file():
        path = ckpts / latest.read_text().strip()
        if path.is_dir():
            return path
    found = sorted(p for p in ckpts.glob("iter_*") if p.is_dir()) if ckpts.is_dir() else []
    if not found:
        raise ExportError(f"run {run_dir}: no RLlib checkpoint under {ckpts}")
    return found[-1]


def _rllib_modules(run_dir: Path, policy_ids: list[str]) -> dict[str, nn.Module]:
    from ray.rllib.core.rl_module.rl_module import RLModule

    ckpt = _latest_checkpoint(run_dir)
    root = ckpt / "learner_group" / "learner" / "rl_module"
    modules = {}
    for pid in policy_ids:
        if not (root / pid).is_dir():
            raise ExportError(f"run {run_dir}: checkpoint {ckpt.name} has no module {pid!r}")
        # RLlib parses the path as a URI: a relative one fails ("URI has empty scheme")
        modules[pid] = _RLlibLogits(RLModule.from_checkpoint(str((root / pid).resolve())))
    return modules


def export_run(
    run_dir: Path, out: Path, name: str | None = None, version: str | None = None
) -> Manifest:
    """Export the policies of ``run_dir`` into the bundle directory ``out``.

    The bundle is assembled in a temporary directory and moved into place only when
    every file has been written and checked, so a failed export leaves nothing behind.
    """
    run_dir = Path(run_dir).expanduser().resolve()  # RLlib's loader needs an absolute path
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise ExportError(f"{run_dir} is not a training run (no run.json)")
    run: dict[str, Any] = json.loads(run_file.read_text())
    backend, mode = run.get("backend"), run.get("policy_mode", "per_sector")
    scenarios = run.get("scenarios") or [run.get("scenario")]
    sources = run.get("scenario_sources") or scenarios
    # a scenario file trained on is loaded from where the run recorded it; a name is a built-in
    scenario: Scenario = load_scenario(
        sources[0] if Path(str(sources[0])).is_file() else scenarios[0]
    )
    env_cfg = EnvConfig.from_mapping(
        {k: v for k, v in (run.get("env_config") or {}).items() if k in EnvConfig.model_fields}
    )
    if env_cfg.blind:
        raise ExportError(
            f"{run_dir} was trained blind to {', '.join(env_cfg.blind)} (an ablation, --blind); "
            "a served policy sees every feature, so it is not exported"
        )
    sector_codecs = codecs(scenario, env_cfg.max_lend, env_cfg.max_flex)
    sectors = list(scenario.sector_names)
    nvec = next(iter(sector_codecs.values())).nvec
    n_feat = len(FEATURE_NAMES)
    rng = np.random.default_rng(0)

    if backend == "rllib" and mode == "per_sector":
        wrappers = _rllib_modules(run_dir, sectors)
        files = {s: f"{s}.onnx" for s in sectors}
        obs_dim, out_nvec = n_feat, nvec
    elif backend == "rllib" and mode == "shared":
        wrappers = {"shared": _rllib_modules(run_dir, ["shared"])["shared"]}
        files = dict.fromkeys(sectors, "shared.onnx")
        obs_dim, out_nvec = n_feat + len(sectors), nvec
    elif backend == "sb3" and mode == "centralised":
        from stable_baselines3 import PPO

        model_zip = run_dir / "sb3" / "model.zip"
        if not model_zip.is_file():
            raise ExportError(f"run {run_dir}: no {model_zip.relative_to(run_dir)}")
        wrappers = {"operation": _SB3Logits(PPO.load(model_zip, device="cpu").policy)}
        files = dict.fromkeys(sectors, "operation.onnx")
        obs_dim = n_feat * len(sectors)
        out_nvec = np.concatenate([c.nvec for c in sector_codecs.values()])
    else:
        raise ExportError(
            f"run {run_dir}: cannot export backend {backend!r} with policy mode {mode!r} "
            "(exportable: rllib per_sector/shared, sb3 centralised)"
        )

    checks: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(
        prefix=".bundle-", dir=Path(out).parent if Path(out).parent.exists() else None
    ) as tmp:
        staging = Path(tmp)
        for key, wrapper in wrappers.items():
            file = files[key] if key in files else f"{key}.onnx"
            obs = _check_observations(
                obs_dim if mode != "shared" else n_feat, len(sectors), mode, rng
            )
            metadata = {
                SECTORS_METADATA: json.dumps([s for s in sectors if files[s] == file]),
                MODE_METADATA: mode,
            }
            checks[file] = export_module(wrapper, obs_dim, out_nvec, staging / file, obs, metadata)
        evaluation = {}
        if (run_dir / "evaluation.json").is_file():
            evaluation = json.loads((run_dir / "evaluation.json").read_text())
        manifest = Manifest(
            name=name or run_dir.name,
            version=version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
            scenario=ScenarioRef(name=scenario.name, digest=scenario.digest),
            sectors=sectors,
            policy_mode=mode,
            policy_files=files,
            feature_names=list(FEATURE_NAMES),
            action_schema={
                "max_lend": env_cfg.max_lend,
                "max_flex": env_cfg.max_flex,
                "sectors": {s: c.schema() for s, c in sector_codecs.items()},
            },
            files=file_entries(staging, sorted(set(files.values()))),
            training={
                k: run.get(k)
                for k in (
                    "backend",
                    "scenarios",
                    "timesteps",
                    "env_config",
                    "train_seeds",
                    "git_commit",
                    "versions",
                    "finished",
                    "warm_start",
                )
            }
            | {"export_checks": checks},
            evaluation=evaluation,
        )
        write_manifest(staging, manifest)
        out = Path(out)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staging, out)
    return manifest
