"""Rate-limit specifications of tasks (``rate_limit="100/m"``). Pure: no Redis here."""

from __future__ import annotations

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
                "e.g. '100/m' or '5/30s'"
            )
        return cls(int(match[1]), int(match[2] or 1) * _UNITS_MS[match[3]])
