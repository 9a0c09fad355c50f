"""What a Celery habit means here: hints for calls and options written the Celery way. Pure.

The taskforge forms themselves live where they belong (``Task.apply_async``, ``rate_limit=10``,
``.schedule("10s")``, ``taskforge worker -Q a,b tasks.py``); this module only words the errors
that tell a Celery user what to write instead.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from taskforge.errors import ConfigurationError

#: Options of Celery's ``apply_async`` that people pass to ``delay`` by habit.
CALL_OPTIONS = frozenset(
    {
        "countdown", "eta", "expires", "queue", "priority", "task_id", "retry", "retry_policy",
        "link", "link_error", "headers", "serializer", "routing_key", "exchange",
        "ignore_result", "time_limit", "soft_time_limit", "shadow",
    }
)  # fmt: skip


def misplaced_options_hint(task: str, names: Iterable[str], signature: inspect.Signature) -> str:
    """A sentence for keyword arguments that are Celery call options, not the task's parameters
    (``add.delay(1, 2, countdown=10)``); empty when there are none."""
    takes = set(signature.parameters)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return ""
    options = sorted(n for n in names if n in CALL_OPTIONS and n not in takes)
    if not options:
        return ""
    listed = ", ".join(f"{n}=" for n in options)
    short = task.rsplit(".", 1)[-1]
    return (
        f"; {listed} {'is a call option' if len(options) == 1 else 'are call options'}, not "
        f"{'an argument' if len(options) == 1 else 'arguments'} of {task!r}: "
        f"use {short}.apply_async(args=[...], kwargs={{...}}, {listed}...), "
        f"or {short}.schedule(10, ...) for a countdown and {short}.options(queue=..., "
        "priority=..., job_id=...).delay(...)"
    )


#: What to write instead of Celery ``apply_async`` options that ``Task.apply_async`` lacks.
_INSTEAD = {
    "task_id": "job_id=...",
    "retry": "nothing: a failed enqueue raises BrokerConnectionError after the configured retries",
    "retry_policy": "the REDIS_RETRY_ON_TIMEOUT setting",
    "link": "a follow-up .delay() at the end of the task",
    "link_error": "a follow-up .delay() in an except block of the task",
    "headers": "keyword arguments of the task",
    "serializer": "the TASKFORGE_SERIALIZER setting",
    "routing_key": "queue=...",
    "exchange": "queue=...",
    "time_limit": "task.options(timeout=...)",
    "soft_time_limit": "task.options(soft_timeout=...)",
    "ignore_result": "@task(ignore_result=True)",
    "shadow": "@task(name=...)",
}


def unsupported_options_hint(task: str, names: Iterable[str]) -> str:
    """The error for ``apply_async`` options taskforge does not take, each with its form here."""
    parts = [f"{n}= ({_INSTEAD[n]})" if n in _INSTEAD else f"{n}=" for n in sorted(names)]
    return (
        f"apply_async() of {task!r} does not take {', '.join(parts)}; it takes args=, kwargs=, "
        "countdown=, eta=, expires=, queue=, priority=, job_id="
    )


def apply_async_when(
    task: str,
    args: object,
    kwargs: object,
    countdown: float | None,
    eta: datetime | None,
    unsupported: Mapping[str, Any],
) -> float | datetime | None:
    """Check the Celery-only parts of an ``apply_async`` call; returns when the job should run
    (None: now). Raises ConfigurationError saying what to write instead."""
    if unsupported:
        raise ConfigurationError(unsupported_options_hint(task, unsupported))
    if countdown is not None and eta is not None:
        raise ConfigurationError("pass countdown= (seconds) or eta= (a datetime), not both")
    if isinstance(args, str | bytes | Mapping) or not isinstance(kwargs, Mapping | None):
        raise ConfigurationError(
            "apply_async takes args= as a list and kwargs= as a dict: "
            "add.apply_async(args=[1, 2], kwargs={'c': 3})"
        )
    return countdown if countdown is not None else eta


def cron_hint(value: object) -> str:
    """The error for ``cron=`` given something other than a cron expression (Celery's
    ``run_every=10.0``/``timedelta``), with the expression to write when there is one."""
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    text = (
        f"cron= takes a cron expression string, not {type(value).__name__} {value!r}: five "
        "fields ('*/5 * * * *', every 5 minutes) or six with seconds last ('* * * * * */10')"
    )
    expression = _every(seconds) if seconds is not None else None
    if expression is not None:
        text += f"; every {seconds:g}s is cron={expression!r}"
    return text


def _every(seconds: float) -> str | None:
    if not math.isfinite(seconds) or seconds <= 0 or seconds != int(seconds):
        return None
    whole = int(seconds)
    if whole < 60 and 60 % whole == 0:
        return "* * * * * *" if whole == 1 else f"* * * * * */{whole}"
    if whole % 60 == 0 and whole < 3600 and 60 % (whole // 60) == 0:
        minutes = whole // 60
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if whole % 3600 == 0 and whole < 86400 and 24 % (whole // 3600) == 0:
        hours = whole // 3600
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if whole == 86400:
        return "0 0 * * *"
    return None


__all__ = [
    "CALL_OPTIONS",
    "apply_async_when",
    "cron_hint",
    "misplaced_options_hint",
    "unsupported_options_hint",
]
