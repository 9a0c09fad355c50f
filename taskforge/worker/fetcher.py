"""The queue fetcher: lease as many jobs as there are free slots, block when none are ready.

One loop per queue. Each fetch leases up to the free slots in one script call (which also
promotes due scheduled jobs and reclaims expired leases). When nothing is ready the loop blocks on
the queue's wake marker (BZPOPMIN, on its own connection) and fetches in the same round trip. A
fetch whose reply was lost is sent again with its own id, so it returns the jobs it leased rather
than new ones; jobs leased beyond the free slots are handed back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence

import anyio

from taskforge.errors import BrokerError
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.records import Fetched, Leased
from taskforge.worker.outage import Outage
from taskforge.worker.outcomes import OutcomeWriter
from taskforge.worker.runner import JobRunner
from taskforge.worker.slots import Slots
from taskforge.workflow.advance import WorkflowAdvancer

log = logging.getLogger("taskforge.worker")


class Fetcher:
    """Fetches jobs of ``queues`` for ``runner`` until stopped (or, in burst mode, drained)."""

    def __init__(
        self,
        broker: AsyncBroker,
        blocker: AsyncBroker,
        slots: Slots,
        runner: JobRunner,
        writer: OutcomeWriter,
        outage: Outage,
        workflows: WorkflowAdvancer,
        *,
        worker_id: str,
        queues: Sequence[str],
        block_s: float,
        burst: bool,
        burst_horizon_s: float,
    ):
        self.broker = broker
        self.blocker = blocker  # its connection's timeout allows a block of block_s
        self.slots = slots
        self.runner = runner
        self.writer = writer
        self.outage = outage
        self.workflows = workflows
        self.worker_id = worker_id
        self.queues = list(queues)
        self.block_s = block_s
        self.burst = burst
        self.burst_horizon_s = burst_horizon_s
        self.stopping = False
        self._idle_queues: set[str] = set()  # queues whose fetch is blocked on the wake marker
        self._unanswered: dict[str, tuple[str, str]] = {}  # per queue: a fetch to send again
        self._answered: dict[str, str] = {}  # per queue: the last fetch that leased jobs
        # Made in run(): anyio >= 4.12 refuses a CancelScope outside an event loop, and the CLI
        # builds the worker before anyio.run.
        self._scope: anyio.CancelScope | None = None

    @property
    def idle_queues(self) -> frozenset[str]:
        """The queues whose fetch is blocked on their wake marker right now."""
        return frozenset(self._idle_queues)

    def stop(self) -> None:
        """Stop fetching (an idle fetch ends at once; what it leased goes back)."""
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """Fetch from every queue until stopped (burst mode: until nothing is left to do)."""
        self._scope = anyio.CancelScope()
        if self.stopping:
            self._scope.cancel()
        with self._scope:
            async with anyio.create_task_group() as fetchers:
                for queue in self.queues:
                    fetchers.start_soon(self._fetch_loop, queue)

    async def _fetch_loop(self, queue: str) -> None:
        ops = self.broker.ops
        slots = self.slots
        while not self.stopping:
            if self.outage.oom.active and self.writer.unwritten:
                await self.outage.oom.wait()  # the outcomes go first; their write ends the pause
                continue
            if slots.free == 0:
                await slots.wait()
                continue
            want = slots.free
            slots.free -= want
            request, answered = self._request_ids(queue)
            try:
                # Shielded: a reply lost to cancellation would strand the leased jobs until
                # their leases expire.
                with anyio.CancelScope(shield=True):
                    fetched = await self.broker.run(
                        ops.fetch(
                            queue, want, self.worker_id, request_id=request, answered_id=answered
                        )
                    )
            except BrokerError as exc:
                slots.release(want)
                self._unanswered[queue] = (request, answered)
                await self.outage.back_off(exc, unwritten=self.writer.unwritten)
                continue
            self.outage.recovered()
            slots.free += want
            await self._accept(queue, request, fetched)
            while not fetched.jobs and not self.stopping:
                if self.burst:
                    if await self._burst_done(fetched.next_due_ms) and not await self._ready_left(
                        queue
                    ):
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
        if self.slots.free == 0:  # another queue's fetch took the slots: wait for one to free
            return None
        # One queue: lease what the free slots take as soon as the block returns. Several: the
        # idle fetches of all queues block at once and cannot share the free slots, so each
        # only waits (and does housekeeping); the fetch loop then leases what it has reserved.
        # Otherwise two queues could lease one slot's job each, and the one handed back would
        # have been shown active without running.
        want = self.slots.free if len(self.queues) == 1 else 0
        ops = self.blocker.ops
        request, answered = self._request_ids(queue)
        call = asyncio.ensure_future(
            self.blocker.run(
                ops.wait_then_fetch(
                    queue, want, self.worker_id, timeout_s, request_id=request, answered_id=answered
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
            await self.outage.back_off(exc, unwritten=self.writer.unwritten)
            return None
        finally:
            self._idle_queues.discard(queue)
        self.outage.recovered()
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
        take = min(len(fetched.jobs), self.slots.free)
        self.slots.free -= take
        if self.slots.free > 0:
            self.slots.wake()  # other queues' fetchers may be waiting for a slot
        for lease in fetched.jobs[:take]:
            self.runner.start(queue, lease)
        extra = fetched.jobs[take:]
        if extra:
            await self._hand_back(queue, extra)
        return take

    async def _unblock(self, queue: str, call: asyncio.Future[Fetched]) -> None:
        if not call.done():
            with contextlib.suppress(BrokerError):
                await self.broker.run(self.broker.ops.unblock([queue], self.worker_id))
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
            log.warning(
                "worker %s could not hand back %d jobs: %s", self.worker_id, len(pairs), exc
            )

    async def _ready_left(self, queue: str) -> bool:
        """Whether ``queue`` still holds ready jobs. A fetch that leased nothing may have popped
        only ids it buried (no record, a damaged one): the jobs behind them are still there, so
        a burst worker looks before it ends (an error reads as "yes": the fetch loop copes)."""
        try:
            counts = await self.broker.run(self.broker.ops.counts(queue))
        except BrokerError:
            return True
        return counts.ready_total > 0

    async def _burst_done(self, next_due_ms: int | None) -> bool:
        if self.slots.running:
            with anyio.move_on_after(0.5):
                await self.slots.wait()
            return False
        if next_due_ms is not None and next_due_ms <= self.burst_horizon_s * 1000:
            await anyio.sleep(next_due_ms / 1000 + 0.001)
            return False
        if not self.writer.idle or not self.workflows.idle:
            # Outcomes not yet in Redis may hold a retry due within the horizon, and workflow
            # advances not yet run the next steps: write them (or let the flush loop and the
            # advancer finish), then fetch once more to see them.
            await self.writer.flush_all()
            await self.workflows.drain()
            if self.writer.writing or not self.workflows.idle:
                await anyio.sleep(0.01)
            return False
        return not self.slots.running


__all__ = ["Fetcher"]
