"""Run directories: the manifest, metrics (CSV + TensorBoard) and checkpoint bookkeeping.

Layout (what :func:`training.export.export_run` reads)::

    RUN_DIR/
      run.json              manifest: backend, scenarios, policy_mode, env_config, config,
                            seeds, versions, git commit, progress
      metrics.csv           one row per training iteration (appended on --resume)
      tb/                   TensorBoard event files (when tensorboardX is installed)
      checkpoints/iter_N/   RLlib checkpoints (Algorithm.save_to_path)
      checkpoints/latest    the name of the newest checkpoint
      evaluation.json       the latest evaluation (copied into exported manifests)
      sb3/model.zip         the SB3 backend's model
"""

from __future__ import annotations

import csv
import json
import math
import platform
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: packages whose versions go into the manifest
VERSIONED = ("ray", "torch", "gymnasium", "mesa", "stable-baselines3", "numpy", "onnx")


class TrainingError(ValueError):
    """A user error in a training request (bad run dir, nothing to resume, ...)."""


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a run (None when missing)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The source tree's commit (``+dirty`` if modified), or None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_run_dir(run_dir: Path, resume: bool, backend: str) -> None:
    """Refuse a run directory early, before Ray starts, with the errors of
    :func:`prepare_run_dir` and, on resume, a run of another backend or no checkpoint."""
    if not resume:
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            prepare_run_dir(run_dir, resume=False)  # raises the error
        return
    previous = prepare_run_dir(run_dir, resume=True)
    assert previous is not None
    if previous.get("backend") != backend:
        raise TrainingError(
            f"--resume: {run_dir} is a {previous.get('backend')} run, not {backend}"
        )
    if backend == "rllib" and latest_checkpoint(run_dir) is None:
        raise TrainingError(f"--resume: {run_dir} has no checkpoint to continue from")
    if backend == "sb3" and not (run_dir / "sb3" / "model.zip").is_file():
        raise TrainingError(f"--resume: {run_dir} has no SB3 model to continue from")


def prepare_run_dir(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """Check ``run_dir`` for a new run or a resume; the existing manifest when resuming.

    Raises:
        TrainingError: a non-empty directory without ``--resume``, or ``--resume`` with
            no run (or no checkpoint) to continue.
    """
    run_file = run_dir / "run.json"
    if resume:
        if not run_file.is_file():
            raise TrainingError(f"--resume: {run_dir} holds no training run (no run.json)")
        return json.loads(run_file.read_text())
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise TrainingError(
            f"run directory {run_dir} already exists; pass --resume to continue it "
            "or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``run.json`` atomically (a killed trainer never leaves half a manifest)."""
    tmp = run_dir / "run.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(run_dir / "run.json")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``checkpoints/latest`` names, if it exists."""
    latest = run_dir / "checkpoints" / "latest"
    if latest.is_file():
        path = run_dir / "checkpoints" / latest.read_text().strip()
        if path.is_dir():
            return path
    return None


def mark_latest(run_dir: Path, name: str, keep: int = 3) -> None:
    """Point ``checkpoints/latest`` at ``name`` and delete all but the newest ``keep``."""
    ckpts = run_dir / "checkpoints"
    tmp = ckpts / "latest.tmp"
    tmp.write_text(name + "\n")
    tmp.replace(ckpts / "latest")
    old = sorted(p for p in ckpts.glob("iter_*") if p.is_dir() and p.name != name)
    for path in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)


class MetricsSink:
    """One row per iteration to ``metrics.csv`` (appended) and to TensorBoard.

    The CSV header is the first row's keys; later rows with new keys keep the file
    readable by writing those columns only if they were in the header (keys are
    fixed per backend, so this only matters for hand-made rows).
    """

    def __init__(self, run_dir: Path, columns: list[str]) -> None:
        self.path = run_dir / "metrics.csv"
        self.columns = columns
        new = not self.path.is_file() or self.path.stat().st_size == 0
        if not new:
            with self.path.open() as f:
                header = next(csv.reader(f), None)
            if header:
                self.columns = header
        self._file = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self._tb = None
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:  # TensorBoard logging is optional
            self._tb = None

    def write(self, row: Mapping[str, Any], step: int) -> None:
        self._csv.writerow({k: _fmt(v) for k, v in row.items()})
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key in ("iteration", "env_steps") or not isinstance(value, int | float):
                    continue
                if math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """The rows of ``metrics.csv`` (empty when there is none)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))
