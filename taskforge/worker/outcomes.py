"""The outcome writer: every decided outcome reaches Redis in batches, then frees its slot.

Jobs hand their outcome to :meth:`OutcomeWriter.add`; one flush loop writes what has gathered in
one call per queue and kind (finish, hand back, defer, retry). Each write is fenced by the lease
token, so a job reclaimed elsewhere meanwhile keeps the newer run's outcome. Outcomes Redis
refuses (an outage, OOM) are kept and written once it answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from taskforge.errors import BrokerError
from taskforge.job import JobStatus
from taskforge.metrics import WorkerMetrics
from taskforge.middleware import RunOutcome
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.records import Leased, Outcome
from taskforge.worker.executor import (
    Abandoned,
    Cancelled,
    Dead,
    Deferred,
    Failure,
    Result,
    RetryLater,
    Succeeded,
)
from taskforge.worker.outage import Outage
from taskforge.worker.outcome_log import outcome_line
from taskforge.worker.slots import Slots
from taskforge.workflow.advance import WorkflowAdvancer, finished_members

log = logging.getLogger("taskforge.worker")

#: How long a queue's per-minute outcome counters are kept (``taskforge queues``).
STATS_TTL_S = 3600
#: How often the per-minute counters are written while outcomes flow, s (and at flush_all).
COUNTS_EVERY_S = 1.0


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


@dataclass(slots=True)
class Pending:
    """A decided outcome not yet in Redis."""

    queue: str
    lease: Leased
    result: Result
    task: str
    attempt: int
    duration_s: float


class OutcomeWriter:
    """Gathers outcomes and writes them in batches (see the module's docstring)."""

    def __init__(
        self,
        broker: AsyncBroker,
        slots: Slots,
        outage: Outage,
        workflows: WorkflowAdvancer,
        *,
        worker_id: str,
        stats: WorkerStats,
        metrics: WorkerMetrics,
        outcome_log: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.broker = broker
        self.slots = slots
        self.outage = outage
        self.workflows = workflows
        self.worker_id = worker_id
        self.stats = stats
        self.metrics = metrics
        self.outcome_log = outcome_log  # gets one dict per recorded outcome (--json)
        self._pending: list[Pending] = []
        self._in_write: dict[str, Pending] = {}  # outcomes being written (their leases renewed)
        self._writing = 0  # batches being written right now (burst mode waits for them)
        self._flush_wanted = anyio.Event()
        self._batch_ended = anyio.Event()  # set (and replaced) as each batch's write ends
        self._counts_due = 0.0  # time.monotonic() from which the minute counts are written

    def add(self, pending: Pending) -> None:
        """Queue one outcome for the next batch."""
        self._pending.append(pending)
        self._flush_wanted.set()

    @property
    def unwritten(self) -> int:
        """How many outcomes wait for Redis (queued or being written)."""
        return len(self._pending) + len(self._in_write)

    @property
    def writing(self) -> bool:
        """True while a batch is being written."""
        return bool(self._writing)

    @property
    def idle(self) -> bool:
        """True when no outcome is queued and no batch is being written."""
        return not (self._pending or self._writing)

    def held(self) -> list[Pending]:
        """The outcomes not in Redis yet: their leases must be kept (queued, then in write)."""
        return [*self._pending, *self._in_write.values()]

    async def flush_loop(self) -> None:
        """Write a batch whenever outcomes are added (runs until cancelled)."""
        while True:
            if self.metrics.minute_counts:  # counts held back: written within COUNTS_EVERY_S
                with anyio.move_on_after(max(0.0, self._counts_due - time.monotonic())):
                    await self._flush_wanted.wait()
                if not self._flush_wanted.is_set():
                    await self._write_minute_counts()
                    continue
            else:
                await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            await self._flush_once()

    async def flush_all(self) -> None:
        """Write until no outcome is queued or being written.

        A batch the flush loop is writing is waited for: if Redis refuses it, its outcomes are
        queued again and written here (the worker's shutdown cancels the flush loop next).
        """
        while self._pending or self._writing:
            if self._pending:
                await self._flush_once()
            else:
                await self._batch_ended.wait()
        await self._write_minute_counts(force=True)

    async def _flush_once(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._writing += 1
        self._in_write.update((p.lease.id, p) for p in batch)
        answered: list[Pending] = []
        try:
            with anyio.CancelScope(shield=True):
                await self._write(batch, answered)
            self.outage.recovered()
            # A slot is free once its job's outcome is in Redis, not when the task returns: at
            # -c 1 the next job must not be leased (and shown active) before this one ended.
            self.slots.release(len(batch))
            await self._write_minute_counts()
        except BrokerError as exc:
            # Keep the outcomes not answered yet: they are written once Redis answers (or the
            # lease lapses and the job runs again, which the fenced token makes safe). Those
            # answered are in Redis and counted: sent again, they would be counted twice.
            written = {id(p) for p in answered}
            self._pending[:0] = [p for p in batch if id(p) not in written]
            self.slots.release(len(answered))
            await self.outage.back_off(exc, unwritten=self.unwritten)
            self._flush_wanted.set()
        finally:
            self._writing -= 1
            for p in batch:
                self._in_write.pop(p.lease.id, None)
            ended, self._batch_ended = self._batch_ended, anyio.Event()
            ended.set()

    async def _write(self, batch: list[Pending], answered: list[Pending]) -> None:
        """Write ``batch``, one call per queue and kind; each call's outcomes go to ``answered``
        (logged and counted) once its reply is in."""
        ops = self.broker.ops
        for queue in dict.fromkeys(p.queue for p in batch):
            mine = [p for p in batch if p.queue == queue]
            finals = [p for p in mine if isinstance(p.result, Succeeded | Dead | Cancelled)]
            if finals:
                outcomes = [_outcome(p) for p in finals]
                accepted = await self.broker.run(ops.finish(queue, outcomes))
                self._answered(finals, accepted, answered)
                self.workflows.note(queue, finished_members(outcomes, accepted))
            backs = [p for p in mine if isinstance(p.result, Abandoned)]
            if backs:
                leases = [(p.lease.id, p.lease.token) for p in backs]
                accepted = await self.broker.run(ops.requeue(queue, leases))
                self._answered(backs, accepted, answered)
            for p in mine:
                if isinstance(p.result, Deferred):  # over a limit: wait, unrun, not an attempt
                    delay_ms = max(1, int(p.result.delay_s * 1000))
                    leases = [(p.lease.id, p.lease.token)]
                    accepted = await self.broker.run(ops.requeue(queue, leases, delay_ms))
                    self._answered([p], accepted, answered)
            for p in mine:
                if isinstance(p.result, RetryLater):
                    f = p.result.failure
                    delay_ms = int(p.result.delay_s * 1000)
                    ok = await self.broker.run(
                        ops.retry(queue, p.lease.id, p.lease.token, delay_ms, _triple(f), _ms(p))
                    )
                    self._answered([p], [ok], answered)

    def _answered(self, ps: list[Pending], accepted: list[bool], answered: list[Pending]) -> None:
        for p, ok in zip(ps, accepted, strict=True):
            self._log(p, ok)
        answered += ps

    async def _write_minute_counts(self, *, force: bool = False) -> None:
        # Per-minute counters for `taskforge queues`: one round trip a second at most (at -c 1
        # every batch is one job, and a round trip per batch was a third of its worker CPU). A
        # failure only delays them; it must not fail the batch (its outcomes are recorded).
        now_s = time.monotonic()
        if not force and now_s < self._counts_due:
            return
        self._counts_due = now_s + COUNTS_EVERY_S
        counts = self.metrics.take_minute_counts()
        if not counts:
            return
        minute = int(time.time() // 60)
        try:
            await self.broker.run(self.broker.ops.count_outcomes(minute, counts, STATS_TTL_S))
        except BrokerError as exc:
            log.debug("outcome counters not written (%s); retrying with the next batch", exc)
            self.metrics.give_back_minute_counts(counts)

    def _log(self, p: Pending, accepted: bool) -> None:
        r = p.result
        if not accepted:
            log.warning(
                "job %s (%s) outcome refused: its lease was reclaimed; the newer run decides",
                p.lease.id, p.task,
            )  # fmt: skip
            return
        ms = p.duration_s * 1000
        if self.outcome_log is not None:
            self._log_outcome(p, self.outcome_log)
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

    def _log_outcome(self, p: Pending, sink: Callable[[dict[str, Any]], None]) -> None:
        outcome = outcome_of(p.result, p.duration_s)
        line = outcome_line(
            job_id=p.lease.id, task=p.task, queue=p.queue, attempt=p.attempt, outcome=outcome,
            worker=self.worker_id,
        )  # fmt: skip
        sink(line)


_OUTCOME_NAMES: dict[type[Result], str] = {
    Succeeded: "succeeded",
    RetryLater: "retried",
    Dead: "dead",
    Cancelled: "cancelled",
    Abandoned: "handed_back",
    Deferred: "handed_back",
}


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


def _triple(f: Failure) -> tuple[str, str, str]:
    return f.type, f.message, f.traceback


def _ms(p: Pending) -> int:
    return round(p.duration_s * 1000)


def _outcome(p: Pending) -> Outcome:
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


__all__ = ["STATS_TTL_S", "OutcomeWriter", "Pending", "WorkerStats", "outcome_of"]
