"""Tasks: a function plus the options its jobs carry, and the calls that become jobs."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from taskforge.callcheck import check_job_id
from taskforge.canvas import Canvas, WorkflowDispatcher
from taskforge.celery_compat import apply_async_when, misplaced_options_hint
from taskforge.context import JobContext, bound, has_job, stand_in
from taskforge.cron import CatchUp, CronSchedule
from taskforge.durations import parse_duration_s
from taskforge.errors import ConfigurationError, EnqueueError
from taskforge.handle import JobHandle
from taskforge.job import JobPriority
from taskforge.keys import check_queue_name
from taskforge.limits import RateLimit
from taskforge.policy import (
    ExceptionTypes,
    RetryPolicy,
    check_exception_types,
    check_max_retries,
)

P = ParamSpec("P")
R = TypeVar("R")

UNIQUE_POLICIES = ("queued", "running", "ttl")
#: Where a sync task may ask to run: ``@task(pool="process")`` / ``pool="thread"``.
POOL_KINDS = ("thread", "process")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Defaults every job of a task carries; per-call overrides come from :meth:`Task.options`.

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


@dataclass(frozen=True, slots=True)
class Call(Canvas):
    """One call of a task, ready to become a job: ``add.s(2, 3)``; also a workflow's leaf.

    ``delay_s`` or ``run_at`` (timezone-aware) make it a scheduled job. ``partial`` marks
    arguments that fit only with one more in front (the previous step's value, in a workflow);
    ``immutable`` (``.si()``) ignores the previous value. ``fits`` tells why arguments do not
    fit the function ('' when they do), for checks at a workflow's ``.delay()``.
    """

    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: TaskOptions
    delay_s: float = 0.0
    run_at: datetime | None = None
    immutable: bool = False
    partial: bool = False
    callbacks: tuple[Call, ...] = ()
    errbacks: tuple[Call, ...] = ()
    dispatcher: WorkflowDispatcher | None = field(default=None, compare=False, repr=False)
    fits: Callable[[tuple[Any, ...], dict[str, Any]], str] | None = field(
        default=None, compare=False, repr=False
    )


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


class Dispatcher(WorkflowDispatcher, Protocol):
    """Turns calls into jobs (implemented by :class:`~taskforge.app.Taskforge`)."""

    def submit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]: ...
    async def asubmit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]: ...


def coerce_priority(value: JobPriority | str) -> JobPriority:
    """``JobPriority`` from an enum member or its name/value (``"high"``, ``"HIGH"``)."""
    try:
        return JobPriority(value.lower() if isinstance(value, str) else value)
    except ValueError:
        choices = [p.value for p in JobPriority]
        raise ConfigurationError(f"unknown priority {value!r}; use one of {choices}") from None


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
        if self.is_async and options.pool is not None:
            raise ConfigurationError(
                f"task {options.name!r} is async: it runs on the worker's event loop, so "
                f"pool={options.pool!r} does not apply (pool= is for sync tasks)"
            )
        self._dispatcher = dispatcher
        self._signature = inspect.signature(fn)
        self._plain = _plain_params(self._signature)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", options.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.opts.queue} priority={self.opts.priority.value}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function directly, in this process (for an async task: a coroutine).

        Outside a worker's job, ``current_job()`` inside it gives a stand-in context (a fresh
        id, attempt 1, progress recorded): see :class:`~taskforge.context.StandInContext`.
        """
        if has_job():  # called by a worker, or from inside another task: keep that job
            return self.fn(*args, **kwargs)
        ctx = stand_in(self.name, args, kwargs, queue=self.opts.queue)
        if self.is_async:
            return _awaited_in(ctx, self.fn(*args, **kwargs))
        with bound(ctx):
            return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        queue: str | None = None,
        priority: JobPriority | str | None = None,
        job_id: str | None = None,
        max_retries: int | _Unset | None = UNSET,
        retry_backoff: float | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        unique_ttl: float | None = None,
        soft_timeout: float | None = None,
        expires: float | timedelta | datetime | None = None,
    ) -> Task[P, R]:
        """A copy of this task whose calls carry these overrides: ``add.options(priority="high")``.

        ``expires`` (seconds or a timedelta from each call, or an aware datetime) cancels a job
        that has not started by then (see the README's "Results and expiry").

        Raises ConfigurationError for an invalid value, here rather than at ``.delay()``.
        """
        changes: dict[str, Any] = {
            "queue": queue,
            "job_id": job_id,
            "retry_backoff": retry_backoff,
            "timeout": timeout,
            "soft_timeout": soft_timeout,
            "expires": expires.total_seconds() if isinstance(expires, timedelta) else expires,
            "unique_key": unique_key,
            "unique_until": unique_until,
            "unique_ttl": unique_ttl,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if priority is not None:
            changes["priority"] = coerce_priority(priority)
        if not isinstance(max_retries, _Unset):  # None is "retry forever" here
            changes["max_retries"] = max_retries
        opts = replace(self.opts, **changes)
        clone: Task[P, R] = Task(self.fn, opts, self._dispatcher)
        return clone

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Call:
        """A signature: a call not yet sent, for ``app.enqueue_many([add.s(1, 2), ...])`` and
        workflows. Arguments that fit only with one more in front make a partial signature: in
        a chain it receives the previous step's value first (``add.s(3)`` after ``add.s(1, 2)``);
        an ``on_failure`` callback may leave two out (it receives the job id and the error).

        Raises:
            EnqueueError: the arguments fit neither as given nor with one or two more in front.
        """
        return self._call(args, kwargs, partial_ok=True)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Call:
        """An immutable signature: in a workflow it ignores the previous step's value."""
        return replace(self._call(args, kwargs), immutable=True)

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

    def schedule(self, when: When, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Enqueue a job to run at ``when``: an aware ``datetime``, a ``timedelta``, seconds, or
        a duration such as ``"10s"``, ``"5m"``, ``"1h"``."""
        return self._dispatcher.submit([self._call(args, kwargs, when)])[0]

    async def aschedule(self, when: When, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Async :meth:`schedule`."""
        return (await self._dispatcher.asubmit([self._call(args, kwargs, when)]))[0]

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: datetime | timedelta | float | None = None,
        queue: str | None = None,
        priority: JobPriority | str | None = None,
        job_id: str | None = None,
        **unsupported: Any,
    ) -> JobHandle[R]:
        """Celery's call form, untyped: ``add.apply_async(args=[1, 2], countdown=10)``.

        ``countdown`` (seconds) or ``eta`` (an aware datetime) schedule the job; ``expires``,
        ``queue``, ``priority`` and ``job_id`` are per-call options as in :meth:`options`. Prefer
        :meth:`delay`/:meth:`schedule`, whose arguments your type checker sees.

        Raises:
            ConfigurationError: an option Celery has and taskforge does not (the message says
                what to write instead), both ``countdown`` and ``eta``, or a bad value.
            EnqueueError: the arguments do not fit the function (nothing is written).
        """
        when = apply_async_when(self.name, args, kwargs, countdown, eta, unsupported)
        task = self
        if any(v is not None for v in (queue, priority, job_id, expires)):
            task = self.options(queue=queue, priority=priority, job_id=job_id, expires=expires)
        call = task._call(tuple(args or ()), dict(kwargs or {}), when)
        return self._dispatcher.submit([call])[0]

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

    def _misfit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Why ``args``/``kwargs`` do not fit the function; '' when they do."""
        if self._fits(args, kwargs):
            return ""
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            return str(exc)
        return ""

    def _call(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        when: When | None = None,
        *,
        partial_ok: bool = False,
    ) -> Call:
        partial = False
        misfit = self._misfit(args, kwargs)
        if misfit:
            # One value in front (a chain step's), or two (an on_failure's job id and error).
            partial = partial_ok and any(
                not self._misfit((*lead, *args), kwargs) for lead in ((None,), (None, None))
            )
            if not partial:
                hint = misplaced_options_hint(self.name, kwargs, self._signature)
                raise EnqueueError(f"bad arguments for task {self.name!r}: {misfit}{hint}")
        delay_s, run_at = (0.0, None) if when is None else when_to_delay(when)
        return Call(
            self.name, args, kwargs, self.opts, delay_s, run_at,
            partial=partial, dispatcher=self._dispatcher, fits=self._misfit,
        )  # fmt: skip


async def _awaited_in(ctx: JobContext, coro: Coroutine[Any, Any, Any]) -> Any:
    # Bound when the coroutine runs, not when it is made: that is when the task body reads it.
    with bound(ctx):
        return await coro
