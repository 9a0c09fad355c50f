"""One job from its lease to its outcome: verify, decode, resolve, context, limits, run.

:class:`JobRunner` starts each leased job as its own asyncio task. The task opens the envelope
(signature, serializer), finds the task, builds its :class:`JobContext`, checks ``expires=`` and
the task's limits, runs the middleware's ``before_run`` and the :class:`Executor`, and hands the
decided outcome to the outcome writer. An envelope that cannot be opened or a task not registered
is dead at once (never run); a job over its limit waits unrun (not an attempt).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from taskforge.context import JobContext
from taskforge.driver.task_clients import TaskClients
from taskforge.errors import BrokerError, UnknownTaskError
from taskforge.job import Job
from taskforge.limits.acquire import OUTAGE_RETRY_S, Limiter
from taskforge.metrics import WorkerMetrics
from taskforge.middleware import Hooks
from taskforge.progress import ProgressWriter
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.records import Leased
from taskforge.registry import Registry
from taskforge.serializer import SerializerRefusedError, load_job
from taskforge.settings import Settings
from taskforge.signing import SignatureError, signing_key, verify_fields
from taskforge.task import Task
from taskforge.worker.executor import (
    Abandoned,
    Cancelled,
    Dead,
    Deferred,
    Executor,
    Failure,
    Result,
    decode,
    describe_bad_envelope,
    describe_unknown,
    resolve,
)
from taskforge.worker.expiry import ServerClock, expired_reason
from taskforge.worker.outcomes import OutcomeWriter, Pending, outcome_of
from taskforge.worker.slots import Running, Slots

log = logging.getLogger("taskforge.worker")


class JobRunner:
    """Runs leased jobs, each in its own task; ``on_bug`` is called when one fails outside the
    job boundary (a bug in the worker: :attr:`error` holds it)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        broker: AsyncBroker,
        executor: Executor,
        slots: Slots,
        writer: OutcomeWriter,
        *,
        limiter: Limiter,
        progress: ProgressWriter,
        metrics: WorkerMetrics,
        hooks: Hooks,
        on_bug: Callable[[], None],
        clients: TaskClients | None = None,
    ):
        self.settings = settings
        self.registry = registry
        self.broker = broker
        self.executor = executor
        self.slots = slots
        self.writer = writer
        self.limiter = limiter
        self.progress = progress
        self.metrics = metrics
        self.hooks = hooks
        self.on_bug = on_bug
        self.clients = clients  # lent to the task bodies: current_job().redis
        self.error: BaseException | None = None
        self._signing_key = signing_key(settings)
        self._clock = ServerClock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """The job tasks not yet ended."""
        return frozenset(self._tasks)

    def start(self, queue: str, lease: Leased) -> None:
        """Start running ``lease``'s job (its slot is already taken)."""
        running = Running(queue, lease, anyio.CancelScope())
        self.slots.running[lease.id] = running
        # A plain asyncio task (copying this context, as a spawn would): an anyio task-group
        # spawn was a fifth of a no-op job's worker CPU. run() still joins or cancels them all.
        name = f"job {lease.id}"
        task = asyncio.get_running_loop().create_task(self._run_job(running), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not a job failure (the executor catches those): stop, and run() re-raises it.
        if self.error is None:
            self.error = task.exception()
        self.on_bug()

    async def join(self) -> None:
        """Wait until every job task has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def cancel_all(self) -> None:
        """Cancel every job task and wait for them."""
        # No job outlives run(), as in a task group: one that ends early cancels its jobs.
        for task in self._tasks:
            task.cancel()
        await self.join()

    async def _run_job(self, running: Running) -> None:
        lease = running.lease
        task_name, attempt = "?", lease.attempts + 1
        try:
            result, task_name = await self._execute(running)
        except BaseException:
            self.slots.release()  # no outcome to write
            raise
        finally:
            del self.slots.running[lease.id]
            self.slots.wake()  # wakes the drain; the slot itself frees once the outcome is in
        duration_s = time.monotonic() - running.started
        self.writer.add(Pending(running.queue, lease, result, task_name, attempt, duration_s))
        # After the add: the outcome is decided, and written whatever the hooks do.
        if self.hooks and running.ctx is not None:
            outcome = outcome_of(result, duration_s)
            await self.hooks.after_run(running.ctx, outcome, ran=running.ran)

    async def _execute(self, running: Running) -> tuple[Result, str]:
        lease = running.lease
        try:
            job = self._open(lease, running.queue)
        except (SignatureError, SerializerRefusedError) as exc:
            return Dead(Failure(type(exc).__name__, f"refused: {exc}")), "?"
        except ValueError as exc:
            return Dead(describe_bad_envelope(exc)), "?"
        try:
            task = resolve(self.registry, job)
        except UnknownTaskError as exc:
            return Dead(describe_unknown(exc)), job.task
        report = self.progress.reporter(running.queue)
        running.ctx = JobContext(
            job, lease.attempts + 1, lease.token, _on_progress=report, _clients=self.clients
        )
        if lease.token == "1" and job.created_ms:  # first delivery: not a retry/reclaim/revive
            self.metrics.job_started(running.queue, time.time() - job.created_ms / 1000)
        if running.ctx.cancel_requested:  # cancelled between fetch and start: never run it
            return Cancelled(), job.task
        if running.scope.cancel_called:  # stop_now() came before the job began
            return Abandoned(), job.task
        if (expired := await self._expired(job)) is not None:
            return expired, job.task
        wait_s = await self.limiter.acquire(task, lease.id)
        if running.ctx.cancel_requested:  # cancelled during the limit check
            await self.limiter.release(task, lease.id)
            return Cancelled(), job.task
        if wait_s is not None:
            return Deferred(wait_s), job.task
        try:
            return await self._attempt(task, running, running.ctx), job.task
        finally:
            await self.limiter.release(task, lease.id)

    async def _attempt(self, task: Task[Any, Any], running: Running, ctx: JobContext) -> Result:
        if self.hooks:
            running.ran = True
            try:
                await self.hooks.before_run(ctx)
            except asyncio.CancelledError:
                raise  # the worker's own stop or abort
            # A middleware boundary: its error fails this attempt, as the task's own would
            # (sys.exit() or a BaseException of its own too: never the worker's crash).
            except BaseException as exc:
                return Executor.failed(ctx, exc, task)
        return await self.executor.run(task, ctx, running.scope)

    async def _expired(self, job: Job) -> Cancelled | Deferred | None:
        """``expires=``: an attempt too late to start is cancelled, not run."""
        if job.expires_ms is None:
            return None
        try:
            now_ms = await self._clock.now_ms(self.broker)
        except BrokerError:  # Redis' clock unread: hand the job back unrun, as a limit does
            return Deferred(OUTAGE_RETRY_S)
        reason = expired_reason(job, now_ms)
        return None if reason is None else Cancelled("Expired", reason)

    def _open(self, lease: Leased, queue: str) -> Job:
        """Check the signature (when signing is on), decode, and unpack the arguments."""
        if self._signing_key is not None:
            texts = (lease.id, lease.task, queue, lease.args, lease.kwargs, lease.options)
            verify_fields(self._signing_key, texts, lease.sig)
        return load_job(decode(lease, queue, self.registry), self.settings.serializer)


__all__ = ["JobRunner"]
