"""Running one job: resolve its task, enforce its timeout, classify the outcome. No Redis here."""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import math
import threading
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import copy_context
from dataclasses import dataclass
from typing import Any, TypeGuard

import anyio
from pydantic import ValidationError

from taskforge.context import JobContext, bind
from taskforge.errors import JobCancelledError, JobInterrupted, UnknownTaskError
from taskforge.job import Job
from taskforge.registry import Registry
from taskforge.retry import Retry, backoff_s
from taskforge.task import Task

log = logging.getLogger(__name__)

TRACEBACK_LIMIT = 8 * 1024
RESULT_LIMIT_BYTES = 1024 * 1024


class JobTimeoutError(TimeoutError):
    """Raised into a task that ran past its timeout."""


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong: exception type name, message, traceback (capped)."""

    type: str
    message: str
    traceback: str = ""

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
        return cls(type(exc).__name__, _describe(exc), tb)


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
    """The task returned; ``result_json`` is its encoded value."""

    result_json: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Run again after ``delay_s``."""

    delay_s: float
    failure: Failure


@dataclass(frozen=True, slots=True)
class Dead:
    """Give up: dead-letter with this failure."""

    failure: Failure


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Cancellation was requested and honoured."""


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The worker is stopping: hand the job back unrun (not an attempt)."""


@dataclass(frozen=True, slots=True)
class Deferred:
    """Over a rate or concurrency limit: hand the job back unrun, ready again after ``delay_s``."""

    delay_s: float


Result = Succeeded | RetryLater | Dead | Cancelled | Abandoned | Deferred


def decode(raw: str) -> Job:
    """Decode an envelope. Raises ValueError (pydantic's ValidationError is one) when damaged."""
    return Job.model_validate_json(raw)


def resolve(registry: Registry, job: Job) -> Task[Any, Any]:
    """The task a job names. Raises UnknownTaskError."""
    return registry.get(job.task)


def classify_failure(job: Job, attempts_before: int, exc: BaseException) -> RetryLater | Dead:
    """Retry with backoff while the budget lasts, else dead (``attempts_before``: earlier runs)."""
    failure = Failure.of(exc)
    retry_number = attempts_before + 1
    if retry_number > job.max_retries:
        return Dead(failure)
    if isinstance(exc, Retry) and _usable_delay(exc.countdown_s):
        return RetryLater(exc.countdown_s, failure)
    delay = backoff_s(
        retry_number,
        base_s=job.retry_backoff_s,
        cap_s=job.retry_backoff_cap_s,
        jitter=job.retry_jitter,
    )
    return RetryLater(delay, failure)


def _usable_delay(countdown_s: float | None) -> TypeGuard[float]:
    # NaN, infinity or a negative countdown (set after Retry's own check) falls back to the
    # backoff schedule: the retry still happens, and the worker never sees a delay it cannot
    # turn into milliseconds.
    return countdown_s is not None and math.isfinite(countdown_s) and countdown_s >= 0


#: Reused: ``json.dumps`` with options builds a new encoder per call.
_RESULT_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def encode_result(value: Any) -> str:
    """JSON-encode a task's return value; raises TypeError/ValueError when it cannot be."""
    if value is None:  # most tasks return nothing: skip the encoder
        return "null"
    text = _RESULT_JSON.encode(value)
    if len(text) > RESULT_LIMIT_BYTES:
        raise ValueError(f"result is {len(text)} bytes, over the {RESULT_LIMIT_BYTES} limit")
    return text


class Executor:
    """Runs jobs of one registry. Async tasks run on the loop; sync tasks in worker threads."""

    def __init__(self, registry: Registry, *, thread_limiter: anyio.CapacityLimiter):
        self.registry = registry
        self.thread_limiter = thread_limiter

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
            return self._failed(ctx, exc)
        # The job boundary: whatever the task raised becomes its outcome, never a worker crash:
        # sys.exit(), KeyboardInterrupt, GeneratorExit or a BaseException of its own would
        # otherwise take the worker and its other jobs down.
        except BaseException as exc:
            return self._failed(ctx, exc)
        try:
            return Succeeded(encode_result(value))
        # RecursionError: a result nested deeper than the encoder's recursion limit.
        except (TypeError, ValueError, RecursionError) as exc:
            return Dead(Failure("SerializationError", f"result cannot be stored: {exc}"))

    @staticmethod
    def _failed(ctx: JobContext, exc: BaseException) -> Result:
        if ctx.cancel_requested:
            return Cancelled()
        return classify_failure(ctx.job, ctx.attempt - 1, exc)

    async def _call(self, task: Task[Any, Any], ctx: JobContext) -> Any:
        job = ctx.job
        if task.is_async:
            bind(ctx)
            try:
                with _deadline(job.timeout_s):
                    return await task.fn(*job.args, **job.kwargs)
            except TimeoutError as exc:
                raise JobTimeoutError(f"timed out after {job.timeout_s}s") from exc
        return await self._call_sync(task.fn, ctx)

    async def _call_sync(self, fn: Callable[..., Any], ctx: JobContext) -> Any:
        job = ctx.job
        running = _RunningThread()

        def target() -> Any:
            running.enter()
            try:
                bind(ctx)
                return fn(*job.args, **job.kwargs)
            except BaseException as exc:
                # Boxed out of the thread: a GeneratorExit thrown into the awaiting coroutine
                # would close the coroutines above it instead of reaching the job boundary.
                return _Raised(exc)
            finally:
                running.leave()

        context = copy_context()
        try:
            with _deadline(job.timeout_s):
                value = await anyio.to_thread.run_sync(
                    context.run, target, limiter=self.thread_limiter, abandon_on_cancel=True
                )
        except TimeoutError as exc:
            running.interrupt(JobInterrupted)
            raise JobTimeoutError(f"timed out after {job.timeout_s}s") from exc
        except anyio.get_cancelled_exc_class():
            running.interrupt(JobInterrupted)
            raise
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


def _deadline(timeout_s: float | None) -> AbstractContextManager[Any]:
    # No timeout, no timer: a cancel scope per job is a measurable share of a no-op job's cost.
    return nullcontext() if timeout_s is None else anyio.fail_after(timeout_s)


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
    return Failure("PoisonJob", f"poison: undecodable envelope: {str(exc)[:500]}")


def describe_unknown(exc: UnknownTaskError) -> Failure:
    """The dead-letter reason for a job naming a task this worker does not know."""
    return Failure("UnknownTaskError", f"unknown task: {exc}")
