"""Tasks: a function plus the options its jobs carry, and the calls that become jobs."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from taskforge.callcheck import check_job_id
from taskforge.cron import CatchUp, CronSchedule
from taskforge.errors import ConfigurationError, EnqueueError
from taskforge.handle import JobHandle
from taskforge.job import JobPriority
from taskforge.keys import check_queue_name
from taskforge.limits import RateLimit

P = ParamSpec("P")
R = TypeVar("R")

UNIQUE_POLICIES = ("queued", "running", "ttl")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Defaults every job of a task carries; per-call overrides come from :meth:`Task.options`.

    ``retry_backoff`` and ``timeout`` are seconds, as in the decorator.
    """

    name: str
    queue: str = "default"
    priority: JobPriority = JobPriority.NORMAL
    max_retries: int = 3
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

    def checked(self) -> TaskOptions:
        """Return self after validating every option; raises ConfigurationError."""
        check_queue_name(self.queue)
        if not self.name or any(c.isspace() for c in self.name):
            raise ConfigurationError(f"task name must be non-empty without spaces: {self.name!r}")
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {self.max_retries}")
        for label, value in (("retry_backoff", self.retry_backoff), ("timeout", self.timeout)):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigurationError(f"{label} must be a finite number >= 0, got {value}")
        if self.timeout is not None and self.timeout == 0:
            raise ConfigurationError("timeout must be > 0 seconds (None means no timeout)")
        self._check_unique()
        if self.job_id is not None:
            check_job_id(self.job_id)
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate_limit is not None:
            RateLimit.parse(self.rate_limit)
        return self

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


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a task, ready to become a job: ``add.s(2, 3)``.

    ``delay_s`` or ``run_at`` (timezone-aware) make it a scheduled job.
    """

    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: TaskOptions
    delay_s: float = 0.0
    run_at: datetime | None = None


_PERIODIC_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,150}$")


@dataclass(frozen=True, slots=True)
class Periodic:
    """A call enqueued on a cron schedule: one job per tick, with id ``cron:<name>:<tick_ms>``.

    Register with ``@task(cron=...)`` or ``app.periodic(task, cron=..., args=...)``.
    """

    name: str
    call: Call
    schedule: CronSchedule
    catch_up: CatchUp = CatchUp.ONCE

    def __post_init__(self) -> None:
        if not _PERIODIC_NAME.match(self.name):
            raise ConfigurationError(
                f"invalid periodic name {self.name!r}: use 1-150 letters, digits or '_.:-'"
            )

    def job_id(self, tick_ms: int) -> str:
        """The deterministic id of this periodic's job for one tick."""
        return f"cron:{self.name}:{tick_ms}"


class Dispatcher(Protocol):
    """Turns calls into jobs (implemented by :class:`~taskforge.client.Client`)."""

    def submit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]: ...
    async def asubmit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]: ...


def coerce_priority(value: JobPriority | str) -> JobPriority:
    """``JobPriority`` from an enum member or its name/value (``"high"``, ``"HIGH"``)."""
    try:
        return JobPriority(value.lower() if isinstance(value, str) else value)
    except ValueError:
        choices = [p.value for p in JobPriority]
        raise ConfigurationError(f"unknown priority {value!r}; use one of {choices}") from None


def when_to_delay(when: datetime | timedelta | float) -> tuple[float, datetime | None]:
    """Split a schedule time into (delay in seconds, absolute time); rejects naive datetimes."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ConfigurationError(
                f"naive datetime {when.isoformat()} is ambiguous; pass a timezone-aware one, "
                "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        return 0.0, when
    delay_s = when.total_seconds() if isinstance(when, timedelta) else float(when)
    if not math.isfinite(delay_s) or delay_s < 0:
        raise ConfigurationError(f"schedule delay must be a finite number >= 0, got {when!r}")
    return delay_s, None


def _plain_params(signature: inspect.Signature) -> tuple[dict[str, int], int] | None:
    """``(position of each parameter, how many have no default)`` when every parameter is
    positional-or-keyword (then the required ones come first); None otherwise."""
    params = list(signature.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        return None
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return {p.name: i for i, p in enumerate(params)}, required


class Task(Generic[P, R]):
    """A registered function. Call it to run it here; ``.delay()`` to run it on a worker."""

    def __init__(self, fn: Callable[..., Any], options: TaskOptions, dispatcher: Dispatcher):
        self.fn = fn
        self.opts = options.checked()
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self._dispatcher = dispatcher
        self._signature = inspect.signature(fn)
        self._plain = _plain_params(self._signature)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", options.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.opts.queue} priority={self.opts.priority.value}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function directly, in this process (for an async task: a coroutine)."""
        return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        queue: str | None = None,
        priority: JobPriority | str | None = None,
        job_id: str | None = None,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        unique_ttl: float | None = None,
    ) -> Task[P, R]:
        """A copy of this task whose calls carry these overrides: ``add.options(priority="high")``.

        Raises ConfigurationError for an invalid value, here rather than at ``.delay()``.
        """
        changes: dict[str, Any] = {
            "queue": queue,
            "job_id": job_id,
            "max_retries": max_retries,
            "retry_backoff": retry_backoff,
            "timeout": timeout,
            "unique_key": unique_key,
            "unique_until": unique_until,
            "unique_ttl": unique_ttl,
        }
        if priority is not None:
            changes["priority"] = coerce_priority(priority)
        opts = replace(self.opts, **{k: v for k, v in changes.items() if v is not None})
        clone: Task[P, R] = Task(self.fn, opts, self._dispatcher)
        return clone

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Call:
        """A call of this task for bulk enqueue: ``app.enqueue_many([add.s(1, 2), ...])``."""
        return self._call(args, kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Enqueue a job running ``fn(*args, **kwargs)`` now; returns its handle.

        Raises:
            EnqueueError: the arguments do not fit the function, cannot be JSON-encoded, or the
                payload is too large. Nothing is written.
            BrokerConnectionError: Redis is unreachable after the configured retries.
        """
        return self._dispatcher.submit([self._call(args, kwargs)])[0]

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Async :meth:`delay`."""
        return (await self._dispatcher.asubmit([self._call(args, kwargs)]))[0]

    def schedule(
        self, when: datetime | timedelta | float, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[R]:
        """Enqueue a job to run at ``when``: an aware ``datetime``, a ``timedelta`` or seconds."""
        return self._dispatcher.submit([self._call(args, kwargs, when)])[0]

    async def aschedule(
        self, when: datetime | timedelta | float, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[R]:
        """Async :meth:`schedule`."""
        return (await self._dispatcher.asubmit([self._call(args, kwargs, when)]))[0]

    def _fits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """True when the arguments surely fit a function of plain parameters (no ``*args``,
        keyword-only...); False sends them to ``Signature.bind``, which names what is wrong."""
        if self._plain is None:
            return False
        index, required = self._plain
        given = len(args)
        if given > len(index):
            return False
        for name in kwargs:
            at = index.get(name)
            if at is None or at < given:
                return False
        return given + sum(1 for name in kwargs if index[name] < required) >= required

    def _call(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        when: datetime | timedelta | float | None = None,
    ) -> Call:
        if not self._fits(args, kwargs):
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise EnqueueError(f"bad arguments for task {self.name!r}: {exc}") from exc
        delay_s, run_at = (0.0, None) if when is None else when_to_delay(when)
        return Call(self.name, args, kwargs, self.opts, delay_s, run_at)
