"""The producer side: turn calls into jobs, read their state, wait for results, cancel."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from taskforge.call import Call
from taskforge.envelope import EnvelopeEncoder
from taskforge.errors import (
    BrokerConnectionError,
    JobFailedError,
    JobNotFoundError,
    ResultTimeoutError,
    SerializationError,
)
from taskforge.handle import JobHandle
from taskforge.job import TERMINAL, JobRecord, JobStatus
from taskforge.middleware import Hooks, Middleware
from taskforge.payload import typed_result
from taskforge.protocol.brokers import AsyncBroker, SyncBroker
from taskforge.protocol.records import NewJob
from taskforge.registry import Registry
from taskforge.remote_errors import rebuild
from taskforge.serializer import is_pickled_result, load_result
from taskforge.settings import Settings


#: Workers listen here for abort requests of running jobs (payload: job id).
def control_channel(settings: Settings) -> str:
    """Pub/sub channel carrying cancel requests to workers."""
    return f"{settings.prefix}:control"


#: Jobs per enqueue script call in a sync bulk enqueue: enough to spread a call's cost, few
#: enough that Redis writes one chunk while the next is sent.
BULK_CHUNK = 250


class Client:
    """Producer API over one Redis, sync and async. Connects lazily, on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry | None = None,
        middleware: Sequence[Middleware] = (),
    ):
        self.settings = settings
        #: Tasks this producer knows: their modules are where remote errors may be rebuilt.
        self.registry = registry if registry is not None else Registry()
        self._encoder = EnvelopeEncoder(settings, Hooks(middleware), self.registry)
        self._sync: SyncBroker | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncBroker] = (
            weakref.WeakKeyDictionary()
        )
        self._announced: set[str] = set()

    @property
    def broker(self) -> SyncBroker:
        """The blocking broker (created on first use)."""
        if self._sync is None:
            self._sync = SyncBroker(self.settings)
        return self._sync

    @property
    def abroker(self) -> AsyncBroker:
        """The asyncio broker of the running event loop (one per loop: clients are loop-bound)."""
        loop = asyncio.get_running_loop()
        broker = self._async.get(loop)
        if broker is None:
            broker = self._async[loop] = AsyncBroker(self.settings)
        return broker

    # ---------------------------------------------------------------- enqueue

    def encode(self, call: Call) -> tuple[str, NewJob]:
        """Build a job from a call: (queue, job). Raises EnqueueError subclasses; pure."""
        return self._encoder.encode(call)

    def _grouped(
        self, calls: Sequence[Call], first: int = 0
    ) -> dict[str, list[tuple[int, NewJob]]]:
        groups: dict[str, list[tuple[int, NewJob]]] = {}
        for i, call in enumerate(calls, first):
            queue, job = self.encode(call)
            groups.setdefault(queue, []).append((i, job))
        return groups

    def submit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Enqueue calls: one script call per queue and chunk. Returns handles in call order.

        Every call is encoded (and so validated) before anything is sent: a bad call raises
        with nothing written. The chunks then stream over one connection, each sent while Redis
        runs the one before (see :meth:`SyncBroker.run_overlapped`).
        """
        if len(calls) == 1:  # a .delay(): no groups, no chunks, no stream
            return [self._submit_one(calls[0])]
        groups = self._grouped(calls)
        with _ambiguous(groups):
            return self._submit(groups, len(calls))

    def _submit_one(self, call: Call) -> JobHandle[Any]:
        queue, job = self.encode(call)
        broker = self.broker
        if queue not in self._announced:
            broker.run(broker.ops.announce_queue(queue))
            self._announced.add(queue)
        try:
            (done,) = broker.run(broker.ops.enqueue(queue, (job,)))
        except BrokerConnectionError as exc:
            raise _maybe_enqueued(exc, (job.id,)) from exc
        return JobHandle(self, done.id, queue, created=done.created)

    def _submit(self, groups: dict[str, list[tuple[int, NewJob]]], n: int) -> list[JobHandle[Any]]:
        sent: list[tuple[str, list[tuple[int, NewJob]]]] = []
        ops = self.broker.ops

        for queue in groups:
            if queue not in self._announced:
                self.broker.run(ops.announce_queue(queue))
                self._announced.add(queue)
        for queue, items in groups.items():
            sent += [(queue, items[i : i + BULK_CHUNK]) for i in range(0, len(items), BULK_CHUNK)]

        chunks = (ops.enqueue(queue, [j for _, j in chunk]) for queue, chunk in sent)
        if len(sent) == 1:  # one call (a .delay()): no stream to set up
            results = [self.broker.run(next(chunks))]
        else:
            results = self.broker.run_overlapped(chunks)
        handles: list[JobHandle[Any] | None] = [None] * n
        for (queue, items), done in zip(sent, results, strict=True):
            for (i, _), res in zip(items, done, strict=True):
                handles[i] = JobHandle(self, res.id, queue, created=res.created)
        return [h for h in handles if h is not None]

    async def asubmit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Async :meth:`submit`: every call encoded first, then one script call per queue and
        chunk of :data:`BULK_CHUNK` (one at a time, so Redis never runs one huge script)."""
        if len(calls) == 1:
            return [await self._asubmit_one(calls[0])]
        groups = self._grouped(calls)
        with _ambiguous(groups):
            return await self._asubmit(groups, len(calls))

    async def _asubmit_one(self, call: Call) -> JobHandle[Any]:
        queue, job = self.encode(call)
        broker = self.abroker
        if queue not in self._announced:
            await broker.run(broker.ops.announce_queue(queue))
            self._announced.add(queue)
        try:
            (done,) = await broker.run(broker.ops.enqueue(queue, (job,)))
        except BrokerConnectionError as exc:
            raise _maybe_enqueued(exc, (job.id,)) from exc
        return JobHandle(self, done.id, queue, created=done.created)

    async def _asubmit(
        self, groups: dict[str, list[tuple[int, NewJob]]], n: int
    ) -> list[JobHandle[Any]]:
        broker = self.abroker
        handles: list[JobHandle[Any] | None] = [None] * n
        for queue, items in groups.items():
            if queue not in self._announced:
                await broker.run(broker.ops.announce_queue(queue))
                self._announced.add(queue)
            for start in range(0, len(items), BULK_CHUNK):
                chunk = items[start : start + BULK_CHUNK]
                done = await broker.run(broker.ops.enqueue(queue, [j for _, j in chunk]))
                for (i, _), res in zip(chunk, done, strict=True):
                    handles[i] = JobHandle(self, res.id, queue, created=res.created)
        return [h for h in handles if h is not None]

    # ---------------------------------------------------------------- reading and waiting

    def record(self, queue: str, job_id: str) -> JobRecord:
        """The job's record. Raises JobNotFoundError."""
        return self._known(_found(self.broker.run(self.broker.ops.record(queue, job_id)), job_id))

    async def arecord(self, queue: str, job_id: str) -> JobRecord:
        """Async :meth:`record`."""
        broker = self.abroker
        return self._known(_found(await broker.run(broker.ops.record(queue, job_id)), job_id))

    def _known(self, record: JobRecord) -> JobRecord:
        """``record`` with its task's registered options, when this producer knows the task
        (the record keeps only the call's overrides)."""
        task = record.task
        if task is None or task not in self.registry:
            return record
        return record.with_task_options(self.registry.get(task).opts.job_options())

    def wait(self, queue: str, job_id: str, timeout_s: float | None) -> JobRecord:
        """Block until the job is final; returns its record. Raises ResultTimeoutError."""
        ops, run = self.broker.ops, self.broker.run
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = run(ops.watch(queue, job_id))
            if status is None:
                raise JobNotFoundError(f"no job {job_id!r} in queue {queue!r}")
            if status in TERMINAL:
                return self.record(queue, job_id)
            run(ops.wait_done(queue, job_id, self._block_s(deadline, job_id)))

    async def await_(self, queue: str, job_id: str, timeout_s: float | None) -> JobRecord:
        """Async :meth:`wait`."""
        broker = self.abroker
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = await broker.run(broker.ops.watch(queue, job_id))
            if status is None:
                raise JobNotFoundError(f"no job {job_id!r} in queue {queue!r}")
            if status in TERMINAL:
                return await self.arecord(queue, job_id)
            block_s = self._block_s(deadline, job_id)
            await broker.run(broker.ops.wait_done(queue, job_id, block_s))

    def _block_s(self, deadline: float | None, job_id: str) -> float:
        # One blocking call must end before the socket timeout; longer waits loop.
        cap_s = max(0.1, self.settings.socket_timeout_s * 0.8)
        if deadline is None:
            return cap_s
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise ResultTimeoutError(f"job {job_id} did not finish in time")
        return max(0.01, min(cap_s, left_s))

    def value(self, record: JobRecord) -> Any:
        """A final record's result, or the error it ends with (see :meth:`JobHandle.result`)."""
        if record.status is JobStatus.SUCCEEDED:
            return self._typed(record)
        if record.status is JobStatus.DEAD and record.error_type:
            modules = {t.fn.__module__ for t in self.registry}
            raise rebuild(
                record.id, record.status.value, record.error_type, record.error,
                record.traceback, modules,
            )  # fmt: skip
        raise JobFailedError(record.id, record.status.value, record.error_type, record.error)

    def _typed(self, record: JobRecord) -> Any:
        if is_pickled_result(record.result):
            return load_result(record.result, self.settings.serializer)
        task = record.task
        if task is None or task not in self.registry or record.result is None:
            return record.result
        try:
            return typed_result(self.registry.get(task).fn, record.result)
        except ValueError as exc:  # pydantic's ValidationError
            raise SerializationError(
                f"result of job {record.id} does not fit {task!r}'s return annotation: {exc}; "
                "the stored value is in handle.info().result"
            ) from exc

    # ---------------------------------------------------------------- cancel

    def cancel(self, queue: str, job_id: str) -> JobStatus:
        """Cancel a job (see :meth:`JobHandle.cancel`)."""
        op = self.broker.ops.cancel(queue, job_id, control_channel(self.settings))
        return _cancel_status(self.broker.run(op), job_id)

    async def acancel(self, queue: str, job_id: str) -> JobStatus:
        """Async :meth:`cancel`."""
        broker = self.abroker
        op = broker.ops.cancel(queue, job_id, control_channel(self.settings))
        return _cancel_status(await broker.run(op), job_id)

    def close(self) -> None:
        """Close the blocking connection pool (async pools close with their loop)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None


@contextmanager
def _ambiguous(groups: dict[str, list[tuple[int, NewJob]]]) -> Iterator[None]:
    """Name the jobs of an enqueue that failed on a lost connection: the request may have
    reached Redis, so the caller must re-send with the same ids (a duplicate id writes nothing)."""
    try:
        yield
    except BrokerConnectionError as exc:
        ids = tuple(job.id for items in groups.values() for _, job in items)
        raise _maybe_enqueued(exc, ids) from exc


def _maybe_enqueued(exc: BrokerConnectionError, ids: tuple[str, ...]) -> BrokerConnectionError:
    """``exc`` with the ids of the jobs it may or may not have enqueued, and what to do."""
    if len(ids) == 1:
        what = f"job {ids[0]} may have been enqueued: re-send it with the same id"
        what += f" (.options(job_id={ids[0]!r})); enqueue is idempotent by id"
    else:
        what = f"{len(ids)} jobs ({ids[0]}, ...) may have been enqueued: re-send them with"
        what += " the same ids (error.job_ids); enqueue is idempotent by id"
    return BrokerConnectionError(f"{exc}; {what}", job_ids=ids)


def _found(record: JobRecord | None, job_id: str) -> JobRecord:
    if record is None:
        raise JobNotFoundError(f"no record for job {job_id!r} (never enqueued, or expired)")
    return record


def _cancel_status(answer: tuple[str, str], job_id: str) -> JobStatus:
    outcome, status = answer
    if outcome == "missing":
        raise JobNotFoundError(f"no record for job {job_id!r} (never enqueued, or expired)")
    return JobStatus(status)


__all__ = ["BULK_CHUNK", "Client", "control_channel"]
