"""Periodic tasks: cron schedules, and the scheduler every worker runs to enqueue their ticks.

- :mod:`taskforge.cron.schedule`: cron expressions and the catch-up policy: which ticks are due.
  Pure: no Redis, and the only module that imports ``croniter``.
- :mod:`taskforge.cron.runner`: the leaderless scheduler that claims due ticks in Redis and
  enqueues their jobs, and the status reads ``taskforge cron`` shows.

The package re-exports the schedule only (no Redis layer): ``taskforge.task`` reads it, and the
worker and the CLI import ``runner`` themselves.
"""

from __future__ import annotations

from taskforge.cron.schedule import (
    MAX_CATCH_UP,
    MISFIRE_GRACE_MS,
    CatchUp,
    CronSchedule,
    coerce_catch_up,
    due_ticks,
)

__all__ = [
    "MAX_CATCH_UP",
    "MISFIRE_GRACE_MS",
    "CatchUp",
    "CronSchedule",
    "coerce_catch_up",
    "due_ticks",
]
