"""Rate-limit specifications of tasks (``rate_limit="100/m"``). Pure: no Redis here."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from taskforge.errors import ConfigurationError

_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|m|h|d)\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` job starts per fixed window of ``window_ms``, across all workers.

    Windows are aligned on the epoch in Redis server time; the count starts again each window.
    """

    limit: int
    window_ms: int

    @classmethod
    def parse(cls, spec: str) -> RateLimit:
        """``"100/m"``, ``"10/s"``, ``"5/30s"``, ``"1000/h"``, ``"1/d"``.

        Raises:
            ConfigurationError: the text is not ``<count>/[<n>]<s|m|h|d>`` with count >= 1.
        """
        match = _SPEC.match(spec)
        if match is None or int(match[1]) < 1 or match[2] == "0":
            raise ConfigurationError(
                f"invalid rate_limit {spec!r}: use '<count>/<unit>' with unit s, m, h or d, "
                "e.g. '100/m' or '5/30s', or a whole number per second (rate_limit=10)"
            )
        return cls(int(match[1]), int(match[2] or 1) * _UNITS_MS[match[3]])


def rate_limit_spec(value: str | float | None) -> str | None:
    """The text form of a rate limit, Celery's forms included: ``10`` is per second
    (``"10/s"``); ``"10/m"``, ``"10/h"``, ``"5/30s"`` are kept as they are (the text ``"10"``
    is refused by :meth:`RateLimit.parse`: write the unit).

    Raises:
        ConfigurationError: a number that is not a whole count >= 1 (``0.5``, ``True``), or a
            value of another type; the message says what to write.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"rate_limit must be a number per second or text like '100/m', "
            f"not {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise ConfigurationError(
            f"rate_limit={value!r}: a per-second limit must be a whole number >= 1; for fewer "
            "than one a second write a window, e.g. '1/2s' (one every two seconds) or '30/m'"
        )
    return f"{int(value)}/s"


__all__ = ["RateLimit", "rate_limit_spec"]
