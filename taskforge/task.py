"""Tasks: a registered function, called here or sent as jobs through its dispatcher.

What a task's jobs carry is in :mod:`taskforge.options` (:class:`TaskOptions`), a call ready to
send in :mod:`taskforge.call` (:class:`Call`, :class:`Periodic`); both are imported here too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

from taskforge.call import Call, Dispatcher, Periodic
from taskforge.celery_compat import apply_async_when, misplaced_options_hint
from taskforge.context import JobContext, bound, has_job, stand_in
from taskforge.durations import When, when_to_delay
from taskforge.errors import ConfigurationError, EnqueueError
from taskforge.handle import JobHandle
from taskforge.job import JobPriority
from taskforge.options import (
    UNSET,
    TaskOptions,
    _Unset,
    check_result_options,
    coerce_priority,
    expires_at_ms,
)

P = ParamSpec("P")
R = TypeVar("R")


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


__all__ = [
    "Call",
    "Dispatcher",
    "Periodic",
    "Task",
    "TaskOptions",
    "When",
    "check_result_options",
    "coerce_priority",
    "expires_at_ms",
    "when_to_delay",
]
