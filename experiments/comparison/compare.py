"""Strategy comparisons: strategies x seeds x scenarios, with confidence intervals.

``synctwin compare --scenario S[,S2] --strategies static,threshold,lookahead --seeds N --out DIR``
runs every (scenario, strategy, seed) once, in parallel, with **common random numbers**:
seed ``k`` gives every strategy the same arrivals and absences (the twin draws them from
their own named streams, whatever the controller does), so strategies are compared
*paired*, seed by seed. Runs go out in batches to local processes or, with
``--address HOST:PORT``, to a Ray cluster (:mod:`experiments.comparison.executors`); each
finished batch is streamed to ``DIR/runs`` (:mod:`experiments.comparison.store`) and the
outputs below are built from there at the end, so the results do not depend on where
the runs ran.

Outputs in ``DIR``:

- ``results.parquet`` — one row per run: scenario, strategy, seed, every total KPI,
  every per-sector KPI as ``sector.kpi``, per-sector queue mean/peak (``sector.queue_mean``,
  ``sector.queue_peak``, from the 15-minute time series), and the controller's compute
  cost (``decisions``, ``decide_seconds_mean``, ``decide_seconds_max``, ``wall_seconds``).
- ``summary.csv`` — per scenario, strategy and KPI (totals and per sector): ``n``, ``mean``,
  ``ci95_low``, ``ci95_high`` (Student-t), the paired difference against the *first*
  strategy (``diff_mean``, ``diff_ci95_low``, ``diff_ci95_high``, Student-t on the per-seed
  differences) and ``normalized`` = mean / mean of ``static`` (when static is compared).
  It holds no timings, so the same seeds give the same file byte for byte.
- ``timeseries.parquet`` — the 15-minute time series of the representative seed (the
  first one) for every scenario and strategy.
- ``timing.csv`` — compute cost per decision by scenario and strategy.
- ``report.html`` — the planner's report (:mod:`experiments.reporting.comparison`).
- ``compare.json`` — what was run: scenarios (with digests), strategies, seeds.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from agents import StrategyError, check_strategy, tuning_of
from experiments.comparison.executors import Executor, open_executor
from experiments.comparison.runs import (
    Run,
    RunResult,
    TimedController,
    make_batches,
    portable_strategy,
    run_batch,
    run_one,
    runs_per_task,
)
from experiments.comparison.store import RUN_COLUMN, RunStore, write_json
from experiments.comparison.strategies import POLICY_PREFIX, controller_for
from twin.kpis import KPI_NAMES
from twin.scenario import Scenario, ScenarioError, load_scenario
from twin.stats import paired_difference, paired_ratio, t_interval

__all__ = ["Run", "RunResult", "TimedController", "run_one"]

ID_COLUMNS = ("scenario", "strategy", "seed")
TIMING_COLUMNS = ("decisions", "decide_seconds_mean", "decide_seconds_max", "wall_seconds")
BASELINE = "static"


def kpi_columns(results: pd.DataFrame) -> list[str]:
    """The KPI columns of a results table: totals first, then ``sector.kpi``."""
    totals = [k for k in KPI_NAMES if k in results.columns]
    sectors = [c for c in results.columns if "." in c and c.split(".", 1)[1] in KPI_NAMES]
    return totals + sectors


def summarize(
    results: pd.DataFrame, strategies: Sequence[str], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per scenario, strategy and KPI: mean with its 95% interval, the paired difference
    against ``strategies[0]`` with its interval, and the mean normalised to ``static``."""
    columns = list(columns) if columns is not None else kpi_columns(results)
    rows = []
    for scenario in dict.fromkeys(results["scenario"]):
        sub = results[results["scenario"] == scenario]
        by = {s: sub[sub["strategy"] == s].set_index("seed").sort_index() for s in strategies}
        ref = by[strategies[0]]
        static = by.get(BASELINE)
        for strategy in strategies:
            cur = by[strategy]
            seeds = cur.index.intersection(ref.index)
            for kpi in columns:
                est = t_interval(cur[kpi].to_numpy())
                diff = paired_difference(
                    cur.loc[seeds, kpi].to_numpy(), ref.loc[seeds, kpi].to_numpy()
                )
                norm = float("nan")
                if static is not None:
                    base = float(static[kpi].mean())
                    norm = est.mean / base if base != 0 else float("nan")
                rows.append(
                    {
                        "scenario": scenario,
                        "strategy": strategy,
                        "kpi": kpi,
                        "n": len(cur),
                        "mean": est.mean,
                        "ci95_low": est.low,
                        "ci95_high": est.high,
                        "diff_vs": strategies[0],
                        "diff_mean": diff.mean,
                        "diff_ci95_low": diff.low,
                        "diff_ci95_high": diff.high,
                        "normalized": norm,
                    }
                )
    return _with_gap_closed(pd.DataFrame(rows), results, strategies)


#: the strategy the hindsight bound improves on, and the bound
GAP_FROM, GAP_TO = "threshold", "hindsight"


def _with_gap_closed(
    summary: pd.DataFrame, results: pd.DataFrame, strategies: Sequence[str]
) -> pd.DataFrame:
    """Add ``gap_closed`` (with its 95% interval) to the ``total_cost`` rows when both
    threshold and hindsight ran: ``(threshold - strategy) / (threshold - hindsight)``,
    seed by seed (paired), 1 for hindsight itself, 0 for threshold."""
    if GAP_FROM not in strategies or GAP_TO not in strategies:
        return summary
    summary = summary.assign(gap_closed=np.nan, gap_ci95_low=np.nan, gap_ci95_high=np.nan)
    for scenario in dict.fromkeys(results["scenario"]):
        sub = results[results["scenario"] == scenario]
        cost = sub.pivot_table(index="seed", columns="strategy", values="total_cost")
        cost = cost.dropna(subset=[GAP_FROM, GAP_TO])
        gap = (cost[GAP_FROM] - cost[GAP_TO]).to_numpy()
        for strategy in strategies:
            if strategy not in cost:
                continue
            saved = (cost[GAP_FROM] - cost[strategy]).to_numpy()
            ok = np.isfinite(saved)
            g = paired_ratio(saved[ok], gap[ok])
            at = (
                (summary["scenario"] == scenario)
                & (summary["strategy"] == strategy)
                & (summary["kpi"] == "total_cost")
            )
            summary.loc[at, ["gap_closed", "gap_ci95_low", "gap_ci95_high"]] = [
                g.mean,
                g.low,
                g.high,
            ]
    return summary


def timing_table(results: pd.DataFrame) -> pd.DataFrame:
    """Compute cost per decision by scenario and strategy (means over the runs)."""
    g = results.groupby(["scenario", "strategy"], sort=False)
    out = g.agg(
        runs=("seed", "size"),
        decisions_per_run=("decisions", "mean"),
        decide_ms_mean=("decide_seconds_mean", lambda s: 1e3 * s.mean()),
        decide_ms_max=("decide_seconds_max", lambda s: 1e3 * s.max()),
        run_seconds_mean=("wall_seconds", "mean"),
    )
    return out.reset_index()


@dataclass
class Comparison:
    """Everything a comparison produced (also written to its directory)."""

    results: pd.DataFrame
    summary: pd.DataFrame
    timeseries: pd.DataFrame
    timing: pd.DataFrame
    scenarios: dict[str, Scenario]
    strategies: list[str]
    seeds: list[int]
    #: (scenario, strategy) -> ``tuned`` / ``untuned`` / ``stale`` for threshold-based ones
    tuning: dict[tuple[str, str], str] = field(default_factory=dict)
    #: the directory whose ``compare.json`` already records this comparison (its run store)
    recorded_in: Path | None = None

    @property
    def baseline(self) -> str:
        """The strategy every mean is normalised to (``normalized`` in the summary)."""
        return BASELINE


@dataclass(frozen=True)
class ComparePlan:
    """A checked comparison (:func:`check_plan`): what :func:`run_plan` runs, unchecked."""

    #: every scenario as given (built-in name or YAML path) -> loaded
    scenarios: dict[str, Scenario]
    strategies: list[str]
    seeds: list[int]
    #: (scenario name, strategy) -> :func:`agents.tuning_of` label, threshold-based ones only
    tuning: dict[tuple[str, str], str]

    def record(self) -> dict[str, object]:
        """The plan as ``compare.json`` records it (see :func:`comparison_plan`)."""
        return comparison_plan(self.scenarios, self.strategies, self.seeds)


def check_plan(
    scenarios: Sequence[str], strategies: Sequence[str], seeds: int | Sequence[int]
) -> ComparePlan:
    """Load every scenario and build every controller once, so bad names fail before any run.

    Args:
        scenarios: built-in names or YAML paths.
        strategies: strategy names (the first is the reference of the paired differences).
        seeds: how many seeds (``0 .. seeds-1``) or the seeds themselves.

    Raises:
        ScenarioError: no scenario, one named twice, an unknown one or an invalid file.
        StrategyError: no strategy, one named twice, an unknown one or a bad tuned file.
        BundleError: a ``policy:DIR`` bundle that is missing, corrupt or incompatible.
        ValueError: no seed.
    """
    if not scenarios:
        raise ScenarioError("give at least one scenario (--scenario NAME[,NAME...])")
    if not strategies:
        raise StrategyError("give at least one strategy (--strategies NAME[,NAME...])")
    for kind, names, error in (
        ("scenario", scenarios, ScenarioError),
        ("strategy", strategies, StrategyError),
    ):
        twice = _named_twice(names)
        if twice:
            raise error(f"{kind} {', '.join(map(repr, twice))} is named twice; name each once")
    for s in strategies:
        if not s.startswith(POLICY_PREFIX):
            try:
                check_strategy(s)
            except StrategyError as err:
                raise StrategyError(f"{err}; or {POLICY_PREFIX}BUNDLE_DIR") from None
    loaded = {}
    tuning = {}
    for name in scenarios:
        sc = load_scenario(name)
        loaded[name] = sc
        for s in strategies:
            controller = controller_for(s, sc, 0)
            label = None if s.startswith(POLICY_PREFIX) else tuning_of(controller)
            if label is not None:
                tuning[(sc.name, s)] = label
    same = _named_twice([sc.name for sc in loaded.values()])
    if same:
        raise ScenarioError(f"two scenarios are both named {same[0]!r}; give each its own name")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("give at least one seed")
    return ComparePlan(loaded, list(strategies), seed_list, tuning)


def _named_twice(names: Sequence[str]) -> list[str]:
    return sorted({n for n in names if list(names).count(n) > 1})


def comparison_plan(
    loaded: dict[str, Scenario], strategies: Sequence[str], seeds: Sequence[int]
) -> dict[str, object]:
    """What a comparison runs, as ``compare.json`` records it (a resume must match it)."""
    return {
        "scenarios": {sc.name: sc.digest for sc in loaded.values()},
        "strategies": list(strategies),
        "seeds": list(seeds),
        "representative_seed": seeds[0],
        "reference_strategy": strategies[0],
    }


def run_compare(
    scenarios: Sequence[str],
    strategies: Sequence[str],
    seeds: int | Sequence[int],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    out: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    address: str | None = None,
) -> Comparison:
    """:func:`check_plan`, then :func:`run_plan` (see both for the arguments).

    Raises:
        ScenarioError, StrategyError, BundleError, ValueError: see :func:`check_plan`.
        CompareDirError: ``out`` cannot take this comparison (checked before any run).
        ClusterError: no usable Ray cluster at ``address``.
    """
    plan = check_plan(scenarios, strategies, seeds)
    return run_plan(
        plan,
        workers=workers,
        progress=progress,
        out=out,
        resume=resume,
        overwrite=overwrite,
        address=address,
    )


def plan_runs(plan: ComparePlan) -> list[Run]:
    """Every run of a plan, in plan order (its index is the run's name on disk)."""
    return [
        Run(sc, st, seed, keep_timeseries=(i == 0), controller=portable_strategy(st))
        for sc in plan.scenarios.values()
        for st in plan.strategies
        for i, seed in enumerate(plan.seeds)
    ]


def run_plan(
    plan: ComparePlan,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    out: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    address: str | None = None,
    runs_per_task: int | None = None,
) -> Comparison:
    """Run every scenario x strategy x seed of a checked plan and summarise.

    Runs go out in batches (:mod:`experiments.comparison.runs`) to this machine's processes
    or a Ray cluster (:mod:`experiments.comparison.executors`); each finished batch is
    streamed to the run store at once, and the results are read back from it at the end.

    Args:
        plan: from :func:`check_plan` (not checked again).
        workers: processes (default: all cores; 1 runs in this process); ignored with
            ``address``.
        progress: called with the number of runs just finished (resumed ones first).
        out: keep every run in this directory as it finishes
            (:class:`experiments.comparison.store.RunStore`, which records the plan in
            ``compare.json``); without it the runs stream to a temporary directory.
        resume: with ``out``, run only what a comparison there has not finished.
        overwrite: with ``out``, replace a comparison already there.
        address: ``HOST:PORT`` of a Ray cluster to run on instead of local processes.
        runs_per_task: runs per batch (default: sized from the first run's wall time).

    Raises:
        CompareDirError: ``out`` cannot take this comparison (checked before any run).
        ClusterError: no usable Ray cluster at ``address`` (before any run).
    """
    if out is None:
        with tempfile.TemporaryDirectory(prefix="synctwin-compare-") as tmp:
            cmp = run_plan(
                plan,
                workers=workers,
                progress=progress,
                out=Path(tmp),
                address=address,
                runs_per_task=runs_per_task,
            )
        cmp.recorded_in = None
        return cmp
    jobs = plan_runs(plan)
    store = RunStore(out, plan.record())
    store.check(resume=resume, overwrite=overwrite)
    # join the cluster before the directory changes: a bad address loses nothing
    executor = open_executor(workers, address)
    try:
        done = store.open(resume=resume, overwrite=overwrite)
        if progress is not None and done:
            progress(len(done))
        todo = [i for i in range(len(jobs)) if i not in done]
        if todo:
            _run_todo(jobs, todo, store, executor, runs_per_task, progress)
    finally:
        executor.close()
    return _collect(plan, jobs, store, out)


def _run_todo(
    jobs: list[Run],
    todo: list[int],
    store: RunStore,
    executor: Executor,
    size: int | None,
    progress: Callable[[int], None] | None,
) -> None:
    """Run the plan indices ``todo``, streaming every finished batch to ``store``.

    Without a fixed ``size``, the first run goes alone in this process and its wall time
    sizes the batches (:func:`~experiments.comparison.runs.runs_per_task`); the slowest
    strategies go first, so the estimate errs toward smaller batches.
    """
    if size is None:
        first = make_batches(jobs, todo, 1)[0]
        t0 = time.perf_counter()
        store.save(run_batch(first))
        if progress is not None:
            progress(1)
        todo = [i for i in todo if i not in first.indices]
        size = runs_per_task(time.perf_counter() - t0, len(todo), executor.cpus)
    for results in executor.run(make_batches(jobs, todo, size)):
        store.save(results)
        if progress is not None:
            progress(len(results))


def _collect(plan: ComparePlan, jobs: list[Run], store: RunStore, out: Path) -> Comparison:
    """The comparison as the run store holds it (every finished run, in plan order)."""
    strategies = plan.strategies
    frame = store.results().drop(columns=[RUN_COLUMN])
    names = [sc.name for sc in plan.scenarios.values()]
    frame["scenario"] = pd.Categorical(frame["scenario"], categories=names)
    frame["strategy"] = pd.Categorical(frame["strategy"], categories=list(strategies))
    frame = frame.sort_values(list(ID_COLUMNS), kind="stable").reset_index(drop=True)
    frame["scenario"] = frame["scenario"].astype(str)
    frame["strategy"] = frame["strategy"].astype(str)
    ts_parts = [store.timeseries(i) for i, job in enumerate(jobs) if job.keep_timeseries]
    kept = [ts for ts in ts_parts if ts is not None]
    ts = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    tuning = plan.tuning
    summary = summarize(frame, strategies)
    summary.insert(
        summary.columns.get_loc("n"),
        "thresholds",
        [
            tuning.get((sc, st), "")
            for sc, st in zip(summary["scenario"], summary["strategy"], strict=True)
        ],
    )
    return Comparison(
        results=frame,
        summary=summary,
        timeseries=ts,
        timing=timing_table(frame),
        scenarios={sc.name: sc for sc in plan.scenarios.values()},
        strategies=list(strategies),
        seeds=list(plan.seeds),
        tuning=dict(tuning),
        recorded_in=out,
    )


def write_comparison(cmp: Comparison, out: Path, report: bool = True) -> list[Path]:
    """Write the comparison's files into ``out`` (see the module docstring)."""
    from experiments.reporting.comparison import write_report

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.parquet", out / "summary.csv", out / "timeseries.parquet"]
    cmp.results.to_parquet(paths[0], index=False)
    cmp.summary.to_csv(paths[1], index=False, float_format="%.10g")
    cmp.timeseries.to_parquet(paths[2], index=False)
    paths.append(out / "timing.csv")
    cmp.timing.to_csv(paths[-1], index=False, float_format="%.6g")
    paths.append(out / "compare.json")
    if cmp.recorded_in is None or Path(cmp.recorded_in).resolve() != out.resolve():
        write_json(paths[-1], comparison_plan(cmp.scenarios, cmp.strategies, cmp.seeds))
    if report:
        paths.append(out / "report.html")
        write_report(cmp, paths[-1])
    return paths


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows a planner reads first: total KPIs that matter, one row per strategy."""
    keep = ["total_cost", "sla_misses", "overtime_hours", "flex_hours", "transfers"]
    return summary[summary["kpi"].isin(keep)]
