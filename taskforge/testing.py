"""Testing your own tasks: eager mode, burst drains, captured events, stand-in job contexts.

``with app.testing() as bed:`` points an app at a private ``memory://`` server (or a Redis you
name) for the block. Eagerly (the default) every ``.delay()`` then runs the job through the real
worker and executor before it returns, so the handle already holds the result or the failure;
retries and dead letters follow the task's policy, with the waits skipped. The pytest plugin
(:mod:`taskforge.pytest_plugin`) wraps the same pieces in fixtures.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import fields
from functools import partial
from typing import Any, Self

import anyio
import anyio.abc
import anyio.from_thread

from taskforge.client import Client
from taskforge.context import StandInContext, bound, stand_in
from taskforge.driver.connection import forget_memory_server
from taskforge.errors import ConfigurationError, ResultTimeoutError, TaskforgeError
from taskforge.handle import JobHandle
from taskforge.job import TERMINAL, JobStatus
from taskforge.protocol.brokers import AsyncBroker
from taskforge.registry import Registry
from taskforge.settings import MEMORY_URL, Settings
from taskforge.task import Call
from taskforge.worker import Worker, WorkerStats

__all__ = ["EventRecorder", "Testbed", "job_context", "testing_settings"]

#: Worker runs one drain may take (each run ends when nothing is ready; skipped waits make
#: retries ready again). A task that retries forever stops here instead of hanging the test.
MAX_ROUNDS = 200

# Set while a drain runs: a .delay() from inside a task only enqueues, and the drain that is
# already running picks the job up (a nested drain would run jobs inside a job).
_draining: ContextVar[bool] = ContextVar("taskforge_testing_draining", default=False)


def testing_settings(base: Settings, redis_url: str = MEMORY_URL) -> Settings:
    """``base`` pointed at a private test server: its own ``memory://`` name (or ``redis_url``)
    and its own key prefix; on a real Redis its own events channel too. Serializer, signing,
    limits and TTLs stay as in ``base``, so jobs behave as they will in production."""
    token = uuid.uuid4().hex[:12]
    memory = redis_url.startswith(MEMORY_URL)
    url = f"{MEMORY_URL}taskforge-testing-{token}" if redis_url == MEMORY_URL else redis_url
    channel = base.events_channel
    if channel and not memory:  # pub/sub is server-wide: keep other tests' events apart
        channel = f"{channel}:tft-{token}"
    return base.model_copy(
        update={
            "redis_url": url,
            "prefix": f"tft-{token}",
            "events_channel": channel,
            "cluster_nodes": None,
            "durable_enqueue": False,
        }
    )


class EagerClient(Client):
    """A producer client that can run what it sends: after each ``.delay()`` (when ``eager``)
    a burst worker drains the queues before the call returns."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        eager: bool,
        skip_delays: bool,
        concurrency: int,
    ):
        super().__init__(settings)
        self.registry = registry
        self.eager = eager
        self.skip_delays = skip_delays
        self.concurrency = concurrency
        self.queues_seen: set[str] = set()

    def submit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Enqueue, then (eager) run every job until the queues are empty."""
        handles = super().submit(calls)
        self.queues_seen.update(h.queue for h in handles)
        if self.eager and not _draining.get():
            self.drain()
        return handles

    async def asubmit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Async :meth:`submit`."""
        handles = await super().asubmit(calls)
        self.queues_seen.update(h.queue for h in handles)
        if self.eager and not _draining.get():
            await self.adrain()
        return handles

    def drain(self, *, timeout_s: float = 60.0) -> WorkerStats:
        """Run burst workers until every queue is empty; see :meth:`Testbed.drain`."""
        # A thread of its own: the caller may be inside an event loop (a sync .delay() in an
        # async test), where anyio.run cannot start another.
        with ThreadPoolExecutor(1, thread_name_prefix="taskforge-drain") as pool:
            return pool.submit(anyio.run, partial(self.adrain, timeout_s=timeout_s)).result()

    async def adrain(self, *, timeout_s: float = 60.0) -> WorkerStats:
        """Async :meth:`drain`, on the caller's event loop."""
        token = _draining.set(True)
        total = WorkerStats()
        hurrier = AsyncBroker(self.settings)
        try:
            with anyio.fail_after(timeout_s):
                for _ in range(MAX_ROUNDS):
                    queues = sorted(self.queues_seen | {t.opts.queue for t in self.registry})
                    _add(total, await self._worker(queues).run())
                    hurried = 0
                    if self.skip_delays:
                        for queue in queues:
                            hurried += await hurrier.run(hurrier.ops.hurry(queue))
                    if not hurried and self.queues_seen <= set(queues):
                        return total
        except TimeoutError:
            raise ResultTimeoutError(
                f"jobs still running after {timeout_s}s of draining; pass timeout_s=... "
                "or look for a task that blocks"
            ) from None
        finally:
            _draining.reset(token)
            with anyio.CancelScope(shield=True):
                await hurrier.aclose()
        raise TaskforgeError(
            f"jobs were still scheduled after {MAX_ROUNDS} worker runs: a task that retries "
            "forever, or one held back by its rate or concurrency limit"
        )

    def _worker(self, queues: list[str]) -> Worker:
        # The tasks without their cron schedules: a drain runs what the test sent, never a tick.
        tasks = Registry()
        for task in self.registry:
            tasks.add(task)
        return _DrainWorker(
            self.settings,
            tasks,
            queues=queues,
            concurrency=self.concurrency,
            burst=True,
            burst_horizon_s=0.0,  # what is not due now waits (or is hurried: skip_delays)
            block_s=0.5,
            worker_id=f"testing:{uuid.uuid4().hex[:8]}",
        )


# The servers a drain has checked in this process (their URLs). Each .delay() runs a worker, and
# the startup check's warnings (persistence off, eviction, Redis < 7) are about the server, not
# the test: said once, they are seen; said at every call, they bury the test's own log.
_checked_servers: set[str] = set()


class _DrainWorker(Worker):
    """A drain's burst worker: checks its server once per process (a real worker, every start)."""

    async def check_server(self) -> None:
        """See :meth:`Worker.check_server`; a server already checked here is not checked again."""
        url = self.settings.redis_url
        if url in _checked_servers:
            return
        await super().check_server()
        if not self.settings.is_memory:  # each testbed has its own memory:// name; no warnings
            _checked_servers.add(url)


def _add(total: WorkerStats, more: WorkerStats) -> None:
    for f in fields(WorkerStats):
        setattr(total, f.name, getattr(total, f.name) + getattr(more, f.name))


class EventRecorder:
    """Collects the ``job:updates`` events of one server while it is open (a context manager).

    Pub/sub delivers a moment after the change, so read with :meth:`wait_for`/:meth:`statuses`,
    which wait (bounded) for the event you expect.
    """

    def __init__(self, settings: Settings):
        if not settings.events_channel:
            raise ConfigurationError("events are off (events_channel is empty); nothing to record")
        self.settings = settings
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._stack = ExitStack()
        self._started = False

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received so far, in order (a copy)."""
        with self._changed:
            return list(self._events)

    def of(self, job_id: str) -> list[dict[str, Any]]:
        """The events of one job received so far."""
        return [e for e in self.events if e.get("job_id") == job_id]

    def wait_for(
        self, job_id: str, status: JobStatus | str | None = None, *, timeout_s: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait for ``job_id``'s event with ``status`` (default: a final one); returns the job's
        events up to it. Raises ResultTimeoutError when it does not come within ``timeout_s``."""
        wanted = set(TERMINAL) if status is None else {JobStatus(status)}
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                seen = [e for e in self._events if e.get("job_id") == job_id]
                for i, event in enumerate(seen):
                    if event.get("status") in wanted:
                        return seen[: i + 1]
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    got = [e.get("status") for e in seen]
                    raise ResultTimeoutError(
                        f"no {sorted(wanted)} event for job {job_id} in {timeout_s}s; got {got}"
                    )
                self._changed.wait(left_s)

    def statuses(self, job_id: str, *, timeout_s: float = 5.0) -> list[str]:
        """The statuses ``job_id`` went through, once it reached a final one."""
        return [e["status"] for e in self.wait_for(job_id, timeout_s=timeout_s)]

    def start(self) -> Self:
        """Subscribe (returns once the subscription is confirmed); a second call does nothing."""
        if self._started:
            return self
        self._started = True
        portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        future, _ = portal.start_task(self._listen)
        self._stack.callback(future.cancel)
        return self

    def stop(self) -> None:
        """Unsubscribe and stop the listening thread."""
        self._stack.close()
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        broker = AsyncBroker(self.settings)
        ready = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._consume, broker, ready)
                await ready.wait()
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                await broker.aclose()

    async def _consume(self, broker: AsyncBroker, ready: anyio.Event) -> None:
        async for _, data in broker.subscribe(self.settings.events_channel, ready=ready):
            event = json.loads(data)
            with self._changed:
                self._events.append(event)
                self._changed.notify_all()


class Testbed:
    """What ``app.testing()`` yields: the test server's settings, and ways to run and watch jobs.

    ``eager`` runs each ``.delay()`` to the end before it returns; otherwise jobs wait until
    :meth:`drain`. ``skip_delays`` makes scheduled jobs and retry backoff due at once.
    """

    __test__ = False  # a name pytest would otherwise try to collect where it is imported

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        eager: bool = True,
        skip_delays: bool = True,
        concurrency: int = 1,
    ):
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        self.settings = settings
        self.registry = registry
        self.client = EagerClient(
            settings, registry, eager=eager, skip_delays=skip_delays, concurrency=concurrency
        )

    def drain(self, *, timeout_s: float = 60.0) -> WorkerStats:
        """Run every job sent so far (and those they send) until the queues are empty.

        Returns the workers' counts. Raises ResultTimeoutError after ``timeout_s``.
        """
        return self.client.drain(timeout_s=timeout_s)

    async def adrain(self, *, timeout_s: float = 60.0) -> WorkerStats:
        """Async :meth:`drain`."""
        return await self.client.adrain(timeout_s=timeout_s)

    def events(self) -> EventRecorder:
        """A started recorder of this server's status events; ``stop()`` it (or use ``with``)."""
        return EventRecorder(self.settings).start()

    def close(self) -> None:
        """Close the client and free a private ``memory://`` server."""
        self.client.close()
        if self.settings.is_memory:
            forget_memory_server(self.settings.redis_url)


@contextmanager
def job_context(
    task: str = "test",
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    job_id: str | None = None,
    attempt: int = 1,
    cancel_requested: bool = False,
) -> Iterator[StandInContext]:
    """Bind a stand-in job for the block: ``with job_context(attempt=3) as job: send(...)``.

    Tasks called inside see it through ``current_job()``: test the branches that read the
    attempt number, ``cancel_requested`` or progress. Nothing touches Redis.
    """
    ctx = stand_in(
        task, args, kwargs, job_id=job_id, attempt=attempt, cancel_requested=cancel_requested
    )
    with bound(ctx):
        yield ctx
