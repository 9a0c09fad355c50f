"""Task options: the defaults every job of a task carries, checked where they are given. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskforge.callcheck import check_job_id
from taskforge.durations import when_to_delay
from taskforge.errors import ConfigurationError
from taskforge.job import JobPriority
from taskforge.limits.spec import RateLimit
from taskforge.policy import (
    ExceptionTypes,
    RetryPolicy,
    check_exception_types,
    check_max_retries,
)
from taskforge.protocol.keys import check_queue_name

UNIQUE_POLICIES = ("queued", "running", "ttl")
#: Where a sync task may ask to run: ``@task(pool="process")`` / ``pool="thread"``.
POOL_KINDS = ("thread", "process")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Defaults every job of a task carries; per-call overrides come from ``Task.options()``.

    ``retry_backoff`` and ``timeout`` are seconds, as in the decorator.
    """

    name: str
    queue: str = "default"
    priority: JobPriority = JobPriority.NORMAL
    max_retries: int | None = 3
    retry_on: ExceptionTypes | None = None
    dont_retry_on: ExceptionTypes = ()
    retry_backoff: float = 60.0
    retry_backoff_cap: float = 3600.0
    retry_jitter: bool = False
    timeout: float | None = None
    job_id: str | None = None
    unique_key: str | None = None
    unique_until: str = "running"
    unique_ttl: float | None = None
    rate_limit: str | None = None
    concurrency: int | None = None
    soft_timeout: float | None = None
    ignore_result: bool = False
    result_ttl: int | None = None
    expires: float | datetime | None = None
    #: ``"process"`` / ``"thread"``: where a sync task runs whatever the worker's ``--pool``;
    #: None: the worker's pool.
    pool: str | None = None

    def checked(self) -> TaskOptions:
        """Return self after validating every option; raises ConfigurationError."""
        check_queue_name(self.queue)
        if not self.name or any(c.isspace() for c in self.name):
            raise ConfigurationError(f"task name must be non-empty without spaces: {self.name!r}")
        check_max_retries(self.max_retries)
        if self.retry_on is not None:
            check_exception_types("retry_on", self.retry_on)
        check_exception_types("dont_retry_on", self.dont_retry_on)
        for label, value in (
            ("retry_backoff", self.retry_backoff),
            ("retry_backoff_cap", self.retry_backoff_cap),
            ("timeout", self.timeout),
        ):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigurationError(f"{label} must be a finite number >= 0, got {value}")
        if self.timeout is not None and self.timeout == 0:
            raise ConfigurationError("timeout must be > 0 seconds (None means no timeout)")
        check_result_options(self)
        self._check_unique()
        if self.job_id is not None:
            check_job_id(self.job_id)
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate_limit is not None:
            RateLimit.parse(self.rate_limit)
        if self.pool is not None and self.pool not in POOL_KINDS:
            raise ConfigurationError(
                f"pool must be one of {', '.join(map(repr, POOL_KINDS))} or None (the worker's "
                f"--pool), got {self.pool!r}"
            )
        return self

    def job_options(self) -> dict[str, Any]:
        """The options a worker applies, under :class:`~taskforge.job.Job`'s field names: what a
        job's record leaves out when they are the task's registered ones (its ``o`` holds the
        rest)."""
        return {
            "max_retries": self.max_retries,
            "retry_backoff_s": self.retry_backoff,
            "retry_backoff_cap_s": self.retry_backoff_cap,
            "retry_jitter": self.retry_jitter,
            "timeout_s": self.timeout,
            "soft_timeout_s": self.soft_timeout,
        }

    def _check_unique(self) -> None:
        if self.unique_until not in UNIQUE_POLICIES:
            raise ConfigurationError(
                f"unique_until must be one of {UNIQUE_POLICIES}, got {self.unique_until!r}"
            )
        if self.unique_until == "ttl" and not self.unique_ttl:
            raise ConfigurationError("unique_until='ttl' needs unique_ttl (seconds)")
        if self.unique_ttl is not None and not (
            math.isfinite(self.unique_ttl) and self.unique_ttl > 0
        ):
            raise ConfigurationError(
                f"unique_ttl must be a finite number of seconds > 0, got {self.unique_ttl}"
                " (None: the lock lasts as long as unique_until says)"
            )

    @property
    def retry_policy(self) -> RetryPolicy:
        """The exception filters the worker applies to this task's failures."""
        return RetryPolicy(self.retry_on, self.dont_retry_on)


def check_result_options(o: TaskOptions) -> None:
    """Validate ``soft_timeout``, ``result_ttl`` and ``expires``; raises ConfigurationError."""
    soft = o.soft_timeout
    if soft is not None and not (
        isinstance(soft, int | float) and math.isfinite(soft) and soft > 0
    ):
        raise ConfigurationError(
            f"soft_timeout must be a finite number of seconds > 0, got {soft!r}"
        )
    if soft is not None and o.timeout is not None and soft >= o.timeout:
        raise ConfigurationError(
            f"soft_timeout ({soft}s) must be shorter than timeout ({o.timeout}s): the soft limit "
            "warns the task before the hard one stops it"
        )
    ttl = o.result_ttl
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1):
        raise ConfigurationError(f"result_ttl must be a whole number of seconds >= 1, got {ttl!r}")
    exp = o.expires
    if isinstance(exp, datetime):
        when_to_delay(exp)  # refuses a naive datetime, saying what to write
    elif exp is not None and not _positive_seconds(exp):
        raise ConfigurationError(
            f"expires must be seconds > 0, a timedelta or an aware datetime, got {exp!r}"
        )


def _positive_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def expires_at_ms(expires: float | datetime | None, now_s: float) -> int | None:
    """The epoch ms an ``expires`` option means for a call made at ``now_s`` (None: never)."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return int(expires.timestamp() * 1000)
    return int((now_s + expires) * 1000)


class _Unset:
    """Marks an option :meth:`Task.options` leaves as it is (None has a meaning of its own)."""


UNSET = _Unset()


def coerce_priority(value: JobPriority | str) -> JobPriority:
    """``JobPriority`` from an enum member or its name/value (``"high"``, ``"HIGH"``)."""
    try:
        return JobPriority(value.lower() if isinstance(value, str) else value)
    except ValueError:
        choices = [p.value for p in JobPriority]
        raise ConfigurationError(f"unknown priority {value!r}; use one of {choices}") from None


__all__ = [
    "POOL_KINDS",
    "UNIQUE_POLICIES",
    "UNSET",
    "TaskOptions",
    "check_result_options",
    "coerce_priority",
    "expires_at_ms",
]
