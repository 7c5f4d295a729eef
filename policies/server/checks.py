"""Request checks beyond the schemas: limits of this server, and fit to the served policy.

Each refusal is a :class:`~policies.server.errors.ClientError` naming the field.
"""

from __future__ import annotations

from policies.advice import AdviceOptions, OptionError
from policies.schemas import ForecastRequest, RecommendRequest
from policies.server.config import Settings
from policies.server.errors import ClientError
from policies.server.state import Served
from twin.live import SnapshotError
from twin.live import check_snapshot as check_fits_scenario
from twin.snapshot import OperationSnapshot


def check_snapshot(
    served: Served, snap: OperationSnapshot, settings: Settings, prefix: list[str | int]
) -> None:
    """Refuse (:class:`ClientError`) a snapshot this policy cannot answer, naming the field."""
    sc = served.scenario
    if snap.scenario != sc.name:
        raise ClientError(
            [*prefix, "scenario"],
            f"the snapshot is for scenario {snap.scenario!r}, but this server's policy "
            f"{served.policy.manifest.name} {served.version} serves {sc.name!r}",
        )
    if snap.scenario_digest is not None and snap.scenario_digest != sc.digest:
        raise ClientError(
            [*prefix, "scenario_digest"],
            f"scenario {sc.name!r} here has digest {sc.digest}, the snapshot's is "
            f"{snap.scenario_digest}: the snapshot comes from a different version of the scenario",
        )
    if snap.minute > sc.horizon_minutes:
        raise ClientError(
            [*prefix, "minute"],
            f"must be within the scenario's horizon (0..{sc.horizon_minutes} minutes)",
        )
    items = sum(st.queued + st.serving for st in snap.sectors)
    if items > settings.max_snapshot_items:
        raise ClientError(
            [*prefix, "sectors"],
            f"{items} work items; this server takes at most {settings.max_snapshot_items}",
        )
    workers = sum(g.count for g in snap.workers)
    if workers > settings.max_snapshot_workers:
        raise ClientError(
            [*prefix, "workers"],
            f"{workers} workers; this server takes at most {settings.max_snapshot_workers}",
        )
    for i, st in enumerate(snap.sectors):
        for field in ("arrival_rate_per_hour", "completion_rate_per_hour"):
            if getattr(st, field) > settings.max_rate_per_hour:
                raise ClientError(
                    [*prefix, "sectors", i, field], f"must be <= {settings.max_rate_per_hour:g}"
                )
    try:
        check_fits_scenario(sc, snap)
    except SnapshotError as err:
        raise ClientError([*prefix, *err.loc], err.msg, "snapshot_error") from None


def check_rollout_cost(
    snap: OperationSnapshot,
    samples: int,
    horizon_minutes: float,
    settings: Settings,
    loc: list[str | int],
) -> None:
    """Refuse (422) a request whose rollouts would cost more than the server's budget.

    The cost of a request's rollouts grows with the work in the snapshot, the samples
    and the horizon: ``items x samples x horizon_minutes`` (items: waiting and in
    service, at least 1) must be at most ``settings.max_rollout_cost``. Checked before
    any rollout runs; the message names the limit and what to lower.
    """
    items = max(1, sum(st.queued + st.serving for st in snap.sectors))
    cost = items * samples * horizon_minutes
    if cost > settings.max_rollout_cost:
        raise ClientError(
            loc,
            f"rollout cost items x samples x horizon_minutes = {items:,} x {samples} x "
            f"{horizon_minutes:g} = {cost:,.0f} exceeds this server's max_rollout_cost of "
            f"{settings.max_rollout_cost:,}: ask for fewer samples or a shorter horizon",
            "rollout_cost",
        )


def _option(value: int | None, default: int, limit: int, loc: list[str | int], what: str) -> int:
    if value is None:
        return default
    if value > limit:
        raise ClientError(loc, f"{what} must be <= {limit} on this server")
    return value


def request_options(defaults: AdviceOptions, req: RecommendRequest) -> AdviceOptions:
    """A request's options over the server's defaults; a 422 names one beyond its limit."""
    try:
        return defaults.requested(
            impact=req.impact,
            samples=req.samples,
            horizon_minutes=req.horizon_minutes,
            impact_scope=req.impact_scope,
            seed=req.seed,
            explain=req.explain,
            min_saving=req.min_saving,
        )
    except OptionError as err:
        raise ClientError(["body", "request", err.option], f"{err} on this server") from None


def forecast_options(settings: Settings, req: ForecastRequest) -> tuple[list[float], int, int]:
    """A forecast request's ``(hours, samples, seed)`` over the server's defaults.

    A 422 names an option beyond this server's limits.
    """
    s = settings
    opts: list[str | int] = ["body", "request"]
    samples = _option(req.samples, s.forecast_samples, s.max_samples, [*opts, "samples"], "samples")
    hours = sorted(set(req.hours if req.hours is not None else s.forecast_hours))
    if hours[-1] * 60 > s.max_horizon_minutes:
        raise ClientError(
            [*opts, "hours"], f"hours must be <= {s.max_horizon_minutes / 60:g} on this server"
        )
    seed = req.seed if req.seed is not None else s.seed
    return hours, samples, seed
