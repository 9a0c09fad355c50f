"""Cron expressions and the catch-up policy: which ticks of a periodic task are due. No Redis here.

The only module that imports ``croniter``. Times are epoch milliseconds (the scheduler passes
Redis server time), so a worker's clock never decides what is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskforge.errors import ConfigurationError

if TYPE_CHECKING:
    from croniter import croniter

#: A tick this late (ms) counts as missed: ``CatchUp.SKIP`` drops it.
MISFIRE_GRACE_MS = 60_000
#: Most ticks ``CatchUp.ALL`` enqueues in one go (the most recent ones).
MAX_CATCH_UP = 1000


class CatchUp(StrEnum):
    """What a scheduler does with ticks that passed while no worker ran.

    ``SKIP`` drops missed ticks (a tick more than ``MISFIRE_GRACE_MS`` late); ``ONCE`` (the
    default) runs one job for the latest missed tick; ``ALL`` runs every missed tick, oldest first
    (at most ``MAX_CATCH_UP``).
    """

    SKIP = "skip"
    ONCE = "once"
    ALL = "all"


def coerce_catch_up(value: CatchUp | str) -> CatchUp:
    """``CatchUp`` from a member or its value; raises ConfigurationError."""
    try:
        return CatchUp(value)
    except ValueError:
        choices = [c.value for c in CatchUp]
        raise ConfigurationError(f"unknown catch_up {value!r}; use one of {choices}") from None


def _croniter() -> type[croniter]:
    # Imported on first use, not with this module: every app imports cron.py (task options name
    # CronSchedule) but only apps with periodic tasks parse an expression, and croniter with
    # dateutil is ~1.5 MiB and tens of ms of every worker's start (an optional subsystem).
    from croniter import croniter

    return croniter


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression in a time zone.

    Five fields (minute hour day month weekday) or six, the sixth being seconds, last as
    croniter reads them (``"* * * * * */10"`` fires every ten seconds). ``timezone`` is an IANA
    name; ticks such as ``0 9 * * *`` follow that zone's wall clock across daylight-saving changes.
    """

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not _croniter().is_valid(self.expression):
            raise ConfigurationError(
                f"invalid cron expression {self.expression!r}: use 5 fields (minute hour day "
                "month weekday) or 6 with seconds last, e.g. '*/5 * * * *'"
            )
        self.zone()

    def zone(self) -> ZoneInfo:
        """The time zone; raises ConfigurationError for an unknown name."""
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"unknown time zone {self.timezone!r}; use an IANA name such as 'Europe/Paris'"
            ) from None

    def _iter(self, at_ms: int) -> croniter:
        start = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(self.zone())
        return _croniter()(self.expression, start)

    def next_after(self, at_ms: int) -> int:
        """The first tick strictly after ``at_ms`` (epoch ms)."""
        return round(self._iter(at_ms).get_next(float) * 1000)

    def latest_at_or_before(self, at_ms: int) -> int:
        """The last tick at or before ``at_ms`` (epoch ms)."""
        return round(self._iter(at_ms + 1).get_prev(float) * 1000)

    def ticks_between(
        self, after_ms: int, until_ms: int, *, limit: int = MAX_CATCH_UP
    ) -> list[int]:
        """Ticks ``t`` with ``after_ms < t <= until_ms``, oldest first; only the last ``limit``.

        Walks back from ``until_ms``, so the cost is bounded by ``limit`` however long the gap.
        """
        ticks: list[int] = []
        it = self._iter(until_ms + 1)
        while len(ticks) < limit:
            tick = round(it.get_prev(float) * 1000)
            if tick <= after_ms:
                break
            ticks.append(tick)
        ticks.reverse()
        return ticks


def due_ticks(
    schedule: CronSchedule, last_ms: int | None, now_ms: int, policy: CatchUp
) -> tuple[list[int], int]:
    """Which ticks to enqueue now, and the new last-tick marker.

    ``last_ms`` is the marker of the previous claim (None: the task was never scheduled; it then
    starts with its next tick and nothing before ``now_ms`` runs).
    """
    if last_ms is None:
        return [], now_ms
    latest = schedule.latest_at_or_before(now_ms)
    if latest <= last_ms:
        return [], last_ms
    if policy is CatchUp.ALL:
        return schedule.ticks_between(last_ms, now_ms), latest
    if policy is CatchUp.SKIP and now_ms - latest > MISFIRE_GRACE_MS:
        return [], latest
    return [latest], latest


__all__ = [
    "MAX_CATCH_UP",
    "MISFIRE_GRACE_MS",
    "CatchUp",
    "CronSchedule",
    "coerce_catch_up",
    "due_ticks",
]
