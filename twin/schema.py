"""Building blocks of the scenario schema: the frozen base model and times of day.

Shared by :mod:`twin.scenario` (the plan) and :mod:`twin.uncertainty` (how reality
departs from it), so neither has to import the other's module to spell a time of day.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

MINUTES_PER_DAY = 24 * 60


class Frozen(BaseModel):
    """A frozen schema object that refuses unknown fields (a misspelled key is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_clock(v: Any) -> int:
    """``"06:30"`` or ``390`` -> 390 (minutes after midnight)."""
    if isinstance(v, bool):
        raise ValueError("expected a time of day like '06:30' or minutes after midnight")
    if isinstance(v, int):
        minute = v
    elif isinstance(v, str) and (m := re.fullmatch(r"(\d{1,2}):(\d{2})", v.strip())):
        hours, minutes = int(m[1]), int(m[2])
        if minutes >= 60:
            raise ValueError(f"minutes must be < 60 in {v!r}")
        minute = hours * 60 + minutes
    else:
        raise ValueError(
            f"expected a time of day like '06:30' or minutes after midnight, got {v!r}"
        )
    if not 0 <= minute <= MINUTES_PER_DAY:
        raise ValueError(f"time of day must be within 00:00..24:00, got {v!r}")
    return minute


ClockMinute = Annotated[int, BeforeValidator(parse_clock)]


def non_empty(what: str) -> AfterValidator:
    """Refuse an empty list saying what is missing ("needs at least one sector"), where
    ``min_length=1`` would say "Tuple should have at least 1 item after validation"."""

    def check(v: tuple[Any, ...]) -> tuple[Any, ...]:
        if not v:
            raise ValueError(f"needs at least one {what}")
        return v

    return AfterValidator(check)
