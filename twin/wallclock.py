"""Wall-clock timestamps and the twin's minutes, converted without loss.

The twin's clock is a float: minutes since midnight of day 0. A floor system's
clock is a wall-clock timestamp. Python's ``datetime`` keeps microseconds, which is
not enough to carry a float minute exactly (a float holds about 16 significant
digits; ``HH:MM:SS.ffffff`` about 11), and a live twin replaying the twin's own log
must reach the very floats the twin computed, or a due bucket or an overtime total
could differ in the last bit.

So timestamps are ISO 8601 strings (``2026-01-05T08:03:12.5``, an offset such as
``Z`` or ``+01:00`` allowed), whose fraction of a second may have any number of
digits, as ISO 8601 permits. :func:`format_timestamp` writes the shortest fraction
that :func:`minute_of` turns back into the same float; a live system that sends
milliseconds loses nothing it had. Both go through :func:`_minutes`, the one
conversion from (whole seconds, decimal fraction) to a float minute.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

#: Decimal arithmetic wide enough that seconds of any float minute are exact.
_CTX = Context(prec=120)
_ISO = re.compile(
    r"^(?P<main>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:[.,](?P<frac>\d+))?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)
_MAX_FRACTION_DIGITS = 40


class TimestampError(ValueError):
    """A timestamp that is not ISO 8601 or does not fit the site's clock."""


def parse_timestamp(text: str) -> tuple[datetime, Decimal]:
    """Split ``text`` into a datetime (whole seconds) and the decimal fraction of a second.

    Raises:
        TimestampError: not ``YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM]`` or not a real date.
    """
    m = _ISO.match(text.strip())
    if m is None:
        raise TimestampError(
            f"{text!r} is not an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM])"
        )
    frac = m.group("frac") or "0"
    if len(frac) > _MAX_FRACTION_DIGITS:
        raise TimestampError(f"{text!r}: more than {_MAX_FRACTION_DIGITS} digits of a second")
    tz = m.group("tz") or ""
    try:
        whole = datetime.fromisoformat(m.group("main").replace(" ", "T") + tz)
    except ValueError as err:
        raise TimestampError(f"{text!r}: {err}") from None
    return whole, Decimal("0." + frac)


def check_timestamp(text: str) -> str:
    """``text`` if it has the form of a timestamp (a pydantic validator for event fields;
    :func:`minute_of` still refuses impossible dates such as a 13th month)."""
    if _ISO.match(text.strip()) is None:
        parse_timestamp(text)  # raises with the reason
    return text


def day_zero(scenario_start_weekday: int, start: datetime) -> datetime:
    """Midnight of day 0 for a site started at ``start``.

    Day 0 is the latest midnight at or before ``start`` that falls on the scenario's
    start weekday, so a scenario's weekday factors apply to the right dates whatever
    day the site starts on.
    """
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    back = (midnight.weekday() - scenario_start_weekday) % 7
    return midnight - timedelta(days=back)


def _minutes(whole_seconds: int, frac: Decimal) -> float:
    """The float minute of ``whole_seconds + frac`` seconds (the one conversion)."""
    return float(_CTX.divide(_CTX.add(Decimal(whole_seconds), frac), Decimal(60)))


def _whole_seconds(whole: datetime, zero: datetime) -> int:
    if (whole.tzinfo is None) != (zero.tzinfo is None):
        has = "has no" if whole.tzinfo is None else "has a"
        raise TimestampError(
            f"{whole.isoformat()} {has} UTC offset, but the site clock "
            f"{'has one' if zero.tzinfo is not None else 'has none'}"
        )
    if whole.tzinfo is not None:
        whole, zero = whole.astimezone(UTC), zero.astimezone(UTC)
    d = whole - zero
    return d.days * 86_400 + d.seconds


def minute_of(text: str, zero: datetime) -> float:
    """Minutes since ``zero`` (day 0's midnight) of the timestamp ``text``.

    Raises:
        TimestampError: ``text`` does not parse, or has a UTC offset where the site
            clock has none (or the other way round).
    """
    whole, frac = parse_timestamp(text)
    return _minutes(_whole_seconds(whole, zero), frac)


def format_timestamp(minute: float, zero: datetime) -> str:
    """The timestamp of the twin's ``minute`` (since ``zero``), exact under :func:`minute_of`."""
    total = _CTX.multiply(Decimal(minute), Decimal(60))  # exact: a float times 60
    whole = int(total.to_integral_value(rounding="ROUND_FLOOR"))
    frac = _CTX.subtract(total, Decimal(whole))
    # no fraction, or milliseconds (what floor systems send) when they are exact; else
    # about 17 significant digits (almost always enough), more until the minute is exact
    tries: tuple[int, ...] = (max(0, 17 - len(str(whole))), *range(4, 60))
    if frac == 0:
        tries = (0,)
    elif (frac * 1000) % 1 == 0:
        tries = (3, *tries)
    for digits in tries:
        q = frac.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN, context=_CTX)
        if _minutes(whole, q) == minute:
            frac = q
            break
    if frac >= 1:
        whole, frac = whole + 1, frac - 1
    stamp = (zero + timedelta(seconds=whole)).isoformat(timespec="seconds")
    text = format(frac, "f")
    if frac == 0:
        return stamp
    digits_text = text.split(".", 1)[1].rstrip("0")
    if zero.tzinfo is not None:
        main, offset = stamp[:19], stamp[19:]
        return f"{main}.{digits_text}{offset}"
    return f"{stamp}.{digits_text}"


def clock(minute: float, *, days: bool = True) -> str:
    """``HH:MM`` of the twin's ``minute``, rounded to the minute; ``day N HH:MM`` after the
    first day (``days=False``: the time of day only)."""
    day, m = divmod(round(minute), 24 * 60)
    return (f"day {day} " if day and days else "") + f"{m // 60:02d}:{m % 60:02d}"
