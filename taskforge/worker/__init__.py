"""The worker: fetch leased jobs, run them in a bounded pool, record outcomes, keep leases.

One process, one anyio event loop. Per queue a fetcher leases as many jobs as there are free
slots in one script call and blocks on the queue's wake marker when none are ready. Outcomes are
written in batches by one flusher; one lease keeper renews every running lease in one call per
queue. Promotion of scheduled jobs and reclaiming of expired leases happen inside every fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from taskforge.broker import AsyncBroker, Fetched, Leased, Outcome
from taskforge.client import Client, control_channel
from taskforge.connection import async_client
from taskforge.context import JobContext
from taskforge.errors import (
    BrokerConnectionError,
    BrokerError,
    BrokerOutOfMemoryError,
    ConfigurationError,
    UnknownTaskError,
)
from taskforge.job import Job, JobStatus
from taskforge.keys import check_queue_name
from taskforge.limiter import OUTAGE_RETRY_S, Limiter
from taskforge.metrics import MetricsExporter, WorkerMetrics
from taskforge.middleware import Hooks, Middleware, RunOutcome
from taskforge.oom import MemoryPause
from taskforge.progress import ProgressWriter
from taskforge.registry import Registry
from taskforge.scheduler import Scheduler
from taskforge.serializer import SerializerRefusedError, load_job
from taskforge.settings import Settings
from taskforge.signing import SignatureError, signing_key, verify
from taskforge.task import Task
from taskforge.worker.executor import (
    Abandoned,
    Cancelled,
    Dead,
    Deferred,
    Executor,
    Failure,
    Result,
    RetryLater,
    Succeeded,
    decode,
    describe_bad_envelope,
    describe_unknown,
    resolve,
)
from taskforge.worker.expiry import ServerClock, expired_reason
from taskforge.worker.outcome_log import outcome_line
from taskforge.workflow_advance import WorkflowAdvancer, finished_members

if TYPE_CHECKING:  # the CLI builds the pool; importing it here would load multiprocessing
    from taskforge.worker.pool import ProcessPool

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
#: Environment variable overriding the heartbeat interval (s); the TTL is three beats.
HEARTBEAT_ENV = "TASKFORGE_HEARTBEAT"
#: How long a queue's per-minute outcome counters are kept (``taskforge queues``).
STATS_TTL_S = 3600


@dataclass(slots=True)
class _Running:
    queue: str
    lease: Leased
    scope: anyio.CancelScope
    ctx: JobContext | None = None
    started: float = field(default_factory=time.monotonic)
    ran: bool = False  # reached the middleware's before_run


@dataclass(slots=True)
class _Pending:
    queue: str
    lease: Leased
    result: Result
    task: str
    attempt: int
    duration_s: float


@dataclass(slots=True)
class WorkerStats:
    """Counters a worker reports in its heartbeat."""

    processed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    handed_back: int = 0
    deferred: int = 0


class Worker:
    """Runs jobs from ``queues`` with up to ``concurrency`` at once.

    ``burst=True`` returns once nothing is ready, running, or due within ``burst_horizon_s``.
    On :meth:`stop`, fetching stops; running jobs get ``grace_s`` to finish, then are handed back
    to the front of their queue (not counted as an attempt).
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = 10,
        burst: bool = False,
        burst_horizon_s: float = 5.0,
        grace_s: float = 10.0,
        block_s: float = 5.0,
        worker_id: str | None = None,
        metrics_port: int | None = None,
        middleware: Sequence[Middleware] = (),
        outcome_log: Callable[[dict[str, Any]], None] | None = None,
        pool: ProcessPool | None = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.settings = settings
        self.registry = registry
        self.queues = [check_queue_name(q) for q in dict.fromkeys(queues)]
        self.concurrency = concurrency
        self.burst = burst
        self.burst_horizon_s = burst_horizon_s
        self.grace_s = grace_s
        self.block_s = block_s
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.stats = WorkerStats()
        self.broker = AsyncBroker(settings)
        self._blocker = AsyncBroker(settings, async_client(settings, blocking_s=block_s))
        self.pool = pool  # sync tasks run in its processes (started and stopped by run())
        limiter = anyio.CapacityLimiter(concurrency)
        self._executor = Executor(registry, thread_limiter=limiter, pool=pool)
        self._free = concurrency
        self._slot_freed = anyio.Event()
        self._running: dict[str, _Running] = {}
        self._pending: list[_Pending] = []
        self._writing = 0  # batches being written right now (burst mode waits for them)
        self._flush_wanted = anyio.Event()
        self._flushed = anyio.Event()
        self._stopping = False
        self._idle_queues: set[str] = set()  # queues whose fetch is blocked on the wake marker
        self._unanswered: dict[str, tuple[str, str]] = {}  # per queue: a fetch to send again
        self._answered: dict[str, str] = {}  # per queue: the last fetch that leased jobs
        # Made in run(): anyio >= 4.12 refuses a CancelScope outside an event loop, and the CLI
        # builds the worker before anyio.run.
        self._fetch_scope: anyio.CancelScope | None = None
        self._jobs_tg: anyio.abc.TaskGroup | None = None
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._job_error: BaseException | None = None
        self._started_at = time.time()
        self._outage_since: float | None = None
        self._oom = MemoryPause(self.id)
        self._in_write: dict[str, _Pending] = {}  # outcomes being written (their leases renewed)
        self.metrics = WorkerMetrics()
        self.metrics_port = metrics_port
        self.heartbeat_s = heartbeat_interval_s()
        self._signing_key = signing_key(settings)
        self._limiter = Limiter(self.broker)
        self._progress = ProgressWriter(self.broker)
        self._workflows = WorkflowAdvancer(self.broker)
        self._clock = ServerClock()
        self._hooks = Hooks(middleware)
        self._outcome_log = outcome_log  # gets one dict per recorded outcome (--json)

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Stop fetching; running jobs get the grace period. Safe to call more than once."""
        if not self._stopping:
            log.info(
                "worker %s stopping: waiting up to %.0fs for running jobs", self.id, self.grace_s
            )
        self._stopping = True
        if self._fetch_scope is not None:
            self._fetch_scope.cancel()

    def stop_now(self) -> None:
        """Stop and hand running jobs back at once (a second signal)."""
        self.grace_s = 0
        self.stop()
        for running in list(self._running.values()):
            running.scope.cancel()

    async def run(self) -> WorkerStats:
        """Run until stopped (or, in burst mode, until the queues are drained)."""
        await self.check_server()
        await self._hooks.worker_start(self)
        exporter = self._start_metrics()
        log.info(
            "worker %s up: queues=%s concurrency=%d redis=%s",
            self.id, ",".join(self.queues), self.concurrency, self.settings.masked_url(),
        )  # fmt: skip
        try:
            if self.pool is not None:
                await self.pool.start()
            async with anyio.create_task_group() as services:
                services.start_soon(self._flush_loop)
                services.start_soon(self._lease_loop)
                services.start_soon(self._heartbeat_loop)
                services.start_soon(self._control_loop)
                services.start_soon(self._progress.run)
                services.start_soon(self._workflows.run)
                services.start_soon(self._workflows.upkeep, self.queues)
                await self._start_scheduler(services)
                async with anyio.create_task_group() as jobs:
                    self._jobs_tg = jobs
                    self._fetch_scope = anyio.CancelScope()
                    if self._stopping:
                        self._fetch_scope.cancel()
                    with self._fetch_scope:
                        async with anyio.create_task_group() as fetchers:
                            for queue in self.queues:
                                fetchers.start_soon(self._fetch_loop, queue)
                    await self._drain()
                    await self._join_jobs()
                await self._flush_all()
                services.cancel_scope.cancel()
        finally:
            if exporter is not None:
                exporter.stop()
            with anyio.CancelScope(shield=True):
                await self._cancel_jobs()
                await self._hooks.worker_stop(self)
                if self.pool is not None:
                    await self.pool.aclose()
                await self._workflows.drain()  # what the last outcome writes handed over
                await self._close()
        if self._job_error is not None:
            raise self._job_error
        return self.stats

    async def _start_scheduler(self, services: anyio.abc.TaskGroup) -> None:
        # Every worker schedules the periodic tasks of its queues; the claim makes each tick once.
        periodics = [p for p in self.registry.periodics() if p.call.options.queue in self.queues]
        if not periodics:
            return
        scheduler = Scheduler(self.broker, periodics, encode=Client(self.settings).encode)
        if not self.burst:
            services.start_soon(scheduler.run)
            return
        try:  # burst mode: claim what is due now, once, before draining the queues
            await scheduler.run_once()
        except BrokerError as exc:
            log.warning("cron ticks not claimed (%s)", exc)

    def _start_metrics(self) -> MetricsExporter | None:
        if self.metrics_port is None:
            return None
        exporter = MetricsExporter(
            self.settings, self.metrics, self.queues, port=self.metrics_port, extra=self._gauges
        )
        return exporter.start()

    def _gauges(self) -> dict[str, float]:
        return {"running_jobs": len(self._running), "concurrency": self.concurrency}

    async def check_server(self) -> None:
        """Fail fast when Redis does not answer; warn about settings that can lose jobs.

        Raises:
            BrokerConnectionError: Redis cannot be reached (the message names the masked URL).
        """
        if self.settings.is_memory:  # the embedded server has no INFO; nothing to warn about
            await self.broker.run(self.broker.ops.known_queues())
            return
        infos, saves = await read_nodes(self.broker)
        for warning in node_warnings(infos, saves):
            log.warning("%s", warning)

    async def _drain(self) -> None:
        with anyio.move_on_after(self.grace_s):
            while self._running:
                await self._wait_slot()
        for running in list(self._running.values()):
            running.scope.cancel()

    async def _close(self) -> None:
        try:
            with anyio.move_on_after(2):
                await self.broker.run(self.broker.ops.forget_worker(self.id))
        except BrokerError:
            pass
        await self._blocker.aclose()
        await self.broker.aclose()
        log.info("worker %s stopped: %s", self.id, self.stats)

    # ------------------------------------------------------------------ fetching

    async def _wait_slot(self) -> None:
        # Several fetchers wait on one event; only the first to wake arms a new one, or a
        # fetcher that went back to waiting would wait on an event nobody sets any more.
        event = self._slot_freed
        await event.wait()
        if self._slot_freed is event:
            self._slot_freed = anyio.Event()

    def _release_slot(self) -> None:
        self._free += 1
        self._slot_freed.set()

    def _release_slots(self, count: int) -> None:
        # Wake fetchers of other queues that saw no free slot while this fetch was out: they
        # would otherwise wait for a running job to end, and forever when none runs.
        if count > 0:
            self._free += count
            self._slot_freed.set()

    async def _fetch_loop(self, queue: str) -> None:
        ops = self.broker.ops
        while not self._stopping:
            if self._oom.active and (self._pending or self._in_write):
                await self._oom.wait()  # the outcomes go first; their write ends the pause
                continue
            if self._free == 0:
                await self._wait_slot()
                continue
            want = self._free
            self._free -= want
            request, answered = self._request_ids(queue)
            try:
                # Shielded: a reply lost to cancellation would strand the leased jobs until
                # their leases expire.
                with anyio.CancelScope(shield=True):
                    fetched = await self.broker.run(
                        ops.fetch(queue, want, self.id, request_id=request, answered_id=answered)
                    )
            except BrokerError as exc:
                self._release_slots(want)
                self._unanswered[queue] = (request, answered)
                await self._outage(exc)
                continue
            self._recovered()
            self._free += want
            await self._accept(queue, request, fetched)
            while not fetched.jobs and not self._stopping:
                if self.burst:
                    if await self._burst_done(fetched.next_due_ms):
                        return
                    break
                idle = await self._idle(queue, fetched)
                if idle is None:
                    break
                fetched = idle

    async def _idle(self, queue: str, last: Fetched) -> Fetched | None:
        """Block until work may be ready, then fetch in the same round trip (None: an outage,
        or a multi-queue wake: the fetch loop leases next)."""
        timeout_s = self.block_s
        for ms in (last.next_due_ms, last.next_lease_ms):
            if ms is not None:
                timeout_s = min(timeout_s, ms / 1000 + 0.001)
        if self._free == 0:  # another queue's fetch took the slots: wait for one to free
            return None
        # One queue: lease what the free slots take as soon as the block returns. Several: the
        # idle fetches of all queues block at once and cannot share the free slots, so each
        # only waits (and does housekeeping); the fetch loop then leases what it has reserved.
        # Otherwise two queues could lease one slot's job each, and the one handed back would
        # have been shown active without running.
        want = self._free if len(self.queues) == 1 else 0
        ops = self._blocker.ops
        request, answered = self._request_ids(queue)
        call = asyncio.ensure_future(
            self._blocker.run(
                ops.wait_then_fetch(
                    queue, want, self.id, timeout_s, request_id=request, answered_id=answered
                )
            )
        )
        self._idle_queues.add(queue)
        try:
            # asyncio's shield: a cancellation (stop(), or from outside) must not drop the reply,
            # which may hold leased jobs. The worker's own stop marker ends the block at once;
            # whatever the fetch leased by then goes back to the queue.
            fetched = await asyncio.shield(call)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._unblock(queue, call)
            raise
        except BrokerError as exc:
            self._unanswered[queue] = (request, answered)
            await self._outage(exc)
            return None
        finally:
            self._idle_queues.discard(queue)
        self._recovered()
        if not want:
            return None  # woken (or timed out): back to the fetch loop's reserving fetch
        if await self._accept(queue, request, fetched):
            # Let the jobs take their first step before this loop sends its next fetch: an idle
            # worker's pickup latency is the job's start, not the next fetch's.
            await asyncio.sleep(0)
        return fetched

    def _request_ids(self, queue: str) -> tuple[str, str]:
        """``(id for this fetch, id of the last answered one)``. A fetch whose reply was lost
        is sent again with its own id, so it returns the jobs it leased instead of new ones."""
        unanswered = self._unanswered.pop(queue, None)
        if unanswered is not None:
            return unanswered
        return os.urandom(8).hex(), self._answered.pop(queue, "")

    async def _accept(self, queue: str, request: str, fetched: Fetched) -> int:
        """Start as many fetched jobs as there are free slots, hand the rest back; returns how
        many started. (A re-sent fetch returns the first one's leases, however many it asks.)"""
        if fetched.jobs:
            self._answered[queue] = request
        take = min(len(fetched.jobs), self._free)
        self._free -= take
        if self._free > 0:
            self._slot_freed.set()  # other queues' fetchers may be waiting for a slot
        for lease in fetched.jobs[:take]:
            self._start(queue, lease)
        extra = fetched.jobs[take:]
        if extra:
            await self._hand_back(queue, extra)
        return take

    async def _unblock(self, queue: str, call: asyncio.Future[Fetched]) -> None:
        if not call.done():
            with contextlib.suppress(BrokerError):
                await self.broker.run(self.broker.ops.unblock([queue], self.id))
        try:
            fetched = await call
        except BrokerError:
            return  # nothing came back: whatever it leased returns when the leases expire
        if fetched.jobs:
            await self._hand_back(queue, fetched.jobs)

    async def _hand_back(self, queue: str, leases: list[Leased]) -> None:
        pairs = [(lease.id, lease.token) for lease in leases]
        try:
            with anyio.CancelScope(shield=True):
                await self.broker.run(self.broker.ops.requeue(queue, pairs))
        except BrokerError as exc:  # their leases expire and bring them back
            log.warning("worker %s could not hand back %d jobs: %s", self.id, len(pairs), exc)

    async def _burst_done(self, next_due_ms: int | None) -> bool:
        if self._running:
            with anyio.move_on_after(0.5):
                await self._wait_slot()
            return False
        if next_due_ms is not None and next_due_ms <= self.burst_horizon_s * 1000:
            await anyio.sleep(next_due_ms / 1000 + 0.001)
            return False
        if self._pending or self._writing or not self._workflows.idle:
            # Outcomes not yet in Redis may hold a retry due within the horizon, and workflow
            # advances not yet run the next steps: write them (or let the flush loop and the
            # advancer finish), then fetch once more to see them.
            await self._flush_all()
            await self._workflows.drain()
            if self._writing or not self._workflows.idle:
                await anyio.sleep(0.01)
            return False
        return not self._running

    async def _outage(self, exc: BrokerError) -> None:
        if isinstance(exc, BrokerOutOfMemoryError):
            unwritten = len(self._pending) + len(self._in_write)
            await anyio.sleep(self._oom.refused(exc, outcomes=unwritten))
            return
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            log.error("worker %s %s; retrying", self.id, _trouble(exc))
        await anyio.sleep(min(2.0, 0.1 + (now - self._outage_since) / 5))

    def _recovered(self) -> None:
        self._oom.accepted()
        if self._outage_since is not None:
            log.warning(
                "worker %s reconnected to Redis after %.1fs",
                self.id, time.monotonic() - self._outage_since,
            )  # fmt: skip
            self._outage_since = None

    # ------------------------------------------------------------------ running

    def _start(self, queue: str, lease: Leased) -> None:
        running = _Running(queue, lease, anyio.CancelScope())
        self._running[lease.id] = running
        # A plain asyncio task (copying this context, as a spawn would): an anyio task-group
        # spawn was a fifth of a no-op job's worker CPU. run() still joins or cancels them all.
        name = f"job {lease.id}"
        task = asyncio.get_running_loop().create_task(self._run_job(running), name=name)
        self._job_tasks.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._job_tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not a job failure (the executor catches those): stop, and run() re-raises it.
        if self._job_error is None:
            self._job_error = task.exception()
        self.stop_now()

    async def _join_jobs(self) -> None:
        while self._job_tasks:
            await asyncio.wait(set(self._job_tasks))

    async def _cancel_jobs(self) -> None:
        # No job outlives run(), as in a task group: one that ends early cancels its jobs.
        for task in self._job_tasks:
            task.cancel()
        await self._join_jobs()

    async def _run_job(self, running: _Running) -> None:
        lease = running.lease
        task_name, attempt = "?", lease.attempts + 1
        try:
            result, task_name = await self._execute(running)
        except BaseException:
            self._release_slot()  # no outcome to write
            raise
        finally:
            del self._running[lease.id]
            self._slot_freed.set()  # wakes _drain; the slot itself frees once the outcome is in
        duration_s = time.monotonic() - running.started
        self._pending.append(_Pending(running.queue, lease, result, task_name, attempt, duration_s))
        self._flush_wanted.set()
        # After the append: the outcome is decided, and written whatever the hooks do.
        if self._hooks and running.ctx is not None:
            outcome = outcome_of(result, duration_s)
            await self._hooks.after_run(running.ctx, outcome, ran=running.ran)

    async def _execute(self, running: _Running) -> tuple[Result, str]:
        lease = running.lease
        try:
            job = self._open(lease)
        except (SignatureError, SerializerRefusedError) as exc:
            return Dead(Failure(type(exc).__name__, f"refused: {exc}")), "?"
        except ValueError as exc:
            return Dead(describe_bad_envelope(exc)), "?"
        try:
            task = resolve(self.registry, job)
        except UnknownTaskError as exc:
            return Dead(describe_unknown(exc)), job.task
        report = self._progress.reporter(running.queue)
        running.ctx = JobContext(job, lease.attempts + 1, lease.token, _on_progress=report)
        if lease.token == "1" and job.created_ms:  # first delivery: not a retry/reclaim/revive
            self.metrics.job_started(running.queue, time.time() - job.created_ms / 1000)
        if running.ctx.cancel_requested:  # cancelled between fetch and start: never run it
            return Cancelled(), job.task
        if running.scope.cancel_called:  # stop_now() came before the job began
            return Abandoned(), job.task
        if (expired := await self._expired(job)) is not None:
            return expired, job.task
        wait_s = await self._limiter.acquire(task, lease.id)
        if running.ctx.cancel_requested:  # cancelled during the limit check
            await self._limiter.release(task, lease.id)
            return Cancelled(), job.task
        if wait_s is not None:
            return Deferred(wait_s), job.task
        try:
            return await self._attempt(task, running, running.ctx), job.task
        finally:
            await self._limiter.release(task, lease.id)

    async def _attempt(self, task: Task[Any, Any], running: _Running, ctx: JobContext) -> Result:
        if self._hooks:
            running.ran = True
            try:
                await self._hooks.before_run(ctx)
            # A middleware boundary: its error fails this attempt, as the task's own would.
            except Exception as exc:
                return Executor.failed(ctx, exc, task)
        return await self._executor.run(task, ctx, running.scope)

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

    def _open(self, lease: Leased) -> Job:
        """Check the signature (when signing is on), decode, and unpack the arguments."""
        text = lease.envelope
        if self._signing_key is not None:
            verify(text, self._signing_key)
        return load_job(decode(text), self.settings.serializer)

    def _cancel_running(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is None:
            return
        if running.ctx is not None:
            running.ctx.cancel_requested = True
        log.info("job %s cancel requested: aborting", job_id)
        running.scope.cancel()

    # ------------------------------------------------------------------ recording outcomes

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            await self._flush_once()

    async def _flush_all(self) -> None:
        while self._pending:
            await self._flush_once()

    async def _flush_once(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._writing += 1
        self._in_write.update((p.lease.id, p) for p in batch)
        try:
            with anyio.CancelScope(shield=True):
                await self._write(batch)
            self._recovered()
            # A slot is free once its job's outcome is in Redis, not when the task returns: at
            # -c 1 the next job must not be leased (and shown active) before this one ended.
            self._release_slots(len(batch))
            await self._write_minute_counts()
        except BrokerError as exc:
            # Keep the outcomes: they are written once Redis answers (or the lease lapses and
            # the job runs again, which the fenced token makes safe).
            self._pending[:0] = batch
            await self._outage(exc)
            self._flush_wanted.set()
        finally:
            self._writing -= 1
            for p in batch:
                self._in_write.pop(p.lease.id, None)

    async def _write(self, batch: list[_Pending]) -> None:
        ops = self.broker.ops
        for queue in dict.fromkeys(p.queue for p in batch):
            mine = [p for p in batch if p.queue == queue]
            finals = [p for p in mine if isinstance(p.result, Succeeded | Dead | Cancelled)]
            if finals:
                outcomes = [_outcome(p) for p in finals]
                accepted = await self.broker.run(ops.finish(queue, outcomes))
                for p, ok in zip(finals, accepted, strict=True):
                    self._log(p, ok)
                self._workflows.note(queue, finished_members(outcomes, accepted))
            backs = [p for p in mine if isinstance(p.result, Abandoned)]
            if backs:
                leases = [(p.lease.id, p.lease.token) for p in backs]
                accepted = await self.broker.run(ops.requeue(queue, leases))
                for p, ok in zip(backs, accepted, strict=True):
                    self._log(p, ok)
            for p in mine:
                if isinstance(p.result, Deferred):  # over a limit: wait, unrun, not an attempt
                    delay_ms = max(1, int(p.result.delay_s * 1000))
                    leases = [(p.lease.id, p.lease.token)]
                    (ok,) = await self.broker.run(ops.requeue(queue, leases, delay_ms))
                    self._log(p, ok)
            for p in mine:
                if isinstance(p.result, RetryLater):
                    f = p.result.failure
                    delay_ms = int(p.result.delay_s * 1000)
                    ok = await self.broker.run(
                        ops.retry(queue, p.lease.id, p.lease.token, delay_ms, _triple(f), _ms(p))
                    )
                    self._log(p, ok)

    async def _write_minute_counts(self) -> None:
        # Per-minute counters for `taskforge queues`: one round trip per flushed batch. A failure
        # only delays them; it must not fail the batch (its outcomes are already recorded).
        counts = self.metrics.take_minute_counts()
        if not counts:
            return
        minute = int(time.time() // 60)
        try:
            await self.broker.run(self.broker.ops.count_outcomes(minute, counts, STATS_TTL_S))
        except BrokerError as exc:
            log.debug("outcome counters not written (%s); retrying with the next batch", exc)
            self.metrics.give_back_minute_counts(counts)

    def _log(self, p: _Pending, accepted: bool) -> None:
        r = p.result
        if not accepted:
            log.warning(
                "job %s (%s) outcome refused: its lease was reclaimed; the newer run decides",
                p.lease.id, p.task,
            )  # fmt: skip
            return
        ms = p.duration_s * 1000
        if self._outcome_log is not None:
            self._log_outcome(p)
        self.stats.processed += not isinstance(r, Abandoned | Deferred)
        self.metrics.job_finished(p.queue, _OUTCOME_NAMES[type(r)], p.duration_s)
        if isinstance(r, Succeeded):
            self.stats.succeeded += 1
            log.info("job %s %s succeeded attempt=%d in %.1fms", p.lease.id, p.task, p.attempt, ms)
        elif isinstance(r, RetryLater):
            self.stats.retried += 1
            verb = "retrying" if r.requested else "failed"  # a Retry is asked for, not a fault
            log.info(
                "job %s %s %s attempt=%d in %.1fms (%s: %s); retry in %.1fs",
                p.lease.id, p.task, verb, p.attempt, ms, r.failure.type, r.failure.message,
                r.delay_s,
            )  # fmt: skip
        elif isinstance(r, Dead):
            self.stats.dead += 1
            log.warning(
                "job %s %s dead attempt=%d in %.1fms (%s: %s)",
                p.lease.id, p.task, p.attempt, ms, r.failure.type, r.failure.message,
            )  # fmt: skip
        elif isinstance(r, Cancelled):
            self.stats.cancelled += 1
            log.info("job %s %s cancelled attempt=%d", p.lease.id, p.task, p.attempt)
        elif isinstance(r, Deferred):
            self.stats.deferred += 1
            log.debug("job %s %s over its limit: waits %.2fs", p.lease.id, p.task, r.delay_s)
        else:
            self.stats.handed_back += 1
            log.info("job %s %s handed back to queue %s", p.lease.id, p.task, p.queue)

    def _log_outcome(self, p: _Pending) -> None:
        assert self._outcome_log is not None
        outcome = outcome_of(p.result, p.duration_s)
        line = outcome_line(
            job_id=p.lease.id, task=p.task, queue=p.queue, attempt=p.attempt, outcome=outcome,
            worker=self.id,
        )  # fmt: skip
        self._outcome_log(line)

    # ------------------------------------------------------------------ background services

    async def _lease_loop(self) -> None:
        while True:
            await anyio.sleep(self.settings.lease_s / 3)
            await self._limiter.extend()
            by_queue: dict[str, list[tuple[str, str]]] = {}
            # Jobs whose outcome is not written yet keep their lease too: Redis may be refusing
            # the write (OOM), and a lapsed lease would let another worker run the job again.
            held: list[_Running | _Pending] = [*self._running.values(), *self._pending]
            for r in [*held, *self._in_write.values()]:
                by_queue.setdefault(r.queue, []).append((r.lease.id, r.lease.token))
            for queue, leases in by_queue.items():
                try:
                    lost, cancel = await self.broker.run(self.broker.ops.extend(queue, leases))
                except BrokerError as exc:
                    log.warning("lease renewal failed (%s); retrying", exc)
                    continue
                for job_id in lost & self._running.keys():
                    log.warning("job %s lease lost (reclaimed elsewhere); abandoning it", job_id)
                    self._running[job_id].scope.cancel()
                for job_id in cancel:
                    self._cancel_running(job_id)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                ttl_s = max(1, math.ceil(self.heartbeat_s * 3))
                await self.broker.run(self.broker.ops.heartbeat(self.id, self.heartbeat(), ttl_s))
            except BrokerError as exc:
                log.debug("heartbeat failed: %s", exc)
            await anyio.sleep(self.heartbeat_s)

    def heartbeat(self) -> dict[str, Any]:
        """What this worker says about itself in ``taskforge workers``."""
        host, pid = socket.gethostname(), os.getpid()
        return {
            "id": self.id,
            "host": host,
            "pid": pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "running": len(self._running),
            "running_jobs": list(self._running)[:100],
            "started": self._started_at,
            "last_seen": time.time(),
            "processed": self.stats.processed,
            "failed": self.stats.retried + self.stats.dead,
            "succeeded": self.stats.succeeded,
            "dead": self.stats.dead,
        }

    async def _control_loop(self) -> None:
        channel = control_channel(self.settings)
        async for _, job_id in self.broker.subscribe(channel):
            self._cancel_running(job_id)


_OUTCOME_NAMES: dict[type[Result], str] = {
    Succeeded: "succeeded",
    RetryLater: "retried",
    Dead: "dead",
    Cancelled: "cancelled",
    Abandoned: "handed_back",
    Deferred: "handed_back",
}


def heartbeat_interval_s() -> float:
    """The heartbeat interval: ``TASKFORGE_HEARTBEAT`` seconds, else 5.

    Raises:
        ConfigurationError: the variable is not a positive number.
    """
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    try:
        value = float(raw) if raw else HEARTBEAT_S
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{HEARTBEAT_ENV}={raw!r}: expected seconds > 0, e.g. 5")
    return value


def _trouble(exc: BrokerError) -> str:
    # Say what failed: an unreachable server, or one that answered with an error (a script
    # error, WRONGTYPE), which a reconnect will not fix.
    if isinstance(exc, BrokerConnectionError):
        return f"cannot reach Redis: {exc}"
    return f"Redis error: {exc}"


def _triple(f: Failure) -> tuple[str, str, str]:
    return f.type, f.message, f.traceback


def _ms(p: _Pending) -> int:
    return round(p.duration_s * 1000)


def _outcome(p: _Pending) -> Outcome:
    lease, r = p.lease, p.result
    if isinstance(r, Succeeded):
        ok = JobStatus.SUCCEEDED
        return Outcome(
            lease.id, lease.token, ok, result_json=r.result_json, ttl_s=r.ttl_s, duration_ms=_ms(p)
        )
    if isinstance(r, Dead):
        f = r.failure
        return Outcome(lease.id, lease.token, JobStatus.DEAD, "", *_triple(f), duration_ms=_ms(p))
    reason = r.reason if isinstance(r, Cancelled) else "cancelled"
    kind = r.type if isinstance(r, Cancelled) else "Cancelled"
    return Outcome(lease.id, lease.token, JobStatus.CANCELLED, "", kind, reason, duration_ms=_ms(p))


def outcome_of(result: Result, duration_s: float) -> RunOutcome:
    """The :class:`RunOutcome` of an executor result."""
    if isinstance(result, Succeeded):
        return RunOutcome("succeeded", duration_s)
    if isinstance(result, Cancelled):
        return RunOutcome("cancelled", duration_s)
    if isinstance(result, RetryLater | Dead):
        f = result.failure
        status, retry_in_s = (
            ("retrying", result.delay_s) if isinstance(result, RetryLater) else ("dead", None)
        )
        return RunOutcome(
            status, duration_s, f.type, f.message, f.traceback, retry_in_s, f.exception
        )
    return RunOutcome("handed_back", duration_s)


def server_warnings(info: dict[str, Any], save_config: str | None = None) -> list[str]:
    """Warnings about a Redis whose settings can lose jobs (eviction, no persistence, < 7).

    ``save_config`` is ``CONFIG GET save`` (None when unknown: no persistence warning then).
    """
    warnings = []
    version = str(info.get("redis_version", "0"))
    if int(version.split(".")[0]) < 7:
        warnings.append(f"Redis {version} is older than 7; taskforge needs Redis >= 7")
    policy = info.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy!r}: Redis may evict job records (lost jobs); "
            "set maxmemory-policy noeviction"
        )
    # RDB is off when ``save`` is empty; unknown (CONFIG refused) means no warning.
    if not int(info.get("aof_enabled", 0)) and save_config is not None and not save_config.strip():
        warnings.append("persistence is off: a Redis restart loses every queued job")
    return warnings


async def read_nodes(
    broker: AsyncBroker,
) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    """``INFO`` and ``CONFIG GET save`` of every primary (a cluster's, or the one server)."""
    infos = await broker.run(broker.ops.node_infos())
    try:
        saves = await broker.run(broker.ops.node_configs("save"))
    except BrokerError:  # CONFIG may be renamed away, as the seed's checklist advises
        saves = {}
    return infos, saves


def node_warnings(infos: dict[str, dict[str, Any]], saves: dict[str, str | None]) -> list[str]:
    """:func:`server_warnings` of every primary, each led by its node's address on a cluster."""
    return [
        f"{node}: {warning}" if node else warning
        for node, info in infos.items()
        for warning in server_warnings(info, saves.get(node))
    ]


__all__ = ["BrokerConnectionError", "Worker", "WorkerStats", "server_warnings"]
