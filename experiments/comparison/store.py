"""A comparison's finished runs on disk, streamed as they finish, so none is ever lost.

A long ``synctwin compare`` may be interrupted (Ctrl-C, a closed laptop, a lost cluster,
a crash in one run). Every run that finished is already in its output directory, and
``synctwin compare ... --resume`` runs only the rest:

- ``compare.json`` — the plan (scenarios with their digests, strategies, seeds), written
  before the first run; a resume must ask for the same plan.
- ``runs/part-NNNNN.parquet`` — the KPI rows of one finished batch (one task's runs, of one
  scenario and strategy), ``NNNNN`` the plan index of its first run, with the plan index of
  every run in column ``run``. Parquet keeps every float64 exactly, so a resumed comparison
  writes the same ``summary.csv`` as an uninterrupted one. The driver holds no finished
  row in memory: each batch goes to disk as it arrives, so memory stays flat however many
  runs a comparison has, and the results are read back once, at the end.
- ``runs/NNNNN.parquet`` — the time series of run ``NNNNN`` when it is kept (the
  representative seed), written before its part: a run in a part is whole.
- ``runs/NNNNN.json`` — one run's row as earlier versions kept it; still read on resume.

Every file is written to a temporary name and renamed, so a batch is on disk whole or not
at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from experiments.paths import check_output_dir

if TYPE_CHECKING:
    from experiments.comparison.runs import RunResult

#: the column of a part file that holds each run's index in the plan
RUN_COLUMN = "run"

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

    def open(self, resume: bool = False, overwrite: bool = False) -> set[int]:
        """:meth:`check`, then prepare the directory; the runs already finished (``resume``)."""
        self.check(resume=resume, overwrite=overwrite)
        if resume:
            return self.done()
        self.clear()
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(self.directory / "compare.json", self.plan)
        return set()

    def clear(self) -> None:
        """Remove the comparison's own files (and nothing else) from the directory."""
        for name in OUTPUTS:
            path = self.directory / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def save(self, results: Sequence[tuple[int, RunResult]]) -> None:
        """Keep one finished batch: the time series first, then the part that marks its
        runs as done."""
        if not results:
            return
        self.runs.mkdir(parents=True, exist_ok=True)
        for index, result in results:
            ts = result.timeseries
            if ts is not None:
                _atomic_write(
                    self.runs / f"{index:05d}.parquet",
                    lambda p, ts=ts: ts.to_parquet(p, index=False),
                )
        part = pd.DataFrame([{RUN_COLUMN: i, **r.row} for i, r in results])
        first = min(i for i, _ in results)
        _atomic_write(
            self.runs / f"part-{first:05d}.parquet", lambda p: part.to_parquet(p, index=False)
        )

    def _parts(self) -> list[Path]:
        return sorted(self.runs.glob("part-*.parquet")) if self.runs.is_dir() else []

    def _legacy(self) -> list[Path]:
        return sorted(self.runs.glob("[0-9]*.json")) if self.runs.is_dir() else []

    def done(self) -> set[int]:
        """Plan indices of the runs finished so far (reads only the ``run`` column)."""
        found = {int(p.stem) for p in self._legacy()}
        for path in self._parts():
            found.update(pq.read_table(path, columns=[RUN_COLUMN])[RUN_COLUMN].to_pylist())
        return found

    def results(self) -> pd.DataFrame:
        """Every finished run's row, in plan order, with its plan index in ``run``.

        Columns come in the order the first run of each scenario wrote them (parts hold one
        scenario each), so the table does not depend on how the runs were batched.
        """
        frames = [pd.read_parquet(p) for p in self._parts()]
        legacy = [{RUN_COLUMN: int(p.stem), **json.loads(p.read_text())} for p in self._legacy()]
        if legacy:
            frames.append(pd.DataFrame(legacy))
        if not frames:
            return pd.DataFrame(columns=[RUN_COLUMN])
        frames.sort(key=lambda f: int(f[RUN_COLUMN].min()))
        columns = list(dict.fromkeys(c for f in frames for c in f.columns))
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.drop_duplicates(RUN_COLUMN).sort_values(RUN_COLUMN, kind="stable")
        return frame[columns].reset_index(drop=True)

    def timeseries(self, index: int) -> pd.DataFrame | None:
        """A finished run's kept time series (``None`` if it kept none)."""
        path = self.runs / f"{index:05d}.parquet"
        return pd.read_parquet(path) if path.is_file() else None
