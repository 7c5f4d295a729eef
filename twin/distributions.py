"""Duration distributions used by scenarios (service times, failures, repairs).

Every distribution is a frozen pydantic model with a ``dist`` tag, so a YAML
scenario names its family explicitly::

    service: {dist: lognormal, mean: 2.5, cv: 0.6}     # minutes

All draws take the caller's ``numpy.random.Generator``; nothing here keeps
random state of its own. Durations are in minutes.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Dist(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    def mean_minutes(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class Deterministic(_Dist):
    """Always the same duration."""

    dist: Literal["deterministic"] = "deterministic"
    value: float = Field(gt=0, description="duration in minutes")

    @property
    def mean_minutes(self) -> float:
        return self.value

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value, dtype=np.float64)


class Exponential(_Dist):
    """Memoryless durations: the M in M/M/c."""

    dist: Literal["exponential"] = "exponential"
    mean: float = Field(gt=0, description="mean duration in minutes")

    @property
    def mean_minutes(self) -> float:
        return self.mean

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.exponential(self.mean, size)


class LogNormal(_Dist):
    """Right-skewed durations, parametrised by mean and coefficient of variation."""

    dist: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0, description="mean duration in minutes")
    cv: float = Field(gt=0, le=5, description="coefficient of variation (std / mean)")

    @property
    def mean_minutes(self) -> float:
        return self.mean

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        sigma2 = math.log1p(self.cv**2)
        mu = math.log(self.mean) - sigma2 / 2
        return rng.lognormal(mu, math.sqrt(sigma2), size)


class Empirical(_Dist):
    """Resampling of observed durations (e.g. from an event log)."""

    dist: Literal["empirical"] = "empirical"
    samples: tuple[float, ...] = Field(min_length=1, description="observed durations in minutes")

    @field_validator("samples")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        bad = [x for x in v if not (x > 0 and math.isfinite(x))]
        if bad:
            raise ValueError(f"samples must be positive finite minutes, got {bad[:3]}")
        return v

    @property
    def mean_minutes(self) -> float:
        return float(np.mean(self.samples))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(np.asarray(self.samples, dtype=np.float64), size)


Distribution = Annotated[
    Deterministic | Exponential | LogNormal | Empirical, Field(discriminator="dist")
]


class DurationStream:
    """Draws durations in blocks, so the hot loop pays one numpy call per block.

    The stream owns no randomness: it consumes the generator it is given, in a
    fixed order, so the same generator state gives the same durations.
    """

    __slots__ = ("_buf", "_dist", "_i", "_rng", "block")

    def __init__(self, dist: _Dist, rng: np.random.Generator, block: int = 512) -> None:
        self._dist = dist
        self._rng = rng
        self.block = block
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._dist.sample(self._rng, self.block).tolist()
            self._i = 0
        x = self._buf[self._i]
        self._i += 1
        return x
