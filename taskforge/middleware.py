"""Middleware: hooks around a job's life, on the producer and in the worker.

Subclass :class:`Middleware`, override the hooks you need (each may be ``def`` or ``async def``,
except :meth:`Middleware.on_enqueue`, which runs inside ``.delay()`` and so is always sync) and
register it with ``app.add_middleware(...)``. Hooks see jobs, never Redis commands.

Order: ``on_enqueue``, ``on_worker_start`` and ``before_run`` run in registration order; the
others in reverse, so the first middleware wraps all the rest.

Failures never lose a job: ``on_enqueue`` raising stops the ``.delay()`` (nothing is written);
``before_run`` raising fails the attempt with that error (the job follows its retry policy);
an error in any later hook is logged and the outcome stands.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskforge.context import JobContext
from taskforge.errors import ConfigurationError, SerializationError

if TYPE_CHECKING:  # only for annotations: the worker imports this module
    from taskforge.worker import Worker

log = logging.getLogger(__name__)

#: Headers are for small metadata (trace ids, tenant, request id), not payloads.
MAX_HEADERS_BYTES = 8 * 1024


@dataclass(slots=True)
class Enqueueing:
    """A job being built by ``.delay()``; ``on_enqueue`` may add to :attr:`headers`."""

    job_id: str
    task: str
    queue: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one attempt ended, as ``after_run``, ``on_retry`` and ``on_dead`` see it.

    ``status`` is ``succeeded``, ``retrying``, ``dead``, ``cancelled``, ``handed_back`` (the
    worker stopped, or a rate/concurrency limit deferred the job: not an attempt).
    ``duration_s`` runs from the job's start in this worker to its outcome. ``exception`` is the
    live exception when the task raised in this process (None in a process-pool child's case:
    use ``error_type``/``error``/``traceback`` there).
    """

    status: str
    duration_s: float
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    retry_in_s: float | None = None
    exception: BaseException | None = None

    @property
    def failed(self) -> bool:
        """True when the attempt raised (``retrying`` or ``dead``)."""
        return self.status in ("retrying", "dead")


class Middleware:
    """Base class of middleware: every hook is a no-op until overridden.

    Hooks may be ``async def`` in a subclass (``on_enqueue`` excepted). Worker hooks run on the
    worker's event loop, in the worker process (also for tasks of the process pool).
    """

    def on_enqueue(self, job: Enqueueing) -> None:
        """Producer side, inside ``.delay()``: add ``job.headers`` entries (str -> str).

        Always sync. Raising aborts the call; nothing is written.
        """

    def before_run(self, ctx: JobContext) -> Awaitable[None] | None:
        """Just before an attempt runs; raising fails the attempt with that error."""
        return None

    def after_run(self, ctx: JobContext, outcome: RunOutcome) -> Awaitable[None] | None:
        """After every attempt that reached :meth:`before_run`, whatever its outcome."""
        return None

    def on_retry(self, ctx: JobContext, outcome: RunOutcome) -> Awaitable[None] | None:
        """A failed attempt will be retried after ``outcome.retry_in_s``."""
        return None

    def on_dead(self, ctx: JobContext, outcome: RunOutcome) -> Awaitable[None] | None:
        """The job is being dead-lettered after an attempt (retries spent, or a result that
        cannot be stored). Jobs that cannot be decoded or name an unknown task are dead-lettered
        before any hook sees them."""
        return None

    def on_worker_start(self, worker: Worker) -> Awaitable[None] | None:
        """The worker checked Redis and is about to fetch; raising stops the worker."""
        return None

    def on_worker_stop(self, worker: Worker) -> Awaitable[None] | None:
        """The worker has stopped (its jobs finished or were handed back)."""
        return None


class Hooks:
    """Calls a list of middleware in order, sync or async, with the error rules above."""

    def __init__(self, middleware: Sequence[Middleware] = ()):
        self.middleware = middleware  # kept by reference: the app's list may grow later

    def __bool__(self) -> bool:
        return bool(self.middleware)

    def enqueue(self, job: Enqueueing) -> dict[str, str]:
        """Run every ``on_enqueue``; returns the checked headers.

        Raises:
            ConfigurationError: an ``on_enqueue`` is ``async def``.
            SerializationError: a header that is not str -> str, or headers over 8 KiB.
        """
        for m in self.middleware:
            if inspect.iscoroutinefunction(m.on_enqueue):
                raise ConfigurationError(
                    f"{type(m).__name__}.on_enqueue is async; it runs inside .delay(), which may "
                    "be sync: make it a plain def"
                )
            m.on_enqueue(job)
        return check_headers(job.headers)

    async def before_run(self, ctx: JobContext) -> None:
        """Run every ``before_run``; the first error propagates (the attempt fails with it)."""
        for m in self.middleware:
            await _call(m.before_run(ctx))

    async def after_run(self, ctx: JobContext, outcome: RunOutcome, *, ran: bool) -> None:
        """``after_run`` (if the attempt ``ran``), then ``on_retry``/``on_dead``; errors logged."""
        for m in reversed(self.middleware):
            if ran:
                await _guarded(m.after_run, ctx, outcome)
            if outcome.status == "retrying":
                await _guarded(m.on_retry, ctx, outcome)
            elif outcome.status == "dead":
                await _guarded(m.on_dead, ctx, outcome)

    async def worker_start(self, worker: Worker) -> None:
        """Run every ``on_worker_start``; an error propagates and the worker does not start."""
        for m in self.middleware:
            await _call(m.on_worker_start(worker))

    async def worker_stop(self, worker: Worker) -> None:
        """Run every ``on_worker_stop``; errors are logged."""
        for m in reversed(self.middleware):
            await _guarded(m.on_worker_stop, worker)


def check_headers(headers: Any) -> dict[str, str]:
    """``headers`` if it is a small str -> str mapping.

    Raises:
        SerializationError: saying which entry is wrong.
    """
    if not isinstance(headers, dict):
        raise SerializationError(f"headers must be a dict of str to str, got {type(headers)}")
    size = 0
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SerializationError(
                f"header {key!r}: {value!r} is not str -> str; convert it, e.g. str(value)"
            )
        size += len(key) + len(value)
    if size > MAX_HEADERS_BYTES:
        raise SerializationError(
            f"headers hold {size} characters, over {MAX_HEADERS_BYTES}; pass ids, not data"
        )
    return headers


async def _call(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result


async def _guarded(hook: Any, *args: Any) -> None:
    # A middleware boundary: a failing after-hook must not change an outcome already decided.
    try:
        await _call(hook(*args))
    except asyncio.CancelledError:
        raise  # the worker's own stop
    # sys.exit() or a BaseException of its own too: logged, never the worker's crash.
    except BaseException:
        log.exception("middleware hook %s failed; the job's outcome stands", _name(hook))


def _name(hook: Any) -> str:
    owner = getattr(hook, "__self__", None)
    return f"{type(owner).__name__}.{hook.__name__}" if owner else repr(hook)


__all__ = ["Enqueueing", "Hooks", "Middleware", "RunOutcome", "check_headers"]
