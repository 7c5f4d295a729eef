"""A comparison's finished runs on disk, written as each finishes, so none is ever lost.

A long ``synctwin compare`` may be interrupted (Ctrl-C, a closed laptop, a crash in one
run). Every run that finished is already in its output directory, and
``synctwin compare ... --resume`` runs only the rest:

- ``compare.json`` — the plan (scenarios with their digests, strategies, seeds), written
  before the first run; a resume must ask for the same plan.
- ``runs/NNNNN.json`` — one finished run's KPI row (JSON keeps every float exactly, so a
  resumed comparison writes the same ``summary.csv`` as an uninterrupted one), ``NNNNN``
  its index in the plan; ``runs/NNNNN.parquet`` its time series when it is kept.

Every file is written to a temporary name and renamed, so a run is on disk whole or not at
all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.paths import check_output_dir

#: every file a comparison writes into its directory (``--overwrite`` removes only these)
OUTPUTS = (
    "compare.json",
    "results.parquet",
    "summary.csv",
    "timeseries.parquet",
    "timing.csv",
    "report.html",
    "runs",
)


class CompareDirError(ValueError):
    """The output directory cannot take this comparison; the message says why and what to do."""


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


class RunStore:
    """The finished runs of one comparison plan in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path, plan: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.plan = plan
        self.runs = self.directory / "runs"

    def holds_results(self) -> bool:
        return any((self.directory / name).exists() for name in OUTPUTS)

    def check(self, resume: bool = False, overwrite: bool = False) -> None:
        """Check, changing nothing, that the directory can take this plan.

        Raises:
            CompareDirError: the directory already holds results and neither ``resume`` nor
                ``overwrite`` was asked; ``resume`` with nothing to resume or another plan.
            OutputPathError: the directory is a file, or lies under one.
        """
        check_output_dir(self.directory)
        meta = self.directory / "compare.json"
        if resume:
            if not meta.is_file():
                raise CompareDirError(f"--resume: {self.directory} holds no comparison to resume")
            stored = json.loads(meta.read_text())
            stored_plan = {k: stored.get(k) for k in self.plan}
            if stored_plan != self.plan:
                diff = [k for k in self.plan if stored_plan[k] != self.plan[k]]
                raise CompareDirError(
                    f"--resume: {self.directory} holds another comparison ({', '.join(diff)} "
                    f"differ: it has {', '.join(f'{k}={stored_plan[k]}' for k in diff)}); "
                    "resume it with the same options, or choose another --out"
                )
        elif self.holds_results() and not overwrite:
            raise CompareDirError(
                f"--out {self.directory} already holds a comparison; pass --overwrite to "
                "replace it, --resume to continue it, or choose another --out"
            )

    def open(self, resume: bool = False, overwrite: bool = False) -> dict[int, dict[str, Any]]:
        """:meth:`check`, then prepare the directory; the runs already finished (``resume``)."""
        self.check(resume=resume, overwrite=overwrite)
        if resume:
            return self._load()
        self.clear()
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(self.directory / "compare.json", self.plan)
        return {}

    def clear(self) -> None:
        """Remove the comparison's own files (and nothing else) from the directory."""
        for name in OUTPUTS:
            path = self.directory / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def save(self, index: int, row: dict[str, Any], timeseries: pd.DataFrame | None) -> None:
        """Keep one finished run (its time series first: the row marks the run as done)."""
        self.runs.mkdir(parents=True, exist_ok=True)
        if timeseries is not None:
            _atomic_write(
                self.runs / f"{index:05d}.parquet",
                lambda p: timeseries.to_parquet(p, index=False),
            )
        write_json(self.runs / f"{index:05d}.json", row)

    def _load(self) -> dict[int, dict[str, Any]]:
        done: dict[int, dict[str, Any]] = {}
        for path in sorted(self.runs.glob("[0-9]*.json")) if self.runs.is_dir() else []:
            done[int(path.stem)] = json.loads(path.read_text())
        return done

    def timeseries(self, index: int) -> pd.DataFrame | None:
        """A finished run's kept time series (``None`` if it kept none)."""
        path = self.runs / f"{index:05d}.parquet"
        return pd.read_parquet(path) if path.is_file() else None
