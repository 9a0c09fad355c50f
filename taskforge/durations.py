"""Durations written as text: ``"10s"``, ``"5m"``, ``"1.5h"``, ``"2d"``, ``"250ms"``. Pure."""

from __future__ import annotations

import math
import re

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
