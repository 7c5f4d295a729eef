"""The policy server's configuration: one :class:`Settings`, validated at start.

From environment variables prefixed ``SYNCTWIN_`` or the ``synctwin serve`` options;
:func:`advice_defaults` turns it into what a recommendation request gets by default.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from policies.advice import (
    IMPACT_HORIZON_MINUTES,
    IMPACT_SAMPLES,
    MAX_HORIZON_MINUTES,
    MAX_SAMPLES,
    MIN_SAVING,
    AdviceOptions,
)
from policies.store.url import parse_store_url

#: Default budget of one request's rollouts, in item-sample-minutes (items in the
#: snapshot x samples x horizon): 2,000 items at 32 samples and 480 minutes fit, the
#: largest snapshot at the largest options (100,000 x 32 x 480) does not.
MAX_ROLLOUT_COST = 50_000_000

#: Largest batch of ``POST /v1/sites/{site}/events``, in events.
MAX_SITE_BATCH = 10_000


class SiteSpec(BaseModel):
    """A live site: its name (in the URL), its scenario, and when its stream starts.

    ``scenario`` is a built-in name or a YAML path (relative to the working directory);
    ``start`` defaults to the twin's own log start for that scenario
    (:func:`twin.eventlog.log_start`), so a log written by ``synctwin simulate
    --log-events`` fits as is.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    scenario: str = Field(min_length=1)
    start: str | None = Field(None, description="ISO 8601 (kept as text: settings travel as JSON)")

    @field_validator("start", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        if isinstance(value, datetime):  # YAML reads an unquoted timestamp as one
            return value.isoformat()
        if isinstance(value, str):
            datetime.fromisoformat(value)  # ValueError: not a timestamp
        return value


class Settings(BaseSettings):
    """Everything the server is configured with; from ``SYNCTWIN_*`` or the CLI.

    Rollout limits bound the CPU one request may ask for; requests beyond them get a
    422 naming the option. ``rollout_concurrency`` requests may run rollouts at
    once; more wait up to ``rollout_wait_seconds`` and then get a 503. Rollouts run
    in ``rollout_workers`` processes (:mod:`policies.rollout_pool`), so cheap routes
    keep their latency (on a machine with cores to spare, ``rollout_cpus`` keeps them off
    the cores that serve); a request's rollouts stop when its client disconnects or
    after ``rollout_deadline_seconds`` (503).
    """

    model_config = SettingsConfigDict(env_prefix="SYNCTWIN_", frozen=True, extra="forbid")

    policy: Path = Field(description="the policy bundle directory to serve")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    api_key: SecretStr | None = Field(None, description="required in X-API-Key if set")
    admin_key: SecretStr | None = Field(None, description="for admin routes; none: disabled")
    log: Path | None = Field(None, description="decision log (JSONL); none: in memory")
    store: str | None = Field(
        None,
        description="store URL (sqlite:///PATH, postgresql://...); none: a SQLite file beside "
        "the log (decisions.jsonl -> decisions.sqlite), or memory without a log",
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger bodies get a 413")
    impact: bool = Field(True, description="estimate impact unless a request says otherwise")
    impact_samples: int = Field(IMPACT_SAMPLES, ge=2, description="rollouts per arm for impact")
    impact_horizon_minutes: int = Field(
        IMPACT_HORIZON_MINUTES, ge=1, description="impact rollout horizon"
    )
    impact_scope: Literal["per_sector", "total"] = Field(
        "per_sector", description="default impact_scope of requests (see RecommendRequest)"
    )
    min_saving: float = Field(
        MIN_SAVING, ge=0, description="smallest predicted cost saving for a listed action"
    )
    forecast_hours: tuple[float, ...] = Field((1.0, 2.0, 3.0, 4.0), min_length=1)
    forecast_samples: int = Field(8, ge=2)
    max_samples: int = Field(MAX_SAMPLES, ge=2, description="largest samples a request may ask for")
    max_horizon_minutes: int = Field(
        MAX_HORIZON_MINUTES, ge=1, description="longest rollout a request may ask"
    )
    max_rollout_cost: int = Field(
        MAX_ROLLOUT_COST,
        ge=1,
        description="largest items x samples x horizon_minutes of one request's rollouts",
    )
    max_snapshot_items: int = Field(100_000, ge=1, description="work items in one snapshot")
    max_snapshot_workers: int = Field(10_000, ge=1, description="workers in one snapshot")
    max_rate_per_hour: float = Field(1e6, gt=0, description="largest arrival/completion rate")
    rollout_concurrency: int = Field(2, ge=1, description="requests running rollouts at once")
    rollout_wait_seconds: float = Field(30.0, ge=0, description="wait for a slot, then 503")
    rollout_workers: int | None = Field(
        None,
        ge=0,
        description="processes that run rollouts (none: one per core; 0: in the server itself)",
    )
    rollout_cpus: tuple[int, ...] | None = Field(
        None,
        min_length=1,
        description="CPUs the rollout processes may use, e.g. [1] (Linux; none: any; "
        "rollout_workers then defaults to one per CPU given)",
    )
    rollout_deadline_seconds: float = Field(
        30.0, gt=0, description="a request's rollouts stop after this long (503)"
    )
    seed: int = Field(0, ge=0, description="first rollout seed (same request, same answer)")
    reload_state_file: Path | None = Field(
        None, description="shared by worker processes so a reload reaches all of them"
    )
    sites: tuple[SiteSpec, ...] = Field(
        (), description="live sites (name, scenario, start) with their own event streams"
    )
    max_site_batch: int = Field(
        MAX_SITE_BATCH, ge=1, description="most events in one POST /v1/sites/{site}/events"
    )
    alerts: bool = Field(True, description="raise risk alerts on live sites (policies/alerts.py)")
    alert_probability: float = Field(
        0.6, gt=0, le=1, description="forecast probability at which a forming risk is alerted"
    )
    alert_min_misses: int = Field(2, ge=1, description="SLA misses in a sector that are a risk")
    alert_samples: int = Field(8, ge=1, description="rollouts per alert assessment")
    alert_horizon_hours: float = Field(3.0, gt=0, le=24, description="how far alerts look ahead")
    webhook: str | None = Field(
        None, pattern=r"^https?://", description="URL that alerts and outcomes are POSTed to"
    )
    webhook_attempts: int = Field(5, ge=1, description="tries per webhook post")
    webhook_backoff_seconds: float = Field(
        0.5, gt=0, description="wait before the 2nd try; doubles after each failed try"
    )

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_store_url(value)  # a StoreUrlError (a ValueError) names what is wrong
        return value

    @field_validator("rollout_cpus", mode="before")
    @classmethod
    def _cpu_list(cls, value: object) -> object:
        if isinstance(value, int):  # SYNCTWIN_ROLLOUT_CPUS=1 arrives decoded as JSON
            return [value]
        if isinstance(value, str):  # "2,3"
            parts = [part.strip() for part in value.split(",")]
            if not all(p.isdigit() for p in parts):
                raise ValueError(f"expected CPU numbers such as 1 or 2,3, got {value!r}")
            return [int(p) for p in parts]
        return value

    @field_validator("rollout_cpus")
    @classmethod
    def _cpus_we_have(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return value
        if not hasattr(os, "sched_setaffinity"):
            raise ValueError("rollout_cpus needs CPU affinity, which this system does not offer")
        ours = os.sched_getaffinity(0)
        missing = sorted(set(value) - ours)
        if missing:
            raise ValueError(
                f"CPU {', '.join(map(str, missing))} is not available to this process "
                f"(available: {', '.join(map(str, sorted(ours)))})"
            )
        return tuple(sorted(set(value)))

    @field_validator("sites")
    @classmethod
    def _unique_sites(cls, value: tuple[SiteSpec, ...]) -> tuple[SiteSpec, ...]:
        names = [s.name for s in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"site names must be unique: {', '.join(twice)} given twice")
        return value

    @model_validator(mode="after")
    def _keys_differ(self) -> Settings:
        if (
            self.api_key is not None
            and self.admin_key is not None
            and self.api_key.get_secret_value() == self.admin_key.get_secret_value()
        ):
            raise ValueError("api_key and admin_key must differ")
        if max(self.forecast_hours) * 60 > self.max_horizon_minutes:
            raise ValueError("forecast_hours must lie within max_horizon_minutes")
        if self.impact_horizon_minutes > self.max_horizon_minutes:
            raise ValueError("impact_horizon_minutes exceeds max_horizon_minutes")
        if max(self.impact_samples, self.forecast_samples) > self.max_samples:
            raise ValueError("impact_samples and forecast_samples must be <= max_samples")
        return self


def advice_defaults(settings: Settings) -> AdviceOptions:
    """The server's defaults and limits for recommendations, from its settings."""
    return AdviceOptions(
        impact=settings.impact,
        samples=settings.impact_samples,
        horizon_minutes=settings.impact_horizon_minutes,
        impact_scope=settings.impact_scope,
        seed=settings.seed,
        min_saving=settings.min_saving,
        max_samples=settings.max_samples,
        max_horizon_minutes=settings.max_horizon_minutes,
    )
