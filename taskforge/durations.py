"""Durations and schedule times: ``"10s"``, ``"5m"``, ``"1.5h"``, ``"2d"``, ``"250ms"``. Pure."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from taskforge.errors import ConfigurationError

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration_s(text: str) -> float:
    """Seconds from a number and one unit: ms, s, m (minutes), h or d.

    Raises:
        ConfigurationError: anything else (``"10"``, ``"1h30m"``, ``"5 mins"``).
    """
    match = _DURATION.match(text)
    if match is None:
        raise ConfigurationError(
            f"cannot read {text!r} as a duration: write a number and one unit (ms, s, m, h, d), "
            "e.g. '10s', '5m', '1.5h', or pass seconds or a timedelta"
        )
    seconds = float(match[1]) * _UNIT_S[match[2]]
    if not math.isfinite(seconds):
        raise ConfigurationError(f"duration {text!r} is too large")
    return seconds


#: When a job should run: an aware datetime, a timedelta, seconds, or text like ``"10s"``.
When = datetime | timedelta | float | str


def when_to_delay(when: When) -> tuple[float, datetime | None]:
    """Split a schedule time into (delay in seconds, absolute time); rejects naive datetimes.

    Text is a number and one unit: ``"250ms"``, ``"10s"``, ``"5m"``, ``"1.5h"``, ``"2d"``.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ConfigurationError(
                f"naive datetime {when.isoformat()} is ambiguous; pass a timezone-aware one, "
                "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        return 0.0, when
    if isinstance(when, str):
        delay_s = parse_duration_s(when)
    elif isinstance(when, timedelta):
        delay_s = when.total_seconds()
    elif isinstance(when, int | float) and not isinstance(when, bool):
        delay_s = float(when)
    else:
        raise ConfigurationError(
            f"cannot schedule at {when!r}: pass seconds, a timedelta, an aware datetime, or "
            "text like '10s', '5m', '1h'"
        )
    if not math.isfinite(delay_s) or delay_s < 0:
        raise ConfigurationError(f"schedule delay must be a finite number >= 0, got {when!r}")
    return delay_s, None


__all__ = ["When", "parse_duration_s", "when_to_delay"]
