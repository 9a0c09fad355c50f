"""The producer side: turn calls into jobs, read their state, wait for results, cancel."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from taskforge.broker import AsyncBroker, NewJob, SyncBroker
from taskforge.call import Call
from taskforge.callcheck import check_args_json, check_job_id
from taskforge.errors import (
    BrokerConnectionError,
    EnqueueError,
    JobFailedError,
    JobNotFoundError,
    PayloadTooLargeError,
    ResultTimeoutError,
    SerializationError,
)
from taskforge.handle import JobHandle
from taskforge.job import TERMINAL, JobRecord, JobStatus, new_job_id
from taskforge.middleware import Enqueueing, Hooks, Middleware
from taskforge.options import TaskOptions, expires_at_ms
from taskforge.payload import describe_refusal, json_encoder, typed_result
from taskforge.registry import Registry
from taskforge.remote_errors import rebuild
from taskforge.serializer import PICKLE, dump_args, is_pickled_result, load_result
from taskforge.settings import Settings
from taskforge.signing import sign, signing_key


#: Workers listen here for abort requests of running jobs (payload: job id).
def control_channel(settings: Settings) -> str:
    """Pub/sub channel carrying cancel requests to workers."""
    return f"{settings.prefix}:control"


#: Jobs per enqueue script call in a sync bulk enqueue: enough to spread a call's cost, few
#: enough that Redis writes one chunk while the next is sent.
BULK_CHUNK = 250

#: One encoder for every envelope: ``json.dumps`` with options builds a new one per call. It
#: carries the typed values (datetime, UUID, ...; see taskforge.payload) through its default
#: hook, which plain JSON values never reach.
_ENVELOPE_JSON = json_encoder()


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
        self._hooks = Hooks(middleware)
        self._sync: SyncBroker | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncBroker] = (
            weakref.WeakKeyDictionary()
        )
        self._announced: set[str] = set()
        self._tails: dict[tuple[str, TaskOptions, str], str] = {}

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
        o = call.options
        if call.partial:
            raise EnqueueError(
                f"call of {call.task!r} is missing an argument (a partial signature, for a "
                "workflow step after another); give all its arguments to send it alone"
            )
        job_id = check_job_id(o.job_id) if o.job_id else new_job_id()
        serializer = self.settings.serializer
        args, kwargs = dump_args(call.args, call.kwargs, serializer)
        try:
            args_json = _ENVELOPE_JSON.encode(args) if args else "[]"
            kwargs_json = _ENVELOPE_JSON.encode(kwargs) if kwargs else "{}"
            tail = self._fixed_fields(call.task, o, serializer)
        except (TypeError, ValueError, RecursionError) as exc:
            what = f"arguments of {call.task!r} cannot be sent as JSON"
            raise SerializationError(describe_refusal(what, call.args, call.kwargs, exc)) from exc
        check_args_json(args_json, call.task)
        check_args_json(kwargs_json, call.task)
        # The JSON object json.dumps would write (the worker decodes it with pydantic); the
        # fields every job of one task and its options share are encoded once.
        now_s = time.time()
        if o.expires is not None:  # per call: "60 s from now" differs for every call
            tail += f',"expires_ms":{expires_at_ms(o.expires, now_s)}'
        text = (
            f'{{"id":{_ENVELOPE_JSON.encode(job_id)},"args":{args_json},"kwargs":{kwargs_json},'
            f'"created_ms":{int(now_s * 1000)}{tail}{self._headers(job_id, call)}}}'
        )
        key = signing_key(self.settings)
        if key is not None:
            text = sign(text, key)
        size = len(text.encode())
        if size > self.settings.max_payload_bytes:
            raise PayloadTooLargeError(
                f"job for {call.task!r} is {size} bytes, over the {self.settings.max_payload_bytes}"
                "-byte limit (Settings.max_payload_bytes); store big data elsewhere, pass a key"
            )
        at_ms = -1 if call.run_at is None else int(call.run_at.timestamp() * 1000)
        new = NewJob(
            id=job_id,
            task=call.task,
            priority=o.priority,
            envelope=text,
            delay_ms=int(call.delay_s * 1000),
            at_ms=at_ms,
            unique_key=o.unique_key or "",
            unique_until=o.unique_until,
            unique_ttl_s=o.unique_ttl or 0.0,
        )
        return o.queue, new

    def _headers(self, job_id: str, call: Call) -> str:
        """The ``"headers"`` member the middleware's ``on_enqueue`` hooks write ('' if none)."""
        if not self._hooks:
            return ""
        headers = self._hooks.enqueue(Enqueueing(job_id, call.task, call.options.queue))
        return f',"headers":{_ENVELOPE_JSON.encode(headers)}' if headers else ""

    def _fixed_fields(self, task: str, o: TaskOptions, serializer: str) -> str:
        key = (task, o, serializer)
        tail = self._tails.get(key)
        if tail is None:
            fields: dict[str, Any] = {
                "task": task,
                "queue": o.queue,
                "priority": o.priority.value,
                "max_retries": o.max_retries,
                "retry_backoff_s": o.retry_backoff,
                "retry_backoff_cap_s": o.retry_backoff_cap,
                "retry_jitter": o.retry_jitter,
                "timeout_s": o.timeout,
            }
            if o.soft_timeout is not None:
                fields["soft_timeout_s"] = o.soft_timeout
            if serializer == PICKLE:
                fields["serializer"] = serializer
            tail = "," + _ENVELOPE_JSON.encode(fields)[1:-1]
            if len(self._tails) >= 1024:  # options made per call (unique keys...): stay bounded
                self._tails.clear()
            self._tails[key] = tail
        return tail

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
        groups = self._grouped(calls)
        with _ambiguous(groups):
            return self._submit(groups, len(calls))

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
        groups = self._grouped(calls)
        with _ambiguous(groups):
            return await self._asubmit(groups, len(calls))

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
        return _found(self.broker.run(self.broker.ops.record(queue, job_id)), job_id)

    async def arecord(self, queue: str, job_id: str) -> JobRecord:
        """Async :meth:`record`."""
        broker = self.abroker
        return _found(await broker.run(broker.ops.record(queue, job_id)), job_id)

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
        if len(ids) == 1:
            what = f"job {ids[0]} may have been enqueued: re-send it with the same id"
            what += f" (.options(job_id={ids[0]!r})); enqueue is idempotent by id"
        else:
            what = f"{len(ids)} jobs ({ids[0]}, ...) may have been enqueued: re-send them with"
            what += " the same ids (error.job_ids); enqueue is idempotent by id"
        raise BrokerConnectionError(f"{exc}; {what}", job_ids=ids) from exc


def _found(record: JobRecord | None, job_id: str) -> JobRecord:
    if record is None:
        raise JobNotFoundError(f"no record for job {job_id!r} (never enqueued, or expired)")
    return record


def _cancel_status(answer: tuple[str, str], job_id: str) -> JobStatus:
    outcome, status = answer
    if outcome == "missing":
        raise JobNotFoundError(f"no record for job {job_id!r} (never enqueued, or expired)")
    return JobStatus(status)
