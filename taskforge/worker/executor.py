"""Running one job: resolve its task, enforce its timeout, classify the outcome. No Redis here."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import threading
import traceback
from collections.abc import Callable
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

import anyio
from pydantic import ValidationError

from taskforge.context import JobContext, bind
from taskforge.errors import JobCancelledError, JobInterrupted, JobTimeoutError, UnknownTaskError
from taskforge.job import Job
from taskforge.payload import find_uncarried, json_encoder, typed_arguments
from taskforge.policy import RETRY_EVERYTHING, RetryPolicy
from taskforge.protocol.records import Leased, job_of
from taskforge.registry import Registry
from taskforge.retry import Retry, backoff_s
from taskforge.serializer import JSON, PICKLE, dump_result
from taskforge.task import Task
from taskforge.worker.soft_timeout import SoftLimited, arm_thread

if TYPE_CHECKING:  # the pool (and multiprocessing) load only when a worker asks for one
    from taskforge.worker.pool import ProcessPool

# The logger keeps its name from before the package layout: logging configs name it.
log = logging.getLogger("taskforge.executor")

TRACEBACK_LIMIT = 8 * 1024
RESULT_LIMIT_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong: exception type name, message, traceback (capped)."""

    type: str
    message: str
    traceback: str = ""
    #: The live exception, when it was raised in this process (middleware reporters use it).
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """Describe ``exc`` (its traceback is cut to ``TRACEBACK_LIMIT`` characters).

        Never raises: an exception whose ``__str__`` or ``__repr__`` fails is still described.
        """
        try:
            tb = "".join(traceback.format_exception(exc))
        except Exception as err:  # a frame or chain that cannot be formatted
            tb = f"<traceback could not be formatted: {type(err).__name__}>"
        if len(tb) > TRACEBACK_LIMIT:
            tb = "...\n" + tb[-TRACEBACK_LIMIT:]
        return cls(type_name(type(exc)), _describe(exc), tb, exc)


def type_name(cls: type[BaseException]) -> str:
    """The recorded name of an exception class: bare for builtins and taskforge's own
    (``ValueError``, ``JobTimeoutError``), ``module.QualName`` for every other one."""
    module = cls.__module__
    if module == "builtins" or module == "taskforge" or module.startswith("taskforge."):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _describe(exc: BaseException) -> str:
    # A task's exception is user code: its __str__/__repr__ may raise, or recurse without end.
    for render in (str, repr):
        try:
            text = render(exc)
        except Exception as err:
            text = f"<{type(exc).__name__}.__{render.__name__}__ failed: {type(err).__name__}>"
        if text:
            return text
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The task returned; ``result_json`` is its encoded value ('' = not stored); ``ttl_s`` is
    how long its record lives (None: the settings' result TTL)."""

    result_json: str
    ttl_s: int | None = None


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Run again after ``delay_s``; ``requested`` when the task raised ``Retry`` itself."""

    delay_s: float
    failure: Failure
    requested: bool = False


@dataclass(frozen=True, slots=True)
class Dead:
    """Give up: dead-letter with this failure."""

    failure: Failure


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Cancellation was requested and honoured (or the job expired: ``type`` ``Expired``)."""

    type: str = "Cancelled"
    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The worker is stopping: hand the job back unrun (not an attempt)."""


@dataclass(frozen=True, slots=True)
class Deferred:
    """Over a rate or concurrency limit: hand the job back unrun, ready again after ``delay_s``."""

    delay_s: float


Result = Succeeded | RetryLater | Dead | Cancelled | Abandoned | Deferred


def decode(lease: Leased, queue: str, registry: Registry) -> Job:
    """The job a leased record describes: the options ``registry`` has for its task, under the
    call's overrides. Raises ValueError (pydantic's ValidationError is one) when damaged."""
    defaults = registry.get(lease.task).opts.job_options() if lease.task in registry else None
    return job_of(lease, queue, defaults)


def resolve(registry: Registry, job: Job) -> Task[Any, Any]:
    """The task a job names. Raises UnknownTaskError."""
    return registry.get(job.task)


def classify_failure(
    job: Job, attempts_before: int, exc: BaseException, policy: RetryPolicy = RETRY_EVERYTHING
) -> RetryLater | Dead:
    """Retry with backoff while ``policy`` allows and the budget lasts, else dead
    (``attempts_before``: earlier runs; ``job.max_retries`` None: no budget limit)."""
    failure = describe_failure(exc)
    retry_number = attempts_before + 1
    if not policy.retries(exc):
        return Dead(failure)
    if job.max_retries is not None and retry_number > job.max_retries:
        return Dead(failure)
    requested = isinstance(exc, Retry)
    if isinstance(exc, Retry) and _usable_delay(exc.countdown_s):
        return RetryLater(exc.countdown_s, failure, requested)
    delay = backoff_s(
        retry_number,
        base_s=job.retry_backoff_s,
        cap_s=job.retry_backoff_cap_s,
        jitter=job.retry_jitter,
    )
    return RetryLater(delay, failure, requested)


def describe_failure(exc: BaseException) -> Failure:
    """The failure to record: a ``Retry(exc=...)`` records its cause's type and message (its
    traceback shows the cause too, as the ``Retry``'s context)."""
    failure = Failure.of(exc)
    if isinstance(exc, Retry) and exc.exc is not None:
        cause = Failure.of(exc.exc)
        return Failure(cause.type, cause.message, failure.traceback)
    return failure


def _usable_delay(countdown_s: float | None) -> TypeGuard[float]:
    # NaN, infinity or a negative countdown (set after Retry's own check) falls back to the
    # backoff schedule: the retry still happens, and the worker never sees a delay it cannot
    # turn into milliseconds.
    return countdown_s is not None and math.isfinite(countdown_s) and countdown_s >= 0


#: Reused: ``json.dumps`` with options builds a new encoder per call. Carries typed values.
_RESULT_JSON = json_encoder()


def encode_result(value: Any, serializer: str = JSON) -> str:
    """Encode a task's return value (JSON, or pickle for a pickle job); raises
    TypeError/ValueError when it cannot be."""
    if value is None:  # most tasks return nothing: skip the encoder
        return "null"
    if serializer == PICKLE:
        return dump_result(value)
    try:
        text = _RESULT_JSON.encode(value)
    except (TypeError, ValueError) as exc:
        try:
            found = find_uncarried(value, "result")
        except RecursionError:  # nested past the recursion limit: say what the encoder said
            found = None
        if found is None:
            raise
        where, type_name = found
        raise TypeError(
            f"{where} is a {type_name}, which JSON cannot carry; return plain data or a "
            "carried type (datetime, UUID, Decimal, bytes, an enum, a pydantic model...)"
        ) from exc
    if len(text) > RESULT_LIMIT_BYTES:
        raise ValueError(f"result is {len(text)} bytes, over the {RESULT_LIMIT_BYTES} limit")
    return text


class Executor:
    """Runs jobs of one registry. Async tasks run on the loop; sync tasks in worker threads, or
    in ``pool``'s child processes (all of them when ``pool.default``, else those of
    ``@task(pool="process")``; a ``pool="thread"`` task stays in a thread either way). With no
    ``pool`` (an in-process worker, a test's drain) every sync task runs in a thread.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        thread_limiter: anyio.CapacityLimiter,
        pool: ProcessPool | None = None,
    ):
        self.registry = registry
        self.thread_limiter = thread_limiter
        self.pool = pool  # when set, sync tasks may run in its child processes, not in threads
        if pool is None and (wanting := [t.name for t in registry if t.opts.pool == "process"]):
            log.info(
                "task(s) %s ask for pool='process' but this worker has no process pool: they run "
                "in threads (give it pool=ProcessPool(...); `taskforge worker` makes one)",
                ", ".join(sorted(wanting)),
            )

    async def run(self, task: Task[Any, Any], ctx: JobContext, scope: anyio.CancelScope) -> Result:
        """Run one attempt inside ``scope`` (the worker cancels it to abort) and classify it."""
        job = ctx.job
        try:
            with scope:
                value = await self._call(task, ctx)
            if scope.cancelled_caught:
                return Cancelled() if ctx.cancel_requested else Abandoned()
        except JobCancelledError:
            return Cancelled()
        except asyncio.CancelledError as exc:
            if scope.cancel_called or _cancelling():
                raise  # the worker's own: stop, timeout handled above, cancel, run() cancelled
            # The task's own: it awaited something that was cancelled. An attempt that failed.
            log.warning(
                "job %s: the task let a CancelledError escape; counted as a failure", job.id
            )
            return self.failed(ctx, exc, task)
        # The job boundary: whatever the task raised becomes its outcome, never a worker crash:
        # sys.exit(), KeyboardInterrupt, GeneratorExit or a BaseException of its own would
        # otherwise take the worker and its other jobs down.
        except BaseException as exc:
            return self.failed(ctx, exc, task)
        if task.opts.ignore_result:
            return Succeeded("", task.opts.result_ttl)
        try:
            return Succeeded(encode_result(value, job.serializer), task.opts.result_ttl)
        # RecursionError: a result nested deeper than the encoder's recursion limit.
        except (TypeError, ValueError, RecursionError) as exc:
            return Dead(Failure("SerializationError", f"result cannot be stored: {exc}"))

    @staticmethod
    def failed(ctx: JobContext, exc: BaseException, task: Task[Any, Any]) -> Result:
        if ctx.cancel_requested:
            return Cancelled()
        return classify_failure(ctx.job, ctx.attempt - 1, exc, task.opts.retry_policy)

    async def _call(self, task: Task[Any, Any], ctx: JobContext) -> Any:
        job = ctx.job
        # Pickled arguments are already the objects they were; JSON ones get their types back.
        if job.serializer == PICKLE:
            args, kwargs = tuple(job.args), job.kwargs
        else:
            args, kwargs = typed_arguments(task.fn, job.args, job.kwargs)
        if (pool := self._pool_for(task)) is not None:
            return await self._call_in_pool(pool, ctx)
        if not task.is_async:
            return await self._call_sync(task.fn, ctx, args, kwargs)
        bind(ctx)
        call = task.fn(*args, **kwargs)
        if job.soft_timeout_s is not None:
            call = SoftLimited(call, job.soft_timeout_s)
        with _deadline(job.timeout_s) as deadline:
            value = await call
        if deadline.cancelled_caught:
            # Only the deadline's own expiry: a TimeoutError the task raised itself left the
            # block above as itself, with its own message.
            raise _timed_out(job)
        return value

    def _pool_for(self, task: Task[Any, Any]) -> ProcessPool | None:
        """The process pool ``task`` runs in, or None (the loop, or a thread)."""
        pool = self.pool
        if pool is None or task.is_async or task.opts.pool == "thread":
            return None
        return pool if pool.default or task.opts.pool == "process" else None

    async def _call_in_pool(self, pool: ProcessPool, ctx: JobContext) -> Any:
        with _deadline(ctx.job.timeout_s) as deadline:
            value = await pool.call(ctx)  # a timeout or cancel kills the child
        if deadline.cancelled_caught:
            raise _timed_out(ctx.job)
        return value

    async def _call_sync(
        self, fn: Callable[..., Any], ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        job = ctx.job
        running = _RunningThread()

        def target() -> Any:
            running.enter()
            try:
                bind(ctx)
                return fn(*args, **kwargs)
            except BaseException as exc:
                # Boxed out of the thread: a GeneratorExit thrown into the awaiting coroutine
                # would close the coroutines above it instead of reaching the job boundary.
                return _Raised(exc)
            finally:
                running.leave()

        context = copy_context()
        soft = (
            None
            if job.soft_timeout_s is None
            else arm_thread(running.interrupt, job.soft_timeout_s)
        )
        try:
            with _deadline(job.timeout_s) as deadline:
                value = await anyio.to_thread.run_sync(
                    context.run, target, limiter=self.thread_limiter, abandon_on_cancel=True
                )
        except anyio.get_cancelled_exc_class():
            running.interrupt(JobInterrupted)
            raise
        finally:
            if soft is not None:
                soft.cancel()
        if deadline.cancelled_caught:  # the deadline passed (see _call)
            running.interrupt(JobInterrupted)
            raise _timed_out(job)
        if isinstance(value, _Raised):
            raise value.exc
        return value


@dataclass(frozen=True, slots=True)
class _Raised:
    """What a sync task raised, carried out of its thread as a value."""

    exc: BaseException


def _cancelling() -> bool:
    """Whether cancellation of the current asyncio task was requested (by the worker, from
    outside ``run()``), as opposed to a CancelledError the task raised or let escape."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _NoDeadline:
    """Stands in for the deadline's cancel scope when a job has no timeout."""

    cancelled_caught = False

    def __enter__(self) -> _NoDeadline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_DEADLINE = _NoDeadline()


def _deadline(timeout_s: float | None) -> anyio.CancelScope | _NoDeadline:
    # No timeout, no timer: a cancel scope per job is a measurable share of a no-op job's cost.
    # move_on_after, not fail_after: only this scope's own expiry may become JobTimeoutError,
    # read from its cancelled_caught.
    return _NO_DEADLINE if timeout_s is None else anyio.move_on_after(timeout_s)


def _timed_out(job: Job) -> JobTimeoutError:
    return JobTimeoutError(f"timed out after {job.timeout_s}s (the task's timeout)")


class _RunningThread:
    """The thread running one sync task, so a timeout or cancel can interrupt it.

    A thread cannot be killed, but pure-Python code can be made to raise at its next bytecode,
    so a timed-out sync task stops instead of running on unseen (C code finishes its call first).
    The lock makes sure the exception lands only while the task runs, never in the next job that
    the pooled thread picks up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None

    def enter(self) -> None:
        with self._lock:
            self._ident = threading.get_ident()

    def leave(self) -> None:
        with self._lock:
            self._ident = None

    def interrupt(self, exc_type: type[BaseException]) -> None:
        with self._lock:
            if self._ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._ident), ctypes.py_object(exc_type)
                )


def describe_bad_envelope(exc: ValidationError | ValueError) -> Failure:
    """The dead-letter reason for an envelope that cannot be decoded."""
    return Failure("PoisonJob", f"poison: unreadable job record: {str(exc)[:500]}")


def describe_unknown(exc: UnknownTaskError) -> Failure:
    """The dead-letter reason for a job naming a task this worker does not know."""
    return Failure("UnknownTaskError", f"unknown task: {exc}")


__all__ = [
    "Abandoned",
    "Cancelled",
    "Dead",
    "Deferred",
    "Executor",
    "Failure",
    "JobTimeoutError",
    "Result",
    "RetryLater",
    "Succeeded",
    "decode",
    "describe_bad_envelope",
    "describe_unknown",
    "resolve",
]
